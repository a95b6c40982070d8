//! How the consumer loop keeps failures to themselves: a replayed dead letter reaches only the
//! consumer that gave up on it (even after the others' inbox rows are past retention); a store
//! that cannot be reached for a while is waited for, not dead-lettered; one poison event in a
//! batch does not hold up the good ones.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::events::{commit_orders, doubled_entries, drop_of, ledger, CONSUMERS_OFF};
use async_trait::async_trait;
use chrono::Utc;
use hurry_engine::events::{spawn_consumer, Consumer, ConsumerError, LedgerConsumer};
use hurry_persistence::{Effect, Event, StoreError};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const AUDIT: &str = "audit";
/// Waits between attempts while the store is unreachable of at most 50 ms.
const RETRY_MAX: &str = "[events]\nretry_max_ms = 50\n";

/// A second consumer of the order topic that refuses every event while `refusing` is set.
struct Audit {
    store: Arc<dyn hurry_persistence::Store>,
    refusing: Arc<AtomicBool>,
}

#[async_trait]
impl Consumer for Audit {
    fn group(&self) -> &'static str {
        AUDIT
    }

    fn topics(&self) -> &'static [&'static str] {
        &["order"]
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        if self.refusing.load(Ordering::SeqCst) {
            return Err(StoreError::Invalid("the audit refuses".into()).into());
        }
        let effects: Vec<_> = events
            .iter()
            .map(|e| (e.event_id, Effect::Record))
            .collect();
        self.store.apply_effects(AUDIT, &effects).await?;
        Ok(())
    }
}

/// The ledger consumer, keeping the ids of the events it was given and counting its calls.
struct Watched {
    inner: LedgerConsumer,
    given: Arc<Mutex<Vec<uuid::Uuid>>>,
    calls: Arc<AtomicUsize>,
}

impl Watched {
    fn new(store: Arc<dyn hurry_persistence::Store>) -> Self {
        Self {
            inner: LedgerConsumer::new(store),
            given: Arc::default(),
            calls: Arc::default(),
        }
    }
}

#[async_trait]
impl Consumer for Watched {
    fn group(&self) -> &'static str {
        self.inner.group()
    }

    fn topics(&self) -> &'static [&'static str] {
        self.inner.topics()
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.given
            .lock()
            .unwrap()
            .extend(events.iter().map(|event| event.event_id));
        self.inner.handle(events).await
    }
}

async fn dead_letters(app: &TestApp) -> i64 {
    app.db
        .raw()
        .await
        .scalar("SELECT COUNT(*) FROM dead_letters")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_retention_reaches_only_the_consumer_that_gave_up_sqlite_local() {
    a_replay_after_retention_reaches_only_the_consumer_that_gave_up(Store::Sqlite, Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_retention_reaches_only_the_consumer_that_gave_up_postgres_redis() {
    a_replay_after_retention_reaches_only_the_consumer_that_gave_up(Store::Postgres, Bus::Redis)
        .await
}

async fn a_replay_after_retention_reaches_only_the_consumer_that_gave_up(store: Store, bus: Bus) {
    // Arrange: the ledger applies order event E; the audit consumer dead-letters it.
    let app = TestApp::spawn_on(store, bus, None, &[CONSUMERS_OFF]).await;
    let (_, item) = drop_of(&app, 10).await;
    let events = &app.state.events;
    events.bus.join("ledger", &["order"]).await.expect("join");
    events.bus.join(AUDIT, &["order"]).await.expect("join");
    let mut config = events.consumer_config.clone();
    config.max_deliveries = 1;
    let store = app.state.store.clone();
    let watched = Arc::new(Watched::new(store.clone()));
    let given = watched.given.clone();
    let refusing = Arc::new(AtomicBool::new(true));
    let audit = Arc::new(Audit {
        store: store.clone(),
        refusing: refusing.clone(),
    });
    let _ledger = spawn_consumer(
        watched,
        "l".into(),
        events.bus.clone(),
        store.clone(),
        config.clone(),
    );
    let _audit = spawn_consumer(audit, "a".into(), events.bus.clone(), store.clone(), config);
    commit_orders(&app, item, 1).await;
    eventually("a sale and the audit's dead letter", WAIT, || async {
        (ledger(&app).await.0 == 1 && dead_letters(&app).await == 1).then_some(())
    })
    .await;
    let event_id = given.lock().unwrap()[0];
    let admin = app.admin_token().await;
    let (_, dead) = app.get("/api/v1/admin/events/dead", Some(&admin)).await;
    let letter_id = dead["dead_letters"][0]["id"].as_i64().expect("id");

    // Act: the retention passes (every inbox row is old); the audit is fixed; replay.
    let pruned = store
        .prune_events(
            Utc::now() - chrono::Duration::days(1),
            None,
            Utc::now() + chrono::Duration::minutes(1),
        )
        .await
        .expect("prune");
    refusing.store(false, Ordering::SeqCst);
    let replay = format!("/api/v1/admin/events/dead/{letter_id}/replay");
    let (status, body) = app.post(&replay, Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually("the audit has E", WAIT, || async {
        store
            .event_processed(AUDIT, event_id)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    // A later order: once the ledger has it, it has read past the replay (one topic, in order).
    commit_orders(&app, item, 1).await;
    eventually("the second sale", WAIT, || async {
        (ledger(&app).await.0 == 2).then_some(())
    })
    .await;

    // Assert
    let times_given = given
        .lock()
        .unwrap()
        .iter()
        .filter(|id| **id == event_id)
        .count();
    assert_eq!(
        times_given, 1,
        "the replay is not for the ledger (pruned {pruned:?})"
    );
    assert!(
        store.event_processed("ledger", event_id).await.unwrap(),
        "kept past retention"
    );
    assert_eq!(doubled_entries(&app).await, 0, "the ledger applied E once");
    assert_eq!(ledger(&app).await, (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_longer_than_every_retry_loses_no_event_to_dead_letters() {
    // Arrange: cluster mode; the ledger reaches PostgreSQL through a proxy the test cuts
    // (dead letters, were there any, go to the server's own store). Five deliveries of 10 ms
    // doubling would give an event up after ~150 ms.
    let app = TestApp::spawn_on(
        Store::Postgres,
        Bus::Redis,
        None,
        &[CONSUMERS_OFF, RETRY_MAX],
    )
    .await;
    let (_, item) = drop_of(&app, 10).await;
    let proxy = Proxy::start(postgres_addr()).await;
    let mut options = app.state.settings.connect_options();
    options.url = via(&app.db.url, proxy.addr);
    let flapping = hurry_persistence::connect(&options)
        .await
        .expect("via the proxy");
    let events = &app.state.events;
    let mut config = events.consumer_config.clone();
    config.max_deliveries = 5;
    config.retry_base = Duration::from_millis(10);
    let watched = Arc::new(Watched::new(flapping));
    let calls = watched.calls.clone();
    let _ledger = spawn_consumer(
        watched,
        "l".into(),
        events.bus.clone(),
        app.state.store.clone(),
        config.clone(),
    );
    events.bus.join("ledger", &["order"]).await.expect("join");

    // Act: the store goes away; five orders are published; the ledger tries far longer
    // than its deliveries allow; the store comes back.
    proxy.cut();
    commit_orders(&app, item, 5).await;
    let given_up_at = 1 + 5 * config.max_deliveries as usize;
    eventually("attempts past every event's deliveries", WAIT, || async {
        let tried = calls.load(Ordering::SeqCst) > given_up_at + 10;
        (tried || dead_letters(&app).await > 0).then_some(())
    })
    .await;
    let dead_while_down = dead_letters(&app).await;
    let sales_while_down = ledger(&app).await.0;
    proxy.restore();

    // Assert
    assert_eq!(
        dead_while_down, 0,
        "an unreachable store is not a poison event"
    );
    assert_eq!(sales_while_down, 0);
    eventually("all five sales", WAIT, || async {
        (ledger(&app).await.0 == 5).then_some(())
    })
    .await;
    assert_eq!(dead_letters(&app).await, 0);
    assert_eq!(doubled_entries(&app).await, 0, "each effect once");
}

both_stores!(one_poison_event_in_a_batch_does_not_hold_up_the_good_ones);

async fn one_poison_event_in_a_batch_does_not_hold_up_the_good_ones(store: Store) {
    // Arrange: a poison order (an item that does not exist), then four good ones, published
    // before the ledger reads: one batch, the poison first. Its retries take 2 s + 4 s.
    let app = TestApp::spawn_on(store, Bus::Local, None, &[CONSUMERS_OFF]).await;
    let (_, item) = drop_of(&app, 10).await;
    let events = &app.state.events;
    events.bus.join("ledger", &["order"]).await.expect("join");
    commit_orders(&app, item + 1_000, 1).await;
    commit_orders(&app, item, 4).await;
    eventually("the orders on the bus", WAIT, || async {
        (app.state.store.outbox_backlog().await.unwrap() == 0).then_some(())
    })
    .await;
    let mut config = events.consumer_config.clone();
    config.max_deliveries = 3;
    config.retry_base = Duration::from_secs(2);

    // Act
    let _ledger = spawn_consumer(
        Arc::new(LedgerConsumer::new(app.state.store.clone())),
        "l".into(),
        events.bus.clone(),
        app.state.store.clone(),
        config,
    );
    let dead_when_sold = eventually("the four good sales", WAIT, || async {
        let sales = ledger(&app).await.0;
        let dead = dead_letters(&app).await;
        (sales == 4).then_some(dead)
    })
    .await;
    eventually("the poison's dead letter", WAIT, || async {
        (dead_letters(&app).await == 1).then_some(())
    })
    .await;

    // Assert
    assert_eq!(
        dead_when_sold, 0,
        "the good events did not wait for the poison's retries"
    );
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM dead_letters WHERE deliveries = 3")
            .await,
        1,
        "only the poison, after all its deliveries"
    );
    assert_eq!(ledger(&app).await, (4, 0));
    assert_eq!(doubled_entries(&app).await, 0);
}
