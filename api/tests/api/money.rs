//! Money after the sale, on both stores over real HTTP: a delivered order settled for its
//! seller and reversed on an open day when it comes back, and a refund the gateway fails
//! staying pending for admins until it goes through, and account deletion cancelling and
//! refunding every open order.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::order_life::{buy_drop, order_general, refunds_done, shop, status_of, stored_stock};

both_stores!(
    a_delivered_order_is_settled_for_its_seller_and_its_return_reverses_it_on_an_open_day,
    a_refund_the_gateway_fails_stays_pending_for_admins_and_goes_through_later,
    deleting_an_account_cancels_and_refunds_every_open_order,
);

/// The seller's settlement days from `from` to `to`, once `count` of them are there.
async fn settlement_days(
    app: &TestApp,
    seller: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = app
            .get(
                &format!("/api/v1/seller/settlements?from={from}&to={to}"),
                Some(seller),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let days = body["settlements"].as_array().unwrap().clone();
        if days.len() >= count {
            return days;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no settlement entries: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn a_delivered_order_is_settled_for_its_seller_and_its_return_reverses_it_on_an_open_day(
    store: Store,
) {
    // Arrange: two units of 20,000 won paid through Toss (330 bp), shipped and delivered.
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let order = order_general(&app, &shop, 2).await;
    app.pay(&shop.buyer, &order, Some("toss")).await;
    let context = app.state.payments.clone();
    context
        .advance_shipments(Utc::now() + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(status_of(&app, &shop.buyer, &order).await, "delivered");
    let today = Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();

    // Act: the day is settled; then the order comes back and is refunded.
    let open = settlement_days(
        &app,
        &shop.seller,
        &today.to_string(),
        &today.to_string(),
        1,
    )
    .await;
    let closed = app.state.store.close_settlements(today).await.unwrap();
    let settled = settlement_days(
        &app,
        &shop.seller,
        &today.to_string(),
        &today.to_string(),
        1,
    )
    .await;
    let (status, returned) = app
        .post(
            &format!("/api/v1/orders/{}/return", order["id"]),
            Some(&shop.buyer),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{returned}");
    context.run_refunds().await.unwrap();
    let both = settlement_days(
        &app,
        &shop.seller,
        &today.to_string(),
        &tomorrow.to_string(),
        2,
    )
    .await;

    // Assert
    assert_eq!(open[0]["status"], "open");
    assert_eq!(closed, 1, "one seller day closed");
    let day = json!({"date": today.to_string(), "gross": 40_000, "fee": 1_320, "net": 38_680,
                     "status": "settled"});
    assert_eq!(settled[0], day);
    assert_eq!(both[0], day, "a settled day does not change");
    assert_eq!(
        both[1],
        json!({"date": tomorrow.to_string(), "gross": -40_000, "fee": -1_320, "net": -38_680,
               "status": "open"}),
        "the refund is reversed on the next open day"
    );
    // Someone else's settlement is not shown; only sellers ask; bad dates are 422.
    let (_, other_seller) = app.seller("other-seller@hurry.test").await;
    let (_, nothing) = app
        .get("/api/v1/seller/settlements", Some(&other_seller))
        .await;
    assert_eq!(nothing["settlements"], json!([]));
    let (status, body) = app
        .get("/api/v1/seller/settlements", Some(&shop.buyer))
        .await;
    assert_error(status, &body, 403, "forbidden");
    for bad in [
        "from=yesterday",
        "to=2026-13-01",
        "from=2026-12-03&to=2026-12-01",
        "from=2020-01-01&to=2026-01-01",
    ] {
        let (status, body) = app
            .get(
                &format!("/api/v1/seller/settlements?{bad}"),
                Some(&shop.seller),
            )
            .await;
        assert_error(status, &body, 422, "validation_failed");
    }
}

async fn a_refund_the_gateway_fails_stays_pending_for_admins_and_goes_through_later(store: Store) {
    // Arrange: a paid order cancelled while NicePay answers every call with a 5xx.
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let order = order_general(&app, &shop, 1).await;
    let paid = app.pay(&shop.buyer, &order, Some("nice")).await;
    app.set_faults(json!({"provider": "nice", "error_rate": 1.0}))
        .await;
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", order["id"]),
            Some(&shop.buyer),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let context = app.state.payments.clone();
    let admin = app.admin_token().await;

    // Act: a refund pass fails; the faults stop; the next pass goes through.
    assert_eq!(context.run_refunds().await.unwrap(), 0);
    let (_, pending) = app
        .get("/api/v1/admin/refunds?status=pending", Some(&admin))
        .await;
    app.set_faults(json!({"provider": "nice"})).await;
    let mut num_done = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while num_done == 0 {
        // The sweeper may push it through first; either way it is done once.
        num_done = context.run_refunds().await.unwrap();
        let (_, done) = app
            .get("/api/v1/admin/refunds?status=done", Some(&admin))
            .await;
        if done["refunds"]
            .as_array()
            .is_some_and(|done| !done.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refund never went through"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Assert
    let refund = &pending["refunds"][0];
    assert_eq!(refund["payment_id"], paid["payment_id"]);
    assert_eq!(
        (refund["status"].as_str(), refund["reason"].as_str()),
        (Some("pending"), Some("cancel"))
    );
    assert!(refund["attempts"].as_i64().unwrap() >= 1, "{refund}");
    assert!(
        refund["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("unavailable") || error.contains("breaker open")),
        "{refund}"
    );
    let (_, pending_after) = app
        .get("/api/v1/admin/refunds?status=pending", Some(&admin))
        .await;
    assert_eq!(pending_after["refunds"], json!([]));
    let charges = app.charges().await;
    assert_eq!(charges[0]["status"], "refunded");
    let (status, body) = app
        .get("/api/v1/admin/refunds?status=lost", Some(&admin))
        .await;
    assert_error(status, &body, 422, "validation_failed");
    let (status, body) = app.get("/api/v1/admin/refunds", Some(&shop.buyer)).await;
    assert_error(status, &body, 403, "forbidden");
}

async fn deleting_an_account_cancels_and_refunds_every_open_order(store: Store) {
    // Arrange: a pending two-line general order, a paid drop order and a paid general one.
    let app = TestApp::spawn(store).await;
    let shop = shop(&app, 10, 10).await;
    let (_, seller) = app.seller("second-seller@hurry.test").await;
    let other = app.general_item(&seller, "Cap", 5_000, 4).await;
    let (status, two_lines) = app
        .order(
            &shop.buyer,
            json!([{"item_id": shop.general, "quantity": 2}, {"item_id": other, "quantity": 1}]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{two_lines}");
    let paid_drop = buy_drop(&app, &shop).await;
    app.pay(&shop.buyer, &paid_drop, Some("toss")).await;
    let paid = order_general(&app, &shop, 1).await;
    app.pay(&shop.buyer, &paid, Some("nice")).await;

    // Act
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            "/api/v1/users/me",
            Some(&shop.buyer),
            Some(json!({"password": PASSWORD})),
            None,
        )
        .await;
    let charges = refunds_done(&app).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(stored_stock(&app, shop.general).await, 10);
    assert_eq!(stored_stock(&app, other).await, 4);
    assert_eq!(app.stock_of(shop.drop).await, 10);
    assert_eq!(charges.len(), 2);
    assert!(
        charges.iter().all(|c| c["status"] == "refunded"),
        "{charges:?}"
    );
    let raw = app.db.raw().await;
    assert_eq!(
        raw.scalar("SELECT count(*) FROM orders WHERE status = 'cancelled'")
            .await,
        3
    );
}
