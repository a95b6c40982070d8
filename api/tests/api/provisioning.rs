//! Bulk load-test shoppers: off by default (404), admin only, bounded, and the tokens buy.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

both_stores!(
    provisioning_is_off_unless_configured,
    provisioned_shoppers_hold_working_tokens,
);

const ON: &str = "[loadtest]\nprovisioning_enabled = true\n";
const PATH: &str = "/api/v1/admin/loadtest/shoppers";

async fn provisioning_is_off_unless_configured(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let admin = app.admin_token().await;

    // Act
    let (status, body) = app.post(PATH, Some(&admin), json!({"count": 5})).await;

    // Assert
    assert_error(status, &body, 404, "not_found");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM users").await,
        1,
        "only the admin"
    );
}

async fn provisioned_shoppers_hold_working_tokens(store: Store) {
    // Arrange
    let app = TestApp::spawn_with(store, &[ON]).await;
    let admin = app.admin_token().await;
    let (_, customer) = app.new_user("customer@hurry.test").await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 100, 1).await;

    // Act
    let (status, body) = app.post(PATH, Some(&admin), json!({"count": 250})).await;
    let (as_customer, customer_body) = app.post(PATH, Some(&customer), json!({"count": 1})).await;
    let (zero, zero_body) = app.post(PATH, Some(&admin), json!({"count": 0})).await;
    let (too_many, too_many_body) = app.post(PATH, Some(&admin), json!({"count": 10_001})).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let shoppers = body["shoppers"].as_array().unwrap();
    assert_eq!(shoppers.len(), 250);
    let mut ids: Vec<i64> = shoppers
        .iter()
        .map(|s| s["user_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    for shopper in &shoppers[..3] {
        let token = shopper["access_token"].as_str().unwrap();
        let (me, me_body) = app.get("/api/v1/users/me", Some(token)).await;
        assert_eq!(me, StatusCode::OK, "{me_body}");
        assert_eq!(me_body["user_id"], shopper["user_id"]);
        assert_eq!(
            app.purchase(token, item, 1, None).await.0,
            StatusCode::CREATED
        );
    }
    assert_error(as_customer, &customer_body, 403, "forbidden");
    assert_error(zero, &zero_body, 422, "validation_failed");
    assert_error(too_many, &too_many_body, 422, "validation_failed");
}
