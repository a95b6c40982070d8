//! Drop purchases through faults, over real HTTP against SQLite and PostgreSQL: a commit
//! refused, stalled past the call timeout, cut mid-way by a proxy or lost to a panic; item
//! actors and the writer restarted; a second node on one store.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::{self, assert_error, both_stores, Bus, HalfCutProxy, Store, TestApp, TestDb};
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
    a_failed_writer_is_restarted_and_its_waiting_purchases_get_their_units_back,
    a_failed_commit_answers_503_and_gives_the_units_back,
    a_panicking_item_actor_is_restarted_with_exact_counts,
);
