//! Batched order writes, idempotency records, outbox rows and drop sales.

use super::*;

on_both_backends!(
    transition_order_moves_only_from_the_expected_status_and_writes_an_event,
    orders_in_status_lists_only_the_users_orders_in_that_status,
    committed_orders_read_back_with_their_lines_in_line_order,
    list_orders_is_newest_first_paged_and_only_the_users_own,
    idempotency_record_returns_the_hash_status_and_order_of_that_user,
    users_with_idempotency_keys_lists_each_keyed_user_once,
    every_committed_order_has_one_order_created_event,
    batch_reusing_an_order_id_fails_and_leaves_no_row,
    a_batch_leaves_a_reused_key_out_and_writes_the_rest,
    drop_sales_sums_units_per_user_without_releasing_orders,
);

async fn committed_orders_read_back_with_their_lines_in_line_order(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let many_lines: Vec<(i64, i64)> = (0..12).map(|line| (120 - line, 1 + line % 3)).collect();
    let mut without_due_date = order(4, 7, "paid", &[(10, 1)]);
    without_due_date.payment_due_at = None;
    let batch = vec![
        keyed(order(1, 7, "pending_payment", &[(10, 1)]), "k-1", "h-1"),
        order(2, 7, "pending_payment", &[(12, 2), (10, 1), (11, 3)]),
        keyed(order(3, 8, "pending_payment", &many_lines), "k-3", "h-3"),
        without_due_date,
    ];

    // Act
    db.commit_orders(&batch).await?;

    // Assert
    for new_order in &batch {
        let stored = db.order_by_id(new_order.id).await?;
        assert_eq!(stored, Some(new_order.to_record()));
    }
    assert_eq!(db.order_by_id(5).await?, None);
    assert_eq!(db.num_rows("order_lines").await?, 1 + 3 + 12 + 1);
    Ok(())
}

async fn list_orders_is_newest_first_paged_and_only_the_users_own(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let (mine, theirs) = (7, 8);
    let batches = [
        vec![
            order(1, mine, "paid", &[(10, 1)]),
            order(3, theirs, "paid", &[(10, 1)]),
        ],
        vec![
            keyed(
                order(2, mine, "pending_payment", &[(11, 2), (10, 1)]),
                "k-2",
                "h",
            ),
            order(4, mine, "expired", &[(10, 1)]),
            order(5, theirs, "paid", &[(12, 1)]),
        ],
        vec![
            order(6, mine, "paid", &[(12, 3)]),
            order(7, mine, "cancelled", &[(10, 1)]),
        ],
    ];
    for batch in &batches {
        db.commit_orders(batch).await?;
    }
    let record = |id: i64| -> Result<OrderRecord> {
        let found = batches.iter().flatten().find(|order| order.id == id);
        Ok(found.context("order in the batches")?.to_record())
    };

    // Act
    let pages = [
        db.list_orders(mine, 0, 2).await?,
        db.list_orders(mine, 1, 2).await?,
        db.list_orders(mine, 2, 2).await?,
        db.list_orders(mine, 3, 2).await?,
    ];
    let their_orders = db.list_orders(theirs, 0, 10).await?;
    let nobodys = db.list_orders(99, 0, 10).await?;

    // Assert
    let expected_ids: [&[i64]; 4] = [&[7, 6], &[4, 2], &[1], &[]];
    for (number, (page, ids)) in pages.iter().zip(expected_ids).enumerate() {
        let expected = ids
            .iter()
            .map(|id| record(*id))
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(page.rows, expected, "page {number}");
        assert_eq!(page.total, 5, "page {number}");
    }
    assert_eq!(their_orders.rows, vec![record(5)?, record(3)?]);
    assert_eq!(their_orders.total, 2);
    assert!(nobodys.rows.is_empty());
    assert_eq!(nobodys.total, 0);
    Ok(())
}

async fn idempotency_record_returns_the_hash_status_and_order_of_that_user(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let batch = vec![
        keyed(
            order(1, 7, "pending_payment", &[(10, 1)]),
            "same-key",
            "hash-of-7",
        ),
        order(2, 7, "pending_payment", &[(10, 1)]),
        keyed(
            order(3, 8, "pending_payment", &[(10, 2)]),
            "same-key",
            "hash-of-8",
        ),
    ];

    // Act
    db.commit_orders(&batch).await?;

    // Assert
    let expected = |request_hash: &str, order_id| IdempotencyRecord {
        request_hash: request_hash.to_owned(),
        status_code: 201,
        order_id: Some(order_id),
    };
    let of_7 = db.idempotency_record(7, "same-key").await?;
    let of_8 = db.idempotency_record(8, "same-key").await?;
    assert_eq!(of_7, Some(expected("hash-of-7", 1)));
    assert_eq!(of_8, Some(expected("hash-of-8", 3)));
    assert_eq!(db.idempotency_record(9, "same-key").await?, None);
    assert_eq!(db.idempotency_record(7, "other-key").await?, None);
    assert_eq!(db.num_rows("idempotency_keys").await?, 2);
    Ok(())
}

async fn users_with_idempotency_keys_lists_each_keyed_user_once(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let before = db.users_with_idempotency_keys().await?;
    let batch = vec![
        keyed(order(1, 7, "pending_payment", &[(10, 1)]), "a", "h-a"),
        keyed(order(2, 7, "pending_payment", &[(10, 1)]), "b", "h-b"),
        order(3, 9, "pending_payment", &[(10, 1)]),
        keyed(order(4, 8, "pending_payment", &[(10, 2)]), "a", "h-a"),
    ];

    // Act
    db.commit_orders(&batch).await?;

    // Assert
    let mut users = db.users_with_idempotency_keys().await?;
    users.sort_unstable();
    assert!(before.is_empty());
    assert_eq!(users, vec![7, 8]);
    Ok(())
}

async fn every_committed_order_has_one_order_created_event(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let first = vec![
        keyed(order(1, 7, "pending_payment", &[(10, 1)]), "k-1", "h-1"),
        order(2, 8, "pending_payment", &[(10, 2), (11, 1)]),
        order(3, 7, "paid", &[(12, 1)]),
    ];
    let second = vec![
        order(4, 9, "pending_payment", &[(10, 1)]),
        order(5, 7, "paid", &[(11, 4)]),
    ];
    let before = db.num_order_created_events().await?;

    // Act
    db.commit_orders(&[]).await.context("an empty batch")?;
    db.commit_orders(&first).await?;
    let after_first = db.num_order_created_events().await?;
    db.commit_orders(&second).await?;
    let after_second = db.num_order_created_events().await?;

    // Assert
    assert_eq!((before, after_first, after_second), (0, 3, 5));
    let payloads = db.order_created_payloads().await?;
    let mut seen: Vec<i64> = payloads
        .iter()
        .map(|payload| payload["order_id"].as_i64().context("order_id in payload"))
        .collect::<Result<_>>()?;
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    for new_order in first.iter().chain(&second) {
        let payload = payloads
            .iter()
            .find(|payload| payload["order_id"] == new_order.id)
            .context("payload of the order")?;
        assert_eq!(payload["user_id"], new_order.user_id);
        assert_eq!(payload["amount"], new_order.amount);
        assert_eq!(payload["status"], new_order.status.as_str());
        let num_lines = payload["lines"].as_array().map(Vec::len);
        assert_eq!(num_lines, Some(new_order.lines.len()));
    }
    Ok(())
}

async fn batch_reusing_an_order_id_fails_and_leaves_no_row(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let existing = order(1, 7, "pending_payment", &[(10, 1)]);
    db.commit_orders(std::slice::from_ref(&existing)).await?;
    let fresh = vec![
        keyed(
            order(2, 7, "pending_payment", &[(10, 1)]),
            "fresh-key",
            "h-2",
        ),
        order(3, 8, "pending_payment", &[(10, 2), (11, 1)]),
        order(4, 9, "paid", &[(12, 1)]),
    ];
    let mut batch = fresh.clone();
    batch.insert(
        2,
        keyed(order(1, 9, "paid", &[(11, 5), (12, 1)]), "reuse", "h-1"),
    );
    let before = db.order_table_counts().await?;

    // Act
    let result = db.commit_orders(&batch).await;

    // Assert
    let err = result
        .err()
        .context("a batch reusing an order id was committed")?;
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_batch_left_no_row(&db, before, &fresh).await?;
    assert_eq!(db.order_by_id(1).await?, Some(existing.to_record()));
    assert_eq!(db.idempotency_record(9, "reuse").await?, None);
    db.commit_orders(&fresh)
        .await
        .context("the same batch without the reused id")?;
    assert_eq!(db.num_rows("orders").await?, 4);
    Ok(())
}

async fn a_batch_leaves_a_reused_key_out_and_writes_the_rest(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let existing = keyed(
        order(1, 7, "pending_payment", &[(10, 1)]),
        "used-key",
        "h-1",
    );
    db.commit_orders(std::slice::from_ref(&existing)).await?;
    let innocent = vec![
        // The same key text, but another user's: a key is scoped to its user.
        keyed(
            order(2, 8, "pending_payment", &[(10, 1)]),
            "used-key",
            "h-2",
        ),
        order(3, 7, "pending_payment", &[(10, 2), (11, 1)]),
        keyed(order(5, 7, "paid", &[(12, 1)]), "other-key", "h-5"),
    ];
    let reused = keyed(
        order(4, 7, "pending_payment", &[(11, 3)]),
        "used-key",
        "h-4",
    );
    // The key of order 5, again in the same batch: the first one goes in.
    let twice_in_one_batch = keyed(order(6, 7, "paid", &[(12, 1)]), "other-key", "h-6");
    let mut batch = innocent.clone();
    batch.insert(1, reused);
    batch.push(twice_in_one_batch);

    // Act
    let written = db.commit_orders(&batch).await?;

    // Assert
    assert_eq!(
        written,
        vec![2, 3, 5],
        "the repeats are left out, the rest written"
    );
    for order in &innocent {
        assert_eq!(db.order_by_id(order.id).await?, Some(order.to_record()));
    }
    assert_eq!(db.order_by_id(4).await?, None);
    assert_eq!(db.order_by_id(6).await?, None);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM order_lines WHERE order_id IN (4, 6)")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE aggregate_id IN (4, 6)")
            .await?,
        0,
        "no event for an order left out"
    );
    let kept = db.idempotency_record(7, "used-key").await?;
    assert_eq!(
        kept.map(|record| (record.request_hash, record.order_id)),
        Some(("h-1".to_owned(), Some(1))),
        "the first answer stays"
    );
    let first_in_batch = db.idempotency_record(7, "other-key").await?;
    assert_eq!(
        first_in_batch.map(|record| (record.request_hash, record.order_id)),
        Some(("h-5".to_owned(), Some(5)))
    );
    Ok(())
}

/// Asserts a failed batch changed no table and none of its `orders` became visible.
async fn assert_batch_left_no_row(
    db: &TestStore,
    before: [i64; 4],
    orders: &[NewOrder],
) -> Result<()> {
    let after = db.order_table_counts().await?;
    assert_eq!(
        after, before,
        "(orders, order_lines, idempotency_keys, outbox)"
    );
    for new_order in orders {
        assert_eq!(
            db.order_by_id(new_order.id).await?,
            None,
            "order {}",
            new_order.id
        );
    }
    Ok(())
}

async fn drop_sales_sums_units_per_user_without_releasing_orders(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let (item, other_item) = (10, 11);
    let (alice, bob, carol) = (7, 8, 9);
    let mut batch = vec![
        order(1, alice, "paid", &[(item, 2)]),
        order(2, alice, "pending_payment", &[(other_item, 5), (item, 1)]),
        order(3, alice, "expired", &[(item, 4)]),
        order(4, bob, "cancelled", &[(item, 3)]),
        order(5, bob, "paid", &[(other_item, 1), (item, 1), (item, 2)]),
    ];
    let released_by_carol = RELEASING_STATUSES.iter().zip(6..);
    batch.extend(released_by_carol.map(|(status, id)| order(id, carol, status, &[(item, 1)])));
    db.commit_orders(&batch).await?;

    // Act
    let mut sales = db.drop_sales(item).await?;
    let mut other_sales = db.drop_sales(other_item).await?;
    let no_sales = db.drop_sales(99).await?;

    // Assert
    sales.per_user.sort_unstable();
    other_sales.per_user.sort_unstable();
    assert_eq!(sales.per_user, [(alice, 3), (bob, 3)]);
    assert_eq!(sales.total(), 6);
    assert_eq!(other_sales.per_user, [(alice, 5), (bob, 1)]);
    assert_eq!(no_sales, DropSales::default());
    Ok(())
}

async fn transition_order_moves_only_from_the_expected_status_and_writes_an_event(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    db.commit_orders(&[
        order(1, 7, "pending_payment", &[(10, 2)]),
        order(2, 7, "paid", &[(10, 1)]),
    ])
    .await?;

    // Act
    let first = db
        .transition_order(1, "pending_payment", "cancelled")
        .await?;
    let again = db
        .transition_order(1, "pending_payment", "cancelled")
        .await?;
    let wrong_state = db
        .transition_order(2, "pending_payment", "cancelled")
        .await?;
    let unknown = db
        .transition_order(99, "pending_payment", "cancelled")
        .await?;

    // Assert
    assert!(first, "a pending order is cancelled");
    assert!(!again && !wrong_state && !unknown, "nothing else moves");
    let cancelled = db.order_by_id(1).await?.context("order 1")?;
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.lines.len(), 1, "lines are kept");
    assert_eq!(db.order_by_id(2).await?.context("order 2")?.status, "paid");
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'order.cancelled' AND aggregate_id = 1"
        )
        .await?,
        1,
        "one event, only for the move that happened"
    );
    assert_eq!(
        db.drop_sales(10).await?,
        DropSales {
            per_user: vec![(7, 1)]
        },
        "the cancelled order's units are no longer held"
    );
    Ok(())
}

async fn orders_in_status_lists_only_the_users_orders_in_that_status(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    db.commit_orders(&[
        order(1, 7, "pending_payment", &[(10, 1)]),
        order(2, 7, "paid", &[(10, 1)]),
        order(3, 8, "pending_payment", &[(10, 1)]),
        order(4, 7, "pending_payment", &[(11, 2), (12, 1)]),
    ])
    .await?;

    // Act
    let pending = db.orders_in_status(7, "pending_payment").await?;

    // Assert
    let ids: Vec<i64> = pending.iter().map(|order| order.id).collect();
    assert_eq!(ids, vec![1, 4], "oldest first, only user 7, only pending");
    assert_eq!(pending[1].lines.len(), 2, "with their lines");
    assert!(db.orders_in_status(7, "shipping").await?.is_empty());
    Ok(())
}
