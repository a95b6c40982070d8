//! The bootstrap admin (`admin.email`): an account that signed up first with that address is
//! not made admin unless its password is the configured one.

use crate::common::{both_stores, test_settings, Store, TestApp, ADMIN_PASSWORD, PASSWORD};
use hurry_api::settings::Settings;
use hurry_api::startup::Application;
use reqwest::StatusCode;

const CLAIMED: &str = "claimed@hurry.test";

/// Whether `email`'s account holds the admin role.
async fn is_admin(app: &TestApp, email: &str) -> bool {
    let index = app.state.pii.email_index(email);
    let user = app
        .state
        .store
        .user_by_email_index(&index)
        .await
        .expect("store answers")
        .expect("the account exists");
    user.roles.iter().any(|role| role == "admin")
}

/// Settings for the next start on `app`'s database, with `admin.email` = [`CLAIMED`].
fn claiming(app: &TestApp, password: &str) -> Settings {
    let mut settings = test_settings(&app.db.shared(), &[]);
    settings.admin.email = CLAIMED.to_owned();
    settings.admin.password = password.into();
    settings
}

async fn an_account_holding_the_admin_address_is_promoted_only_with_the_admin_password(
    store: Store,
) {
    // Arrange: someone signs up first with the address an operator will configure.
    let first = TestApp::spawn(store).await;
    first.new_user(CLAIMED).await;
    assert!(!is_admin(&first, CLAIMED).await);
    first.stop().await;

    // Act
    let refused = Application::build(claiming(&first, ADMIN_PASSWORD)).await;
    let after_refusal = is_admin(&first, CLAIMED).await;
    let owner = TestApp::serve(claiming(&first, PASSWORD), first.db.shared(), None).await;

    // Assert
    let message = format!("{:#}", refused.err().expect("the start is refused"));
    assert!(
        message.contains(CLAIMED) && message.contains("admin.password"),
        "the refusal says what to change: {message}"
    );
    assert!(!after_refusal, "a refused start grants nothing");
    assert!(
        is_admin(&owner, CLAIMED).await,
        "the matching password promotes"
    );
    let token = owner.login(CLAIMED, PASSWORD).await;
    let (status, _) = owner.get("/api/v1/admin/actors", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

async fn an_admin_whose_password_changed_still_starts(store: Store) {
    // Arrange
    let first = TestApp::spawn(store).await;
    first.new_user(CLAIMED).await;
    first.stop().await;
    let admin = TestApp::serve(claiming(&first, PASSWORD), first.db.shared(), None).await;
    let token = admin.login(CLAIMED, PASSWORD).await;
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/users/me/password",
            Some(&token),
            Some(serde_json::json!({
                "current_password": PASSWORD,
                "new_password": "a-new-long-password-9",
            })),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    admin.stop().await;

    // Act
    let restarted = TestApp::serve(claiming(&first, PASSWORD), first.db.shared(), None).await;

    // Assert
    assert!(is_admin(&restarted, CLAIMED).await);
    restarted.login(CLAIMED, "a-new-long-password-9").await;
}

both_stores!(
    an_account_holding_the_admin_address_is_promoted_only_with_the_admin_password,
    an_admin_whose_password_changed_still_starts,
);
