//! Drop purchases over real HTTP, against SQLite and PostgreSQL: exact counts under
//! concurrency, idempotency, the sale window, commit failures and actor restarts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::{self, assert_error, both_stores, Bus, HalfCutProxy, Store, TestApp, TestDb};
use chrono::Utc;
use futures::StreamExt;
use reqwest::StatusCode;

/// Polls `check` every 10 ms until it holds; fails after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

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

async fn a_failed_commit_answers_503_and_gives_the_units_back(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 10).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let raw = app.db.raw().await;
    match store {
        Store::Sqlite => {
            raw.execute(
                "CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .await
        }
        Store::Postgres => {
            raw.execute(
                "CREATE FUNCTION fail_orders() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                 CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
                 FOR EACH ROW EXECUTE FUNCTION fail_orders();",
            )
            .await
        }
    }

    let failed =
        futures::future::join_all((0..10).map(|_| app.purchase(&buyer, item, 1, None))).await;
    for (status, body) in &failed {
        assert_error(*status, body, 503, "unavailable");
    }
    assert!(
        raw.order_ids().await.is_empty(),
        "never a 201 without a row"
    );
    assert_eq!(app.stock_of(item).await, 10, "units went back");

    raw.execute(match store {
        Store::Sqlite => "DROP TRIGGER fail_orders",
        Store::Postgres => "DROP TRIGGER fail_orders ON orders",
    })
    .await;
    let recovered =
        futures::future::join_all((0..10).map(|_| app.purchase(&buyer, item, 1, None))).await;
    for (status, body) in &recovered {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(raw.sales_of(item).await.0, 10);
    assert_eq!(app.stock_of(item).await, 0);
}

async fn a_panicking_item_actor_is_restarted_with_exact_counts(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let admin = app.admin_token().await;
    let item = app.open_drop(&seller, 100, 1).await;
    let users = app.many_users("buyer", 60).await;
    for (_, token) in &users[..30] {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    assert!(app.state.engine.crash_item(item), "an actor was running");
    eventually("the actor to restart", Duration::from_secs(10), || async {
        let (_, body) = app
            .get(&format!("/api/v1/admin/actors/{item}"), Some(&admin))
            .await;
        body["restarts"] == 1 && body["state"] == "running"
    })
    .await;

    for (_, token) in &users[30..] {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (_, token) in &users[..30] {
        let (status, body) = app.purchase(token, item, 1, None).await;
        assert_error(status, &body, 409, "limit_reached");
    }
    assert_eq!(app.db.raw().await.sales_of(item).await, (60, 60, 60, 1));
    assert_eq!(app.stock_of(item).await, 40);
    let (_, actor) = app
        .get(&format!("/api/v1/admin/actors/{item}"), Some(&admin))
        .await;
    assert_eq!(actor["sold"], 60, "{actor}");
    assert_eq!(actor["stock_in_memory"], 40, "{actor}");
}

async fn a_failed_writer_is_restarted_and_its_waiting_purchases_get_their_units_back(store: Store) {
    // A long window keeps the first purchases in the writer's buffer when it dies.
    let app = TestApp::spawn_with(store, &["[persistence]\nbatch_window_us = 400000\n"]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 10).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let slot = app.state.engine.drop_slot(item).expect("served");

    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let api = common::Api::new(app.addr);
            let buyer = buyer.clone();
            tokio::spawn(async move { api.purchase(&buyer, item, 1, None).await })
        })
        .collect();
    eventually(
        "three purchases waiting in the writer",
        Duration::from_secs(10),
        || async { slot.pending.load(std::sync::atomic::Ordering::Relaxed) == 3 },
    )
    .await;
    assert!(app.state.engine.crash_writer());
    for purchase in waiting {
        let (status, body) = purchase.await.unwrap();
        assert_error(status, &body, 503, "unavailable");
    }
    eventually(
        "the units to come back",
        Duration::from_secs(10),
        || async { app.stock_of(item).await == 10 },
    )
    .await;
    assert!(app.db.raw().await.order_ids().await.is_empty());

    // The restarted writer takes the next purchases.
    let answers =
        futures::future::join_all((0..10).map(|_| app.purchase(&buyer, item, 1, None))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(app.db.raw().await.sales_of(item).await.0, 10);
    assert_eq!(app.stock_of(item).await, 0);
}

/// Purchases of one unit each by `users`, keyed `{prefix}-{user id}`, all at once; answers in
/// user order.
async fn keyed_wave(
    app: &TestApp,
    item: i64,
    users: &[(i64, String)],
    prefix: &str,
) -> Vec<(i64, StatusCode, serde_json::Value)> {
    futures::future::join_all(users.iter().map(|(user_id, token)| async move {
        let key = format!("{prefix}-{user_id}");
        let (status, body) = app.purchase(token, item, 1, Some(&key)).await;
        (*user_id, status, body)
    }))
    .await
}

/// Waits until drop `item` has nothing pending and its books balance; returns units sold.
async fn settled_sales(app: &TestApp, item: i64, units: i64) -> i64 {
    let slot = app.state.engine.drop_slot(item).expect("served");
    eventually("the drop to settle", Duration::from_secs(20), || async {
        slot.pending.load(std::sync::atomic::Ordering::Relaxed) == 0 && slot.drafts_in_flight() == 0
    })
    .await;
    let (sold, ..) = app.db.raw().await.sales_of(item).await;
    let available = slot.available.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(available + sold, units, "available + sold == units");
    sold
}

async fn heavy_a_store_stall_longer_than_the_call_timeout_leaves_no_ghost_order(store: Store) {
    // A purchase waits 2 s at most; a batch gets 300 ms in the store.
    let app = TestApp::spawn_with(
        store,
        &["[engine]\ncall_timeout_ms = 2000\n[persistence]\ncommit_timeout_ms = 300\n"],
    )
    .await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 40, 1).await;
    let users = app.many_users("buyer", 80).await;
    let (status, body) = app.purchase(&users[0].1, item, 1, Some("warm-up")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Another session holds the orders for longer than any purchase waits.
    let stall = app.db.stall_orders("ACCESS EXCLUSIVE").await;
    let during = keyed_wave(&app, item, &users[1..], "k").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stall.release().await;

    // Every answer is final: the store holds exactly the orders answered 201.
    let sold = settled_sales(&app, item, 40).await;
    let mut acknowledged: HashMap<String, i64> = HashMap::from([("warm-up".to_owned(), 0)]);
    for (user_id, status, body) in &during {
        match (status.as_u16(), body["error"]["code"].as_str()) {
            (201, _) => {
                acknowledged.insert(format!("k-{user_id}"), body["id"].as_i64().unwrap());
            }
            (409, Some("sold_out")) => {}
            _ => assert_error(*status, body, 503, "unavailable"),
        }
    }
    let stored = app.db.raw().await.keys_of_orders(item).await;
    let stored_keys: HashSet<String> = stored.iter().filter_map(|(_, key)| key.clone()).collect();
    let answered_keys: HashSet<String> = acknowledged.keys().cloned().collect();
    assert_eq!(stored_keys, answered_keys, "no 503 or 409 became an order");
    assert_eq!(sold as usize, acknowledged.len());
    assert!(
        during.iter().any(|(_, status, _)| status.as_u16() == 503),
        "the stall was felt"
    );

    // Retries with the same keys: a 201 is answered again, a 503 is decided afresh.
    let after = keyed_wave(&app, item, &users[1..], "k").await;
    for (user_id, status, body) in &after {
        match acknowledged.get(&format!("k-{user_id}")) {
            Some(order_id) => {
                assert_eq!(*status, StatusCode::CREATED, "{body}");
                assert_eq!(body["id"].as_i64(), Some(*order_id), "one answer per key");
            }
            None if *status == StatusCode::CREATED => {}
            None => assert_error(*status, body, 409, "sold_out"),
        }
    }
    assert_eq!(settled_sales(&app, item, 40).await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_commit_is_settled_by_the_database_without_a_restart() {
    // The server reaches PostgreSQL through a proxy that can cut the server's side only.
    let db = TestDb::create(Store::Postgres).await;
    let proxy = HalfCutProxy::start(common::postgres_addr()).await;
    let mut settings = common::test_settings(
        &db,
        &["[engine]\ncall_timeout_ms = 8000\n[persistence]\ncommit_timeout_ms = 1000\n"],
    );
    settings.database.url = common::via(&db.url, proxy.addr);
    let raw_db = db.shared();
    let app = TestApp::serve(settings, db, None).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 1).await;
    let users = app.many_users("buyer", 5).await;
    let (status, body) = app.purchase(&users[0].1, item, 1, Some("warm-up")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let raw = raw_db.raw().await;

    // A batch blocked by a lock loses its connection; PostgreSQL's side stays open, so its
    // backend would go on and commit once the lock goes.
    let stall = raw_db.stall_orders("EXCLUSIVE").await;
    let blocked = tokio::spawn({
        let api = common::Api::new(app.addr);
        let token = users[1].1.clone();
        async move { api.purchase(&token, item, 1, Some("cut-1")).await }
    });
    eventually(
        "a batch blocked by the lock",
        Duration::from_secs(10),
        || async { raw.a_batch_waits_for_a_lock().await },
    )
    .await;
    proxy.cut_clients();
    let (status, body) = blocked.await.unwrap();
    assert_error(status, &body, 503, "unavailable");
    stall.release().await;
    assert_eq!(
        settled_sales(&app, item, 10).await,
        1,
        "the cut batch never landed"
    );

    // Now the read that settles it is blocked too: the answer is outcome_unknown, and a retry
    // with the same key joins the doubt and learns how it ended.
    let stall = raw_db.stall_orders("ACCESS EXCLUSIVE").await;
    let blocked = tokio::spawn({
        let api = common::Api::new(app.addr);
        let token = users[2].1.clone();
        async move { api.purchase(&token, item, 1, Some("cut-2")).await }
    });
    eventually(
        "a batch blocked by the lock",
        Duration::from_secs(10),
        || async { raw.a_batch_waits_for_a_lock().await },
    )
    .await;
    proxy.cut_clients();
    let (status, body) = blocked.await.unwrap();
    assert_error(status, &body, 503, "outcome_unknown");
    let retry = tokio::spawn({
        let api = common::Api::new(app.addr);
        let token = users[2].1.clone();
        async move { api.purchase(&token, item, 1, Some("cut-2")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stall.release().await;
    let (status, body) = retry.await.unwrap();
    assert_error(status, &body, 503, "unavailable");
    assert_eq!(settled_sales(&app, item, 10).await, 1);

    // Nothing is stuck: the same keys buy now (a connection the cut killed may fail one
    // request first, with a 503 a client retries).
    for (index, key) in [(1, "cut-1"), (2, "cut-2")] {
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (status, body) = app.purchase(&users[index].1, item, 1, Some(key)).await;
            answers.push((status, body));
            if status == StatusCode::CREATED {
                break;
            }
        }
        let (status, body) = answers.last().unwrap();
        assert_eq!(*status, StatusCode::CREATED, "{answers:?}");
        assert!(body["id"].is_i64());
        for (status, body) in &answers[..answers.len() - 1] {
            assert_error(*status, body, 503, "unavailable");
        }
    }
    assert_eq!(settled_sales(&app, item, 10).await, 3);
}

async fn a_panic_while_committing_is_settled_through_the_store(store: Store) {
    use hurry_engine::writer::CommitFault;
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 10).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;

    // Before the write: nothing landed, the units come back.
    app.state
        .engine
        .inject_commit_fault(CommitFault::PanicBeforeWrite);
    let (status, body) = app.purchase(&buyer, item, 1, Some("before")).await;
    assert_error(status, &body, 503, "unavailable");
    assert_eq!(settled_sales(&app, item, 10).await, 0);

    // After the write: the store says it landed, and the shopper gets the order.
    app.state
        .engine
        .inject_commit_fault(CommitFault::PanicAfterWrite);
    let (status, order) = app.purchase(&buyer, item, 1, Some("after")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(settled_sales(&app, item, 10).await, 1);
    assert_eq!(
        app.db.raw().await.order_ids().await,
        vec![order["id"].as_i64().unwrap()]
    );

    // The writer goes on committing.
    let answers =
        futures::future::join_all((0..5).map(|_| app.purchase(&buyer, item, 1, None))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(settled_sales(&app, item, 10).await, 6);
}

async fn an_item_actor_restarting_with_the_writer_finds_the_new_writer(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let admin = app.admin_token().await;
    let item = app.open_drop(&seller, 10, 10).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;

    assert!(app.state.engine.crash_writer());
    assert!(app.state.engine.crash_item(item));
    eventually("the actor to restart", Duration::from_secs(10), || async {
        let (_, body) = app
            .get(&format!("/api/v1/admin/actors/{item}"), Some(&admin))
            .await;
        body["restarts"] == 1 && body["state"] == "running"
    })
    .await;
    let mut created = 0;
    for _ in 0..50 {
        let (status, body) = app.purchase(&buyer, item, 1, None).await;
        match status {
            StatusCode::CREATED => created += 1,
            // The writer may still be starting for a moment.
            _ => assert_error(status, &body, 503, "unavailable"),
        }
        if created == 3 {
            break;
        }
    }
    assert_eq!(created, 3, "the drop sells again");
    assert_eq!(settled_sales(&app, item, 10).await, 3);
}

async fn a_second_cluster_node_on_one_store_sells_no_drop_until_leases_exist(store: Store) {
    let first = TestApp::spawn_on(store, Bus::Redis, None, &[]).await;
    let (_, seller) = first.seller("seller@hurry.test").await;
    let item = first.open_drop(&seller, 30, 1).await;
    let second = first.another_node(&[]).await;
    assert!(first.state.engine.sells_drops());
    assert!(!second.state.engine.sells_drops());
    let users = first.many_users("buyer", 60).await;

    let mut created = 0;
    for (index, (_, token)) in users.iter().enumerate() {
        let node = if index % 2 == 0 { &first } else { &second };
        let (status, body) = node.purchase(token, item, 1, None).await;
        if index % 2 == 1 {
            assert_error(status, &body, 503, "unavailable");
        } else if status == StatusCode::CREATED {
            created += 1;
        } else {
            assert_error(status, &body, 409, "sold_out");
        }
    }
    // A drop created through the second node is sold by the first.
    let later = second.open_drop(&seller, 5, 1).await;
    let (status, body) = first.purchase(&users[0].1, later, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(created, 30);
    assert_eq!(
        first.db.raw().await.sales_of(item).await.0,
        30,
        "never oversold"
    );
}

both_stores!(
    heavy_a_store_stall_longer_than_the_call_timeout_leaves_no_ghost_order,
    a_panic_while_committing_is_settled_through_the_store,
    an_item_actor_restarting_with_the_writer_finds_the_new_writer,
    a_second_cluster_node_on_one_store_sells_no_drop_until_leases_exist,
);

both_stores!(a_failed_writer_is_restarted_and_its_waiting_purchases_get_their_units_back,);

both_stores!(
    heavy_5000_attempts_by_1000_users_sell_exactly_100_units,
    one_key_sent_50_times_at_once_makes_one_order,
    a_retry_after_the_client_gave_up_gets_the_same_single_order,
    a_drop_past_its_queue_limit_sheds_load_with_503_and_retry_after,
    keys_are_scoped_to_the_user,
    the_sale_window_is_checked_before_stock_is_taken,
    a_failed_commit_answers_503_and_gives_the_units_back,
    a_panicking_item_actor_is_restarted_with_exact_counts,
);
