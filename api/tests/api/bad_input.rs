//! Bad input gets the documented 4xx in the error schema and changes nothing (I7), and tokens
//! and roles are checked: against SQLite and PostgreSQL, over real HTTP.

use crate::common::{self, assert_error, both_stores, Store, TestApp};
use hurry_api::auth::Claims;
use reqwest::Method;
use serde_json::json;

async fn raw_purchase(
    app: &TestApp,
    token: &str,
    item: i64,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/items/{item}/purchase")))
        .bearer_auth(token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    common::read(request.send().await.unwrap()).await
}

async fn malformed_bodies_and_quantities_are_refused_and_change_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 5, 5).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let json_type = Some("application/json");

    let (status, body) =
        raw_purchase(&app, &buyer, item, json_type, b"{\"quantity\": 1".to_vec()).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = raw_purchase(&app, &buyer, item, json_type, b"not json".to_vec()).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) =
        raw_purchase(&app, &buyer, item, None, b"{\"quantity\": 1}".to_vec()).await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = raw_purchase(
        &app,
        &buyer,
        item,
        Some("text/plain"),
        b"{\"quantity\": 1}".to_vec(),
    )
    .await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let huge = format!(
        "{{\"quantity\": 1, \"pad\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let (status, body) = raw_purchase(&app, &buyer, item, json_type, huge.into_bytes()).await;
    assert_error(status, &body, 413, "payload_too_large");

    for quantity in [json!("1"), json!(null), json!(1.5), json!([1]), json!(1e30)] {
        let (status, body) = app
            .post(
                &format!("/api/v1/items/{item}/purchase"),
                Some(&buyer),
                json!({"quantity": quantity}),
            )
            .await;
        assert_error(status, &body, 422, "validation_failed");
        assert_eq!(body["error"]["details"][0]["field"], "quantity", "{body}");
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/items/{item}/purchase"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_error(status, &body, 422, "validation_failed");
    for quantity in [0_i64, -1, 10_001, 1_000_000_000_000] {
        let (status, body) = app.purchase(&buyer, item, quantity, None).await;
        assert_error(status, &body, 422, "validation_failed");
        assert_eq!(body["error"]["details"][0]["field"], "quantity", "{body}");
    }
    let long_key = "k".repeat(129);
    let (status, body) = app.purchase(&buyer, item, 1, Some(&long_key)).await;
    assert_error(status, &body, 422, "validation_failed");

    let (status, body) = app.purchase(&buyer, 999_999, 1, None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .post(
            "/api/v1/items/not-a-number/purchase",
            Some(&buyer),
            json!({"quantity": 1}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");

    let raw = app.db.raw().await;
    assert!(
        raw.order_ids().await.is_empty(),
        "bad input created an order"
    );
    assert_eq!(app.stock_of(item).await, 5, "bad input moved stock");
}

async fn missing_forged_expired_and_unsigned_tokens_are_401(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 5, 5).await;
    let (buyer_id, _) = app.new_user("buyer@hurry.test").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| Claims {
        sub: buyer_id.to_string(),
        roles: vec!["customer".into(), "admin".into()],
        jti: "test".into(),
        iat: now - 10,
        iat_micros: None,
        exp,
        fam: None,
    };
    let expired = app.state.tokens.sign(&claims(now - 1)).unwrap();
    let forged = hurry_api::auth::TokenKeys::new(b"not-the-server-key-not-the-server", 60)
        .sign(&claims(now + 600))
        .unwrap();
    let unsigned = {
        use base64_like::encode;
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(
                serde_json::to_string(&claims(now + 600))
                    .unwrap()
                    .as_bytes()
            )
        )
    };
    let path = format!("/api/v1/items/{item}/purchase");
    let (status, body) = app.post(&path, None, json!({"quantity": 1})).await;
    assert_error(status, &body, 401, "unauthorized");
    for token in [
        expired.as_str(),
        forged.as_str(),
        unsigned.as_str(),
        "garbage",
        "",
    ] {
        let (status, body) = app.post(&path, Some(token), json!({"quantity": 1})).await;
        assert_error(status, &body, 401, "unauthorized");
        let (status, body) = app.get("/api/v1/admin/actors", Some(token)).await;
        assert_error(status, &body, 401, "unauthorized");
    }
    let (status, body) = app
        .send(Method::GET, "/api/v1/orders", None, None, None)
        .await;
    assert_error(status, &body, 401, "unauthorized");
    assert!(app.db.raw().await.order_ids().await.is_empty());
}

/// Unpadded base64url, enough to build an `alg: none` token by hand.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let bytes = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
            for position in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * position)) & 63) as usize] as char);
            }
        }
        out
    }
}

async fn roles_and_ownership_are_enforced(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 5, 5).await;
    let (_, alice) = app.new_user("alice@hurry.test").await;
    let (_, bob) = app.new_user("bob@hurry.test").await;

    let (status, body) = app
        .post(
            "/api/v1/items",
            Some(&alice),
            json!({"name": "x", "price": 1, "stock": 1}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app.get("/api/v1/admin/actors", Some(&alice)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app
        .post(
            "/api/v1/admin/users/1/roles",
            Some(&alice),
            json!({"roles": ["admin"]}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");

    let (status, order) = app.purchase(&alice, item, 1, None).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{order}");
    let order_id = order["id"].as_i64().unwrap();
    let (status, body) = app
        .get(&format!("/api/v1/orders/{order_id}"), Some(&bob))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, mine) = app
        .get(&format!("/api/v1/orders/{order_id}"), Some(&alice))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(mine, order, "the order reads back as it was answered");
    let (_, bobs) = app.get("/api/v1/orders", Some(&bob)).await;
    assert_eq!(bobs["total"], 0, "{bobs}");
    let (_, alices) = app.get("/api/v1/orders", Some(&alice)).await;
    assert_eq!(alices["total"], 1, "{alices}");
    assert_eq!(alices["orders"][0], order);
}

async fn signup_and_listing_validate_their_fields(store: Store) {
    let app = TestApp::spawn(store).await;
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "nope", "password": "short", "name": ""}),
        )
        .await;
    assert_error(status, &body, 422, "validation_failed");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|detail| detail["field"].as_str())
        .collect();
    assert!(fields.contains(&"email") && fields.contains(&"password") && fields.contains(&"name"));

    app.new_user("taken@hurry.test").await;
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "TAKEN@hurry.test", "password": "password-123", "name": "x"}),
        )
        .await;
    assert_error(status, &body, 409, "email_taken");
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "taken@hurry.test", "password": "wrong-password"}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ghost@hurry.test", "password": "wrong-password"}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_credentials");

    for query in ["size=0", "size=101", "page=-1"] {
        let (status, body) = app.get(&format!("/api/v1/items?{query}"), None).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    let (status, body) = app.get("/api/v1/items?page=abc", None).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = app.get("/api/v1/no-such-route", None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .send(Method::DELETE, "/api/v1/orders", None, None, None)
        .await;
    assert_error(status, &body, 405, "method_not_allowed");

    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM users").await,
        2,
        "admin and one user only"
    );
}

async fn item_creation_rejects_bad_drops(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let now = chrono::Utc::now();
    let cases = [
        json!({"name": "", "price": 1, "stock": 1}),
        json!({"name": "x", "price": -1, "stock": 1}),
        json!({"name": "x", "price": 1, "stock": -5}),
        json!({"name": "x", "price": 1, "stock": 0, "drop": {
            "opens_at": now, "closes_at": now + chrono::Duration::hours(1), "per_user_limit": 1}}),
        json!({"name": "x", "price": 1, "stock": 5, "drop": {
            "opens_at": now, "closes_at": now - chrono::Duration::hours(1), "per_user_limit": 1}}),
        json!({"name": "x", "price": 1, "stock": 5, "drop": {
            "opens_at": now, "closes_at": now + chrono::Duration::hours(1), "per_user_limit": 0}}),
        json!({"name": "x", "price": 1, "stock": 5, "drop": {
            "opens_at": "yesterday", "closes_at": now, "per_user_limit": 1}}),
    ];
    for case in cases {
        let (status, body) = app.post("/api/v1/items", Some(&seller), case.clone()).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    let (_, listing) = app.get("/api/v1/items", None).await;
    assert_eq!(listing["total"], 0, "{listing}");
    assert_eq!(listing["items"], json!([]));
}

async fn extreme_stock_deltas_and_order_totals_are_422_and_change_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let (seller_id, seller) = app.seller("seller@hurry.test").await;
    let admin = app.admin_token().await;
    let general = app.general_item(&seller, "Sock", 500, 3).await;
    let drop = app.open_drop(&seller, 5, 5).await;
    for delta in [
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        -1_000_000_001,
        1_000_000_001,
    ] {
        for item in [general, drop] {
            let (status, body) = app
                .post(
                    &format!("/api/v1/items/{item}/stock"),
                    Some(&seller),
                    json!({ "delta": delta }),
                )
                .await;
            assert_error(status, &body, 422, "validation_failed");
        }
    }
    assert_eq!(app.stock_of(general).await, 3);
    assert_eq!(app.stock_of(drop).await, 5);
    let (_, actor) = app
        .get(&format!("/api/v1/admin/actors/{drop}"), Some(&admin))
        .await;
    assert_eq!(actor["restarts"], 0, "{actor}");

    // 923 lines of 10,000 units at 10^12 won each come to more than i64 holds.
    let mut lines = Vec::new();
    for index in 0..923 {
        let item = hurry_persistence::NewItem {
            seller_id,
            name: format!("Gold bar {index}"),
            description: String::new(),
            price: 1_000_000_000_000,
            stock: 10_000,
            drop: None,
        };
        let created = app.state.store.create_item(&item).await.unwrap();
        lines.push(json!({"item_id": created.id, "quantity": 10_000}));
    }
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let (status, body) = app.order(&buyer, json!(lines), None).await;
    assert_error(status, &body, 422, "validation_failed");
    let raw = app.db.raw().await;
    assert!(raw.order_ids().await.is_empty(), "nothing stored");
    assert_eq!(
        raw.scalar("SELECT CAST(MIN(stock) AS BIGINT) FROM items WHERE price = 1000000000000")
            .await,
        10_000,
        "no stock was taken"
    );
}

both_stores!(
    malformed_bodies_and_quantities_are_refused_and_change_nothing,
    missing_forged_expired_and_unsigned_tokens_are_401,
    roles_and_ownership_are_enforced,
    signup_and_listing_validate_their_fields,
    item_creation_rejects_bad_drops,
    extreme_stock_deltas_and_order_totals_are_422_and_change_nothing,
);
