//! Items, drops, listings.

use super::*;

on_both_backends!(
    created_items_read_back_with_and_without_a_drop,
    drop_closing_before_it_opens_is_refused,
    drop_with_a_per_user_limit_beyond_i32_round_trips_or_is_refused,
    list_items_pages_by_id_with_the_total,
    open_drops_lists_only_drops_closing_after_now,
);

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
