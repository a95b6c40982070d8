//! After the purchase, on both stores over real HTTP: the payment deadline (expiry gives the
//! units back once, a charge that lands after it is refunded), reconciliation of a charge
//! whose answer was lost, cancel and return with refunds through the sandbox gateway, and
//! shipment progression (refunds that fail, settlement and account deletion are in `money`).
//! Time is handed to the sweeper's steps (`expire_due(now)`, `advance_shipments(now)`), so
//! nothing waits for a clock.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

both_stores!(
    unpaid_orders_expire_once_and_their_units_come_back,
    a_charge_that_lands_after_expiry_is_refunded_and_the_order_stays_expired,
    a_charge_whose_answer_was_lost_is_settled_by_reconciliation,
    cancelling_before_shipping_restocks_and_refunds_and_after_is_409,
    a_delivered_order_is_returned_within_the_window_with_its_refund,
);

/// A seller with a general item and an open drop, and a buyer.
pub(crate) struct Shop {
    pub(crate) seller: String,
    pub(crate) general: i64,
    pub(crate) drop: i64,
    pub(crate) buyer: String,
}

pub(crate) async fn shop(app: &TestApp, general_stock: i64, drop_units: i64) -> Shop {
    let (_, seller) = app.seller("seller@hurry.test").await;
    let general = app
        .general_item(&seller, "Tee", 20_000, general_stock)
        .await;
    let drop = app.open_drop(&seller, drop_units, 5).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    Shop {
        seller,
        general,
        drop,
        buyer,
    }
}

pub(crate) async fn order_general(app: &TestApp, shop: &Shop, quantity: i64) -> Value {
    let (status, order) = app
        .order(
            &shop.buyer,
            json!([{"item_id": shop.general, "quantity": quantity}]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

pub(crate) async fn buy_drop(app: &TestApp, shop: &Shop) -> Value {
    let (status, order) = app.purchase(&shop.buyer, shop.drop, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

pub(crate) async fn status_of(app: &TestApp, buyer: &str, order: &Value) -> String {
    let (_, order) = app
        .get(&format!("/api/v1/orders/{}", order["id"]), Some(buyer))
        .await;
    order["status"].as_str().unwrap().to_owned()
}

/// The general item's stock in the store.
pub(crate) async fn stored_stock(app: &TestApp, item: i64) -> i64 {
    app.db
        .raw()
        .await
        .scalar(&format!("SELECT stock FROM items WHERE id = {item}"))
        .await
}

/// Pushes owed refunds through and answers the sandbox's ledger.
pub(crate) async fn refunds_done(app: &TestApp) -> Vec<Value> {
    app.state.payments.run_refunds().await.unwrap();
    app.charges().await
}

async fn unpaid_orders_expire_once_and_their_units_come_back(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let general = order_general(&app, &shop, 3).await;
    let drop = buy_drop(&app, &shop).await;
    assert_eq!(
        (
            stored_stock(&app, shop.general).await,
            app.stock_of(shop.drop).await
        ),
        (7, 9)
    );
    let payments = app.state.payments.clone();

    // Act: not yet due; then due, with two sweeps at once.
    let early = payments.expire_due(Utc::now()).await.unwrap();
    let later = Utc::now() + Duration::minutes(11);
    let (first, second) = tokio::join!(payments.expire_due(later), payments.expire_due(later));
    let third = payments.expire_due(later).await.unwrap();

    // Assert
    assert_eq!(early, 0, "nothing is due before the deadline");
    assert_eq!(
        first.unwrap() + second.unwrap() + third,
        2,
        "each order expires once"
    );
    assert_eq!(status_of(&app, &shop.buyer, &general).await, "expired");
    assert_eq!(status_of(&app, &shop.buyer, &drop).await, "expired");
    assert_eq!(
        stored_stock(&app, shop.general).await,
        10,
        "general units back once"
    );
    assert_eq!(
        app.stock_of(shop.general).await,
        10,
        "and the catalogue shows them"
    );
    assert_eq!(app.stock_of(shop.drop).await, 10, "drop units back once");
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT count(*) FROM outbox WHERE event_type = 'order.expired'")
            .await,
        2
    );
    // An expired order cannot be paid.
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/payments", general["id"]),
            Some(&shop.buyer),
            json!({}),
        )
        .await;
    assert_error(status, &body, 409, "order_expired");
}

async fn a_charge_that_lands_after_expiry_is_refunded_and_the_order_stays_expired(store: Store) {
    // Arrange: a confirm started (its key stored), the gateway charged, the answer was lost,
    // and the order's deadline passed before anyone looked.
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let order = order_general(&app, &shop, 2).await;
    let (payment, key) = app
        .checkout(&shop.buyer, order["id"].as_i64().unwrap(), Some("toss"))
        .await;
    let payment_id = payment["payment_id"].as_i64().unwrap();
    app.state
        .store
        .start_confirm(payment_id, &key)
        .await
        .unwrap();
    app.charge_at_sandbox(&payment, &key).await;
    let payments = app.state.payments.clone();
    assert_eq!(
        payments
            .expire_due(Utc::now() + Duration::minutes(11))
            .await
            .unwrap(),
        1
    );

    // Act
    let in_doubt = app
        .state
        .store
        .payment_by_id(payment_id)
        .await
        .unwrap()
        .unwrap();
    let settled = payments.reconcile(in_doubt).await;
    let charges = refunds_done(&app).await;

    // Assert
    assert!(settled.is_err(), "the order stopped waiting: {settled:?}");
    assert_eq!(status_of(&app, &shop.buyer, &order).await, "expired");
    assert_eq!(
        stored_stock(&app, shop.general).await,
        10,
        "units back once"
    );
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["status"], "refunded", "{charges:?}");
    assert_eq!(charges[0]["refunded_amount"], payment["amount"]);
    let (_, read_back) = app
        .get(&format!("/api/v1/payments/{payment_id}"), Some(&shop.buyer))
        .await;
    assert_eq!(
        (read_back["status"].as_str(), &read_back["refunded_amount"]),
        (Some("refunded"), &payment["amount"])
    );
    let admin = app.admin_token().await;
    let (_, done) = app
        .get("/api/v1/admin/refunds?status=done", Some(&admin))
        .await;
    assert_eq!(done["refunds"][0]["reason"], "late");
    let (_, pending) = app
        .get("/api/v1/admin/refunds?status=pending", Some(&admin))
        .await;
    assert_eq!(pending["refunds"], json!([]));
}

async fn a_charge_whose_answer_was_lost_is_settled_by_reconciliation(store: Store) {
    // Arrange: as if the server died between the gateway's charge and its own commit.
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let paid_order = order_general(&app, &shop, 1).await;
    let (charged, charged_key) = app
        .checkout(
            &shop.buyer,
            paid_order["id"].as_i64().unwrap(),
            Some("toss"),
        )
        .await;
    let unpaid_order = order_general(&app, &shop, 1).await;
    let (lost, lost_key) = app
        .checkout(
            &shop.buyer,
            unpaid_order["id"].as_i64().unwrap(),
            Some("toss"),
        )
        .await;
    for (payment, key) in [(&charged, &charged_key), (&lost, &lost_key)] {
        let id = payment["payment_id"].as_i64().unwrap();
        app.state.store.start_confirm(id, key).await.unwrap();
    }
    app.charge_at_sandbox(&charged, &charged_key).await;

    // Act
    let context = app.state.payments.clone();
    for payment in [&charged, &lost] {
        let id = payment["payment_id"].as_i64().unwrap();
        let in_doubt = app.state.store.payment_by_id(id).await.unwrap().unwrap();
        context.reconcile(in_doubt).await.unwrap();
    }

    // Assert: the charge is a paid order; the confirm that never reached the gateway failed
    // its payment, nothing taken.
    assert_eq!(status_of(&app, &shop.buyer, &paid_order).await, "paid");
    assert_eq!(
        status_of(&app, &shop.buyer, &unpaid_order).await,
        "payment_failed"
    );
    assert_eq!(stored_stock(&app, shop.general).await, 9);
    let charges = app.charges().await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["pg_order_id"], charged["pg_order_id"]);
    // A repeated confirm answers what reconciliation stored.
    let (status, again) = app
        .confirm(&shop.buyer, &charged, &charged_key, 20_000)
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
}

async fn cancelling_before_shipping_restocks_and_refunds_and_after_is_409(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let pending = order_general(&app, &shop, 2).await;
    let paid = order_general(&app, &shop, 3).await;
    app.pay(&shop.buyer, &paid, Some("nice")).await;
    let paid_drop = buy_drop(&app, &shop).await;
    app.pay(&shop.buyer, &paid_drop, Some("toss")).await;
    let shipped = order_general(&app, &shop, 1).await;
    app.pay(&shop.buyer, &shipped, Some("toss")).await;
    let context = app.state.payments.clone();
    // Only `shipped` is moved on: the others are cancelled first.
    assert_eq!(stored_stock(&app, shop.general).await, 4);

    // Act: three cancels before shipping; then `shipped` moves on to shipping and is
    // cancelled too late.
    let mut answers = Vec::new();
    for order in [&pending, &paid, &paid_drop] {
        answers.push(
            app.post(
                &format!("/api/v1/orders/{}/cancel", order["id"]),
                Some(&shop.buyer),
                json!({"reason": "changed my mind"}),
            )
            .await,
        );
    }
    // Past the preparing time only, then past the shipping time only.
    context
        .advance_shipments(Utc::now() + Duration::minutes(11))
        .await
        .unwrap();
    assert_eq!(status_of(&app, &shop.buyer, &shipped).await, "preparing");
    context
        .advance_shipments(Utc::now() + Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(status_of(&app, &shop.buyer, &shipped).await, "shipping");
    answers.push(
        app.post(
            &format!("/api/v1/orders/{}/cancel", shipped["id"]),
            Some(&shop.buyer),
            json!({"reason": "too late"}),
        )
        .await,
    );
    let charges = refunds_done(&app).await;

    // Assert
    let statuses: Vec<&str> = answers
        .iter()
        .map(|(_, body)| body["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        &statuses[..3],
        ["cancelled", "cancelled", "cancelled"],
        "{answers:?}"
    );
    assert_error(answers[3].0, &answers[3].1, 409, "not_cancellable");
    assert_eq!(
        stored_stock(&app, shop.general).await,
        9,
        "the cancelled units are back"
    );
    assert_eq!(app.stock_of(shop.drop).await, 10, "the drop unit is back");
    let refunded: Vec<&Value> = charges
        .iter()
        .filter(|c| c["status"] == "refunded")
        .collect();
    assert_eq!(
        refunded.len(),
        2,
        "the two paid cancelled orders: {charges:?}"
    );
    assert_eq!(
        charges.iter().filter(|c| c["status"] == "paid").count(),
        1,
        "the shipped one"
    );
    // Another user cannot cancel; a cancelled order cannot be cancelled again.
    let (_, stranger) = app.new_user("stranger@hurry.test").await;
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", shipped["id"]),
            Some(&stranger),
            json!({"reason": ""}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", pending["id"]),
            Some(&shop.buyer),
            json!({"reason": "again"}),
        )
        .await;
    assert_error(status, &body, 409, "not_cancellable");
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", pending["id"]),
            Some(&shop.buyer),
            json!({"reason": "x".repeat(501)}),
        )
        .await;
    assert_error(status, &body, 422, "validation_failed");
}

async fn a_delivered_order_is_returned_within_the_window_with_its_refund(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let kept = order_general(&app, &shop, 2).await;
    app.pay(&shop.buyer, &kept, Some("toss")).await;
    let late = order_general(&app, &shop, 1).await;
    app.pay(&shop.buyer, &late, Some("toss")).await;
    let not_delivered = order_general(&app, &shop, 1).await;
    let (status, early) = app
        .post(
            &format!("/api/v1/orders/{}/return", not_delivered["id"]),
            Some(&shop.buyer),
            json!({"reason": "early"}),
        )
        .await;
    assert_error(status, &early, 409, "not_returnable");
    let context = app.state.payments.clone();
    let far = Utc::now() + Duration::days(3);
    let mut num_moved = 0;
    while num_moved < 6 {
        let moved = context.advance_shipments(far).await.unwrap();
        assert!(moved > 0, "shipments stopped at {num_moved} moves");
        num_moved += moved;
    }
    assert_eq!(status_of(&app, &shop.buyer, &kept).await, "delivered");
    // `late` was delivered eight days ago.
    let raw = app.db.raw().await;
    let eight_days_earlier = match app.db.store {
        Store::Postgres => "updated_at - INTERVAL '8 days'",
        Store::Sqlite => "datetime(updated_at, '-8 days')",
    };
    raw.execute(&format!(
        "UPDATE orders SET updated_at = {eight_days_earlier} WHERE id = {}",
        late["id"]
    ))
    .await;

    // Act
    let (status, returned) = app
        .post(
            &format!("/api/v1/orders/{}/return", kept["id"]),
            Some(&shop.buyer),
            json!({"reason": "too small"}),
        )
        .await;
    let (late_status, late_body) = app
        .post(
            &format!("/api/v1/orders/{}/return", late["id"]),
            Some(&shop.buyer),
            json!({"reason": "late"}),
        )
        .await;
    let charges = refunds_done(&app).await;

    // Assert
    assert_eq!(
        (status, returned["status"].as_str()),
        (StatusCode::OK, Some("return_requested")),
        "{returned}"
    );
    assert_error(late_status, &late_body, 409, "not_returnable");
    assert_eq!(status_of(&app, &shop.buyer, &kept).await, "returned");
    assert_eq!(
        stored_stock(&app, shop.general).await,
        8,
        "the two returned units are back"
    );
    assert_eq!(
        charges.iter().filter(|c| c["status"] == "refunded").count(),
        1,
        "{charges:?}"
    );
    assert_eq!(
        raw.scalar(&format!(
            "SELECT count(*) FROM outbox WHERE event_type = 'order.returned' AND aggregate_id = {}",
            kept["id"]
        ))
        .await,
        1
    );
}
