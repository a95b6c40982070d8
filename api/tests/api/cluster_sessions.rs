//! Cluster mode: two nodes on one PostgreSQL database and one Redis. A logout, a password
//! change or an account deletion on one node refuses the earlier tokens on every node (announced over Redis; the store is
//! the record a node that starts later reads).

use std::time::Duration;

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn login(node: &TestApp, email: &str) -> Value {
    let (status, body) = node
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn me(node: &TestApp, access: &str) -> StatusCode {
    node.get("/api/v1/users/me", Some(access)).await.0
}

/// A route that trusts the token alone (no user lookup in the store).
async fn my_orders(node: &TestApp, access: &str) -> StatusCode {
    node.get("/api/v1/orders", Some(access)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_refuses_the_token_on_every_node() {
    // Arrange
    let a = TestApp::spawn_on(Store::Postgres, Bus::Redis, None, &[]).await;
    let b = a.another_node(&[]).await;
    a.new_user("shopper@hurry.test").await;
    let session = login(&a, "shopper@hurry.test").await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let before = me(&b, &access).await;

    // Act
    let (status, body) = a
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&access),
            Some(json!({"refresh_token": session["refresh_token"]})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Assert
    assert_eq!(
        before,
        StatusCode::OK,
        "the token works on the other node first"
    );
    assert_eq!(me(&a, &access).await, StatusCode::UNAUTHORIZED);
    eventually("node b refuses the logged-out token", WAIT, || async {
        (me(&b, &access).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let c = a.another_node(&[]).await;
    assert_eq!(
        me(&c, &access).await,
        StatusCode::UNAUTHORIZED,
        "a node started later reads it from the store"
    );
}

/// Two cluster nodes on one store, a user `email`, and an access token from each node.
async fn two_nodes_with_user(email: &str) -> (TestApp, TestApp, String, String) {
    let a = TestApp::spawn_on(Store::Postgres, Bus::Redis, None, &[]).await;
    let b = a.another_node(&[]).await;
    a.new_user(email).await;
    let token = |body: Value| body["access_token"].as_str().unwrap().to_owned();
    let on_a = token(login(&a, email).await);
    let on_b = token(login(&b, email).await);
    (a, b, on_a, on_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_refused_on_every_node() {
    // Arrange
    let (a, b, on_a, on_b) = two_nodes_with_user("leaver@hurry.test").await;
    assert_eq!(my_orders(&b, &on_b).await, StatusCode::OK);

    // Act
    let (status, body) = a
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&on_a),
            Some(json!({"password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Assert
    eventually("node b refuses the deleted user's token", WAIT, || async {
        (my_orders(&b, &on_b).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_one_node_refuses_earlier_tokens_on_every_node() {
    // Arrange
    let (a, b, on_a, on_b) = two_nodes_with_user("mover@hurry.test").await;
    assert_eq!(my_orders(&b, &on_b).await, StatusCode::OK);

    // Act
    let (status, body) = a
        .send(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&on_a),
            Some(json!({"current_password": PASSWORD, "new_password": "new-password-1"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Assert
    eventually(
        "node b refuses the token issued before the change",
        WAIT,
        || async { (my_orders(&b, &on_b).await == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    let (status, fresh) = b
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "mover@hurry.test", "password": "new-password-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_eq!(
        my_orders(&a, fresh).await,
        StatusCode::OK,
        "a new login works"
    );
    let c = a.another_node(&[]).await;
    assert_eq!(
        my_orders(&c, &on_b).await,
        StatusCode::UNAUTHORIZED,
        "a node started later reads it from the store"
    );
    assert_eq!(my_orders(&c, fresh).await, StatusCode::OK);
}
