//! The server as a child process, killed with SIGKILL in the middle of a drop and restarted on
//! the same database: nothing acknowledged is lost (I2), nothing is oversold (I1), retries with
//! the same key get the same order (I5), and the restarted node sells exactly what is left.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{both_stores, Api, Store, TestDb, ADMIN_EMAIL, ADMIN_PASSWORD};
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::process::{Child, Command};

/// Starts the `hurry` binary on `db` and a free port, with `env` set; stderr goes to `stderr`.
fn spawn_hurry(db: &TestDb, env: &[(&str, &str)], stderr: Stdio) -> (Child, Api) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/test.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_hurry"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
            config,
        ])
        .env("HURRY__DATABASE__URL", &db.url)
        .env("HURRY__ADMIN__EMAIL", ADMIN_EMAIL)
        .env("HURRY__ADMIN__PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("start hurry");
    (
        child,
        Api::new(format!("127.0.0.1:{port}").parse().unwrap()),
    )
}

/// The `hurry` binary serving `db` on a free port.
struct ChildServer {
    child: Child,
    api: Api,
}

impl ChildServer {
    async fn start(db: &TestDb) -> Self {
        Self::start_with(db, &[]).await
    }

    /// The server on `db` with `env` set, once healthy.
    async fn start_with(db: &TestDb, env: &[(&str, &str)]) -> Self {
        let (child, api) = spawn_hurry(db, env, Stdio::inherit());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = api
                .client
                .get(api.url("/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ChildServer { child, api }
    }

    async fn kill_9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

async fn heavy_kill_9_mid_drop_keeps_every_acknowledged_order(store: Store) {
    const UNITS: i64 = 300;
    let db = TestDb::create(store).await;
    let server = ChildServer::start(&db).await;
    let (_, seller) = server.api.seller("seller@hurry.test").await;
    let item = server.api.open_drop(&seller, UNITS, 1).await;
    let users = server.api.many_users("buyer", 400).await;

    // First wave: every user buys once; the server dies after 50 acknowledgements.
    let acknowledged: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
    let num_acknowledged = Arc::new(AtomicUsize::new(0));
    let wave = {
        let api = Api::new(server.api.addr);
        let users = users.clone();
        let acknowledged = acknowledged.clone();
        let num_acknowledged = num_acknowledged.clone();
        tokio::spawn(async move {
            let api = &api;
            futures::stream::iter(users)
                .for_each_concurrent(64, |(user_id, token)| {
                    let acknowledged = acknowledged.clone();
                    let num_acknowledged = num_acknowledged.clone();
                    async move {
                        let key = format!("first-{user_id}");
                        if let Some((StatusCode::CREATED, body)) =
                            api.try_purchase(&token, item, &key).await
                        {
                            let order_id = body["id"].as_i64().expect("order id");
                            acknowledged.lock().unwrap().insert(user_id, order_id);
                            num_acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
                .await;
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while num_acknowledged.load(Ordering::SeqCst) < 50 {
        assert!(tokio::time::Instant::now() < deadline, "first wave stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill_9().await;
    wave.await.expect("first wave ends once the server is gone");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 50);

    // Every acknowledged order survived the crash; nothing was oversold.
    let raw = db.raw().await;
    let stored = raw.order_ids().await;
    for order_id in acknowledged.values() {
        assert!(
            stored.contains(order_id),
            "acknowledged order {order_id} was lost"
        );
    }
    let (sold_before, ..) = raw.sales_of(item).await;
    assert!(sold_before < UNITS, "the crash came mid-drop");
    assert!(sold_before >= acknowledged.len() as i64);

    // Second wave on the restarted node, retrying with the same keys.
    let server = ChildServer::start(&db).await;
    let api = &server.api;
    let outcomes: Vec<(i64, StatusCode, serde_json::Value)> = futures::stream::iter(users)
        .map(|(user_id, token)| async move {
            let key = format!("first-{user_id}");
            let (status, body) = api
                .try_purchase(&token, item, &key)
                .await
                .expect("the restarted server answers");
            (user_id, status, body)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut num_new_orders = 0;
    for (user_id, status, body) in &outcomes {
        if let Some(order_id) = acknowledged.get(user_id) {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            assert_eq!(
                body["id"].as_i64(),
                Some(*order_id),
                "a retry replays the order"
            );
        } else if *status == StatusCode::CREATED {
            num_new_orders += 1;
        } else {
            assert_eq!(body["error"]["code"], "sold_out", "{body}");
        }
    }
    let replayed_unseen = outcomes
        .iter()
        .filter(|(user_id, status, body)| {
            *status == StatusCode::CREATED
                && !acknowledged.contains_key(user_id)
                && body["id"].as_i64().is_some_and(|id| stored.contains(&id))
        })
        .count() as i64;
    assert_eq!(
        num_new_orders - replayed_unseen,
        UNITS - sold_before,
        "the restarted node sells exactly what is left"
    );
    assert_eq!(raw.sales_of(item).await, (UNITS, UNITS, UNITS, 1));
    assert_eq!(api.stock_of(item).await, 0);

    // The bootstrap admin can still log in and the item actor reports the same counts.
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, actor) = api
        .get(&format!("/api/v1/admin/actors/{item}"), Some(&admin))
        .await;
    assert_eq!(actor["sold"], UNITS, "{actor}");
    server.kill_9().await;
}

async fn a_second_process_on_one_store_refuses_to_start(store: Store) {
    let db = TestDb::create(store).await;
    let first = ChildServer::start(&db).await;
    let (child, _) = spawn_hurry(&db, &[], Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the second process ends")
        .expect("its output");
    assert!(
        !output.status.success(),
        "the second process must not serve"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another hurry process uses this database"),
        "a clear message: {stderr}"
    );
    // The first one is unharmed and sells.
    let (_, seller) = first.api.seller("seller@hurry.test").await;
    let item = first.api.open_drop(&seller, 3, 1).await;
    let (_, buyer) = first.api.new_user("buyer@hurry.test").await;
    let (status, body) = first.api.purchase(&buyer, item, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    first.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_a_batch_blocked_when_its_process_dies_never_lands_after_the_restart_recounts() {
    const UNITS: i64 = 20;
    // Batches get long enough in the store to stay blocked through the restart.
    let slow_timeouts = [
        ("HURRY__PERSISTENCE__COMMIT_TIMEOUT_MS", "20000"),
        ("HURRY__ENGINE__CALL_TIMEOUT_MS", "60000"),
    ];
    let db = TestDb::create(Store::Postgres).await;
    let server = ChildServer::start_with(&db, &slow_timeouts).await;
    let (_, seller) = server.api.seller("seller@hurry.test").await;
    let item = server.api.open_drop(&seller, UNITS, 1).await;
    let users = server.api.many_users("buyer", 40).await;
    let (status, body) = server.api.purchase(&users[0].1, item, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let raw = db.raw().await;

    // Purchases whose batch waits for a lock; then the process dies. Its backend lives on
    // and would commit the batch once the lock goes.
    let stall = db.stall_orders("EXCLUSIVE").await;
    let blocked: Vec<_> = users[1..11]
        .iter()
        .map(|(_, token)| {
            let (api, token) = (Api::new(server.api.addr), token.clone());
            tokio::spawn(async move { api.try_purchase(&token, item, "blocked").await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !raw.a_batch_waits_for_a_lock().await {
        assert!(tokio::time::Instant::now() < deadline, "no batch blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9().await;
    for purchase in blocked {
        assert!(purchase.await.unwrap().is_none(), "nobody was answered");
    }

    // The new process recounts, then the lock goes.
    let server = ChildServer::start(&db).await;
    stall.release().await;
    let api = &server.api;
    let outcomes: Vec<StatusCode> = futures::stream::iter(&users[11..])
        .map(|(_, token)| async move { api.purchase(token, item, 1, None).await.0 })
        .buffer_unordered(16)
        .collect()
        .await;
    let sold_now = outcomes
        .iter()
        .filter(|status| **status == StatusCode::CREATED)
        .count() as i64;
    let (sold, ..) = raw.sales_of(item).await;
    assert!(sold <= UNITS, "oversold: {sold} of {UNITS}");
    assert_eq!(sold, 1 + sold_now, "the blocked batch never landed");
    assert_eq!(sold, UNITS);
    server.kill_9().await;
}

both_stores!(
    heavy_kill_9_mid_drop_keeps_every_acknowledged_order,
    a_second_process_on_one_store_refuses_to_start,
    a_server_killed_between_the_charge_and_its_commit_settles_the_order_after_restart,
);

/// `hurry pg-sandbox` as a child process on a free port, once it answers.
async fn start_sandbox() -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/test.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_hurry"))
        .args([
            "pg-sandbox",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
            config,
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the sandbox");
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::common::client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/charges"))
        .header("X-Sandbox-Key", crate::common::pay::SANDBOX_KEY)
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sandbox never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, base)
}

async fn sandbox_charges(base: &str) -> Vec<serde_json::Value> {
    let response = crate::common::client()
        .get(format!("{base}/charges"))
        .header("X-Sandbox-Key", crate::common::pay::SANDBOX_KEY)
        .send()
        .await
        .expect("charges");
    let body: serde_json::Value = response.json().await.expect("charges body");
    body["charges"].as_array().expect("charges").clone()
}

async fn a_server_killed_between_the_charge_and_its_commit_settles_the_order_after_restart(
    store: Store,
) {
    // Arrange: the sandbox in a process of its own (its ledger outlives the server), every
    // gateway pointing at it.
    let (_sandbox, base) = start_sandbox().await;
    let urls: Vec<(String, String)> = ["TOSS", "NICE", "SANDBOX"]
        .iter()
        .map(|name| {
            let provider = name.to_lowercase();
            (
                format!("HURRY__PAYMENTS__{name}__BASE_URL"),
                format!("{base}/{provider}"),
            )
        })
        .collect();
    let mut env: Vec<(&str, &str)> = urls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("HURRY__PG_SANDBOX__MOUNT", "false"));
    env.push(("HURRY__PAYMENTS__REQUEST_TIMEOUT_MS", "60000"));
    let db = TestDb::create(store).await;
    let server = ChildServer::start_with(&db, &env).await;
    let api = &server.api;
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let item = api.general_item(&admin, "Jacket", 250_000, 3).await;
    let (_, buyer) = api.new_user("buyer@hurry.test").await;
    let (_, order) = api
        .order(
            &buyer,
            serde_json::json!([{"item_id": item, "quantity": 1}]),
            None,
        )
        .await;
    let order_id = order["id"].as_i64().unwrap();
    let (_, payment) = api
        .post(
            &format!("/api/v1/orders/{order_id}/payments"),
            Some(&buyer),
            serde_json::json!({"provider": "toss"}),
        )
        .await;
    let client = crate::common::client();
    let checkout: serde_json::Value = client
        .post(format!("{base}/checkout"))
        .json(
            &serde_json::json!({"provider": "toss", "pg_order_id": payment["pg_order_id"],
                                  "amount": payment["amount"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = checkout["payment_key"].as_str().unwrap().to_owned();
    // The gateway takes the money and its answer never comes.
    let faults = client
        .put(format!("{base}/faults"))
        .header("X-Sandbox-Key", crate::common::pay::SANDBOX_KEY)
        .json(
            &serde_json::json!({"provider": "toss", "charge_then_timeout_rate": 1.0,
                                  "hold_ms": 60000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), StatusCode::OK);
    let confirming = {
        let api = Api::new(api.addr);
        let (buyer, payment, key) = (buyer.clone(), payment.clone(), key.clone());
        tokio::spawn(async move { api.confirm(&buyer, &payment, &key, 250_000).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sandbox_charges(&base).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Act: the server dies with the charge taken and nothing committed; it starts again.
    server.kill_9().await;
    confirming.abort();
    let raw = db.raw().await;
    let status_at_death = raw
        .text(&format!("SELECT status FROM orders WHERE id = {order_id}"))
        .await;
    let server = ChildServer::start_with(&db, &env).await;

    // Assert: reconciliation finds the charge and the order is paid, once.
    assert_eq!(status_at_death, "pending_payment");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, read_back) = server
            .api
            .get(&format!("/api/v1/orders/{order_id}"), Some(&buyer))
            .await;
        if read_back["status"] == "paid" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {read_back}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, again) = server.api.confirm(&buyer, &payment, &key, 250_000).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("paid")),
        "{again}"
    );
    let charges = sandbox_charges(&base).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["status"], "paid");
    assert_eq!(
        raw.scalar(&format!("SELECT count(*) FROM outbox WHERE event_type = 'order.paid' AND aggregate_id = {order_id}")).await,
        1
    );
    server.kill_9().await;
}
