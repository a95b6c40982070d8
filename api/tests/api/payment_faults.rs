//! Payments through a failing gateway, on both stores over real HTTP: with half of Toss's
//! calls failing and a fifth timing out, 500 orders end `paid` or `payment_failed`, the
//! sandbox's charges are exactly the paid orders (after reconciliation), Toss's breaker opens
//! and new payments go to NicePay, and once the faults stop a probe closes it again.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

both_stores!(a_failing_gateway_leaves_every_order_paid_or_failed_and_charged_exactly_once_if_paid);

const NUM_ORDERS: usize = 500;

/// How a shopper pays one order against a flaky gateway: open a payment where the server
/// sends it, check out there, confirm; a 503 `unavailable` (nothing taken) tries again,
/// `outcome_unknown` leaves it to reconciliation.
async fn pay_as_a_shopper(app: &TestApp, buyer: &str, order_id: i64) -> String {
    for _ in 0..30 {
        let (status, payment) = app
            .post(
                &format!("/api/v1/orders/{order_id}/payments"),
                Some(buyer),
                json!({}),
            )
            .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tokio::task::yield_now().await;
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        let (status, checkout) = app
            .post(
                "/pg-sandbox/checkout",
                None,
                json!({"provider": payment["provider"], "pg_order_id": payment["pg_order_id"],
                       "amount": payment["amount"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let key = checkout["payment_key"].as_str().unwrap();
        let amount = payment["amount"].as_i64().unwrap();
        let (status, answer) = app.confirm(buyer, &payment, key, amount).await;
        match (status, answer["error"]["code"].as_str()) {
            (StatusCode::OK, _) => return answer["status"].as_str().unwrap().to_owned(),
            (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")) => return "unknown".into(),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")) => continue,
            other => panic!("unexpected confirm answer {other:?}: {answer}"),
        }
    }
    "gave_up".into()
}

async fn a_failing_gateway_leaves_every_order_paid_or_failed_and_charged_exactly_once_if_paid(
    store: Store,
) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app
        .general_item(&seller, "Socks", 9_000, NUM_ORDERS as i64)
        .await;
    let buyers = app.many_users("payer", 50).await;
    let orders: Vec<(String, i64)> = futures::stream::iter(0..NUM_ORDERS)
        .map(|index| {
            let app = &app;
            let token = buyers[index % buyers.len()].1.clone();
            async move {
                let (status, order) = app
                    .order(&token, json!([{"item_id": item, "quantity": 1}]), None)
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{order}");
                (token, order["id"].as_i64().unwrap())
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let (status, body) = app
        .set_faults(
            json!({"provider": "toss", "error_rate": 0.5, "timeout_rate": 0.2, "hold_ms": 3000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Act
    let outcomes: Vec<String> = futures::stream::iter(&orders)
        .map(|(token, order_id)| pay_as_a_shopper(&app, token, *order_id))
        .buffer_unordered(50)
        .collect()
        .await;
    let metrics = app.get_text("/metrics").await;
    // The faults stop; whatever is in doubt is looked up and settled (once Toss's breaker
    // lets lookups through again).
    app.set_faults(json!({"provider": "toss"})).await;
    let context = app.state.payments.clone();
    let far = chrono::Utc::now() + chrono::Duration::hours(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let in_doubt = app.state.store.payments_in_doubt(far, 1_000).await.unwrap();
        if in_doubt.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} payments stay in doubt",
            in_doubt.len()
        );
        for payment in in_doubt {
            let _ = context.reconcile(payment).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    context.run_refunds().await.unwrap();

    // Assert: every order is paid or failed.
    assert!(
        !outcomes.iter().any(|outcome| outcome == "gave_up"),
        "{outcomes:?}"
    );
    let raw = app.db.raw().await;
    let unsettled = raw
        .scalar("SELECT count(*) FROM orders WHERE status NOT IN ('paid', 'payment_failed')")
        .await;
    assert_eq!(unsettled, 0, "every order ends paid or payment_failed");
    // The gateway holds money for exactly the paid orders, once each.
    let charges = app.charges().await;
    let charged: Vec<&Value> = charges.iter().filter(|c| c["status"] == "paid").collect();
    let charged_ids: BTreeSet<String> = charged
        .iter()
        .map(|c| c["pg_order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(charged_ids.len(), charged.len(), "no payment charged twice");
    let paid_ids: BTreeSet<String> = raw
        .texts("SELECT pg_order_id FROM payments WHERE status = 'paid'")
        .await
        .into_iter()
        .collect();
    assert_eq!(charged_ids, paid_ids, "charges are the paid payments");
    let num_paid_orders = raw
        .scalar("SELECT count(*) FROM orders WHERE status = 'paid'")
        .await;
    assert_eq!(
        paid_ids.len() as i64,
        num_paid_orders,
        "one paid payment per paid order"
    );
    assert!(
        charges
            .iter()
            .all(|c| c["status"] != "refunded" || c["refunded_amount"] == c["amount"]),
        "a refund gives everything back"
    );
    // Toss's breaker opened and NicePay took payments over.
    assert!(
        metrics.contains(r#"hurry_gateway_breaker_changes_total{provider="toss",to="Open"}"#),
        "toss's breaker never opened"
    );
    assert!(
        charged.iter().any(|c| c["provider"] == "nice"),
        "nothing went to nice"
    );
    assert!(
        num_paid_orders > NUM_ORDERS as i64 / 2,
        "{num_paid_orders} paid"
    );

    // Once the faults stopped, a probe through Toss closes its breaker again.
    let (_, buyer) = &buyers[0];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "toss never took payments again"
        );
        let (status, order) = app
            .order(buyer, json!([{"item_id": item, "quantity": 1}]), None)
            .await;
        if status == StatusCode::CONFLICT {
            app.post(
                &format!("/api/v1/items/{item}/stock"),
                Some(&seller),
                json!({"delta": 100}),
            )
            .await;
            continue;
        }
        let paid = app.pay(buyer, &order, None).await;
        if paid["provider"] == "toss" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = app.admin_token().await;
    let (_, gateways) = app.get("/api/v1/admin/gateways", Some(&admin)).await;
    let toss = gateways["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["provider"] == "toss")
        .cloned();
    assert_eq!(
        toss.map(|g| g["breaker"].clone()),
        Some(json!("closed")),
        "{gateways}"
    );
}
