//! The event backbone under concurrency and faults: two relays on one PostgreSQL database
//! publish every event once and keep each order's events in order; Redis going away leaves
//! events in the outbox until it is back; the in-process bus after a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use hurry_engine::events::{spawn_consumer, EventBus, LedgerConsumer, LocalBus, OutboxRelay};
use hurry_persistence::NewOrder;
use reqwest::StatusCode;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);
const RELAY_AND_CONSUMERS_OFF: &str =
    "[events]\nrelay_enabled = false\nconsumers_enabled = false\nrelay_shards = 4\n";

macro_rules! postgres_on_both_buses {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::common::{Bus, Store};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() {
                    super::$name(Store::Postgres, Bus::Local).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    super::$name(Store::Postgres, Bus::Redis).await
                }
            }
        )*
    };
}

postgres_on_both_buses!(two_relays_publish_every_event_once_in_order_per_aggregate);

both_stores!(the_in_process_bus_gets_unacknowledged_events_again_after_a_restart);

async fn two_relays_publish_every_event_once_in_order_per_aggregate(store: Store, bus: Bus) {
    // Arrange: an audit group reads the order stream; two relays share four shards.
    let app = TestApp::spawn_on(store, bus, None, &[RELAY_AND_CONSUMERS_OFF]).await;
    let events = &app.state.events;
    events.bus.join("audit", &["order"]).await.unwrap();
    let store = app.state.store.clone();
    let writing = Arc::new(AtomicBool::new(true));
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = OutboxRelay::new(
                store.clone(),
                events.bus.clone(),
                Arc::new(Notify::new()),
                events.relay_config.clone(),
            );
            let writing = writing.clone();
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    relay.pass().await.expect("relay pass");
                    let done = !writing.load(Ordering::SeqCst);
                    if done && store.outbox_backlog().await.unwrap() == 0 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    // Act: 40 batches of 10 orders; every other order is then cancelled.
    let (batches, per_batch) = (40_i64, 10_i64);
    for batch in 0..batches {
        let first = store
            .allocate_ids("orders", per_batch as u32)
            .await
            .unwrap();
        let orders: Vec<NewOrder> = (first..first + per_batch)
            .map(|id| one_unit_order(id, 1))
            .collect();
        store.commit_orders(&orders).await.unwrap();
        for id in (first..first + per_batch).filter(|id| id % 2 == 0) {
            assert!(store
                .transition_order(id, "pending_payment", "cancelled")
                .await
                .unwrap());
        }
        if batch % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    writing.store(false, Ordering::SeqCst);
    for relay in relays {
        tokio::time::timeout(WAIT, relay)
            .await
            .expect("relays drain the outbox")
            .unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let got = events
            .bus
            .read(
                "audit",
                "auditor",
                &["order"],
                1_000,
                Duration::from_millis(50),
            )
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        seen.extend(got);
    }

    // Assert
    let expected = batches * per_batch + batches * per_batch / 2;
    let raw = app.db.raw().await;
    let in_outbox = raw
        .scalar("SELECT COUNT(*) FROM outbox WHERE event_type LIKE 'order.%'")
        .await;
    assert_eq!(in_outbox, expected);
    assert_eq!(seen.len() as i64, expected, "every event once on the bus");
    let mut ids: Vec<_> = seen.iter().map(|d| d.event.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as i64, expected, "no event twice");
    let mut created_seen = std::collections::HashSet::new();
    for delivery in &seen {
        let order_id = delivery.event.aggregate_id;
        match delivery.event.event_type.as_str() {
            "order.created" => assert!(created_seen.insert(order_id)),
            "order.cancelled" => assert!(
                created_seen.contains(&order_id),
                "order {order_id} cancelled before it was created on the bus"
            ),
            other => panic!("unexpected {other}"),
        }
    }
}

async fn the_in_process_bus_gets_unacknowledged_events_again_after_a_restart(store: Store) {
    // Arrange: three orders (and the users' and the item's events) published to a bus whose consumer never
    // acknowledges.
    let app = TestApp::spawn_on(store, Bus::Local, None, &[RELAY_AND_CONSUMERS_OFF]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 10).await;
    let store = app.state.store.clone();
    let first = store.allocate_ids("orders", 3).await.unwrap();
    let orders: Vec<NewOrder> = (first..first + 3)
        .map(|id| one_unit_order(id, item))
        .collect();
    store.commit_orders(&orders).await.unwrap();
    let relay_config = app.state.events.relay_config.clone();
    let before: Arc<dyn EventBus> = Arc::new(LocalBus::new());
    before.join("ledger", &["order"]).await.unwrap();
    let first_life = OutboxRelay::new(
        store.clone(),
        before.clone(),
        Arc::new(Notify::new()),
        relay_config.clone(),
    );
    first_life.recover().await.unwrap();
    let (published, _) = first_life.pass().await.unwrap();
    let kept_before_crash = first_life.checkpoint().await;

    // Act: the process dies (the bus with it); the next one recovers and consumes.
    drop(first_life);
    drop(before);
    let after: Arc<dyn EventBus> = Arc::new(LocalBus::new());
    after.join("ledger", &["order"]).await.unwrap();
    let _consumer = spawn_consumer(
        Arc::new(LedgerConsumer::new(store.clone())),
        "second-life".to_owned(),
        after.clone(),
        store.clone(),
        app.state.events.consumer_config.clone(),
    );
    let second_life = OutboxRelay::new(
        store.clone(),
        after.clone(),
        Arc::new(Notify::new()),
        relay_config.clone(),
    );
    let recovered_from = second_life.recover().await.unwrap();
    let (republished, _) = second_life.pass().await.unwrap();
    let raw = app.db.raw().await;
    eventually("three ledger sales", WAIT, || async {
        let sales = raw.scalar("SELECT COUNT(*) FROM ledger_entries").await;
        (sales == 3).then_some(())
    })
    .await;
    let last = raw.scalar("SELECT MAX(id) FROM outbox").await;
    let kept_after = eventually("the acknowledged point stored", WAIT, || async {
        let kept = second_life.checkpoint().await;
        (kept == Some(last)).then_some(kept)
    })
    .await;
    let third_life = OutboxRelay::new(
        store.clone(),
        Arc::new(LocalBus::new()),
        Arc::new(Notify::new()),
        relay_config,
    );
    third_life.recover().await.unwrap();

    // Assert
    let others = raw
        .scalar("SELECT COUNT(*) FROM outbox WHERE event_type NOT LIKE 'order.%'")
        .await;
    assert_eq!(
        published as i64,
        3 + others,
        "the orders and the users' and item's events"
    );
    // The users' and the item's events have no reader and count as done; the orders were never acknowledged.
    let first_order_event = raw
        .scalar("SELECT MIN(id) FROM outbox WHERE event_type = 'order.created'")
        .await;
    assert_eq!(kept_before_crash, Some(first_order_event - 1));
    assert_eq!(recovered_from, kept_before_crash);
    assert_eq!(
        republished, 3,
        "the orders' events published again after the restart"
    );
    assert_eq!(kept_after, Some(last));
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        0,
        "acknowledged events are not published a third time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_purchases_go_on_the_outbox_grows_and_drains_when_it_returns() {
    // Arrange: cluster mode with Redis behind a proxy the test can cut.
    let proxy = Proxy::start(redis_addr()).await;
    let app = TestApp::spawn_on(Store::Postgres, Bus::Redis, Some(proxy.addr), &[]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 100, 1).await;
    let buyers = app.many_users("buyer", 8).await;
    let raw = app.db.raw().await;
    let sales = || async { raw.scalar("SELECT COUNT(*) FROM ledger_entries").await };
    for (_, token) in &buyers[..3] {
        assert_eq!(
            app.purchase(token, item, 1, None).await.0,
            StatusCode::CREATED
        );
    }
    eventually(
        "3 sales and an empty outbox before the cut",
        WAIT,
        || async {
            let drained = app.state.store.outbox_backlog().await.unwrap() == 0;
            (drained && sales().await == 3).then_some(())
        },
    )
    .await;

    // Act: Redis goes away; five more purchases.
    proxy.cut();
    let (ready_status, _) = app.get("/readyz", None).await;
    for (_, token) in &buyers[3..] {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "purchases need no Redis: {body}"
        );
    }
    let backlog_while_down = app.state.store.outbox_backlog().await.unwrap();
    let sales_while_down = sales().await;
    proxy.restore();

    // Assert
    assert_eq!(ready_status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backlog_while_down, 5, "kept in the outbox");
    assert_eq!(sales_while_down, 3);
    eventually("the outbox drained and all 8 sales", WAIT, || async {
        let drained = app.state.store.outbox_backlog().await.unwrap() == 0;
        (drained && sales().await == 8).then_some(())
    })
    .await;
    let (ready_again, _) = app.get("/readyz", None).await;
    assert_eq!(ready_again, StatusCode::OK);
    let doubled = raw
        .scalar(
            "SELECT COUNT(*) FROM (SELECT order_id FROM ledger_entries \
             GROUP BY order_id HAVING COUNT(*) > 1) d",
        )
        .await;
    assert_eq!(doubled, 0);
}
