//! Sealed personal data is bound to its row: a value moved from one user's row to another's
//! does not open and is reported, not shown; values sealed before the binding are re-sealed at
//! start, after which an old unbound value no longer opens anywhere.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_error, both_stores, Store, TestApp, PASSWORD};

const OWNER_PHONE: &str = "010-9876-5432";

/// Signs up `email` with `phone`; returns `(user id, access token)`.
async fn signup_with_phone(app: &TestApp, email: &str, phone: &str) -> (i64, String) {
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": PASSWORD, "name": "Kim", "phone": phone}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["user_id"].as_i64().expect("user_id");
    (id, app.login(email, PASSWORD).await)
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.get("/api/v1/users/me", Some(token)).await
}

async fn unreadable_reports(app: &TestApp) -> String {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("hurry_pii_unreadable_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn a_phone_moved_to_another_row_does_not_open_and_is_reported(store: Store) {
    // Arrange: someone who can write the database copies the owner's sealed phone into
    // another account's row.
    let app = TestApp::spawn(store).await;
    let (owner, owner_token) = signup_with_phone(&app, "owner@hurry.test", OWNER_PHONE).await;
    let (other, other_token) = signup_with_phone(&app, "other@hurry.test", "010-0000-0000").await;
    let raw = app.db.raw().await;
    raw.execute(&format!(
        "UPDATE users SET phone = (SELECT phone FROM users WHERE id = {owner}) WHERE id = {other}"
    ))
    .await;
    assert_eq!(unreadable_reports(&app).await, "", "nothing reported yet");

    // Act
    let (status, body) = me(&app, &other_token).await;
    let (owner_status, owner_body) = me(&app, &owner_token).await;

    // Assert
    assert_error(status, &body, 500, "internal_error");
    assert!(
        !body.to_string().contains(OWNER_PHONE),
        "the moved value is not shown: {body}"
    );
    let reports = unreadable_reports(&app).await;
    assert!(
        reports.contains("column=\"phone\"") && reports.ends_with(" 1"),
        "one unreadable phone is reported: {reports:?}"
    );
    assert_eq!(owner_status, StatusCode::OK, "{owner_body}");
    assert_eq!(
        owner_body["phone"], OWNER_PHONE,
        "the owner's row is intact"
    );
}

/// `plain` sealed the way values were before the binding: AES-256-GCM without associated data,
/// under the store's generated key 1.
async fn sealed_unbound(app: &TestApp, plain: &str) -> String {
    let key = app
        .state
        .store
        .setting_or_init("pii_key_1", "")
        .await
        .expect("the key is kept in the store");
    let key: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
    let nonce = [9u8; 12];
    let sealed = Aes256Gcm::new((&key).into())
        .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
        .unwrap();
    format!("v1.1.{}{}", hex::encode(nonce), hex::encode(sealed))
}

async fn values_sealed_before_the_binding_are_resealed_at_start_and_then_refused(store: Store) {
    // Arrange: a database from before the binding: an unbound phone, and no re-seal pass yet.
    let app = TestApp::spawn(store).await;
    let (user, _) = signup_with_phone(&app, "old@hurry.test", "010-1111-2222").await;
    let unbound = sealed_unbound(&app, "010-3333-4444").await;
    let raw = app.db.raw().await;
    raw.execute(&format!(
        "UPDATE users SET phone = '{unbound}' WHERE id = {user}"
    ))
    .await;
    raw.execute("UPDATE settings SET value = '' WHERE key = 'pii_sealed_as'")
        .await;

    // Act: the next start re-seals.
    let restarted = app.restart().await;
    let stored = raw
        .text(&format!("SELECT phone FROM users WHERE id = {user}"))
        .await;
    let token = restarted.login("old@hurry.test", PASSWORD).await;
    let (status, body) = me(&restarted, &token).await;
    // An old unbound copy written back after the pass.
    raw.execute(&format!(
        "UPDATE users SET phone = '{unbound}' WHERE id = {user}"
    ))
    .await;
    let (copied_status, copied_body) = me(&restarted, &token).await;

    // Assert
    assert!(
        stored.starts_with("v2.1.") && stored != unbound,
        "re-sealed and bound: {stored}"
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"], "010-3333-4444");
    assert_eq!(body["email"], "old@hurry.test", "the other fields too");
    assert_eq!(
        raw.text("SELECT value FROM settings WHERE key = 'pii_sealed_as'")
            .await,
        "v2.1."
    );
    assert_error(copied_status, &copied_body, 500, "internal_error");
}

both_stores!(
    a_phone_moved_to_another_row_does_not_open_and_is_reported,
    values_sealed_before_the_binding_are_resealed_at_start_and_then_refused,
);
