//! Email verification codes.

use hurry_persistence::{CodeAttempt, CodeRenewal, NewEmailCode, NewUser};

use super::*;

on_both_backends!(
    a_user_created_with_a_code_has_it_and_an_event_asking_for_the_mail,
    attempts_are_granted_up_to_the_limit_then_locked,
    concurrent_attempts_never_exceed_the_limit,
    an_expired_or_missing_code_is_unavailable,
    confirming_verifies_the_user_once,
    renewal_waits_for_the_interval_and_replaces_the_code,
);

const MAX: u32 = 5;

fn code(text: &str, minutes: i64) -> NewEmailCode {
    NewEmailCode {
        code: text.to_owned(),
        expires_at: Utc::now() + Duration::minutes(minutes),
    }
}

fn unverified(email: &str, with_code: Option<NewEmailCode>) -> NewUser {
    let mut user = new_user(email, &[]);
    user.email_verified = false;
    user.verification = with_code;
    user
}

async fn a_user_created_with_a_code_has_it_and_an_event_asking_for_the_mail(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;

    // Act
    let user = db
        .create_user(&unverified("new@hurry.test", Some(code("sealed-code", 5))))
        .await?;
    let without = db
        .create_user(&unverified("other@hurry.test", None))
        .await?;

    // Assert
    let stored = db.email_code(user.id).await?.context("a code")?;
    assert_eq!(
        (
            stored.code.as_str(),
            stored.generation,
            stored.attempts,
            stored.consumed
        ),
        ("sealed-code", 1, 0, false)
    );
    assert_eq!(db.email_code(without.id).await?, None);
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'user.verification_requested' \
             AND aggregate_id = {}",
            user.id
        ))
        .await?,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.verification_requested'")
            .await?,
        1
    );
    Ok(())
}

async fn attempts_are_granted_up_to_the_limit_then_locked(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db
        .create_user(&unverified("u@hurry.test", Some(code("c", 5))))
        .await?;

    // Act
    let mut answers = Vec::new();
    for _ in 0..MAX + 2 {
        answers.push(db.take_code_attempt(user.id, MAX, Utc::now()).await?);
    }

    // Assert
    let granted = CodeAttempt::Granted {
        code: "c".into(),
        generation: 1,
    };
    assert_eq!(answers[..MAX as usize], vec![granted; MAX as usize]);
    assert_eq!(
        answers[MAX as usize..],
        [CodeAttempt::Locked, CodeAttempt::Locked]
    );
    assert_eq!(db.email_code(user.id).await?.context("code")?.attempts, MAX);
    Ok(())
}

async fn concurrent_attempts_never_exceed_the_limit(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db
        .create_user(&unverified("u@hurry.test", Some(code("c", 5))))
        .await?;

    // Act: twenty attempts at once, each on its own task.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.take_code_attempt(user.id, MAX, Utc::now()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await?);
    }

    // Assert
    let granted = answers
        .iter()
        .filter(|answer| matches!(answer, Ok(CodeAttempt::Granted { .. })))
        .count();
    assert_eq!(granted, MAX as usize, "{answers:?}");
    Ok(())
}

async fn an_expired_or_missing_code_is_unavailable(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let expired = db
        .create_user(&unverified("old@hurry.test", Some(code("c", -1))))
        .await?;
    let none = db.create_user(&unverified("none@hurry.test", None)).await?;

    // Act
    let on_expired = db.take_code_attempt(expired.id, MAX, Utc::now()).await?;
    let on_none = db.take_code_attempt(none.id, MAX, Utc::now()).await?;
    let on_unknown = db.take_code_attempt(none.id + 100, MAX, Utc::now()).await?;
    let later = db
        .take_code_attempt(none.id, MAX, Utc::now() + Duration::minutes(10))
        .await?;

    // Assert
    assert_eq!(on_expired, CodeAttempt::Unavailable);
    assert_eq!(on_none, CodeAttempt::Unavailable);
    assert_eq!(on_unknown, CodeAttempt::Unavailable);
    assert_eq!(later, CodeAttempt::Unavailable);
    Ok(())
}

async fn confirming_verifies_the_user_once(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db
        .create_user(&unverified("u@hurry.test", Some(code("c", 5))))
        .await?;
    let CodeAttempt::Granted { generation, .. } =
        db.take_code_attempt(user.id, MAX, Utc::now()).await?
    else {
        anyhow::bail!("attempt granted");
    };

    // Act
    let first = db.confirm_email(user.id, generation).await?;
    let second = db.confirm_email(user.id, generation).await?;
    let after = db.take_code_attempt(user.id, MAX, Utc::now()).await?;

    // Assert
    assert!(first);
    assert!(!second, "a code is used once");
    assert_eq!(after, CodeAttempt::Unavailable);
    assert!(
        db.user_by_id(user.id)
            .await?
            .context("user")?
            .email_verified
    );
    assert!(db.email_code(user.id).await?.context("code")?.consumed);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.email_verified'")
            .await?,
        1
    );
    Ok(())
}

async fn renewal_waits_for_the_interval_and_replaces_the_code(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let user = db
        .create_user(&unverified("u@hurry.test", Some(code("first", 5))))
        .await?;
    let verified = db.create_user(&new_user("v@hurry.test", &[])).await?;
    let interval = Duration::seconds(60);
    db.take_code_attempt(user.id, MAX, Utc::now()).await?;

    // Act
    let too_soon = db
        .renew_email_code(user.id, &code("second", 5), interval, Utc::now())
        .await?;
    let later = Utc::now() + Duration::seconds(61);
    let renewed = db
        .renew_email_code(user.id, &code("second", 5), interval, later)
        .await?;
    let for_verified = db
        .renew_email_code(verified.id, &code("x", 5), interval, later)
        .await?;
    let for_unknown = db
        .renew_email_code(user.id + 100, &code("x", 5), interval, later)
        .await?;
    let stale_confirm = db.confirm_email(user.id, 1).await?;

    // Assert
    assert_eq!(too_soon, CodeRenewal::TooSoon);
    assert_eq!(renewed, CodeRenewal::Issued { generation: 2 });
    assert_eq!(for_verified, CodeRenewal::NotNeeded);
    assert_eq!(for_unknown, CodeRenewal::NotNeeded);
    assert!(!stale_confirm, "a replaced code no longer verifies");
    let stored = db.email_code(user.id).await?.context("code")?;
    assert_eq!(
        (stored.code.as_str(), stored.generation, stored.attempts),
        ("second", 2, 0)
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.verification_requested'")
            .await?,
        2
    );
    Ok(())
}
