//! Users, roles, settings and id blocks.

use super::*;

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
    customers_created_in_bulk_are_all_there_or_none,
);

async fn customers_created_in_bulk_are_all_there_or_none(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let users: Vec<_> = (0..3)
        .map(|n| new_user(&format!("shopper{n}@hurry.test"), &[]))
        .collect();
    let clash = vec![
        new_user("fresh@hurry.test", &[]),
        new_user("shopper1@hurry.test", &[]),
    ];

    // Act
    let ids = db.create_customers(&users).await?;
    let refused = db.create_customers(&clash).await;

    // Assert
    assert_eq!(ids.len(), 3);
    for id in &ids {
        let user = db.user_by_id(*id).await?.context("created")?;
        assert_eq!(user.roles, ["customer"]);
    }
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(
        db.user_by_email_index(&email_index("fresh@hurry.test"))
            .await?
            .map(|u| u.id),
        None
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.created'")
            .await?,
        3
    );
    Ok(())
}

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
