//! The idempotency memory index over real HTTP, on SQLite and PostgreSQL: a keyed request of a
//! user with no stored key is answered without the store (a sold-out drop answers from memory),
//! while users with stored keys, from this process or an earlier one, still get their first
//! answer back.

use crate::common::{self, assert_error, both_stores, Store, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

const NO_INDEX: &str = "[idempotency]\nmemory_index = false\n";

/// Makes every idempotency lookup fail (the table is renamed away), or mends it.
async fn break_key_lookups(app: &TestApp, broken: bool) {
    let (from, to) = if broken {
        ("idempotency_keys", "idempotency_keys_away")
    } else {
        ("idempotency_keys_away", "idempotency_keys")
    };
    app.db
        .raw()
        .await
        .execute(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .await;
}

/// A 1-unit drop bought by `winner` under key `win-1`: (item, winner, late, winner's order).
async fn sold_out_to_a_keyed_winner(app: &TestApp) -> (i64, String, String, Value) {
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 1, 1).await;
    let (_, winner) = app.new_user("winner@hurry.test").await;
    let (_, late) = app.new_user("late@hurry.test").await;
    let (status, first) = app.purchase(&winner, item, 1, Some("win-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    (item, winner, late, first)
}

async fn a_keyed_refusal_is_answered_without_the_store(store: Store) {
    let app = TestApp::spawn(store).await;
    let (item, winner, late, first) = sold_out_to_a_keyed_winner(&app).await;

    break_key_lookups(&app, true).await;
    let (status, body) = app.purchase(&late, item, 1, Some("late-1")).await;
    assert_error(status, &body, 409, "sold_out");
    // The winner's retry is this node's recent answer: repeated from memory.
    let (status, again) = app.purchase(&winner, item, 1, Some("win-1")).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    break_key_lookups(&app, false).await;

    // A new process knows the winner has stored keys, but not the answer: it asks the store.
    let restarted = app.restart().await;
    break_key_lookups(&app, true).await;
    let (status, body) = restarted.purchase(&winner, item, 1, Some("win-1")).await;
    assert_error(status, &body, 503, "unavailable");
    let (status, body) = restarted.purchase(&late, item, 1, Some("late-2")).await;
    assert_error(status, &body, 409, "sold_out");

    break_key_lookups(&app, false).await;
    let (status, again) = restarted.purchase(&winner, item, 1, Some("win-1")).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    assert_eq!(app.db.raw().await.sales_of(item).await.1, 1);
}

async fn without_the_index_every_keyed_request_needs_the_store(store: Store) {
    let app = TestApp::spawn_with(store, &[NO_INDEX]).await;
    let (item, _, late, _) = sold_out_to_a_keyed_winner(&app).await;

    break_key_lookups(&app, true).await;
    let (status, body) = app.purchase(&late, item, 1, Some("late-1")).await;
    assert_error(status, &body, 503, "unavailable");
    let (status, body) = app.purchase(&late, item, 1, None).await;
    assert_error(status, &body, 409, "sold_out");
}

async fn keys_stored_before_a_restart_replay_after_it(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 1, 1).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let (status, first) = app.purchase(&buyer, item, 1, Some("before")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    // A new process on the same database: its index starts from the store.
    let restarted = app.restart().await;
    let (status, again) = restarted.purchase(&buyer, item, 1, Some("before")).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    let (status, body) = restarted.purchase(&buyer, item, 2, Some("before")).await;
    assert_error(status, &body, 422, "idempotency_mismatch");
    assert_eq!(app.db.raw().await.sales_of(item).await.1, 1);
}

async fn a_key_used_for_a_general_order_is_not_reused_for_a_drop(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let general = app.general_item(&seller, "mug", 1_000, 5).await;
    let drop_item = app.open_drop(&seller, 1, 1).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let (_, first) = app.new_user("first@hurry.test").await;
    let (status, body) = app.purchase(&first, drop_item, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let lines = serde_json::json!([{"item_id": general, "quantity": 1}]);
    let (status, order) = app.order(&buyer, lines, Some("shared-key")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");

    // The drop has no units: without the lookup this would be a plain sold_out.
    let (status, body) = app.purchase(&buyer, drop_item, 1, Some("shared-key")).await;
    assert_error(status, &body, 422, "idempotency_mismatch");
}

async fn repeats_of_a_pending_purchase_of_the_last_unit_join_it(store: Store) {
    // A long batching window keeps the first purchase in flight after it took the last unit.
    let app = TestApp::spawn_with(store, &["[persistence]\nbatch_window_us = 300000\n"]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 1, 1).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let first = tokio::spawn({
        let api = common::Api::new(app.api.addr);
        let buyer = buyer.clone();
        async move { api.purchase(&buyer, item, 1, Some("last-one")).await }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.stock_of(item).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unit is never taken"
        );
        tokio::task::yield_now().await;
    }

    // The drop now looks sold out, but these repeat a request that is still running.
    let repeats =
        futures::future::join_all((0..20).map(|_| app.purchase(&buyer, item, 1, Some("last-one"))))
            .await;
    let (status, order) = first.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{order}");
    for answer in &repeats {
        assert_eq!((answer.0, &answer.1), (status, &order));
    }
    assert_eq!(app.db.raw().await.sales_of(item).await.1, 1);
}

async fn a_repeat_the_cache_no_longer_holds_is_left_out_of_its_batch_and_replayed(store: Store) {
    // A wide batching window puts the repeat in one batch with other shoppers' purchases.
    let app = TestApp::spawn_with(store, &["[persistence]\nbatch_window_us = 50000\n"]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 20, 5).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let others = app.many_users("other", 6).await;
    let (status, first) = app.purchase(&buyer, item, 1, Some("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    // A new process: no recent answers, and the per-user limit (5) lets the repeat through
    // to the writer, which finds the key stored and leaves the order out.
    let restarted = app.restart().await;
    let repeat = restarted.purchase(&buyer, item, 1, Some("again"));
    let fresh = futures::future::join_all(
        others
            .iter()
            .map(|(_, token)| restarted.purchase(token, item, 1, Some("again"))),
    );
    let ((status, again), fresh) = futures::join!(repeat, fresh);

    assert_eq!(
        (status, &again),
        (StatusCode::CREATED, &first),
        "the first answer"
    );
    for (status, body) in &fresh {
        assert_eq!(
            *status,
            StatusCode::CREATED,
            "the batch did not fail: {body}"
        );
    }
    let raw = app.db.raw().await;
    assert_eq!(raw.sales_of(item).await, (7, 7, 7, 1));
    assert_eq!(
        restarted.stock_of(item).await,
        13,
        "the repeat's unit went back"
    );
}

both_stores!(
    a_repeat_the_cache_no_longer_holds_is_left_out_of_its_batch_and_replayed,
    a_keyed_refusal_is_answered_without_the_store,
    without_the_index_every_keyed_request_needs_the_store,
    keys_stored_before_a_restart_replay_after_it,
    a_key_used_for_a_general_order_is_not_reused_for_a_drop,
    repeats_of_a_pending_purchase_of_the_last_unit_join_it,
);
