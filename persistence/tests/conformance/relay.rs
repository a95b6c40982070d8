//! The outbox relay: order, limits, failures, shards, and a pass over every shard.

use std::sync::Mutex;

use async_trait::async_trait;
use hurry_persistence::{EventSink, OutboxEvent, RelayRun, RelayShard, SinkError};

use super::*;

on_both_backends!(
    relay_hands_events_on_in_outbox_order_and_marks_them_published,
    relay_respects_the_limit_and_continues_where_it_stopped,
    a_failing_sink_marks_nothing_and_the_next_pass_publishes_all,
    a_shard_in_use_is_busy_for_a_second_relay,
    shards_split_aggregates_without_overlap,
    a_pass_over_every_shard_publishes_in_outbox_order_within_the_limit,
    a_pass_over_every_shard_skips_the_shards_another_relay_holds,
);

/// A sink that keeps what it was given, or fails when told to.
#[derive(Default)]
pub(super) struct Collect {
    pub(super) events: Mutex<Vec<OutboxEvent>>,
    fail: bool,
}

impl Collect {
    pub(super) fn failing() -> Self {
        Self {
            events: Mutex::default(),
            fail: true,
        }
    }

    pub(super) fn ids(&self) -> Vec<i64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|event| event.id)
            .collect()
    }

    pub(super) fn types(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|event| event.event.event_type.clone())
            .collect()
    }
}

#[async_trait]
impl EventSink for Collect {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), SinkError> {
        if self.fail {
            return Err("the bus is down".into());
        }
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

pub(super) const ALL: RelayShard = RelayShard { index: 0, count: 1 };

/// Orders 1..=n of user 7, one batch each, so each has one `order.created` event.
pub(super) async fn orders(db: &TestStore, ids: std::ops::RangeInclusive<i64>) -> Result<()> {
    for id in ids {
        db.commit_orders(&[order(id, 7, "pending_payment", &[(10, 1)])])
            .await?;
    }
    Ok(())
}

async fn relay_hands_events_on_in_outbox_order_and_marks_them_published(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=3).await?;
    ensure!(
        db.transition_order(2, "pending_payment", "cancelled")
            .await?
    );
    let sink = Collect::default();

    // Act
    let first = db.relay_outbox(ALL, 100, &sink).await?;
    let second = db.relay_outbox(ALL, 100, &sink).await?;

    // Assert
    assert_eq!(first.published, 4);
    assert_eq!(second.published, 0, "published rows are not relayed again");
    let ids = sink.ids();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(
        sink.types(),
        [
            "order.created",
            "order.created",
            "order.created",
            "order.cancelled"
        ]
    );
    let events = sink.events.lock().unwrap().clone();
    let cancelled = &events[3].event;
    assert_eq!(cancelled.aggregate_id, 2);
    assert_eq!(cancelled.payload.value()["status"], "cancelled");
    assert_eq!(events[0].event.payload.value()["order_id"], 1);
    assert_eq!(db.outbox_backlog().await?, 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await?,
        0
    );
    Ok(())
}

async fn relay_respects_the_limit_and_continues_where_it_stopped(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=5).await?;
    let sink = Collect::default();

    // Act
    let runs = [
        db.relay_outbox(ALL, 2, &sink).await?.published,
        db.relay_outbox(ALL, 2, &sink).await?.published,
        db.relay_outbox(ALL, 2, &sink).await?.published,
        db.relay_outbox(ALL, 2, &sink).await?.published,
    ];

    // Assert
    assert_eq!(runs, [2, 2, 1, 0]);
    let aggregates: Vec<i64> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|event| event.event.aggregate_id)
        .collect();
    assert_eq!(aggregates, [1, 2, 3, 4, 5]);
    Ok(())
}

async fn a_failing_sink_marks_nothing_and_the_next_pass_publishes_all(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=3).await?;

    // Act
    let failed = db.relay_outbox(ALL, 100, &Collect::failing()).await;
    let backlog_after_failure = db.outbox_backlog().await?;
    let sink = Collect::default();
    let retried = db.relay_outbox(ALL, 100, &sink).await?;

    // Assert
    assert!(matches!(failed, Err(StoreError::Sink(_))), "{failed:?}");
    assert_eq!(backlog_after_failure, 3);
    assert_eq!(retried.published, 3);
    assert_eq!(db.outbox_backlog().await?, 0);
    Ok(())
}

/// A relay a [`Nested`] sink runs while it publishes: one shard, or a pass over every shard.
#[derive(Clone, Copy)]
enum Inner {
    One(RelayShard),
    Every(u32),
}

/// A sink that, while it publishes, cancels order `cancel` (if any), then runs each of
/// `inner` and keeps what they did and published.
struct Nested<'a> {
    db: &'a TestStore,
    cancel: Option<i64>,
    inner: Vec<Inner>,
    seen: Mutex<Vec<RelayRun>>,
    published: Collect,
}

impl<'a> Nested<'a> {
    fn new(db: &'a TestStore, inner: Vec<Inner>) -> Self {
        Self {
            db,
            cancel: None,
            inner,
            seen: Mutex::default(),
            published: Collect::default(),
        }
    }
}

#[async_trait]
impl EventSink for Nested<'_> {
    async fn publish(&self, _events: &[OutboxEvent]) -> Result<(), SinkError> {
        if let Some(order) = self.cancel {
            self.db
                .transition_order(order, "pending_payment", "cancelled")
                .await?;
        }
        for inner in &self.inner {
            let run = match *inner {
                Inner::One(shard) => self.db.relay_outbox(shard, 100, &self.published).await?,
                Inner::Every(count) => {
                    self.db
                        .relay_outbox_shards(count, 100, &self.published)
                        .await?
                }
            };
            self.seen.lock().unwrap().push(run);
        }
        Ok(())
    }
}

async fn a_shard_in_use_is_busy_for_a_second_relay(backend: Backend) -> Result<()> {
    // Only PostgreSQL runs relays on several nodes; SQLite has one relay by design.
    if backend == Backend::Sqlite {
        return Ok(());
    }
    // Arrange: events on both shards of two.
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=4).await?;
    let even = RelayShard { index: 0, count: 2 };
    let odd = RelayShard { index: 1, count: 2 };
    let sink = Nested::new(&db, vec![Inner::One(even), Inner::One(odd)]);

    // Act: while shard 0 is being published, relay shard 0 again, then shard 1.
    let outer = db.relay_outbox(even, 100, &sink).await?;

    // Assert
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(outer.published, 2);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].busy, "the held shard is busy: {seen:?}");
    assert_eq!(seen[0].published, 0);
    assert!(!seen[1].busy, "another shard is free: {seen:?}");
    assert_eq!(seen[1].published, 2);
    assert_eq!(db.outbox_backlog().await?, 0);
    Ok(())
}

async fn shards_split_aggregates_without_overlap(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=6).await?;
    let (even, odd) = (Collect::default(), Collect::default());

    // Act
    db.relay_outbox(RelayShard { index: 0, count: 2 }, 100, &even)
        .await?;
    db.relay_outbox(RelayShard { index: 1, count: 2 }, 100, &odd)
        .await?;

    // Assert
    let aggregates = |sink: &Collect| -> Vec<i64> {
        let events = sink.events.lock().unwrap();
        events
            .iter()
            .map(|event| event.event.aggregate_id)
            .collect()
    };
    match backend {
        Backend::Postgres => {
            assert_eq!(aggregates(&even), [2, 4, 6]);
            assert_eq!(aggregates(&odd), [1, 3, 5]);
        }
        // One node, one shard: shard 0 relays everything, the others nothing.
        Backend::Sqlite => {
            assert_eq!(aggregates(&even), [1, 2, 3, 4, 5, 6]);
            assert_eq!(aggregates(&odd), Vec::<i64>::new());
        }
    }
    assert_eq!(db.outbox_backlog().await?, 0);
    Ok(())
}

/// The aggregates of the events `sink` was given, in order.
fn aggregates(sink: &Collect) -> Vec<i64> {
    let events = sink.events.lock().unwrap();
    events
        .iter()
        .map(|event| event.event.aggregate_id)
        .collect()
}

async fn a_pass_over_every_shard_publishes_in_outbox_order_within_the_limit(
    backend: Backend,
) -> Result<()> {
    // Arrange: six aggregates, so two on each of three shards.
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=6).await?;
    let sink = Collect::default();

    // Act
    let runs = [
        db.relay_outbox_shards(3, 4, &sink).await?,
        db.relay_outbox_shards(3, 4, &sink).await?,
        db.relay_outbox_shards(3, 4, &sink).await?,
    ];

    // Assert
    let published: Vec<usize> = runs.iter().map(|run| run.published).collect();
    assert_eq!(published, [4, 2, 0], "the limit counts all shards together");
    assert!(runs.iter().all(|run| !run.busy), "{runs:?}");
    assert_eq!(aggregates(&sink), [1, 2, 3, 4, 5, 6], "oldest first");
    let ids = sink.ids();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(db.outbox_backlog().await?, 0);
    Ok(())
}

async fn a_pass_over_every_shard_skips_the_shards_another_relay_holds(
    backend: Backend,
) -> Result<()> {
    // Only PostgreSQL runs relays on several nodes; SQLite has one relay by design.
    if backend == Backend::Sqlite {
        return Ok(());
    }
    // Arrange: events on both shards of two.
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=4).await?;
    let even = RelayShard { index: 0, count: 2 };
    let mut beside_one = Nested::new(&db, vec![Inner::Every(2)]);
    beside_one.cancel = Some(2);

    // Act: while shard 0 is being published, order 2 (shard 0) is cancelled and a pass over
    // both shards runs; then, while a pass over both is publishing, another pass over both.
    let outer = db.relay_outbox(even, 100, &beside_one).await?;
    let rest = Collect::default();
    db.relay_outbox_shards(2, 100, &rest).await?;
    orders(&db, 5..=8).await?;
    let beside_all = Nested::new(&db, vec![Inner::Every(2)]);
    let outer_all = db.relay_outbox_shards(2, 100, &beside_all).await?;

    // Assert
    assert_eq!(outer.published, 2);
    let seen = beside_one.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].busy, "shard 1 was free: {seen:?}");
    assert_eq!(
        aggregates(&beside_one.published),
        [1, 3],
        "shard 1 only: order 2's cancellation waits for its creation to be published"
    );
    assert_eq!(rest.types(), ["order.cancelled"]);
    assert_eq!(outer_all.published, 4);
    let seen = beside_all.seen.lock().unwrap().clone();
    assert!(seen[0].busy, "every shard was held: {seen:?}");
    assert_eq!(seen[0].published, 0);
    assert_eq!(db.outbox_backlog().await?, 0);
    Ok(())
}
