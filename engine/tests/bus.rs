//! The event bus contract, run against the in-process bus and against Redis Streams on a real
//! Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`; each test has its own key prefix and
//! deletes its keys afterwards).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hurry_engine::events::{Delivery, EventBus, LocalBus, RedisBus};
use hurry_persistence::{Event, OutboxEvent};

/// Runs a scenario `fn(Arc<dyn EventBus>, Kind)` on both buses.
macro_rules! on_both_buses {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn local() {
                    let bus = super::TestBus::local();
                    super::$scenario(bus.bus.clone(), super::Kind::Local).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    let bus = super::TestBus::redis().await;
                    super::$scenario(bus.bus.clone(), super::Kind::Redis).await;
                    bus.clean().await;
                }
            }
        )*
    };
}

on_both_buses!(
    a_group_reads_every_topic_message_in_order_once,
    each_group_sees_everything_and_consumers_of_a_group_share,
    unacknowledged_messages_are_claimed_after_idle_only,
    a_read_waits_for_a_publish,
    a_group_joining_late_reads_from_the_oldest_message,
    a_message_for_one_group_carries_its_target_to_every_group,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Redis,
}

struct TestBus {
    bus: Arc<dyn EventBus>,
    redis: Option<(String, String)>,
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl TestBus {
    fn local() -> Self {
        Self {
            bus: Arc::new(LocalBus::new()),
            redis: None,
        }
    }

    async fn redis() -> Self {
        let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
        let bus = RedisBus::new(&redis_url(), &prefix, 10_000).expect("redis url");
        bus.ping()
            .await
            .expect("Redis reachable at REDIS_URL (scripts/test sets it)");
        Self {
            bus: Arc::new(bus),
            redis: Some((redis_url(), prefix)),
        }
    }

    /// Deletes the test's keys.
    async fn clean(&self) {
        let Some((url, prefix)) = &self.redis else {
            return;
        };
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }
}

fn event(id: i64, event_type: &str, aggregate_id: i64) -> OutboxEvent {
    OutboxEvent {
        id,
        event: Event {
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.to_owned(),
            version: 1,
            aggregate_id,
            occurred_at: Utc::now(),
            payload: serde_json::json!({ "n": id }).into(),
        },
        target: None,
    }
}

const NO_WAIT: Duration = Duration::from_millis(1);

fn numbers(deliveries: &[Delivery]) -> Vec<i64> {
    deliveries
        .iter()
        .map(|d| d.event.payload.value()["n"].as_i64().expect("n"))
        .collect()
}

async fn a_group_reads_every_topic_message_in_order_once(bus: Arc<dyn EventBus>, _: Kind) {
    // Arrange
    bus.join("g", &["order", "user"]).await.unwrap();
    let published: Vec<OutboxEvent> = (1..=6)
        .map(|n| {
            event(
                n,
                if n % 3 == 0 {
                    "user.created"
                } else {
                    "order.created"
                },
                n,
            )
        })
        .collect();
    bus.publish(&published).await.unwrap();

    // Act
    let first = bus
        .read("g", "c1", &["order", "user"], 100, NO_WAIT)
        .await
        .unwrap();
    let again = bus
        .read("g", "c1", &["order", "user"], 100, NO_WAIT)
        .await
        .unwrap();

    // Assert
    let orders: Vec<_> = first
        .iter()
        .filter(|d| d.topic == "order")
        .cloned()
        .collect();
    let users: Vec<_> = first
        .iter()
        .filter(|d| d.topic == "user")
        .cloned()
        .collect();
    assert_eq!(numbers(&orders), [1, 2, 4, 5]);
    assert_eq!(numbers(&users), [3, 6]);
    assert_eq!(
        orders[0].event, published[0].event,
        "the event arrives whole"
    );
    assert!(
        again.is_empty(),
        "a message goes to the group once: {again:?}"
    );
}

async fn each_group_sees_everything_and_consumers_of_a_group_share(
    bus: Arc<dyn EventBus>,
    _: Kind,
) {
    // Arrange
    bus.join("ledger", &["order"]).await.unwrap();
    bus.join("mailer", &["order"]).await.unwrap();
    bus.publish(
        &(1..=4)
            .map(|n| event(n, "order.created", n))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    // Act
    let a = bus
        .read("ledger", "a", &["order"], 2, NO_WAIT)
        .await
        .unwrap();
    let b = bus
        .read("ledger", "b", &["order"], 10, NO_WAIT)
        .await
        .unwrap();
    let mailer = bus
        .read("mailer", "m", &["order"], 10, NO_WAIT)
        .await
        .unwrap();

    // Assert
    assert_eq!(numbers(&a), [1, 2]);
    assert_eq!(numbers(&b), [3, 4]);
    assert_eq!(numbers(&mailer), [1, 2, 3, 4]);
}

async fn unacknowledged_messages_are_claimed_after_idle_only(bus: Arc<dyn EventBus>, _: Kind) {
    // Arrange: consumer "dead" takes four messages and acknowledges two.
    bus.join("g", &["order"]).await.unwrap();
    bus.publish(
        &(1..=4)
            .map(|n| event(n, "order.created", n))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let taken = bus
        .read("g", "dead", &["order"], 10, NO_WAIT)
        .await
        .unwrap();
    bus.ack("g", &taken[..2]).await.unwrap();

    // Act
    let too_soon = bus
        .claim_stale("g", "heir", &["order"], Duration::from_secs(60), 10)
        .await
        .unwrap();
    let idle = Duration::from_millis(30);
    tokio::time::sleep(idle * 2).await;
    let claimed = bus
        .claim_stale("g", "heir", &["order"], idle, 10)
        .await
        .unwrap();
    bus.ack("g", &claimed).await.unwrap();
    tokio::time::sleep(idle * 2).await;
    let after_ack = bus
        .claim_stale("g", "heir", &["order"], idle, 10)
        .await
        .unwrap();

    // Assert
    assert!(too_soon.is_empty(), "{too_soon:?}");
    assert_eq!(numbers(&claimed), [3, 4]);
    assert!(after_ack.is_empty(), "{after_ack:?}");
}

async fn a_read_waits_for_a_publish(bus: Arc<dyn EventBus>, _: Kind) {
    // Arrange
    bus.join("g", &["order"]).await.unwrap();
    let reader = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.read("g", "c", &["order"], 10, Duration::from_secs(10))
                .await
                .unwrap()
        })
    };

    // Act: publish while the read waits (it was given time to start waiting).
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.publish(&[event(1, "order.created", 1)]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the read returns once a message arrives")
        .unwrap();

    // Assert
    assert_eq!(numbers(&got), [1]);
}

async fn a_group_joining_late_reads_from_the_oldest_message(bus: Arc<dyn EventBus>, kind: Kind) {
    // Arrange: messages published before any group exists.
    bus.publish(
        &(1..=3)
            .map(|n| event(n, "order.created", n))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    // Act
    bus.join("late", &["order"]).await.unwrap();
    bus.join("late", &["order"]).await.unwrap();
    let got = bus
        .read("late", "c", &["order"], 10, NO_WAIT)
        .await
        .unwrap();

    // Assert: Redis keeps the stream, so a late group reads it all. The in-process bus keeps
    // only what a group still needs (its consumers join before the relay starts), so with no
    // group nothing was kept.
    match kind {
        Kind::Redis => assert_eq!(numbers(&got), [1, 2, 3]),
        Kind::Local => assert_eq!(numbers(&got), Vec::<i64>::new()),
    }
}

async fn a_message_for_one_group_carries_its_target_to_every_group(
    bus: Arc<dyn EventBus>,
    _: Kind,
) {
    // Arrange: an ordinary event, then a replay for the ledger only.
    bus.join("ledger", &["order"]).await.unwrap();
    bus.join("audit", &["order"]).await.unwrap();
    let mut replay = event(2, "order.created", 2);
    replay.target = Some("ledger".to_owned());
    bus.publish(&[event(1, "order.created", 1), replay])
        .await
        .unwrap();

    // Act
    let ledger = bus
        .read("ledger", "l", &["order"], 10, NO_WAIT)
        .await
        .unwrap();
    let audit = bus
        .read("audit", "a", &["order"], 10, NO_WAIT)
        .await
        .unwrap();

    // Assert
    for deliveries in [&ledger, &audit] {
        let targets: Vec<Option<&str>> = deliveries.iter().map(|d| d.target.as_deref()).collect();
        assert_eq!(targets, [None, Some("ledger")]);
    }
    assert!(ledger.iter().all(|d| d.is_for("ledger")));
    assert_eq!(
        audit.iter().map(|d| d.is_for("audit")).collect::<Vec<_>>(),
        [true, false],
        "the audit skips the ledger's replay"
    );
}
