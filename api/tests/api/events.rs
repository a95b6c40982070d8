//! The event backbone end to end (real server, real stores, the in-process bus and Redis
//! Streams on a real Redis): the ledger consumer's effects, a relay killed between publish
//! and mark, a consumer killed after its effect, poison events and replay, two relays on one
//! database, per-aggregate order, Redis going away, and the in-process bus after a restart.

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use async_trait::async_trait;
use hurry_engine::events::{
    spawn_consumer, Consumer, ConsumerError, EventBus, LedgerConsumer, OutboxRelay,
};
use hurry_persistence::{Event, EventSink, NewOrder, OutboxEvent, RelayShard, SinkError};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Notify;

/// Runs a scenario `fn(Store, Bus)` as `<name>::sqlite_local`, `<name>::postgres_local` and
/// `<name>::postgres_redis` (cluster mode).
macro_rules! on_every_mode {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::common::{Bus, Store};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() {
                    super::$name(Store::Sqlite, Bus::Local).await
                }

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

on_every_mode!(
    orders_get_one_ledger_sale_each_and_a_cancelled_order_a_reversal,
    a_relay_killed_between_publish_and_mark_publishes_again_and_the_effect_happens_once,
    a_consumer_killed_after_its_effect_is_redelivered_and_the_effect_happens_once,
    a_poison_event_becomes_a_dead_letter_and_replays_after_the_fix,
    a_relay_pass_takes_up_to_a_batch_per_shard_and_says_when_there_is_more,
);

const WAIT: Duration = Duration::from_secs(20);
const RELAY_OFF: &str = "[events]\nrelay_enabled = false\nrelay_shards = 1\n";
pub(crate) const CONSUMERS_OFF: &str = "[events]\nconsumers_enabled = false\n";

/// `(sales, reversals)` in the ledger.
pub(crate) async fn ledger(app: &TestApp) -> (i64, i64) {
    let raw = app.db.raw().await;
    (
        raw.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'sale'")
            .await,
        raw.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'reversal'")
            .await,
    )
}

/// Orders with more than one entry of a kind: an effect that happened twice.
pub(crate) async fn doubled_entries(app: &TestApp) -> i64 {
    app.db
        .raw()
        .await
        .scalar(
            "SELECT COUNT(*) FROM (SELECT order_id, kind FROM ledger_entries \
             GROUP BY order_id, kind HAVING COUNT(*) > 1) doubled",
        )
        .await
}

async fn wait_for_sales(app: &TestApp, sales: i64) {
    eventually(&format!("{sales} ledger sales"), WAIT, || async {
        (ledger(app).await.0 == sales).then_some(())
    })
    .await;
}

/// A seller and an open drop of `units`.
pub(crate) async fn drop_of(app: &TestApp, units: i64) -> (String, i64) {
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, units, units).await;
    (seller, item)
}

/// Writes `count` orders of `item_id` straight into the store (no wake-up for the relay).
pub(crate) async fn commit_orders(app: &TestApp, item_id: i64, count: usize) -> Vec<i64> {
    let store = &app.state.store;
    let first = store
        .allocate_ids("orders", count as u32)
        .await
        .expect("ids");
    let orders: Vec<NewOrder> = (first..first + count as i64)
        .map(|id| one_unit_order(id, item_id))
        .collect();
    store.commit_orders(&orders).await.expect("commit");
    orders.iter().map(|order| order.id).collect()
}

async fn orders_get_one_ledger_sale_each_and_a_cancelled_order_a_reversal(store: Store, bus: Bus) {
    // Arrange
    let app = TestApp::spawn_on(store, bus, None, &[]).await;
    let (_, item) = drop_of(&app, 10).await;
    let buyers = app.many_users("buyer", 5).await;

    // Act
    for (_, token) in &buyers {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&buyers[0].1),
            Some(json!({"password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Assert
    eventually("5 sales and 1 reversal", WAIT, || async {
        (ledger(&app).await == (5, 1)).then_some(())
    })
    .await;
    let raw = app.db.raw().await;
    let seller_entries = raw
        .scalar(&format!(
            "SELECT COUNT(*) FROM ledger_entries l JOIN items i ON i.id = l.item_id \
             WHERE l.seller_id = i.seller_id AND l.item_id = {item}"
        ))
        .await;
    assert_eq!(seller_entries, 6, "every entry names the item's seller");
    assert_eq!(doubled_entries(&app).await, 0);
}

/// A sink that publishes to the bus, says so, and then never finishes: a relay that dies
/// between publishing and marking the rows published.
struct DiesAfterPublishing {
    bus: Arc<dyn EventBus>,
    published: Arc<Notify>,
}

#[async_trait]
impl EventSink for DiesAfterPublishing {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), SinkError> {
        self.bus.publish(events).await?;
        self.published.notify_one();
        pending().await
    }
}

async fn a_relay_killed_between_publish_and_mark_publishes_again_and_the_effect_happens_once(
    store: Store,
    bus: Bus,
) {
    // Arrange: the server's own relay is off; three orders are in the outbox.
    let app = TestApp::spawn_on(store, bus, None, &[RELAY_OFF]).await;
    let (_, item) = drop_of(&app, 10).await;
    commit_orders(&app, item, 3).await;
    let events = &app.state.events;
    let published = Arc::new(Notify::new());
    let dying = DiesAfterPublishing {
        bus: events.bus.clone(),
        published: published.clone(),
    };
    let shard = RelayShard { index: 0, count: 1 };

    // Act: the relay publishes, then is killed before it marks.
    let relay_task = {
        let store = app.state.store.clone();
        tokio::spawn(async move { store.relay_outbox(shard, 100, &dying).await })
    };
    tokio::time::timeout(WAIT, published.notified())
        .await
        .expect("the dying relay published");
    relay_task.abort();
    let _ = relay_task.await;
    let backlog_after_kill = app.state.store.outbox_backlog().await.expect("backlog");
    wait_for_sales(&app, 3).await;
    let relay = OutboxRelay::new(
        app.state.store.clone(),
        events.bus.clone(),
        Arc::new(Notify::new()),
        events.relay_config.clone(),
    );
    let (republished, _) = relay.pass().await.expect("second relay pass");
    // A later event, consumed after the repeats (one topic keeps its order).
    commit_orders(&app, item, 1).await;
    relay.pass().await.expect("third relay pass");

    // Assert
    assert!(backlog_after_kill >= 3, "not marked: {backlog_after_kill}");
    assert!(republished >= 3, "published again: {republished}");
    wait_for_sales(&app, 4).await;
    assert_eq!(app.state.store.outbox_backlog().await.unwrap(), 0);
    assert_eq!(doubled_entries(&app).await, 0, "each effect once");
    assert_eq!(ledger(&app).await, (4, 0));
}

/// The ledger consumer, except that after its effect it hangs, never acknowledging: a
/// consumer that dies between its effect and the acknowledgement.
struct DiesAfterEffect {
    inner: LedgerConsumer,
}

#[async_trait]
impl Consumer for DiesAfterEffect {
    fn group(&self) -> &'static str {
        self.inner.group()
    }

    fn topics(&self) -> &'static [&'static str] {
        self.inner.topics()
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        self.inner.handle(events).await?;
        pending().await
    }
}

/// Whether every published event is acknowledged by every group.
async fn all_acknowledged(app: &TestApp, bus: Bus) -> bool {
    match bus {
        Bus::Local => {
            let raw = app.db.raw().await;
            let last = raw.scalar("SELECT COALESCE(MAX(id), 0) FROM outbox").await;
            app.state.events.bus.acked_through() == Some(last)
        }
        Bus::Redis => {
            let prefix = &app.redis.as_ref().expect("redis").prefix;
            let client = redis::Client::open(redis_url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(format!("{prefix}events:order"))
                .arg("ledger")
                .query_async(&mut conn)
                .await
                .unwrap();
            match summary {
                redis::Value::Array(parts) => matches!(parts.first(), Some(redis::Value::Int(0))),
                other => panic!("XPENDING answered {other:?}"),
            }
        }
    }
}

async fn a_consumer_killed_after_its_effect_is_redelivered_and_the_effect_happens_once(
    store: Store,
    bus: Bus,
) {
    // Arrange: the server relays but runs no consumer; instance "a" will die after its effect.
    let app = TestApp::spawn_on(store, bus, None, &[CONSUMERS_OFF]).await;
    let (_, item) = drop_of(&app, 10).await;
    let events = &app.state.events;
    let mut config = events.consumer_config.clone();
    config.claim_idle = Duration::from_millis(200);
    // The group exists before anything is published (the server does the same at start).
    events.bus.join("ledger", &["order"]).await.expect("join");
    let buyers = app.many_users("buyer", 4).await;
    for (_, token) in &buyers[..3] {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    eventually("the three orders on the bus", WAIT, || async {
        (app.state.store.outbox_backlog().await.unwrap() == 0).then_some(())
    })
    .await;
    // One read gives "a" all three; it has their effect and never acknowledges.
    let dying = spawn_consumer(
        Arc::new(DiesAfterEffect {
            inner: LedgerConsumer::new(app.state.store.clone()),
        }),
        "a".to_owned(),
        events.bus.clone(),
        app.state.store.clone(),
        config.clone(),
    );
    wait_for_sales(&app, 3).await;

    // Act: "a" dies with its messages unacknowledged; "b" takes over.
    dying.abort();
    let _heir = spawn_consumer(
        Arc::new(LedgerConsumer::new(app.state.store.clone())),
        "b".to_owned(),
        events.bus.clone(),
        app.state.store.clone(),
        config,
    );
    let (status, body) = app.purchase(&buyers[3].1, item, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Assert
    wait_for_sales(&app, 4).await;
    eventually("every message acknowledged", WAIT, || async {
        all_acknowledged(&app, bus).await.then_some(())
    })
    .await;
    assert_eq!(doubled_entries(&app).await, 0, "each effect once");
    assert_eq!(ledger(&app).await, (4, 0));
}

async fn a_poison_event_becomes_a_dead_letter_and_replays_after_the_fix(store: Store, bus: Bus) {
    // Arrange: an order of an item that does not exist yet (the next id the seller gets).
    let app = TestApp::spawn_on(store, bus, None, &[]).await;
    let (seller, item) = drop_of(&app, 10).await;
    let missing_item = item + 1;
    let poison_order = commit_orders(&app, missing_item, 1).await[0];
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let admin = app.admin_token().await;

    // Act: the poison event fails every delivery; a good order after it is not held up.
    let (status, body) = app.purchase(&buyer, item, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_for_sales(&app, 1).await;
    let dead = eventually("a dead letter", WAIT, || async {
        let (status, body) = app.get("/api/v1/admin/events/dead", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["total"] == 1).then_some(body)
    })
    .await;
    let letter = &dead["dead_letters"][0];
    let letter_id = letter["id"].as_i64().expect("id");
    let fixed_item = app.open_drop(&seller, 5, 5).await;
    let replay = format!("/api/v1/admin/events/dead/{letter_id}/replay");
    let (replay_status, replay_body) = app.post(&replay, Some(&admin), json!({})).await;

    // Assert
    assert_eq!(letter["consumer"], "ledger");
    assert_eq!(letter["event"]["type"], "order.created");
    assert_eq!(letter["event"]["aggregate_id"], poison_order);
    assert_eq!(letter["deliveries"], 5);
    assert!(
        letter["error"].as_str().unwrap().contains("unknown item"),
        "{letter}"
    );
    if let Some(prefix) = &app.redis {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let dead: i64 = redis::cmd("XLEN")
            .arg(format!("{}events:dead", prefix.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(dead, 1, "the dead-letter stream has a copy");
    }
    assert_eq!(fixed_item, missing_item);
    assert_eq!(replay_status, StatusCode::ACCEPTED, "{replay_body}");
    wait_for_sales(&app, 2).await;
    let (_, after) = app.get("/api/v1/admin/events/dead", Some(&admin)).await;
    assert!(
        after["dead_letters"][0]["replayed_at"].is_string(),
        "{after}"
    );
    assert_eq!(doubled_entries(&app).await, 0);
}

both_stores!(dead_letter_endpoints_are_for_admins_and_check_their_input);

async fn dead_letter_endpoints_are_for_admins_and_check_their_input(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, customer) = app.new_user("customer@hurry.test").await;
    let admin = app.admin_token().await;

    // Act
    let (as_customer, body_customer) = app.get("/api/v1/admin/events/dead", Some(&customer)).await;
    let (anonymous, body_anonymous) = app.get("/api/v1/admin/events/dead", None).await;
    let (empty, empty_body) = app.get("/api/v1/admin/events/dead", Some(&admin)).await;
    let (bad_size, bad_size_body) = app
        .get("/api/v1/admin/events/dead?size=0", Some(&admin))
        .await;
    let (unknown, unknown_body) = app
        .post(
            "/api/v1/admin/events/dead/4242/replay",
            Some(&admin),
            json!({}),
        )
        .await;
    let (bad_id, bad_id_body) = app
        .post(
            "/api/v1/admin/events/dead/abc/replay",
            Some(&admin),
            json!({}),
        )
        .await;
    let (replay_as_customer, replay_customer_body) = app
        .post(
            "/api/v1/admin/events/dead/1/replay",
            Some(&customer),
            json!({}),
        )
        .await;

    // Assert
    assert_error(as_customer, &body_customer, 403, "forbidden");
    assert_error(anonymous, &body_anonymous, 401, "unauthorized");
    assert_eq!(empty, StatusCode::OK);
    assert_eq!(empty_body["total"], 0);
    assert_eq!(empty_body["dead_letters"], json!([]));
    assert_error(bad_size, &bad_size_body, 422, "validation_failed");
    assert_error(unknown, &unknown_body, 404, "not_found");
    assert_error(bad_id, &bad_id_body, 400, "bad_request");
    assert_error(replay_as_customer, &replay_customer_body, 403, "forbidden");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM dead_letters").await,
        0,
        "nothing changed"
    );
}

async fn a_relay_pass_takes_up_to_a_batch_per_shard_and_says_when_there_is_more(
    store: Store,
    bus: Bus,
) {
    // Arrange: the server's own relay is off; seven orders (and the setup's own events) wait.
    let app = TestApp::spawn_on(store, bus, None, &[RELAY_OFF]).await;
    let (_, item) = drop_of(&app, 10).await;
    commit_orders(&app, item, 7).await;
    let events = &app.state.events;
    let waiting = app.state.store.outbox_backlog().await.expect("backlog");
    let mut config = events.relay_config.clone();
    config.batch = 2;
    config.shards = 3;
    let relay = OutboxRelay::new(
        app.state.store.clone(),
        events.bus.clone(),
        Arc::new(Notify::new()),
        config,
    );

    // Act
    let first = relay.pass().await.expect("first pass");
    let mut passes = vec![first];
    while passes.last().is_some_and(|(_, more)| *more) {
        passes.push(relay.pass().await.expect("next pass"));
    }

    // Assert
    assert!(waiting >= 7, "{waiting}");
    assert_eq!(first, (6, true), "two per shard, three shards: {passes:?}");
    let last = passes.last().expect("a pass");
    assert!(last.0 < 6 && !last.1, "{passes:?}");
    let published: usize = passes.iter().map(|(count, _)| count).sum();
    assert_eq!(published as u64, waiting);
    assert_eq!(app.state.store.outbox_backlog().await.unwrap(), 0);
}
