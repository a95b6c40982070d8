//! What a re-seal pass reads and writes: the sealed values of a column not yet sealed the current
//! way, in key order and in pages, live rows only; and a replacement that only lands while the
//! value is still the one that was read. Also: users keep the ids their caller allocated.

use hurry_persistence::{NewEmailCode, SealedColumn};

use super::*;

on_both_backends!(
    sealed_values_page_through_what_is_not_sealed_the_current_way,
    a_replacement_lands_only_over_the_value_that_was_read,
    users_keep_the_ids_allocated_for_them,
);

async fn sealed_values_page_through_what_is_not_sealed_the_current_way(
    backend: Backend,
) -> Result<()> {
    // Arrange: five users, two of them sealed the current way, one deleted, one without phone.
    let db = TestStore::open(backend).await?;
    let mut ids = Vec::new();
    for (n, phone) in ["v1.1.aa", "v2.1.bb", "v2.2.cc", "v1.1.dd", "v2.2.ee"]
        .iter()
        .enumerate()
    {
        let mut user = new_user(&format!("u{n}@hurry.test"), &[]);
        user.phone = Some((*phone).to_owned());
        ids.push(db.create_user(&user).await?.id);
    }
    let mut bare = new_user("bare@hurry.test", &[]);
    bare.phone = None;
    db.create_user(&bare).await?;
    db.delete_user(ids[3], "shredded", "freed").await?;

    // Act
    let first_page = db
        .sealed_values(SealedColumn::UserPhone, "v2.2.", i64::MIN, 1)
        .await?;
    let second_page = db
        .sealed_values(SealedColumn::UserPhone, "v2.2.", first_page[0].0, 10)
        .await?;
    let names = db
        .sealed_values(SealedColumn::UserName, "v2.2.", i64::MIN, 10)
        .await?;

    // Assert
    assert_eq!(first_page, vec![(ids[0], "v1.1.aa".to_owned())]);
    assert_eq!(
        second_page,
        vec![(ids[1], "v2.1.bb".to_owned())],
        "current-way values, the deleted row and the missing phone are skipped"
    );
    assert_eq!(names.len(), 5, "every live user's name: {names:?}");
    Ok(())
}

async fn a_replacement_lands_only_over_the_value_that_was_read(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let mut user = new_user("u@hurry.test", &[]);
    user.email_verified = false;
    user.verification = Some(NewEmailCode {
        code: "v1.1.code".into(),
        expires_at: Utc::now() + Duration::minutes(5),
    });
    let id = db.create_user(&user).await?.id;

    // Act
    let stale = db
        .replace_sealed(SealedColumn::UserPhone, id, "v1.1.not-this", "v2.1.new")
        .await?;
    let landed = db
        .replace_sealed(SealedColumn::EmailCode, id, "v1.1.code", "v2.1.code")
        .await?;

    // Assert
    assert!(!stale, "a value changed meanwhile is left alone");
    assert_eq!(
        db.user_by_id(id).await?.context("the user")?.phone,
        user.phone
    );
    assert!(landed);
    assert_eq!(
        db.email_code(id).await?.context("the code")?.code,
        "v2.1.code"
    );
    Ok(())
}

async fn users_keep_the_ids_allocated_for_them(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let first = db.allocate_ids("users", 3).await?;
    let users: Vec<_> = (first..first + 2)
        .map(|id| {
            let mut user = new_user(&format!("c{id}@hurry.test"), &[]);
            user.id = id;
            user
        })
        .collect();
    let mut single = new_user("single@hurry.test", &[]);
    single.id = first + 2;

    // Act
    let customers = db.create_customers(&users).await?;
    let created = db.create_user(&single).await?;
    let next = db.allocate_ids("users", 1).await?;

    // Assert
    assert_eq!(customers, vec![first, first + 1]);
    assert_eq!(created.id, first + 2);
    assert_eq!(next, first + 3, "blocks never hand out an id twice");
    Ok(())
}
