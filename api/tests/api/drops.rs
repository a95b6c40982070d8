//! Drop purchases over real HTTP, against SQLite and PostgreSQL: exact counts under
//! concurrency, idempotency, load shedding and the sale window (faults are in
//! `drop_faults`).

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{self, assert_error, both_stores, Store, TestApp};
use chrono::Utc;
use futures::StreamExt;
use reqwest::StatusCode;

/// Polls `check` every 10 ms until it holds; fails after `limit`.
async fn heavy_5000_attempts_by_1000_users_sell_exactly_100_units(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 100, 1).await;
    let users = app.many_users("buyer", 1000).await;

    let attempts: Vec<(i64, String)> = (0..5).flat_map(|_| users.iter().cloned()).collect();
    let app_ref = &app;
    let outcomes: Vec<(i64, StatusCode, serde_json::Value)> = futures::stream::iter(attempts)
        .map(|(user_id, token)| async move {
            let (status, body) = app_ref.purchase(&token, item, 1, None).await;
            (user_id, status, body)
        })
        .buffer_unordered(500)
        .collect()
        .await;

    let created: Vec<&(i64, StatusCode, serde_json::Value)> = outcomes
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 100, "exactly the drop's units are sold");
    let buyers: HashSet<i64> = created.iter().map(|(user, _, _)| *user).collect();
    assert_eq!(buyers.len(), 100, "no user bought twice");
    for (_, status, body) in &outcomes {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(code == "sold_out" || code == "limit_reached", "{body}");
        }
    }
    let acknowledged: HashSet<i64> = created
        .iter()
        .map(|(_, _, body)| body["id"].as_i64().expect("order id"))
        .collect();
    let raw = app.db.raw().await;
    let stored: HashSet<i64> = raw.order_ids().await.into_iter().collect();
    assert_eq!(
        acknowledged, stored,
        "every 201 has its row and no row lacks its 201"
    );
    assert_eq!(raw.sales_of(item).await, (100, 100, 100, 1));
    assert_eq!(app.stock_of(item).await, 0);
}

async fn one_key_sent_50_times_at_once_makes_one_order(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 5).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;

    let answers = futures::future::join_all(
        (0..50).map(|_| app.purchase(&buyer, item, 2, Some("checkout-1"))),
    )
    .await;
    let (first_status, first_body) = &answers[0];
    assert_eq!(*first_status, StatusCode::CREATED, "{first_body}");
    for (status, body) in &answers {
        assert_eq!(
            (status, body),
            (first_status, first_body),
            "identical answers"
        );
    }
    let later = app.purchase(&buyer, item, 2, Some("checkout-1")).await;
    assert_eq!(
        (&later.0, &later.1),
        (first_status, first_body),
        "a later repeat replays"
    );

    let (status, body) = app.purchase(&buyer, item, 1, Some("checkout-1")).await;
    assert_error(status, &body, 422, "idempotency_mismatch");

    let raw = app.db.raw().await;
    assert_eq!(raw.sales_of(item).await, (2, 1, 1, 2));
    assert_eq!(app.stock_of(item).await, 8);
}

async fn a_retry_after_the_client_gave_up_gets_the_same_single_order(store: Store) {
    // A long batching window keeps the first attempt in flight while its client gives up.
    let app = TestApp::spawn_with(store, &["[persistence]\nbatch_window_us = 300000\n"]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 10).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;

    let impatient = app
        .client
        .post(app.url(&format!("/api/v1/items/{item}/purchase")))
        .bearer_auth(&buyer)
        .header("Idempotency-Key", "gave-up")
        .timeout(Duration::from_millis(50))
        .json(&serde_json::json!({"quantity": 1}))
        .send()
        .await;
    assert!(
        impatient.is_err(),
        "the first attempt timed out on the client"
    );

    let (status, order) = app.purchase(&buyer, item, 1, Some("gave-up")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let raw = app.db.raw().await;
    assert_eq!(raw.order_ids().await, vec![order["id"].as_i64().unwrap()]);
    assert_eq!(app.stock_of(item).await, 9);
}

async fn a_drop_past_its_queue_limit_sheds_load_with_503_and_retry_after(store: Store) {
    // Two purchases may wait per drop; a long window keeps them waiting.
    let app = TestApp::spawn_with(
        store,
        &["[engine]\nmax_queue_per_drop = 2\n[persistence]\nbatch_window_us = 200000\n"],
    )
    .await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 100, 100).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;

    let answers = futures::future::join_all((0..10).map(|_| {
        let request = app
            .client
            .post(app.url(&format!("/api/v1/items/{item}/purchase")))
            .bearer_auth(&buyer)
            .json(&serde_json::json!({"quantity": 1}));
        async move {
            let response = request.send().await.unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            let (status, body) = common::read(response).await;
            (status, body, retry_after)
        }
    }))
    .await;
    let created = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::CREATED)
        .count();
    let shed: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(created + shed.len(), 10, "only 201 or 503: {answers:?}");
    assert!(created >= 2, "the queued purchases went through");
    assert!(!shed.is_empty(), "past the limit purchases are shed");
    for (status, body, retry_after) in shed {
        assert_error(*status, body, 503, "overloaded");
        assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
    }
    let raw = app.db.raw().await;
    assert_eq!(
        raw.sales_of(item).await.0,
        created as i64,
        "shed purchases took nothing"
    );
    assert_eq!(app.stock_of(item).await, 100 - created as i64);
}

async fn keys_are_scoped_to_the_user(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 1).await;
    let (_, alice) = app.new_user("alice@hurry.test").await;
    let (_, bob) = app.new_user("bob@hurry.test").await;
    let (status_a, body_a) = app.purchase(&alice, item, 1, Some("same-key")).await;
    let (status_b, body_b) = app.purchase(&bob, item, 1, Some("same-key")).await;
    assert_eq!(
        (status_a, status_b),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_ne!(body_a["id"], body_b["id"]);
    assert_eq!(app.db.raw().await.sales_of(item).await.1, 2);
}

async fn the_sale_window_is_checked_before_stock_is_taken(store: Store) {
    let app = TestApp::spawn(store).await;
    let (seller_id, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let now = Utc::now();

    let future = app
        .create_drop_at(
            &seller,
            5,
            1,
            now + chrono::Duration::hours(1),
            now + chrono::Duration::hours(2),
        )
        .await;
    let (status, body) = app.purchase(&buyer, future, 1, None).await;
    assert_error(status, &body, 409, "drop_not_open");
    assert_eq!(app.stock_of(future).await, 5);

    // A drop whose window has passed, served by an actor (created behind the API's back,
    // since the API refuses to create a closed drop).
    let closed = hurry_persistence::NewItem {
        seller_id,
        name: "Past drop".into(),
        description: String::new(),
        price: 500,
        stock: 5,
        drop: Some(hurry_persistence::DropSpec {
            opens_at: now - chrono::Duration::hours(2),
            closes_at: now - chrono::Duration::hours(1),
            per_user_limit: 1,
            total_units: 5,
        }),
    };
    let served = app.state.store.create_item(&closed).await.unwrap();
    app.state.engine.serve_drop(&served).await.unwrap();
    let (status, body) = app.purchase(&buyer, served.id, 1, None).await;
    assert_error(status, &body, 409, "drop_closed");
    // And one no actor serves (as after a restart past its closing time).
    let unserved = app.state.store.create_item(&closed).await.unwrap();
    let (status, body) = app.purchase(&buyer, unserved.id, 1, None).await;
    assert_error(status, &body, 409, "drop_closed");

    let raw = app.db.raw().await;
    assert!(
        raw.order_ids().await.is_empty(),
        "no order from a closed window"
    );
    assert_eq!(app.stock_of(served.id).await, 5);
    assert_eq!(app.stock_of(unserved.id).await, 5);
}

both_stores!(
    heavy_5000_attempts_by_1000_users_sell_exactly_100_units,
    one_key_sent_50_times_at_once_makes_one_order,
    a_retry_after_the_client_gave_up_gets_the_same_single_order,
    a_drop_past_its_queue_limit_sheds_load_with_503_and_retry_after,
    keys_are_scoped_to_the_user,
    the_sale_window_is_checked_before_stock_is_taken,
);
