//! The row-locked stock of the `pg_row` strategy and the drop audit.

use super::*;
use hurry_persistence::{DropOrderRow, RowPurchase};

on_both_backends!(
    init_row_stock_counts_the_units_orders_do_not_hold_and_keeps_an_existing_row,
    purchase_row_takes_units_and_writes_the_order_as_a_batch_would,
    purchase_row_refuses_in_the_actors_order_and_writes_nothing,
    purchase_row_gives_the_units_back_when_the_order_cannot_be_written,
    purchase_row_refuses_an_order_without_one_line_or_without_a_stock_row,
    concurrent_row_purchases_sell_each_unit_once_within_the_limit,
    drop_orders_lists_every_order_of_the_item_with_its_units_and_key,
);

/// A drop of `total_units` with `per_user_limit`, open for an hour from [`at`]`(0)`.
async fn create_drop(db: &TestStore, total_units: i64, per_user_limit: u32) -> Result<i64> {
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let mut spec = drop_spec(0, 3_600);
    spec.total_units = total_units;
    spec.per_user_limit = per_user_limit;
    Ok(db
        .create_item(&new_item(seller.id, "sneaker", Some(spec)))
        .await?
        .id)
}

async fn init_row_stock_counts_the_units_orders_do_not_hold_and_keeps_an_existing_row(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 100, 5).await?;
    let seller = db.item_by_id(item).await?.context("drop")?.seller_id;
    let general = db.create_item(&new_item(seller, "mug", None)).await?.id;
    db.commit_orders(&[
        order(1, 7, "pending_payment", &[(item, 2)]),
        order(2, 8, "paid", &[(item, 3), (general, 1)]),
        order(3, 9, "cancelled", &[(item, 4)]),
        order(4, 9, "expired", &[(item, 5)]),
        order(5, 9, "paid", &[(general, 6)]),
    ])
    .await?;

    // Act
    let before_init = db.comparison.row_stock(item).await?;
    let first = db.comparison.init_row_stock(item).await?;
    db.commit_orders(&[order(6, 10, "paid", &[(item, 1)])])
        .await?;
    let second = db.comparison.init_row_stock(item).await?;
    let of_general = db.comparison.init_row_stock(general).await?;
    let of_unknown = db.comparison.init_row_stock(general + 1_000).await?;

    // Assert
    assert_eq!(before_init, None);
    assert_eq!(first, Some(100 - 2 - 3), "held units only");
    assert_eq!(second, first, "an existing row is kept");
    assert_eq!(db.comparison.row_stock(item).await?, first);
    assert_eq!((of_general, of_unknown), (None, None));
    assert_eq!(db.comparison.row_stock(general).await?, None);
    assert_eq!(db.num_rows("drop_row_stock").await?, 1);
    Ok(())
}

async fn purchase_row_takes_units_and_writes_the_order_as_a_batch_would(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 5, 3).await?;
    db.comparison.init_row_stock(item).await?;
    let first = keyed(order(1, 7, "pending_payment", &[(item, 2)]), "k-1", "h-1");
    let second = order(2, 7, "pending_payment", &[(item, 1)]);
    let [orders, lines, keys, outbox] = db.order_table_counts().await?;

    // Act
    let placed = [
        db.comparison.purchase_row(&first, 3).await?,
        db.comparison.purchase_row(&second, 3).await?,
    ];

    // Assert
    assert_eq!(placed, [RowPurchase::Placed, RowPurchase::Placed]);
    assert_eq!(db.comparison.row_stock(item).await?, Some(2));
    assert_eq!(db.order_by_id(1).await?, Some(first.to_record()));
    assert_eq!(db.order_by_id(2).await?, Some(second.to_record()));
    let key = db
        .idempotency_record(7, "k-1")
        .await?
        .context("key stored")?;
    assert_eq!((key.status_code, key.order_id), (201, Some(1)));
    assert_eq!(
        db.order_table_counts().await?,
        [orders + 2, lines + 2, keys + 1, outbox + 2]
    );
    assert_eq!(db.num_order_created_events().await?, 2);
    let payloads = db.order_created_payloads().await?;
    assert_eq!(payloads[0]["order_id"], 1);
    assert_eq!(payloads[0]["lines"][0]["quantity"], 2);
    Ok(())
}

async fn purchase_row_refuses_in_the_actors_order_and_writes_nothing(
    backend: Backend,
) -> Result<()> {
    // Arrange: 4 units, 2 per user; alice holds 2, a cancelled order of bob's holds none.
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 4, 2).await?;
    let (alice, bob, carol) = (7, 8, 9);
    db.commit_orders(&[
        order(1, alice, "paid", &[(item, 2)]),
        order(2, bob, "cancelled", &[(item, 2)]),
    ])
    .await?;
    db.comparison.init_row_stock(item).await?;
    let counts_before = db.order_table_counts().await?;

    // Act
    let alice_again = db
        .comparison
        .purchase_row(&order(10, alice, "pending_payment", &[(item, 1)]), 2)
        .await?;
    let bob_three = db
        .comparison
        .purchase_row(&order(11, bob, "pending_payment", &[(item, 3)]), 2)
        .await?;
    let counts_after_refusals = db.order_table_counts().await?;
    let bob_two = db
        .comparison
        .purchase_row(&order(12, bob, "pending_payment", &[(item, 2)]), 2)
        .await?;
    let carol_two = db
        .comparison
        .purchase_row(&order(13, carol, "pending_payment", &[(item, 2)]), 5)
        .await?;
    let alice_at_limit_when_sold_out = db
        .comparison
        .purchase_row(&order(14, alice, "pending_payment", &[(item, 1)]), 2)
        .await?;

    // Assert
    assert_eq!(alice_again, RowPurchase::LimitReached);
    assert_eq!(
        bob_three,
        RowPurchase::LimitReached,
        "the limit before the units"
    );
    assert_eq!(
        counts_after_refusals, counts_before,
        "refusals write nothing"
    );
    assert_eq!(
        bob_two,
        RowPurchase::Placed,
        "cancelled orders hold nothing"
    );
    assert_eq!(carol_two, RowPurchase::SoldOut, "nothing left");
    assert_eq!(alice_at_limit_when_sold_out, RowPurchase::SoldOut);
    assert_eq!(db.comparison.row_stock(item).await?, Some(0));
    assert_eq!(db.order_by_id(13).await?, None);
    Ok(())
}

async fn purchase_row_gives_the_units_back_when_the_order_cannot_be_written(
    backend: Backend,
) -> Result<()> {
    // Arrange: order id 1 exists already, so writing it again fails inside the transaction.
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 3, 2).await?;
    db.commit_orders(&[order(1, 7, "paid", &[(item, 1)])])
        .await?;
    db.comparison.init_row_stock(item).await?;
    let counts_before = db.order_table_counts().await?;

    // Act
    let clash = db
        .comparison
        .purchase_row(&order(1, 8, "pending_payment", &[(item, 2)]), 2)
        .await;
    let insufficient = db
        .comparison
        .purchase_row(&order(2, 8, "pending_payment", &[(item, 3)]), 5)
        .await?;

    // Assert
    ensure!(clash.is_err(), "a clashing order id is refused: {clash:?}");
    assert_eq!(
        db.comparison.row_stock(item).await?,
        Some(2),
        "the units are back"
    );
    assert_eq!(db.order_table_counts().await?, counts_before);
    assert_eq!(
        insufficient,
        RowPurchase::InsufficientStock { available: 2 }
    );
    Ok(())
}

async fn purchase_row_refuses_an_order_without_one_line_or_without_a_stock_row(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 10, 5).await?;
    let two_lines = order(1, 7, "pending_payment", &[(item, 1), (item, 1)]);
    let one_line = order(2, 7, "pending_payment", &[(item, 1)]);

    // Act
    let without_row = db.comparison.purchase_row(&one_line, 5).await;
    db.comparison.init_row_stock(item).await?;
    let with_two_lines = db.comparison.purchase_row(&two_lines, 5).await;

    // Assert
    ensure!(
        matches!(without_row, Err(StoreError::Invalid(_))),
        "no stock row: {without_row:?}"
    );
    ensure!(
        matches!(with_two_lines, Err(StoreError::Invalid(_))),
        "two lines: {with_two_lines:?}"
    );
    assert_eq!(db.num_rows("orders").await?, 0);
    assert_eq!(db.comparison.row_stock(item).await?, Some(10));
    Ok(())
}

async fn concurrent_row_purchases_sell_each_unit_once_within_the_limit(
    backend: Backend,
) -> Result<()> {
    // Arrange: 10 units, 1 per user; 25 users try twice each, all at once.
    let db = TestStore::open(backend).await?;
    let item = create_drop(&db, 10, 1).await?;
    db.comparison.init_row_stock(item).await?;
    let attempts: Vec<NewOrder> = (1..=50)
        .map(|id| order(id, 100 + id % 25, "pending_payment", &[(item, 1)]))
        .collect();

    // Act
    let outcomes = buy_all_at_once(&db, &attempts).await;

    // Assert
    let placed: Vec<&NewOrder> = attempts
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| matches!(outcome, Ok(RowPurchase::Placed)))
        .map(|(attempt, _)| attempt)
        .collect();
    for outcome in &outcomes {
        ensure!(
            matches!(
                outcome,
                Ok(RowPurchase::Placed | RowPurchase::SoldOut | RowPurchase::LimitReached)
            ),
            "unexpected outcome {outcome:?}"
        );
    }
    assert_eq!(placed.len(), 10, "every unit sold once");
    let mut buyers: Vec<i64> = placed.iter().map(|order| order.user_id).collect();
    buyers.sort_unstable();
    buyers.dedup();
    assert_eq!(buyers.len(), 10, "no buyer twice");
    assert_eq!(db.comparison.row_stock(item).await?, Some(0));
    assert_eq!(db.num_rows("orders").await?, 10);
    Ok(())
}

/// Runs every purchase at once (limit 1) and collects the outcomes in order.
async fn buy_all_at_once(
    db: &TestStore,
    attempts: &[NewOrder],
) -> Vec<Result<RowPurchase, StoreError>> {
    let tasks: Vec<_> = attempts
        .iter()
        .cloned()
        .map(|attempt| {
            let store = db.comparison.clone();
            tokio::spawn(async move { store.purchase_row(&attempt, 1).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("purchase task"));
    }
    outcomes
}

async fn drop_orders_lists_every_order_of_the_item_with_its_units_and_key(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let (item, other_item) = (10, 11);
    db.commit_orders(&[
        keyed(order(3, 7, "pending_payment", &[(item, 1)]), "k-3", "h"),
        order(1, 8, "cancelled", &[(item, 2)]),
        keyed(
            order(2, 9, "paid", &[(other_item, 4), (item, 1), (item, 2)]),
            "k-2",
            "h",
        ),
        keyed(order(4, 7, "paid", &[(other_item, 1)]), "k-4", "h"),
    ])
    .await?;

    // Act
    let listed = db.drop_orders(item).await?;
    let none = db.drop_orders(99).await?;

    // Assert
    let row = |id, user_id, quantity, status: &str, key: Option<&str>| DropOrderRow {
        id,
        user_id,
        quantity,
        status: status.to_owned(),
        idempotency_key: key.map(str::to_owned),
    };
    assert_eq!(
        listed,
        [
            row(1, 8, 2, "cancelled", None),
            row(2, 9, 3, "paid", Some("k-2")),
            row(3, 7, 1, "pending_payment", Some("k-3")),
        ]
    );
    assert!(none.is_empty());
    Ok(())
}
