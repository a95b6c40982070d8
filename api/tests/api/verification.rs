//! Email verification over real HTTP on both stores: the code goes out through the outbox and
//! the mailer (the file mailbox, or SMTP to a real local SMTP server), and the whole account
//! flow runs on it. Wrong codes lock, codes expire, resends are limited, nothing is in clear.

use std::path::Path;
use std::time::Duration;

use crate::common::smtp::SmtpSink;
use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_stores!(
    signup_verify_login_refresh_reuse_logout,
    five_wrong_codes_lock_the_code_until_a_new_one,
    an_expired_code_is_refused,
    resends_are_limited_and_say_nothing_about_accounts,
    code_checks_are_rate_limited_per_account,
    codes_are_stored_sealed_and_mail_files_carry_no_address_in_their_name,
);

const WAIT: Duration = Duration::from_secs(20);
const EMAIL: &str = "shopper@hurry.test";

/// A server that requires verification and writes mail into `mailbox`.
async fn spawn(store: Store, mailbox: &Path, extra: &str) -> TestApp {
    let layer = format!(
        "[auth]\nrequire_email_verification = true\n\
         [mail]\nbackend = \"file\"\ndir = \"{}\"\n",
        mailbox.display()
    );
    TestApp::spawn_with(store, &[&layer, extra]).await
}

async fn signup(app: &TestApp, email: &str) -> Value {
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": PASSWORD, "name": "Shopper"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The codes mailed to `email` so far, oldest first.
fn codes_in(mailbox: &Path, email: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(mailbox) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter(|text| text.contains(&format!("To: {email}")))
        .filter_map(|text| code_of(&text))
        .collect()
}

fn code_of(text: &str) -> Option<String> {
    let rest = text.split("Your verification code: ").nth(1)?;
    Some(
        rest.chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
    )
}

async fn mailed_code(mailbox: &Path, email: &str, nth: usize) -> String {
    eventually(&format!("code #{nth} mailed to {email}"), WAIT, || async {
        codes_in(mailbox, email).get(nth - 1).cloned()
    })
    .await
}

async fn verify(app: &TestApp, email: &str, code: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/verify-email",
        None,
        json!({"email": email, "code": code}),
    )
    .await
}

async fn resend(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/resend-verification",
        None,
        json!({"email": email}),
    )
    .await
}

async fn login(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await
}

async fn signup_verify_login_refresh_reuse_logout(store: Store) {
    // Arrange
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(store, mailbox.path(), "").await;

    // Act and assert, step by step.
    let created = signup(&app, EMAIL).await;
    assert_eq!(created["email_verified"], false);
    let (status, body) = login(&app, EMAIL).await;
    assert_error(status, &body, 403, "email_not_verified");

    let code = mailed_code(mailbox.path(), EMAIL, 1).await;
    assert_eq!(code.len(), 8, "{code}");
    let (status, body) = verify(&app, EMAIL, &code.to_lowercase()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email_verified"], true);

    let (status, first) = login(&app, EMAIL).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let access = first["access_token"].as_str().unwrap().to_owned();
    let (status, me) = app.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["email"], EMAIL);

    let refresh = |token: Value| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": token}),
            )
            .await
        }
    };
    let (status, second) = refresh(first["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (status, body) = refresh(first["refresh_token"].clone()).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = refresh(second["refresh_token"].clone()).await;
    assert_error(status, &body, 401, "unauthorized");

    let (_, session) = login(&app, EMAIL).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&access),
            Some(json!({"refresh_token": session["refresh_token"]})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app.get("/api/v1/users/me", Some(&access)).await;
    assert_error(status, &body, 401, "unauthorized");
}

async fn five_wrong_codes_lock_the_code_until_a_new_one(store: Store) {
    // Arrange
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(
        store,
        mailbox.path(),
        "[auth]\nemail_code_resend_interval_secs = 0\n",
    )
    .await;
    signup(&app, EMAIL).await;
    let code = mailed_code(mailbox.path(), EMAIL, 1).await;
    let wrong = if code.starts_with('A') {
        "BBBBBBBB"
    } else {
        "AAAAAAAA"
    };

    // Act
    let mut wrong_answers = Vec::new();
    for _ in 0..5 {
        wrong_answers.push(verify(&app, EMAIL, wrong).await);
    }
    let (locked_status, locked_body) = verify(&app, EMAIL, &code).await;
    let (resent, _) = resend(&app, EMAIL).await;
    let new_code = mailed_code(mailbox.path(), EMAIL, 2).await;
    let (old_status, old_body) = verify(&app, EMAIL, &code).await;
    let (new_status, new_body) = verify(&app, EMAIL, &new_code).await;

    // Assert
    for (status, body) in &wrong_answers {
        assert_error(*status, body, 400, "invalid_code");
    }
    assert_error(locked_status, &locked_body, 429, "rate_limited");
    assert_eq!(resent, StatusCode::ACCEPTED);
    if new_code != code {
        assert_error(old_status, &old_body, 400, "invalid_code");
    }
    assert_eq!(new_status, StatusCode::OK, "{new_body}");
    assert_eq!(login(&app, EMAIL).await.0, StatusCode::OK);
}

async fn an_expired_code_is_refused(store: Store) {
    // Arrange: the code is mailed, then its expiry passes (moved into the past in the database).
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(store, mailbox.path(), "").await;
    let user_id = signup(&app, EMAIL).await["user_id"].as_i64().unwrap();
    let code = mailed_code(mailbox.path(), EMAIL, 1).await;
    let raw = app.db.raw().await;
    raw.execute(match store {
        Store::Sqlite => {
            "UPDATE email_codes SET expires_at = CAST(strftime('%s', 'now') AS INTEGER) - 1"
        }
        Store::Postgres => "UPDATE email_codes SET expires_at = now() - interval '1 second'",
    })
    .await;

    // Act
    let (status, body) = verify(&app, EMAIL, &code).await;

    // Assert
    assert_error(status, &body, 400, "invalid_code");
    let (login_status, login_body) = login(&app, EMAIL).await;
    assert_error(login_status, &login_body, 403, "email_not_verified");
    let verified = raw
        .scalar(&format!(
            "SELECT COUNT(*) FROM users WHERE id = {user_id} AND email_verified = TRUE"
        ))
        .await;
    assert_eq!(verified, 0);
}

async fn resends_are_limited_and_say_nothing_about_accounts(store: Store) {
    // Arrange: default interval (60 s between codes); two resend requests per minute per address.
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(
        store,
        mailbox.path(),
        "[rate_limit]\nenabled = true\nresend_per_ip_per_min = 2\n",
    )
    .await;
    signup(&app, EMAIL).await;
    mailed_code(mailbox.path(), EMAIL, 1).await;

    // Act
    let (too_soon, too_soon_body) = resend(&app, EMAIL).await;
    let (unknown, unknown_body) = resend(&app, "nobody@hurry.test").await;
    let (limited, limited_body) = resend(&app, EMAIL).await;

    // Assert
    assert_eq!(too_soon, StatusCode::ACCEPTED);
    assert_eq!(unknown, StatusCode::ACCEPTED);
    assert_eq!(
        too_soon_body, unknown_body,
        "the same answer for any address"
    );
    assert_error(limited, &limited_body, 429, "rate_limited");
    let raw = app.db.raw().await;
    let requested = raw
        .scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.verification_requested'")
        .await;
    assert_eq!(
        requested, 1,
        "no new code within the interval, none for unknown addresses"
    );
    assert_eq!(codes_in(mailbox.path(), EMAIL).len(), 1);
}

async fn code_checks_are_rate_limited_per_account(store: Store) {
    // Arrange
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(
        store,
        mailbox.path(),
        "[rate_limit]\nenabled = true\nverify_per_account_per_min = 2\nsignup_per_ip_per_min = 100\n",
    )
    .await;
    signup(&app, EMAIL).await;
    let code = mailed_code(mailbox.path(), EMAIL, 1).await;

    // Act
    let first = verify(&app, EMAIL, "WRONG111").await;
    let second = verify(&app, EMAIL, "WRONG222").await;
    let (third, third_body) = verify(&app, EMAIL, &code).await;

    // Assert
    assert_error(first.0, &first.1, 400, "invalid_code");
    assert_error(second.0, &second.1, 400, "invalid_code");
    assert_error(third, &third_body, 429, "rate_limited");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM email_codes WHERE attempts = 2")
            .await,
        1,
        "the limited request did not use an attempt"
    );
}

async fn codes_are_stored_sealed_and_mail_files_carry_no_address_in_their_name(store: Store) {
    // Arrange
    let mailbox = tempfile::tempdir().unwrap();
    let app = spawn(store, mailbox.path(), "").await;
    signup(&app, EMAIL).await;
    let code = mailed_code(mailbox.path(), EMAIL, 1).await;
    let raw = app.db.raw().await;

    // Act
    let plain = raw
        .scalar(&format!(
            "SELECT COUNT(*) FROM email_codes WHERE code LIKE '%{code}%'"
        ))
        .await;
    let sealed = raw
        .scalar("SELECT COUNT(*) FROM email_codes WHERE code LIKE 'v2.%'")
        .await;
    let in_events = raw
        .scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE CAST(payload AS TEXT) LIKE '%{code}%' \
             OR CAST(payload AS TEXT) LIKE '%{EMAIL}%'"
        ))
        .await;

    // Assert
    assert_eq!(plain, 0);
    assert_eq!(sealed, 1);
    assert_eq!(
        in_events, 0,
        "neither the code nor the address is in an event"
    );
    for entry in std::fs::read_dir(mailbox.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains("shopper"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_goes_out_over_smtp_to_a_real_smtp_server() {
    // Arrange
    let sink = SmtpSink::start().await;
    let layer = format!(
        "[auth]\nrequire_email_verification = true\n\
         [mail]\nbackend = \"smtp\"\nsmtp_url = \"smtp://{}\"\n\
         from = \"Hurry Up Order <no-reply@hurry.test>\"\n",
        sink.addr
    );
    let app = TestApp::spawn_with(Store::Sqlite, &[&layer]).await;

    // Act
    signup(&app, EMAIL).await;
    let message = eventually("a message at the SMTP server", WAIT, || async {
        sink.received().into_iter().next()
    })
    .await;
    let code = code_of(&message.data).expect("a code in the message");
    let (status, body) = verify(&app, EMAIL, &code).await;

    // Assert
    assert_eq!(message.recipients, [EMAIL]);
    assert!(message
        .data
        .contains("Subject: Your Hurry Up Order verification code"));
    assert!(
        message
            .data
            .contains("From: \"Hurry Up Order\" <no-reply@hurry.test>")
            || message
                .data
                .contains("From: Hurry Up Order <no-reply@hurry.test>"),
        "{}",
        message.data
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(login(&app, EMAIL).await.0, StatusCode::OK);
}
