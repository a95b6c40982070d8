//! Conformance suite of the [`Store`](hurry_persistence::Store) trait: every scenario runs on a
//! fresh SQLite file and on a fresh PostgreSQL database (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), as `<scenario>::sqlite` and
//! `<scenario>::postgres`, so both backends are held to one behaviour.

#[macro_use]
mod common;

use anyhow::{ensure, Context, Result};
use chrono::{Duration, Utc};
use hurry_persistence::{
    Backend, DropSales, IdempotencyRecord, NewOrder, OrderRecord, StoreError, RELEASING_STATUSES,
};

use common::*;

on_both_backends!(
    created_user_reads_back_by_email_and_by_id,
    roles_always_include_customer_and_are_sorted,
    duplicate_email_is_a_conflict_and_leaves_the_first_user_intact,
    grant_roles_adds_roles_idempotently,
    grant_roles_to_an_unknown_user_is_none,
    grant_roles_with_an_unknown_role_fails_and_grants_nothing,
    soft_deleted_users_and_items_are_invisible,
    setting_or_init_keeps_the_first_value,
    allocate_ids_hands_out_consecutive_ranges,
    concurrent_allocate_ids_hand_out_disjoint_ranges,
    created_items_read_back_with_and_without_a_drop,
    drop_closing_before_it_opens_is_refused,
    drop_with_a_per_user_limit_beyond_i32_round_trips_or_is_refused,
    list_items_pages_by_id_with_the_total,
    open_drops_lists_only_drops_closing_after_now,
    committed_orders_read_back_with_their_lines_in_line_order,
    list_orders_is_newest_first_paged_and_only_the_users_own,
    idempotency_record_returns_the_hash_status_and_order_of_that_user,
    every_committed_order_has_one_order_created_event,
    batch_reusing_an_order_id_fails_and_leaves_no_row,
    batch_reusing_an_idempotency_key_fails_and_leaves_no_row,
    drop_sales_sums_units_per_user_without_releasing_orders,
);

async fn created_user_reads_back_by_email_and_by_id(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let mut bare = new_user("bare@hurry.test", &[]);
    (bare.phone, bare.address, bare.email_verified) = (None, None, false);
    let full = new_user("full@hurry.test", &["seller"]);

    // Act
    let bare_created = db.create_user(&bare).await?;
    let full_created = db.create_user(&full).await?;

    // Assert
    assert_ne!(bare_created.id, full_created.id);
    for (input, created) in [(&bare, &bare_created), (&full, &full_created)] {
        assert_eq!(created.email, input.email);
        assert_eq!(created.password_hash, input.password_hash);
        assert_eq!(created.name, input.name);
        assert_eq!(created.phone, input.phone);
        assert_eq!(created.address, input.address);
        assert_eq!(created.email_verified, input.email_verified);
        let age = Utc::now() - created.created_at;
        ensure!(age.num_seconds().abs() < 60, "created_at is now: {age}");
        let by_email = db
            .user_by_email_index(&email_index(&input.email))
            .await?
            .context("by email")?;
        let by_id = db.user_by_id(created.id).await?.context("by id")?;
        assert_eq!(user_fields(&by_email), user_fields(created));
        assert_eq!(user_fields(&by_id), user_fields(created));
    }
    assert!(db
        .user_by_email_index(&email_index("nobody@hurry.test"))
        .await?
        .is_none());
    assert!(db.user_by_id(full_created.id + 1_000).await?.is_none());
    Ok(())
}

async fn roles_always_include_customer_and_are_sorted(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("plain@hurry.test", &[], &["customer"]),
        (
            "staff@hurry.test",
            &["seller", "admin"],
            &["admin", "customer", "seller"],
        ),
        (
            "twice@hurry.test",
            &["seller", "customer", "seller"],
            &["customer", "seller"],
        ),
    ];

    for (email, extra_roles, expected) in cases {
        // Act
        let created = db.create_user(&new_user(email, extra_roles)).await?;
        let read_back = db.user_by_id(created.id).await?.context("by id")?;

        // Assert
        assert_eq!(created.roles, strings(expected), "{email} as created");
        assert_eq!(read_back.roles, strings(expected), "{email} read back");
    }
    assert_eq!(db.num_rows("user_roles").await?, 1 + 3 + 2);
    Ok(())
}

async fn duplicate_email_is_a_conflict_and_leaves_the_first_user_intact(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let first = db.create_user(&new_user("taken@hurry.test", &[])).await?;
    let mut second = new_user("taken@hurry.test", &["seller", "admin"]);
    second.name = "Someone else".to_owned();

    // Act
    let result = db.create_user(&second).await;

    // Assert
    let err = result
        .err()
        .context("second user with a taken email was created")?;
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let stored = db
        .user_by_email_index(&email_index("taken@hurry.test"))
        .await?
        .context("first user")?;
    assert_eq!(user_fields(&stored), user_fields(&first));
    assert_eq!(db.num_rows("users").await?, 1);
    assert_eq!(db.num_rows("user_roles").await?, 1);
    Ok(())
}

async fn grant_roles_adds_roles_idempotently(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db.create_user(&new_user("grow@hurry.test", &[])).await?;

    // Act
    let after_seller = db.grant_roles(user.id, &strings(&["seller"])).await?;
    let after_repeat = db
        .grant_roles(user.id, &strings(&["seller", "admin", "admin", "customer"]))
        .await?;
    let after_nothing = db.grant_roles(user.id, &[]).await?;

    // Assert
    let all = strings(&["admin", "customer", "seller"]);
    assert_eq!(after_seller, Some(strings(&["customer", "seller"])));
    assert_eq!(after_repeat.as_ref(), Some(&all));
    assert_eq!(after_nothing.as_ref(), Some(&all));
    let read_back = db.user_by_id(user.id).await?.context("by id")?;
    assert_eq!(read_back.roles, all);
    assert_eq!(db.num_rows("user_roles").await?, 3);
    Ok(())
}

async fn grant_roles_to_an_unknown_user_is_none(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db.create_user(&new_user("only@hurry.test", &[])).await?;

    // Act
    let granted = db.grant_roles(user.id + 1, &strings(&["admin"])).await?;

    // Assert
    assert_eq!(granted, None);
    assert_eq!(db.num_rows("user_roles").await?, 1);
    Ok(())
}

async fn grant_roles_with_an_unknown_role_fails_and_grants_nothing(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db.create_user(&new_user("grow@hurry.test", &[])).await?;

    // Act
    let result = db
        .grant_roles(user.id, &strings(&["seller", "superuser"]))
        .await;

    // Assert
    ensure!(result.is_err(), "unknown role granted: {result:?}");
    let read_back = db.user_by_id(user.id).await?.context("by id")?;
    assert_eq!(read_back.roles, strings(&["customer"]));
    assert_eq!(db.num_rows("user_roles").await?, 1);
    Ok(())
}

async fn soft_deleted_users_and_items_are_invisible(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let gone = db
        .create_user(&new_user("gone@hurry.test", &["seller"]))
        .await?;
    let kept = db
        .create_user(&new_user("kept@hurry.test", &["seller"]))
        .await?;
    let gone_item = db
        .create_item(&new_item(kept.id, "gone", Some(drop_spec(0, 5_000))))
        .await?;
    let kept_item = db
        .create_item(&new_item(kept.id, "kept", Some(drop_spec(0, 5_000))))
        .await?;

    // Act
    let (gone_id, gone_item_id) = (gone.id, gone_item.id);
    db.execute(&format!(
        "UPDATE users SET deleted_at = created_at WHERE id = {gone_id}; \
         UPDATE items SET deleted_at = created_at WHERE id = {gone_item_id}"
    ))
    .await?;

    // Assert
    assert!(db
        .user_by_email_index(&email_index(&gone.email))
        .await?
        .is_none());
    assert!(db.user_by_id(gone.id).await?.is_none());
    assert_eq!(db.grant_roles(gone.id, &strings(&["admin"])).await?, None);
    assert!(db.user_by_id(kept.id).await?.is_some());
    assert!(db.item_by_id(gone_item.id).await?.is_none());
    let listed = db.list_items(0, 10).await?;
    let listed_ids: Vec<i64> = listed.rows.iter().map(|item| item.id).collect();
    assert_eq!((listed_ids, listed.total), (vec![kept_item.id], 1));
    let open_ids: Vec<i64> = db
        .open_drops(at(0))
        .await?
        .iter()
        .map(|item| item.id)
        .collect();
    assert_eq!(open_ids, [kept_item.id]);
    Ok(())
}

async fn setting_or_init_keeps_the_first_value(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;

    // Act
    let first = db.setting_or_init("jwt_secret", "first").await?;
    let second = db.setting_or_init("jwt_secret", "second").await?;
    let other = db.setting_or_init("instance_id", "other").await?;
    let third = db.setting_or_init("jwt_secret", "third").await?;

    // Assert
    assert_eq!(first, "first");
    assert_eq!(second, "first");
    assert_eq!(third, "first");
    assert_eq!(other, "other");
    Ok(())
}

async fn allocate_ids_hands_out_consecutive_ranges(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;

    // Act
    let first = db.allocate_ids("orders", 5).await?;
    let second = db.allocate_ids("orders", 1).await?;
    let third = db.allocate_ids("orders", 1_000).await?;
    let fourth = db.allocate_ids("orders", 3).await?;

    // Assert
    assert_eq!(first, 1, "a fresh sequence starts at 1");
    assert_eq!(second, first + 5);
    assert_eq!(third, second + 1);
    assert_eq!(fourth, third + 1_000);
    Ok(())
}

async fn concurrent_allocate_ids_hand_out_disjoint_ranges(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let num_tasks = 8;
    let num_calls_per_task = 25;

    // Act
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..num_tasks {
        let store = db.store.clone();
        tasks.spawn(async move {
            let mut ranges = Vec::new();
            for call in 0..num_calls_per_task {
                let count = 1 + (task + call) % 7;
                ranges.push((store.allocate_ids("orders", count).await?, count));
            }
            Ok::<_, StoreError>(ranges)
        });
    }
    let mut ranges = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        ranges.extend(joined??);
    }

    // Assert
    assert_eq!(ranges.len(), (num_tasks * num_calls_per_task) as usize);
    ranges.sort_unstable();
    let mut expected_start = 1;
    for (start, count) in &ranges {
        assert_eq!(
            *start, expected_start,
            "ranges overlap or leave a gap: {ranges:?}"
        );
        expected_start += i64::from(*count);
    }
    assert_eq!(db.allocate_ids("orders", 1).await?, expected_start);
    Ok(())
}

async fn created_items_read_back_with_and_without_a_drop(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let drop = drop_spec(0, 3_600);

    // Act
    let general = db.create_item(&new_item(seller.id, "mug", None)).await?;
    let limited = db
        .create_item(&new_item(seller.id, "sneaker", Some(drop.clone())))
        .await?;

    // Assert
    assert_ne!(general.id, limited.id);
    assert_eq!(general.drop, None);
    assert_eq!(limited.drop.as_ref(), Some(&drop));
    for created in [&general, &limited] {
        let age = Utc::now() - created.created_at;
        ensure!(age.num_seconds().abs() < 60, "created_at is now: {age}");
        let read_back = db.item_by_id(created.id).await?.context("by id")?;
        assert_eq!(item_fields(&read_back), item_fields(created));
    }
    assert!(db.item_by_id(limited.id + 1_000).await?.is_none());
    Ok(())
}

async fn drop_closing_before_it_opens_is_refused(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;

    for (name, window) in [
        ("backwards", drop_spec(3_600, 0)),
        ("empty", drop_spec(0, 0)),
    ] {
        // Act
        let result = db
            .create_item(&new_item(seller.id, name, Some(window)))
            .await;

        // Assert
        ensure!(result.is_err(), "{name} window accepted: {result:?}");
    }
    assert_eq!(db.num_rows("items").await?, 0);
    assert_eq!(db.num_rows("drops").await?, 0);
    Ok(())
}

async fn drop_with_a_per_user_limit_beyond_i32_round_trips_or_is_refused(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let mut window = drop_spec(0, 3_600);
    window.per_user_limit = u32::try_from(i32::MAX)? + 1;

    // Act
    let created = db
        .create_item(&new_item(seller.id, "huge limit", Some(window.clone())))
        .await;

    // Assert
    match created {
        Err(_) => assert_eq!(db.num_rows("items").await?, 0, "refused but written"),
        Ok(created) => {
            let read_back = db
                .item_by_id(created.id)
                .await
                .context("an accepted item must read back")?
                .context("by id")?;
            assert_eq!(read_back.drop, Some(window), "accepted but altered");
        }
    }
    Ok(())
}

async fn list_items_pages_by_id_with_the_total(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let mut created = Vec::new();
    for number in 0..5 {
        let drop = (number % 2 == 1).then(|| drop_spec(number, 3_600));
        let item = new_item(seller.id, &format!("item {number}"), drop);
        created.push(db.create_item(&item).await?);
    }

    // Act
    let pages = [
        db.list_items(0, 2).await?,
        db.list_items(1, 2).await?,
        db.list_items(2, 2).await?,
        db.list_items(3, 2).await?,
        db.list_items(99, 2).await?,
    ];

    // Assert
    let expected: [&[_]; 5] = [&created[0..2], &created[2..4], &created[4..], &[], &[]];
    for (number, (page, expected)) in pages.iter().zip(expected).enumerate() {
        assert_eq!(page.total, 5, "page {number}");
        let rows: Vec<_> = page.rows.iter().map(item_fields).collect();
        let expected: Vec<_> = expected.iter().map(item_fields).collect();
        assert_eq!(rows, expected, "page {number}");
    }
    Ok(())
}

async fn open_drops_lists_only_drops_closing_after_now(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?;
    let now = at(1_000);
    let mut closing_just_after_now = drop_spec(0, 1_000);
    closing_just_after_now.closes_at += Duration::microseconds(1);
    let mut expected = Vec::new();
    for (name, window, is_open) in [
        ("general", None, false),
        ("closed", Some(drop_spec(0, 500)), false),
        ("closing now", Some(drop_spec(0, 1_000)), false),
        ("open", Some(drop_spec(0, 5_000)), true),
        (
            "closing a microsecond after now",
            Some(closing_just_after_now),
            true,
        ),
        ("upcoming", Some(drop_spec(2_000, 9_000)), true),
    ] {
        let item = db.create_item(&new_item(seller.id, name, window)).await?;
        if is_open {
            expected.push(item);
        }
    }

    // Act
    let mut open = db.open_drops(now).await?;

    // Assert
    open.sort_by_key(|item| item.id);
    let open: Vec<_> = open.iter().map(item_fields).collect();
    let expected: Vec<_> = expected.iter().map(item_fields).collect();
    assert_eq!(open, expected);
    Ok(())
}

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

async fn batch_reusing_an_idempotency_key_fails_and_leaves_no_row(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let existing = keyed(
        order(1, 7, "pending_payment", &[(10, 1)]),
        "used-key",
        "h-1",
    );
    db.commit_orders(std::slice::from_ref(&existing)).await?;
    let fresh = vec![
        keyed(
            order(2, 8, "pending_payment", &[(10, 1)]),
            "used-key",
            "h-2",
        ),
        order(3, 7, "pending_payment", &[(10, 2), (11, 1)]),
        keyed(order(5, 7, "paid", &[(12, 1)]), "other-key", "h-5"),
    ];
    let mut batch = fresh.clone();
    batch.push(keyed(
        order(4, 7, "pending_payment", &[(11, 3)]),
        "used-key",
        "h-4",
    ));
    let before = db.order_table_counts().await?;

    // Act
    let result = db.commit_orders(&batch).await;

    // Assert
    let err = result
        .err()
        .context("a batch reusing an idempotency key was committed")?;
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_batch_left_no_row(&db, before, &fresh).await?;
    assert_eq!(db.order_by_id(4).await?, None);
    let kept = db.idempotency_record(7, "used-key").await?;
    assert_eq!(
        kept.map(|record| (record.request_hash, record.order_id)),
        Some(("h-1".to_owned(), Some(1)))
    );
    assert_eq!(db.idempotency_record(7, "other-key").await?, None);
    db.commit_orders(&fresh)
        .await
        .context("the same batch without the reused key")?;
    assert_eq!(db.num_rows("orders").await?, 4);
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
