//! Refresh-token families (rotation against revocation) and the instant before which a
//! user's access tokens are refused.

use std::sync::Arc;

use hurry_persistence::{NewRefreshToken, RefreshSuccessor, RefreshUse, Store};

use super::*;

on_both_backends!(
    a_session_rotated_while_its_family_is_revoked_keeps_no_live_token,
    a_password_change_refuses_earlier_tokens_to_the_microsecond,
);

/// Families raced at once: enough that, on either backend, some revocation lands between a
/// rotation's steps when they are not one transaction.
const NUM_FAMILIES: usize = 60;

/// How a family is revoked while one of its tokens is being rotated.
#[derive(Clone, Copy)]
enum Revoker {
    /// `POST /auth/logout` with the token being rotated.
    Logout,
    /// The same token presented twice (the thief and the owner): the second is a reuse.
    Reuse,
    /// A password change elsewhere ends every family of the user.
    PasswordChange,
}

fn token(family: usize, generation: u32) -> String {
    format!("hash-{family}-{generation}")
}

/// Presents `presented`, to be replaced by `successor`.
async fn rotate(
    store: &Arc<dyn Store>,
    presented: &str,
    successor: &str,
) -> Result<RefreshUse, StoreError> {
    let successor = RefreshSuccessor {
        token_hash: successor.to_owned(),
        expires_at: Utc::now() + Duration::days(1),
    };
    store
        .use_refresh_token(presented, &successor, Utc::now())
        .await
}

async fn revoke(
    store: &Arc<dyn Store>,
    revoker: Revoker,
    user_id: i64,
    family: usize,
) -> Result<(), StoreError> {
    match revoker {
        Revoker::Logout => {
            store.revoke_family_of(user_id, &token(family, 0)).await?;
        }
        Revoker::Reuse => {
            rotate(store, &token(family, 0), &token(family, 2)).await?;
        }
        Revoker::PasswordChange => store.revoke_user_families(user_id, None).await?,
    }
    Ok(())
}

async fn a_session_rotated_while_its_family_is_revoked_keeps_no_live_token(
    backend: Backend,
) -> Result<()> {
    // Arrange: one user per family, each with the token of a fresh login.
    let db = TestStore::open(backend).await?;
    let mut users = Vec::new();
    for family in 0..NUM_FAMILIES {
        let user = db
            .create_user(&new_user(&format!("racer{family}@hurry.test"), &[]))
            .await?;
        db.insert_refresh_token(&NewRefreshToken {
            token_hash: token(family, 0),
            user_id: user.id,
            family_id: format!("family-{family}"),
            expires_at: Utc::now() + Duration::days(1),
        })
        .await?;
        users.push(user.id);
    }
    let revokers = [Revoker::Logout, Revoker::Reuse, Revoker::PasswordChange];

    // Act: every family rotated and revoked at the same time.
    let mut racers = tokio::task::JoinSet::new();
    for (family, user_id) in users.iter().copied().enumerate() {
        let revoker = revokers[family % revokers.len()];
        let (rotating, revoking) = (db.store.clone(), db.store.clone());
        racers.spawn(async move {
            rotate(&rotating, &token(family, 0), &token(family, 1))
                .await
                .map(drop)
        });
        racers.spawn(async move { revoke(&revoking, revoker, user_id, family).await });
    }
    while let Some(raced) = racers.join_next().await {
        raced??;
    }

    // Assert: every token of every family is revoked, and none rotates.
    let live = db
        .count("SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL")
        .await?;
    let mut rotated = Vec::new();
    for family in 0..NUM_FAMILIES {
        for generation in [1, 2, 0] {
            let used = rotate(
                &db.store,
                &token(family, generation),
                &format!("late-{family}-{generation}"),
            )
            .await?;
            if matches!(used, RefreshUse::Rotated { .. }) {
                rotated.push(token(family, generation));
            }
        }
    }
    assert_eq!(live, 0, "live tokens after the races");
    assert_eq!(rotated, Vec::<String>::new(), "tokens that still rotate");
    Ok(())
}

async fn a_password_change_refuses_earlier_tokens_to_the_microsecond(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let mover = db.create_user(&new_user("mover@hurry.test", &[])).await?;
    db.create_user(&new_user("stayer@hurry.test", &[])).await?;
    let before = db.tokens_valid_after(at(-3600)).await?;

    // Act: `at(0)` has microseconds.
    db.set_password_hash(mover.id, "$argon2id$new", at(0))
        .await?;

    // Assert
    let changed = db.user_by_id(mover.id).await?.context("the user")?;
    assert_eq!(changed.password_hash, "$argon2id$new");
    assert_eq!(before, vec![]);
    assert_eq!(
        db.tokens_valid_after(at(-1)).await?,
        vec![(mover.id, at(0))]
    );
    assert_eq!(
        db.tokens_valid_after(at(0)).await?,
        vec![],
        "only later instants"
    );
    assert_eq!(
        db.tokens_valid_after(at(0) - Duration::microseconds(1))
            .await?,
        vec![(mover.id, at(0))]
    );
    Ok(())
}
