//! The server as a child process, killed with SIGKILL in the middle of a drop and restarted on
//! the same database: nothing acknowledged is lost (I2), nothing is oversold (I1), retries with
//! the same key get the same order (I5), and the restarted node sells exactly what is left.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Api, Store, TestDb, ADMIN_EMAIL, ADMIN_PASSWORD};
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::process::{Child, Command};

/// The `hurry` binary serving `db` on a free port.
struct ChildServer {
    child: Child,
    api: Api,
}

impl ChildServer {
    async fn start(db: &TestDb) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/test.toml");
        let child = Command::new(env!("CARGO_BIN_EXE_hurry"))
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
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start hurry");
        let api = Api::new(format!("127.0.0.1:{port}").parse().unwrap());
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

both_stores!(heavy_kill_9_mid_drop_keeps_every_acknowledged_order);
