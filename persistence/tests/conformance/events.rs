//! Inboxes, dead letters, the ledger, retention, and which writes put events in the outbox
//! (the relay itself is in `relay.rs`).

use hurry_persistence::{Effect, Event, LedgerEntry, LedgerKind, NewDeadLetter};

use super::relay::{orders, Collect, ALL};
use super::*;

on_both_backends!(
    unpublish_after_makes_later_rows_due_again,
    apply_effects_writes_each_event_once_with_the_item_seller,
    a_ledger_entry_for_an_unknown_item_fails_the_whole_batch,
    dead_letters_list_newest_first_and_replay_into_the_outbox,
    prune_removes_old_published_rows_and_old_inbox_rows_only,
    prune_keeps_the_inbox_rows_of_events_that_have_a_dead_letter,
    a_replayed_dead_letter_is_for_its_consumer_only,
    users_and_items_write_events,
);

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
        payload: serde_json::json!({ "order_id": aggregate_id, "note": "poison" }).into(),
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
    assert_eq!(item_event.payload.value()["seller_id"], user.id);
    assert_eq!(item_event.payload.value()["drop"]["total_units"], 100);
    assert_eq!(events[0].event.aggregate_id, user.id);
    assert_eq!(
        events[0].event.payload.value()["roles"],
        serde_json::json!(["customer", "seller"])
    );
    assert_eq!(events[2].event.payload.value()["user_id"], user.id);
    let text = serde_json::to_string(&events[0].event)?;
    assert!(
        !text.contains("gone@hurry.test"),
        "no personal data in events: {text}"
    );
    Ok(())
}

async fn prune_keeps_the_inbox_rows_of_events_that_have_a_dead_letter(
    backend: Backend,
) -> Result<()> {
    // Arrange: the ledger had E and F; another consumer gave up on E.
    let db = TestStore::open(backend).await?;
    let (dead, other) = (event(1, "order.created"), event(2, "order.created"));
    db.apply_effects(
        "ledger",
        &[
            (dead.event_id, Effect::Record),
            (other.event_id, Effect::Record),
        ],
    )
    .await?;
    db.add_dead_letter(&NewDeadLetter {
        consumer: "audit".to_owned(),
        event: dead.clone(),
        error: "audit is down".to_owned(),
        deliveries: 5,
    })
    .await?;
    let later = Utc::now() + Duration::minutes(1);

    // Act
    let pruned = db.prune_events(later, None, later).await?;

    // Assert
    assert_eq!(
        pruned.inbox, 1,
        "only the row of the event without a dead letter"
    );
    assert!(
        db.event_processed("ledger", dead.event_id).await?,
        "a replay of the dead letter must still find it"
    );
    assert!(!db.event_processed("ledger", other.event_id).await?);
    Ok(())
}

async fn a_replayed_dead_letter_is_for_its_consumer_only(backend: Backend) -> Result<()> {
    // Arrange: an order's event (for every group) and a dead letter of the audit consumer.
    let db = TestStore::open(backend).await?;
    orders(&db, 1..=1).await?;
    let id = db
        .add_dead_letter(&NewDeadLetter {
            consumer: "audit".to_owned(),
            event: event(7, "order.created"),
            error: "audit is down".to_owned(),
            deliveries: 5,
        })
        .await?;

    // Act
    db.replay_dead_letter(id).await?;
    let sink = Collect::default();
    db.relay_outbox(ALL, 100, &sink).await?;

    // Assert
    let relayed = sink.events.lock().unwrap().clone();
    let targets: Vec<Option<&str>> = relayed.iter().map(|row| row.target.as_deref()).collect();
    assert_eq!(targets, [None, Some("audit")]);
    Ok(())
}
