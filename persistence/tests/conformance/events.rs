//! The outbox relay, inboxes, dead letters, the ledger and retention.

use std::sync::Mutex;

use async_trait::async_trait;
use hurry_persistence::{
    Effect, Event, EventSink, LedgerEntry, LedgerKind, NewDeadLetter, OutboxEvent, RelayShard,
    SinkError,
};

use super::*;

on_both_backends!(
    relay_hands_events_on_in_outbox_order_and_marks_them_published,
    relay_respects_the_limit_and_continues_where_it_stopped,
    a_failing_sink_marks_nothing_and_the_next_pass_publishes_all,
    a_shard_in_use_is_busy_for_a_second_relay,
    shards_split_aggregates_without_overlap,
    unpublish_after_makes_later_rows_due_again,
    apply_effects_writes_each_event_once_with_the_item_seller,
    a_ledger_entry_for_an_unknown_item_fails_the_whole_batch,
    dead_letters_list_newest_first_and_replay_into_the_outbox,
    prune_removes_old_published_rows_and_old_inbox_rows_only,
    users_and_items_write_events,
);

/// A sink that keeps what it was given, or fails when told to.
#[derive(Default)]
struct Collect {
    events: Mutex<Vec<OutboxEvent>>,
    fail: bool,
}

impl Collect {
    fn failing() -> Self {
        Self {
            events: Mutex::default(),
            fail: true,
        }
    }

    fn ids(&self) -> Vec<i64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|event| event.id)
            .collect()
    }

    fn types(&self) -> Vec<String> {
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

const ALL: RelayShard = RelayShard { index: 0, count: 1 };

/// Orders 1..=n of user 7, one batch each, so each has one `order.created` event.
async fn orders(db: &TestStore, ids: std::ops::RangeInclusive<i64>) -> Result<()> {
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
    assert_eq!(cancelled.payload["status"], "cancelled");
    assert_eq!(events[0].event.payload["order_id"], 1);
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

/// A sink that, while it publishes, runs a relay on each of `shards` and keeps what they did.
struct Nested<'a> {
    db: &'a TestStore,
    shards: Vec<RelayShard>,
    seen: Mutex<Vec<hurry_persistence::RelayRun>>,
}

#[async_trait]
impl EventSink for Nested<'_> {
    async fn publish(&self, _events: &[OutboxEvent]) -> Result<(), SinkError> {
        for shard in &self.shards {
            let run = self
                .db
                .relay_outbox(*shard, 100, &Collect::default())
                .await?;
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
    let sink = Nested {
        db: &db,
        shards: vec![even, odd],
        seen: Mutex::default(),
    };

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

async fn unpublish_after_makes_later_rows_due_again(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=4).await?;
    let first = Collect::default();
    db.relay_outbox(ALL, 100, &first).await?;
    let second_id = first.ids()[1];

    // Act
    let unpublished = db.unpublish_outbox_after(second_id).await?;
    let again = Collect::default();
    db.relay_outbox(ALL, 100, &again).await?;

    // Assert
    assert_eq!(unpublished, 2);
    assert_eq!(again.ids(), first.ids()[2..]);
    Ok(())
}

async fn apply_effects_writes_each_event_once_with_the_item_seller(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let item = db
        .create_item(&new_item(seller.id, "Sneaker", None))
        .await?;
    let sale = |order_id: i64| LedgerEntry {
        order_id,
        item_id: item.id,
        kind: LedgerKind::Sale,
        quantity: 2,
        amount: 378_000,
    };
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    // Act
    let applied_first = db
        .apply_effects("ledger", &[(first, Effect::Ledger(vec![sale(1)]))])
        .await?;
    let applied_again = db
        .apply_effects(
            "ledger",
            &[
                (first, Effect::Ledger(vec![sale(1)])),
                (second, Effect::Ledger(vec![sale(2)])),
                (second, Effect::Ledger(vec![sale(2)])),
            ],
        )
        .await?;
    let other_consumer = db
        .apply_effects("mailer", &[(first, Effect::Record)])
        .await?;

    // Assert
    assert_eq!((applied_first, applied_again, other_consumer), (1, 1, 1));
    let entries = db.ledger_of_order(1).await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].seller_id, seller.id);
    assert_eq!(entries[0].event_id, first);
    assert_eq!(
        (
            entries[0].kind.as_str(),
            entries[0].quantity,
            entries[0].amount
        ),
        ("sale", 2, 378_000)
    );
    assert_eq!(db.ledger_of_order(2).await?.len(), 1);
    assert!(db.event_processed("ledger", second).await?);
    assert!(db.event_processed("mailer", first).await?);
    assert!(!db.event_processed("mailer", second).await?);
    assert_eq!(db.num_rows("inbox").await?, 3);
    Ok(())
}

async fn a_ledger_entry_for_an_unknown_item_fails_the_whole_batch(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let item = db
        .create_item(&new_item(seller.id, "Sneaker", None))
        .await?;
    let entry = |item_id: i64| LedgerEntry {
        order_id: 1,
        item_id,
        kind: LedgerKind::Sale,
        quantity: 1,
        amount: 1_000,
    };
    let good = (uuid::Uuid::new_v4(), Effect::Ledger(vec![entry(item.id)]));
    let poison = (
        uuid::Uuid::new_v4(),
        Effect::Ledger(vec![entry(item.id + 1_000)]),
    );

    // Act
    let failed = db.apply_effects("ledger", &[good.clone(), poison]).await;

    // Assert
    assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
    assert_eq!(db.num_rows("ledger_entries").await?, 0, "all or nothing");
    assert_eq!(db.num_rows("inbox").await?, 0);
    assert!(!db.event_processed("ledger", good.0).await?);
    Ok(())
}

fn event(aggregate_id: i64, event_type: &str) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.to_owned(),
        version: 1,
        aggregate_id,
        occurred_at: at(aggregate_id),
        payload: serde_json::json!({ "order_id": aggregate_id, "note": "poison" }),
    }
}

async fn dead_letters_list_newest_first_and_replay_into_the_outbox(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let letter = |aggregate_id: i64| NewDeadLetter {
        consumer: "ledger".to_owned(),
        event: event(aggregate_id, "order.created"),
        error: format!("no item for order {aggregate_id}"),
        deliveries: 5,
    };
    let (older, newer) = (letter(1), letter(2));
    let older_id = db.add_dead_letter(&older).await?;
    let newer_id = db.add_dead_letter(&newer).await?;

    // Act
    let listed = db.dead_letters(0, 10).await?;
    let second_page = db.dead_letters(1, 1).await?;
    let replayed = db.replay_dead_letter(older_id).await?;
    let unknown = db.replay_dead_letter(newer_id + 100).await?;
    let sink = Collect::default();
    db.relay_outbox(ALL, 100, &sink).await?;

    // Assert
    assert_eq!(listed.total, 2);
    let ids: Vec<i64> = listed.rows.iter().map(|row| row.id).collect();
    assert_eq!(ids, [newer_id, older_id]);
    assert_eq!(listed.rows[1].event, older.event);
    assert_eq!(listed.rows[1].error, older.error);
    assert_eq!(listed.rows[1].deliveries, 5);
    assert_eq!(listed.rows[1].replayed_at, None);
    assert_eq!(second_page.rows[0].id, older_id);
    assert!(replayed);
    assert!(!unknown);
    let relayed = sink.events.lock().unwrap().clone();
    assert_eq!(relayed.len(), 1);
    assert_eq!(
        relayed[0].event, older.event,
        "same event id, type and payload"
    );
    let after = db.dead_letters(0, 10).await?;
    assert!(after.rows[1].replayed_at.is_some());
    assert_eq!(after.rows[0].replayed_at, None);
    Ok(())
}

async fn prune_removes_old_published_rows_and_old_inbox_rows_only(backend: Backend) -> Result<()> {
    // Arrange: four published events and one unpublished; two inbox rows.
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=4).await?;
    let sink = Collect::default();
    db.relay_outbox(ALL, 100, &sink).await?;
    orders(&db, 5..=5).await?;
    db.apply_effects(
        "ledger",
        &[
            (uuid::Uuid::new_v4(), Effect::Record),
            (uuid::Uuid::new_v4(), Effect::Record),
        ],
    )
    .await?;
    let later = Utc::now() + Duration::minutes(1);
    let earlier = Utc::now() - Duration::minutes(1);

    // Act
    let nothing_yet = db.prune_events(earlier, None, earlier).await?;
    let capped = db.prune_events(later, Some(sink.ids()[1]), earlier).await?;
    let rest = db.prune_events(later, None, later).await?;

    // Assert
    assert_eq!((nothing_yet.outbox, nothing_yet.inbox), (0, 0));
    assert_eq!((capped.outbox, capped.inbox), (2, 0));
    assert_eq!((rest.outbox, rest.inbox), (2, 2));
    assert_eq!(db.num_rows("outbox").await?, 1, "the unpublished row stays");
    assert_eq!(db.outbox_backlog().await?, 1);
    Ok(())
}

async fn users_and_items_write_events(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db
        .create_user(&new_user("gone@hurry.test", &["seller"]))
        .await?;
    let item = db
        .create_item(&new_item(user.id, "Sneaker", Some(drop_spec(0, 60))))
        .await?;

    // Act
    db.delete_user(user.id, "shredded", "freed").await?;
    let again = db.delete_user(user.id, "shredded", "freed").await?;
    let sink = Collect::default();
    db.relay_outbox(ALL, 100, &sink).await?;

    // Assert
    assert!(!again);
    assert_eq!(
        sink.types(),
        ["user.created", "item.created", "user.deleted"]
    );
    let events = sink.events.lock().unwrap().clone();
    let item_event = &events[1].event;
    assert_eq!(item_event.aggregate_id, item.id);
    assert_eq!(item_event.payload["seller_id"], user.id);
    assert_eq!(item_event.payload["drop"]["total_units"], 100);
    assert_eq!(events[0].event.aggregate_id, user.id);
    assert_eq!(
        events[0].event.payload["roles"],
        serde_json::json!(["customer", "seller"])
    );
    assert_eq!(events[2].event.payload["user_id"], user.id);
    let text = serde_json::to_string(&events[0].event)?;
    assert!(
        !text.contains("gone@hurry.test"),
        "no personal data in events: {text}"
    );
    Ok(())
}
