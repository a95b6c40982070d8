//! The store announces every commit that wrote outbox rows ([`EventStore::outbox_written`],
//! which the relay waits on instead of its poll); writes that put nothing in the outbox stay
//! quiet. No caller of the store mentions it.
//!
//! [`EventStore::outbox_written`]: hurry_persistence::EventStore::outbox_written

use hurry_persistence::{CodeRenewal, ItemChange, NewDeadLetter, NewEmailCode, NewGeneralOrder};
use tokio::sync::Notify;

use super::*;

on_both_backends!(every_write_into_the_outbox_is_announced_and_no_other);

/// Whether `signal` was notified since it was last asked (takes the stored wake-up).
async fn announced(signal: &Notify) -> bool {
    tokio::time::timeout(std::time::Duration::ZERO, signal.notified())
        .await
        .is_ok()
}

/// One write, seen from the outbox and from the signal.
struct Seen {
    write: &'static str,
    wrote_outbox: bool,
    announced: bool,
}

/// Runs `$write` and records whether it added outbox rows and whether it was announced.
macro_rules! watch {
    ($db:expr, $signal:expr, $seen:expr, $label:literal, $write:expr) => {{
        announced(&$signal).await;
        let before = $db.num_rows("outbox").await?;
        let value = $write.await?;
        let after = $db.num_rows("outbox").await?;
        $seen.push(Seen {
            write: $label,
            wrote_outbox: after > before,
            announced: announced(&$signal).await,
        });
        value
    }};
}

async fn every_write_into_the_outbox_is_announced_and_no_other(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let signal = db.outbox_written();
    let mut seen: Vec<Seen> = Vec::new();
    let mut unverified = new_user("new@hurry.test", &[]);
    unverified.email_verified = false;
    let code = NewEmailCode {
        code: "sealed-code".to_owned(),
        expires_at: Utc::now() + Duration::minutes(5),
    };

    // Act
    let seller = watch!(
        db,
        signal,
        seen,
        "create_user",
        db.create_user(&new_user("s@hurry.test", &["seller"]))
    );
    let buyer = watch!(
        db,
        signal,
        seen,
        "create_user (unverified)",
        db.create_user(&unverified)
    );
    watch!(
        db,
        signal,
        seen,
        "create_customers",
        db.create_customers(&[new_user("c@hurry.test", &[])])
    );
    let renewal = watch!(
        db,
        signal,
        seen,
        "renew_email_code",
        db.renew_email_code(buyer.id, &code, Duration::zero(), Utc::now())
    );
    let CodeRenewal::Issued { generation } = renewal else {
        anyhow::bail!("no code issued: {renewal:?}");
    };
    watch!(
        db,
        signal,
        seen,
        "confirm_email",
        db.confirm_email(buyer.id, generation)
    );
    let general = watch!(
        db,
        signal,
        seen,
        "create_item",
        db.create_item(&new_item(seller.id, "Tee", None))
    );
    let limited = watch!(
        db,
        signal,
        seen,
        "create_item (drop)",
        db.create_item(&new_item(seller.id, "Sneaker", Some(drop_spec(-60, 600))))
    );
    let change = ItemChange {
        name: Some("Renamed".into()),
        description: None,
        price: None,
    };
    watch!(
        db,
        signal,
        seen,
        "update_item",
        db.update_item(general.id, seller.id, &change)
    );
    watch!(
        db,
        signal,
        seen,
        "adjust_stock",
        db.adjust_stock(general.id, seller.id, 5)
    );
    watch!(
        db,
        signal,
        seen,
        "adjust_drop_units",
        db.adjust_drop_units(limited.id, -1)
    );
    watch!(
        db,
        signal,
        seen,
        "set_cart_item",
        db.set_cart_item(buyer.id, general.id, 1)
    );
    watch!(
        db,
        signal,
        seen,
        "remove_cart_item",
        db.remove_cart_item(buyer.id, general.id)
    );
    let placed = NewGeneralOrder {
        id: 1,
        user_id: buyer.id,
        lines: vec![(general.id, 1)],
        payment_due_at: Some(at(600)),
        created_at: at(0),
        idempotency: None,
        from_cart: false,
    };
    watch!(db, signal, seen, "place_order", db.place_order(&placed));
    let sold = keyed(
        order(2, buyer.id, "pending_payment", &[(limited.id, 1)]),
        "k-1",
        "h-1",
    );
    let repeat = keyed(
        order(4, buyer.id, "pending_payment", &[(limited.id, 1)]),
        "k-1",
        "h-1",
    );
    watch!(
        db,
        signal,
        seen,
        "commit_orders",
        db.commit_orders(std::slice::from_ref(&sold))
    );
    watch!(
        db,
        signal,
        seen,
        "commit_orders (a repeat)",
        db.commit_orders(&[repeat])
    );
    watch!(
        db,
        signal,
        seen,
        "transition_order",
        db.transition_order(2, "pending_payment", "cancelled")
    );
    watch!(
        db,
        signal,
        seen,
        "transition_order (from another state)",
        db.transition_order(2, "pending_payment", "cancelled")
    );
    db.comparison.init_row_stock(limited.id).await?;
    watch!(
        db,
        signal,
        seen,
        "purchase_row",
        db.comparison.purchase_row(
            &order(3, buyer.id, "pending_payment", &[(limited.id, 1)]),
            5
        )
    );
    let letter = NewDeadLetter {
        consumer: "ledger".to_owned(),
        event: hurry_persistence::Event {
            event_id: uuid::Uuid::new_v4(),
            event_type: "order.created".to_owned(),
            version: 1,
            aggregate_id: 2,
            occurred_at: at(0),
            payload: serde_json::json!({ "order_id": 2 }).into(),
        },
        error: "poison".to_owned(),
        deliveries: 5,
    };
    let letter_id = watch!(
        db,
        signal,
        seen,
        "add_dead_letter",
        db.add_dead_letter(&letter)
    );
    watch!(
        db,
        signal,
        seen,
        "replay_dead_letter",
        db.replay_dead_letter(letter_id)
    );
    watch!(
        db,
        signal,
        seen,
        "delete_item",
        db.delete_item(general.id, seller.id)
    );
    watch!(
        db,
        signal,
        seen,
        "delete_user",
        db.delete_user(buyer.id, "shredded", "freed")
    );

    // Assert
    for step in &seen {
        assert_eq!(
            step.announced, step.wrote_outbox,
            "{}: wrote outbox rows {}, announced {}",
            step.write, step.wrote_outbox, step.announced
        );
    }
    let quiet: Vec<&str> = seen
        .iter()
        .filter(|step| !step.wrote_outbox)
        .map(|step| step.write)
        .collect();
    assert_eq!(
        quiet,
        [
            "set_cart_item",
            "remove_cart_item",
            "commit_orders (a repeat)",
            "transition_order (from another state)",
            "add_dead_letter"
        ],
        "every other write puts an event in the outbox"
    );
    Ok(())
}
