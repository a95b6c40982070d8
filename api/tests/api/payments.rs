//! Payments over real HTTP against the sandbox gateway mounted on the server, on both stores:
//! the happy path, an amount that is not the order's, someone else's order, concurrent
//! confirms of one payment, a declined card, and the sandbox itself.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

both_stores!(
    a_paid_order_is_charged_once_at_the_gateway_and_reads_back_paid,
    a_confirm_with_another_amount_is_409_and_charges_nothing,
    paying_someone_elses_order_is_404_and_charges_nothing,
    twenty_concurrent_confirms_of_one_payment_charge_once,
    a_declined_card_fails_the_payment_and_gives_the_units_back,
    the_sandbox_refuses_bad_keys_bad_faults_and_strangers,
    with_every_breaker_open_payments_are_503_unavailable_and_nothing_is_taken,
);

/// A general item of `price` won and `stock` units, and a buyer's pending order of one.
async fn shop_with_order(app: &TestApp, price: i64, stock: i64) -> (i64, String, Value) {
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.general_item(&seller, "Sneakers", price, stock).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let (status, order) = app
        .order(&buyer, json!([{"item_id": item, "quantity": 1}]), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    (item, buyer, order)
}

/// Opens a payment of `order` at `provider` and checks it out; the server computes the
/// amount.
async fn checkout(app: &TestApp, buyer: &str, order: &Value, provider: &str) -> (Value, String) {
    let (payment, key) = app
        .checkout(buyer, order["id"].as_i64().unwrap(), Some(provider))
        .await;
    assert_eq!(
        payment["amount"], order["amount"],
        "the server computes the amount"
    );
    assert_eq!(payment["provider"], provider);
    (payment, key)
}

async fn confirm(
    app: &TestApp,
    buyer: &str,
    payment: &Value,
    key: &str,
    amount: i64,
) -> (StatusCode, Value) {
    app.confirm(buyer, payment, key, amount).await
}

async fn charges(app: &TestApp) -> Vec<Value> {
    app.charges().await
}

async fn set_faults(app: &TestApp, faults: Value) -> (StatusCode, Value) {
    app.set_faults(faults).await
}

async fn a_paid_order_is_charged_once_at_the_gateway_and_reads_back_paid(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, buyer, order) = shop_with_order(&app, 129_000, 5).await;
    let order_id = order["id"].as_i64().unwrap();

    for provider in ["toss", "nice"] {
        let (status, order) = app
            .order(
                &buyer,
                json!([{"item_id": order["lines"][0]["item_id"], "quantity": 1}]),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (payment, key) = checkout(&app, &buyer, &order, provider).await;

        // Act
        let (status, paid) = confirm(&app, &buyer, &payment, &key, 129_000).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{paid}");
        assert_eq!(paid["status"], "paid");
        assert_eq!(paid["provider"], provider);
        assert_eq!(paid["payment_key"], key.as_str());
        assert!(paid["approved_at"].is_string());
        let (_, read_back) = app
            .get(
                &format!("/api/v1/payments/{}", paid["payment_id"]),
                Some(&buyer),
            )
            .await;
        assert_eq!(read_back["status"], "paid");
        let (_, order) = app
            .get(&format!("/api/v1/orders/{}", order["id"]), Some(&buyer))
            .await;
        assert_eq!(order["status"], "paid");
        // A repeated confirm answers the payment again and charges nothing more.
        let (status, again) = confirm(&app, &buyer, &payment, &key, 129_000).await;
        assert_eq!((status, &again["status"]), (StatusCode::OK, &json!("paid")));
    }
    let charges = charges(&app).await;
    assert_eq!(charges.len(), 2, "{charges:?}");
    assert!(charges
        .iter()
        .all(|charge| charge["status"] == "paid" && charge["amount"] == 129_000));
    let providers: Vec<&str> = charges
        .iter()
        .map(|c| c["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["toss", "nice"]);
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar(&format!("SELECT count(*) FROM outbox WHERE event_type = 'order.paid' AND aggregate_id <> {order_id}")).await,
        2
    );
}

async fn a_confirm_with_another_amount_is_409_and_charges_nothing(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, buyer, order) = shop_with_order(&app, 50_000, 5).await;
    let (payment, key) = checkout(&app, &buyer, &order, "toss").await;

    // Act
    let mut answers = Vec::new();
    for amount in [1, 49_999, 50_001, 0, -50_000, i64::MAX] {
        answers.push(confirm(&app, &buyer, &payment, &key, amount).await);
    }

    // Assert
    for (status, body) in &answers {
        assert_error(*status, body, 409, "amount_mismatch");
    }
    assert!(charges(&app).await.is_empty(), "nothing was charged");
    let (_, read_back) = app
        .get(
            &format!("/api/v1/payments/{}", payment["payment_id"]),
            Some(&buyer),
        )
        .await;
    assert_eq!(read_back["status"], "ready");
    let (_, order) = app
        .get(&format!("/api/v1/orders/{}", order["id"]), Some(&buyer))
        .await;
    assert_eq!(order["status"], "pending_payment");
    // The right amount still pays.
    let (status, paid) = confirm(&app, &buyer, &payment, &key, 50_000).await;
    assert_eq!((status, &paid["status"]), (StatusCode::OK, &json!("paid")));
}

async fn paying_someone_elses_order_is_404_and_charges_nothing(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, buyer, order) = shop_with_order(&app, 10_000, 5).await;
    let (payment, key) = checkout(&app, &buyer, &order, "toss").await;
    let (_, thief) = app.new_user("thief@hurry.test").await;
    let order_id = order["id"].as_i64().unwrap();

    // Act
    let (open_status, open_body) = app
        .post(
            &format!("/api/v1/orders/{order_id}/payments"),
            Some(&thief),
            json!({}),
        )
        .await;
    let (confirm_status, confirm_body) = confirm(&app, &thief, &payment, &key, 10_000).await;
    let (read_status, read_body) = app
        .get(
            &format!("/api/v1/payments/{}", payment["payment_id"]),
            Some(&thief),
        )
        .await;

    // Assert
    assert_error(open_status, &open_body, 404, "not_found");
    assert_error(confirm_status, &confirm_body, 404, "not_found");
    assert_error(read_status, &read_body, 404, "not_found");
    assert!(charges(&app).await.is_empty());
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar(&format!(
            "SELECT count(*) FROM payments WHERE order_id = {order_id}"
        ))
        .await,
        1,
        "the thief opened no payment"
    );
}

async fn twenty_concurrent_confirms_of_one_payment_charge_once(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, buyer, order) = shop_with_order(&app, 77_000, 5).await;
    let (payment, key) = checkout(&app, &buyer, &order, "toss").await;
    // Slow answers, so the confirms really overlap.
    let (status, _) = set_faults(&app, json!({"provider": "toss", "latency_ms": 100})).await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let answers =
        futures::future::join_all((0..20).map(|_| confirm(&app, &buyer, &payment, &key, 77_000)))
            .await;

    // Assert
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "paid");
        assert_eq!(body["payment_id"], payment["payment_id"]);
    }
    let charges = charges(&app).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["status"], "paid");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar(&format!(
            "SELECT count(*) FROM outbox WHERE event_type = 'order.paid' AND aggregate_id = {}",
            order["id"]
        ))
        .await,
        1,
        "the order was paid once"
    );
}

async fn a_declined_card_fails_the_payment_and_gives_the_units_back(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (item, buyer, order) = shop_with_order(&app, 30_000, 3).await;
    assert_eq!(app.stock_of(item).await, 2);
    let (payment, key) = checkout(&app, &buyer, &order, "nice").await;
    set_faults(&app, json!({"provider": "nice", "decline_rate": 1.0})).await;

    // Act
    let (status, failed) = confirm(&app, &buyer, &payment, &key, 30_000).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["status"], "failed");
    let (_, order) = app
        .get(&format!("/api/v1/orders/{}", order["id"]), Some(&buyer))
        .await;
    assert_eq!(order["status"], "payment_failed");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar(&format!("SELECT stock FROM items WHERE id = {item}"))
            .await,
        3,
        "the unit is back"
    );
    let charges = charges(&app).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["status"], "failed", "nothing taken");
    // A failed order cannot be paid again.
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/payments", order["id"]),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_error(status, &body, 409, "order_expired");
}

async fn the_sandbox_refuses_bad_keys_bad_faults_and_strangers(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, buyer) = app.new_user("someone@hurry.test").await;

    // Act and assert: the fault settings and the ledger need the admin key or an admin.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            "/pg-sandbox/faults",
            Some(&buyer),
            Some(json!({"provider": "toss", "error_rate": 1.0})),
            None,
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let admin = app.admin_token().await;
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            "/pg-sandbox/faults",
            Some(&admin),
            Some(json!({"provider": "toss", "error_rate": 0.0})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for bad in [
        json!({"provider": "paypal"}),
        json!({"provider": "toss", "error_rate": 1.5}),
        json!({"provider": "toss", "error_rate": 0.6, "timeout_rate": 0.6}),
        json!({"provider": "toss", "latency_ms": 1_000_000}),
    ] {
        let (status, body) = set_faults(&app, bad.clone()).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    let (status, body) = set_faults(&app, json!({"provider": "toss", "error_rate": "lots"})).await;
    assert!(status.is_client_error(), "{status} {body}");
    for bad in [
        json!({"provider": "toss", "pg_order_id": "", "amount": 10}),
        json!({"provider": "toss", "pg_order_id": "x", "amount": 0}),
        json!({"provider": "nope", "pg_order_id": "x", "amount": 10}),
    ] {
        let (status, body) = app.post("/pg-sandbox/checkout", None, bad).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    // The gateway calls need the gateway's keys.
    let response = app
        .client
        .post(app.url("/pg-sandbox/toss/v1/payments/confirm"))
        .basic_auth("wrong_key", Some(""))
        .json(&json!({"paymentKey": "k", "orderId": "o", "amount": 1}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED_KEY"))
    );
    assert!(charges(&app).await.is_empty());
}

async fn with_every_breaker_open_payments_are_503_unavailable_and_nothing_is_taken(store: Store) {
    // Arrange: both gateways answer every call with a 5xx; one confirm through each opens its
    // breaker (its attempts and lookups are five failures and more), for a minute.
    let app = TestApp::spawn_with(store, &["[payments]\nbreaker_open_ms = 60000\n"]).await;
    let (item, buyer, first) = shop_with_order(&app, 10_000, 10).await;
    for provider in ["toss", "nice"] {
        set_faults(&app, json!({"provider": provider, "error_rate": 1.0})).await;
    }
    let mut opened = Vec::new();
    for provider in ["toss", "nice"] {
        let (status, order) = app
            .order(&buyer, json!([{"item_id": item, "quantity": 1}]), None)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (payment, key) = checkout(&app, &buyer, &order, provider).await;
        let (status, body) = confirm(&app, &buyer, &payment, &key, 10_000).await;
        assert!(
            status.is_server_error() || status == StatusCode::OK,
            "{status} {body}"
        );
        opened.push(provider);
    }
    let admin = app.admin_token().await;
    let (_, gateways) = app.get("/api/v1/admin/gateways", Some(&admin)).await;

    // Act
    let first_id = first["id"].as_i64().unwrap();
    let (open_status, open_body) = app
        .post(
            &format!("/api/v1/orders/{first_id}/payments"),
            Some(&buyer),
            json!({}),
        )
        .await;

    // Assert
    let states: Vec<(&str, &str)> = gateways["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["provider"].as_str().unwrap(),
                g["breaker"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("nice", "open"), ("sandbox", "closed"), ("toss", "open")],
        "{opened:?}"
    );
    assert_error(open_status, &open_body, 503, "unavailable");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar(&format!(
            "SELECT count(*) FROM payments WHERE order_id = {first_id}"
        ))
        .await,
        0,
        "no payment was opened"
    );
    assert!(
        charges(&app)
            .await
            .iter()
            .all(|charge| charge["status"] != "paid"),
        "nothing was taken"
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"hurry_gateway_breaker_state{provider="toss"} 1"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("breaker"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
