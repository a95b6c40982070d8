//! The comparison stock strategies (`engine.stock_strategy = redis_lua | pg_row`) over real
//! HTTP: exact counts under concurrency, per-user limits, idempotency, the actor's refusals,
//! compensation of a failed insert, and the load-test audit of a drop (also with the actor).

use std::collections::{HashMap, HashSet};

use crate::common::*;
use chrono::Utc;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PROVISIONING_ON: &str = "[loadtest]\nprovisioning_enabled = true\n";
const REDIS_LUA: &str = "[engine]\nstock_strategy = \"redis_lua\"\n";
const PG_ROW: &str = "[engine]\nstock_strategy = \"pg_row\"\n";

/// A comparison strategy and the store under it.
#[derive(Debug, Clone, Copy)]
enum Setup {
    RedisLuaOnPostgres,
    PgRowOnPostgres,
    PgRowOnSqlite,
}

impl Setup {
    /// `engine.stock_strategy` as the audit names it.
    fn strategy(self) -> &'static str {
        match self {
            Setup::RedisLuaOnPostgres => "redis_lua",
            Setup::PgRowOnPostgres | Setup::PgRowOnSqlite => "pg_row",
        }
    }

    /// A server with this strategy, load-test routes on, and `layers`.
    async fn spawn(self, layers: &[&str]) -> TestApp {
        let mut all = vec![PROVISIONING_ON];
        all.extend_from_slice(layers);
        match self {
            Setup::RedisLuaOnPostgres => {
                all.push(REDIS_LUA);
                TestApp::spawn_on(Store::Postgres, Bus::Redis, None, &all).await
            }
            Setup::PgRowOnPostgres => {
                all.push(PG_ROW);
                TestApp::spawn_with(Store::Postgres, &all).await
            }
            Setup::PgRowOnSqlite => {
                all.push(PG_ROW);
                TestApp::spawn_with(Store::Sqlite, &all).await
            }
        }
    }
}

/// Runs each scenario `fn(Setup)` for every setup, as `<name>::redis_lua_on_postgres`,
/// `<name>::pg_row_on_postgres` and `<name>::pg_row_on_sqlite`.
macro_rules! every_setup {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_lua_on_postgres() {
                    super::$name(super::Setup::RedisLuaOnPostgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn pg_row_on_postgres() {
                    super::$name(super::Setup::PgRowOnPostgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn pg_row_on_sqlite() {
                    super::$name(super::Setup::PgRowOnSqlite).await
                }
            }
        )*
    };
}

every_setup!(
    heavy_300_buyers_some_trying_twice_get_the_50_units_once_each,
    refusals_match_the_actors_codes,
    a_failed_insert_answers_503_and_gives_the_units_back,
);

both_stores!(
    the_audit_is_admin_only_and_off_unless_provisioning_is_on,
    the_audit_of_the_actor_counts_the_actors_units,
);

/// `count` load-test shoppers: `(user id, token)`.
async fn shoppers(app: &TestApp, admin: &str, count: usize) -> Vec<(i64, String)> {
    let (status, body) = app
        .post(
            "/api/v1/admin/loadtest/shoppers",
            Some(admin),
            json!({ "count": count }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["shoppers"]
        .as_array()
        .expect("shoppers")
        .iter()
        .map(|shopper| {
            (
                shopper["user_id"].as_i64().expect("user_id"),
                shopper["access_token"].as_str().expect("token").to_owned(),
            )
        })
        .collect()
}

/// `GET /admin/loadtest/drops/{item}`.
async fn audit(app: &TestApp, token: &str, item: i64) -> (StatusCode, Value) {
    app.get(&format!("/api/v1/admin/loadtest/drops/{item}"), Some(token))
        .await
}

async fn heavy_300_buyers_some_trying_twice_get_the_50_units_once_each(setup: Setup) {
    // Arrange: 50 units, 1 per user; 300 buyers, the first 100 of them try twice (their two
    // attempts side by side, first in line, so a broken limit would show).
    let app = setup.spawn(&[]).await;
    let admin = app.admin_token().await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 50, 1).await;
    let buyers = shoppers(&app, &admin, 300).await;
    let attempts: Vec<(i64, String, String)> = buyers
        .iter()
        .enumerate()
        .flat_map(|(index, (user, token))| {
            let tries = if index < 100 { 2 } else { 1 };
            (0..tries).map(move |attempt| (*user, token.clone(), format!("try-{attempt}-{user}")))
        })
        .collect();

    // Act
    let app_ref = &app;
    let outcomes: Vec<(i64, String, String, StatusCode, Value)> = futures::stream::iter(attempts)
        .map(|(user, token, key)| async move {
            let (status, body) = app_ref.purchase(&token, item, 1, Some(&key)).await;
            (user, token, key, status, body)
        })
        .buffer_unordered(400)
        .collect()
        .await;

    // Assert
    let created: Vec<_> = outcomes
        .iter()
        .filter(|outcome| outcome.3 == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 50, "exactly the drop's units are sold");
    let winners: HashSet<i64> = created.iter().map(|outcome| outcome.0).collect();
    assert_eq!(winners.len(), 50, "no user bought twice");
    for (_, _, _, status, body) in &outcomes {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(code == "sold_out" || code == "limit_reached", "{body}");
        }
    }
    let key_of: HashMap<i64, (i64, &str)> = created
        .iter()
        .map(|(user, _, key, _, body)| (body["id"].as_i64().expect("id"), (*user, key.as_str())))
        .collect();
    let raw = app.db.raw().await;
    let stored: HashSet<i64> = raw.order_ids().await.into_iter().collect();
    let acknowledged: HashSet<i64> = key_of.keys().copied().collect();
    assert_eq!(acknowledged, stored, "every 201 is stored, nothing else");
    assert_eq!(raw.sales_of(item).await, (50, 50, 50, 1));

    // A retry under a key that bought replays the same order, and buys nothing more.
    let (_, token, key, _, first_body) = created[0];
    let (status, replay) = app.purchase(token, item, 1, Some(key)).await;
    assert_eq!(status, StatusCode::CREATED, "{replay}");
    assert_eq!(&replay, first_body, "the same order");
    assert_eq!(raw.order_ids().await.len(), 50);

    // The audit shows exactly those orders, and nothing left to sell.
    let (status, body) = audit(&app, &admin, item).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["item_id"], item);
    assert_eq!(body["strategy"], setup.strategy());
    assert_eq!(
        (
            body["total_units"].as_i64(),
            body["per_user_limit"].as_i64()
        ),
        (Some(50), Some(1))
    );
    assert_eq!(body["available"], 0);
    let orders = body["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 50);
    for order in orders {
        let id = order["id"].as_i64().expect("id");
        let (user, key) = key_of[&id];
        assert_eq!(order["user_id"], user, "{order}");
        assert_eq!(order["idempotency_key"], key, "{order}");
        assert_eq!(order["quantity"], 1, "{order}");
        assert_eq!(order["status"], "pending_payment", "{order}");
    }
    if let Some(prefix) = &app.redis {
        assert_eq!(
            redis_get(&format!("{}strategy:stock:{{{item}}}", prefix.prefix)).await,
            Some(0),
            "the counter lives under the configured prefix"
        );
    }
}

/// The integer at `key` in the test Redis.
async fn redis_get(key: &str) -> Option<i64> {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET")
}

async fn refusals_match_the_actors_codes(setup: Setup) {
    // Arrange
    let app = setup.spawn(&[]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (buyer_id, buyer) = app.new_user("buyer@hurry.test").await;
    let (_, other) = app.new_user("other@hurry.test").await;
    let now = Utc::now();
    let later = app
        .create_drop_at(
            &seller,
            5,
            1,
            now + chrono::Duration::hours(1),
            now + chrono::Duration::hours(2),
        )
        .await;
    let item = app.open_drop(&seller, 3, 2).await;
    let general = app.general_item(&seller, "mug", 500, 10).await;

    // Act
    let not_open = app.purchase(&buyer, later, 1, None).await;
    let unknown = app.purchase(&buyer, item + 1_000, 1, None).await;
    let not_a_drop = app.purchase(&buyer, general, 1, None).await;
    let first = app.purchase(&buyer, item, 2, Some("buy-1")).await;
    let over_limit = app.purchase(&buyer, item, 1, None).await;
    let mismatch = app.purchase(&buyer, item, 1, Some("buy-1")).await;
    let too_many = app.purchase(&other, item, 2, None).await;
    let last = app.purchase(&other, item, 1, None).await;
    let sold_out = app.purchase(&other, item, 1, None).await;

    // Assert
    assert_error(not_open.0, &not_open.1, 409, "drop_not_open");
    assert_error(unknown.0, &unknown.1, 404, "not_found");
    assert_error(not_a_drop.0, &not_a_drop.1, 409, "not_a_drop");
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    assert_eq!(first.1["user_id"], buyer_id);
    assert_eq!(first.1["status"], "pending_payment");
    assert_eq!(first.1["amount"], 2_000);
    assert_error(over_limit.0, &over_limit.1, 409, "limit_reached");
    assert_error(mismatch.0, &mismatch.1, 422, "idempotency_mismatch");
    assert_error(too_many.0, &too_many.1, 409, "insufficient_stock");
    assert_eq!(last.0, StatusCode::CREATED, "{}", last.1);
    assert_error(sold_out.0, &sold_out.1, 409, "sold_out");
    let raw = app.db.raw().await;
    assert_eq!(raw.sales_of(item).await, (3, 2, 2, 2));
    assert_eq!(raw.sales_of(later).await.0, 0);
}

async fn a_failed_insert_answers_503_and_gives_the_units_back(setup: Setup) {
    // Arrange: every order insert fails until the trigger is dropped.
    let app = setup.spawn(&[]).await;
    let admin = app.admin_token().await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 4, 4).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let raw = app.db.raw().await;
    let postgres = !matches!(setup, Setup::PgRowOnSqlite);
    raw.execute(if postgres {
        "CREATE FUNCTION fail_orders() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
         CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
         FOR EACH ROW EXECUTE FUNCTION fail_orders();"
    } else {
        "CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
    })
    .await;

    // Act
    let failed =
        futures::future::join_all((0..4).map(|_| app.purchase(&buyer, item, 1, None))).await;
    let (_, during) = audit(&app, &admin, item).await;
    raw.execute(if postgres {
        "DROP TRIGGER fail_orders ON orders"
    } else {
        "DROP TRIGGER fail_orders"
    })
    .await;
    let recovered =
        futures::future::join_all((0..4).map(|_| app.purchase(&buyer, item, 1, None))).await;

    // Assert
    for (status, body) in &failed {
        assert_error(*status, body, 503, "unavailable");
    }
    assert_eq!(during["available"], 4, "the units went back: {during}");
    assert_eq!(during["orders"], json!([]));
    for (status, body) in &recovered {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(raw.sales_of(item).await, (4, 4, 1, 4));
    let (_, after) = audit(&app, &admin, item).await;
    assert_eq!(after["available"], 0, "{after}");
}

async fn the_audit_is_admin_only_and_off_unless_provisioning_is_on(store: Store) {
    // Arrange
    let off = TestApp::spawn(store).await;
    let on = TestApp::spawn_with(store, &[PROVISIONING_ON]).await;
    let mut items = Vec::new();
    for app in [&off, &on] {
        let (_, seller) = app.seller("seller@hurry.test").await;
        items.push((
            app.open_drop(&seller, 5, 1).await,
            app.general_item(&seller, "mug", 500, 10).await,
        ));
    }
    let (off_admin, on_admin) = (off.admin_token().await, on.admin_token().await);
    let (_, customer) = on.new_user("customer@hurry.test").await;
    let (drop_on, general_on) = items[1];

    // Act
    let when_off = audit(&off, &off_admin, items[0].0).await;
    let as_customer = audit(&on, &customer, drop_on).await;
    let anonymous = on
        .get(&format!("/api/v1/admin/loadtest/drops/{drop_on}"), None)
        .await;
    let unknown = audit(&on, &on_admin, drop_on + 1_000).await;
    let general = audit(&on, &on_admin, general_on).await;
    let fine = audit(&on, &on_admin, drop_on).await;

    // Assert
    assert_error(when_off.0, &when_off.1, 404, "not_found");
    assert_error(as_customer.0, &as_customer.1, 403, "forbidden");
    assert_error(anonymous.0, &anonymous.1, 401, "unauthorized");
    assert_error(unknown.0, &unknown.1, 404, "not_found");
    assert_error(general.0, &general.1, 404, "not_found");
    assert_eq!(fine.0, StatusCode::OK, "{}", fine.1);
}

async fn the_audit_of_the_actor_counts_the_actors_units(store: Store) {
    // Arrange
    // No relay: every event stays unpublished, so the backlog is known.
    let relay_off = "[events]\nrelay_enabled = false\n";
    let app = TestApp::spawn_with(store, &[PROVISIONING_ON, relay_off]).await;
    let admin = app.admin_token().await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 10, 3).await;
    let (buyer_id, buyer) = app.new_user("buyer@hurry.test").await;
    let (status, bought) = app.purchase(&buyer, item, 3, Some("actor-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{bought}");
    let events = app
        .db
        .raw()
        .await
        .scalar("SELECT COUNT(*) FROM outbox")
        .await;

    // Act
    let (status, body) = audit(&app, &admin, item).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "item_id": item,
            "strategy": "actor",
            "total_units": 10,
            "per_user_limit": 3,
            "available": 7,
            "outbox_backlog": events,
            "orders": [{
                "id": bought["id"],
                "user_id": buyer_id,
                "quantity": 3,
                "status": "pending_payment",
                "idempotency_key": "actor-1",
            }],
        })
    );
}

#[tokio::test]
async fn redis_lua_without_a_redis_url_refuses_to_start() {
    // Arrange
    let db = TestDb::create(Store::Sqlite).await;
    let settings = test_settings(&db, &[REDIS_LUA]);

    // Act
    let built = hurry_api::startup::Application::build(settings).await;

    // Assert
    let err = built.err().expect("no server without redis.url");
    assert!(format!("{err:#}").contains("redis.url"), "{err:#}");
}
