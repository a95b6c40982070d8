//! The load-test harness against real servers: a small drop end to end (load, audit, report
//! files), the audit catching a tampered store, and `compare` starting one `hurry` process per
//! stock strategy.

use std::time::Duration;

use crate::common::*;
use hurry_loadtest::client::{http_client, Api};
use hurry_loadtest::compare::{self, CompareArgs};
use hurry_loadtest::drop_run::{self, DropArgs};
use hurry_loadtest::schedule::{ArrivalModel, KeyPolicy};

both_stores!(
    a_small_drop_passes_the_audit_and_writes_its_report,
    the_audit_catches_a_tampered_store,
    a_paid_drop_through_a_faulty_gateway_charges_exactly_the_paid_orders,
);

const ON: &str = "[loadtest]\nprovisioning_enabled = true\n";

fn small_drop(target: String, out: &std::path::Path) -> DropArgs {
    DropArgs {
        target: vec![target],
        admin_email: ADMIN_EMAIL.to_owned(),
        admin_password: ADMIN_PASSWORD.to_owned(),
        shoppers: 300,
        units: 50,
        per_user_limit: 1,
        quantity: 1,
        arrival: ArrivalModel::Burst,
        rate: Some(200.0),
        duration: 2.0,
        connections: 16,
        retry_share: 0.1,
        keys: KeyPolicy::All,
        retry_after_ms: 5,
        burst_share: 0.5,
        settle_secs: 30.0,
        out: out.to_owned(),
        quiet: true,
        // The server runs in this process: its CPU is measured with the harness's.
        server_pid: Some(std::process::id()),
        checkpoint_url: None,
        idle_max_secs: 5.0,
        pay: false,
        pg_faults: Vec::new(),
        sandbox: None,
        pay_settle_secs: 30.0,
    }
}

async fn a_small_drop_passes_the_audit_and_writes_its_report(store: Store) {
    // Arrange
    let app = TestApp::spawn_with(store, &[ON]).await;
    let out = tempfile::tempdir().unwrap();
    let args = small_drop(format!("http://{}", app.api.addr), out.path());

    // Act
    let report = drop_run::run(&args).await.expect("the drop runs");
    let (json, html) = report.write(out.path()).unwrap();

    // Assert: 400 attempts and 40 retries for 50 units; every unit sold once.
    assert!(report.audit.passed(), "{:?}", report.audit.violations);
    assert!(report.audit.checked_i3);
    assert_eq!(report.summary.attempts, 440);
    assert_eq!(report.audit.sold, 50);
    assert_eq!(report.audit.acknowledged, 50);
    let cpu = report.cpu_per_sale.as_ref().expect("measured from /proc");
    assert_eq!(cpu.units_sold, 50);
    assert!(cpu.server_us.is_some_and(|us| us > 0.0), "{cpu:?}");
    assert!(cpu.total_us >= cpu.server_us, "{cpu:?}");
    assert_eq!(report.audit.retried_pairs, 40);
    let raw = app.db.raw().await;
    let (units, orders, buyers, most) = raw.sales_of(report.config.item_id).await;
    assert_eq!((units, orders, buyers, most), (50, 50, 50, 1));
    assert_eq!(report.summary.units_sold, 50);
    let s = &report.summary;
    assert!(s.last_sale_s > 0.0 && s.last_sale_s <= s.elapsed_s, "{s:?}");
    assert!((s.sales_per_s - 50.0 / s.last_sale_s).abs() < 1e-6);
    // The harness measured itself while the load ran (Linux: /proc; here the server runs in
    // the same process, so it is counted too). Ticks are 10 ms: allow that much over 100 %.
    let instrument = report.instrument.expect("the harness's CPU use");
    assert!(instrument.cpu_s > 0.0, "{instrument:?}");
    assert!(
        instrument.machine_share > 0.0 && instrument.machine_share <= 1.05,
        "{instrument:?}"
    );
    let keyed = raw.scalar("SELECT COUNT(*) FROM idempotency_keys").await;
    assert_eq!(keyed, 50, "--keys all: every order was bought under a key");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(json["audit"]["violations"].as_array().unwrap().len(), 0);
    assert_eq!(json["config"]["strategy"], "actor");
    let html = std::fs::read_to_string(html).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
}

async fn a_paid_drop_through_a_faulty_gateway_charges_exactly_the_paid_orders(store: Store) {
    // Arrange
    let app = TestApp::spawn_with(store, &[ON]).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = small_drop(format!("http://{}", app.api.addr), out.path());
    args.pay = true;
    args.pg_faults = vec![
        r#"{"provider": "toss", "error_rate": 0.4, "timeout_rate": 0.1, "hold_ms": 3000}"#.into(),
        r#"{"provider": "nice", "decline_rate": 0.2}"#.into(),
    ];

    // Act
    let report = drop_run::run(&args).await.expect("the drop runs");

    // Assert
    assert!(report.audit.passed(), "{:?}", report.audit.violations);
    let payments = report.payments.as_ref().expect("the payment phase");
    assert_eq!(payments.attempted, 50, "every order of the drop");
    assert_eq!(
        payments.outcomes.get("gave_up"),
        None,
        "{:?}",
        payments.outcomes
    );
    let answered: usize = payments.outcomes.values().sum();
    assert_eq!(answered, 50);
    let raw = app.db.raw().await;
    let paid = raw
        .scalar("SELECT count(*) FROM orders WHERE status = 'paid'")
        .await;
    assert_eq!(payments.paid_orders as i64, paid);
    assert_eq!(
        payments.charged.values().sum::<usize>() as i64,
        paid,
        "{payments:?}"
    );
    assert!(paid > 0 && paid < 50, "some declined: {payments:?}");
    // The declined ones gave their units back (I3, checked after the payments, holds); the
    // ones still held are paid or waiting for reconciliation.
    assert!(report.audit.checked_i3);
    assert!(
        report.audit.sold >= paid && report.audit.sold < 50,
        "{}",
        report.audit.sold
    );
    assert!(
        report.text().contains("payments: 50 orders"),
        "{}",
        report.text()
    );
}

async fn the_audit_catches_a_tampered_store(store: Store) {
    // Arrange: a clean run, then an extra unit for a buyer who already holds one.
    let app = TestApp::spawn_with(store, &[ON]).await;
    let out = tempfile::tempdir().unwrap();
    let base = format!("http://{}", app.api.addr);
    let mut args = small_drop(base.clone(), out.path());
    args.rate = Some(100.0);
    args.retry_share = 0.0;
    args.keys = KeyPolicy::Retried;
    let report = drop_run::run(&args).await.expect("the drop runs");
    assert!(report.audit.passed(), "{:?}", report.audit.violations);
    let item = report.config.item_id;
    let raw = app.db.raw().await;
    let keyed = raw.scalar("SELECT COUNT(*) FROM idempotency_keys").await;
    assert_eq!(keyed, 0, "--keys retried without retries: no keys sent");
    let buyer = raw
        .scalar(&format!(
            "SELECT MIN(o.user_id) FROM orders o JOIN order_lines l ON l.order_id = o.id \
             WHERE l.item_id = {item}"
        ))
        .await;
    raw.execute(&format!(
        "INSERT INTO orders (id, user_id, status, amount, created_at, updated_at) \
         VALUES (999999, {buyer}, 'pending_payment', 1000, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP); \
         INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
         VALUES (999999, 0, {item}, 1, 1000, 1000)"
    ))
    .await;

    // Act
    let api = Api::new(http_client(1).unwrap(), &base);
    let admin = api.admin_token(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let view = api.drop_view(&admin, item).await.unwrap();
    let outcomes = Vec::new();
    let audit = hurry_loadtest::audit::audit(&outcomes, &[], &view, true);

    // Assert
    let broken: Vec<&str> = audit.violations.iter().map(|v| v.invariant).collect();
    assert!(broken.contains(&"I1"), "{broken:?}");
    assert!(broken.contains(&"I4"), "{broken:?}");
    assert!(broken.contains(&"I3"), "{broken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_starts_a_server_per_strategy_and_audits_each() {
    // Arrange
    let db = TestDb::create(Store::Postgres).await;
    let redis = RedisPrefix::new();
    let out = tempfile::tempdir().unwrap();
    let mut small = small_drop(String::new(), out.path());
    small.shoppers = 200;
    small.units = 40;
    small.rate = Some(150.0);
    small.duration = 1.0;
    // compare knows the pids of the servers it starts.
    small.server_pid = None;
    let args = CompareArgs {
        drop: small,
        strategies: compare::STRATEGIES.iter().map(|s| s.to_string()).collect(),
        servers: Vec::new(),
        server_bin: Some(env!("CARGO_BIN_EXE_hurry").into()),
        database_url: db.url.clone(),
        redis_url: redis_url(),
        redis_prefix: redis.prefix.clone(),
        rounds: 2,
    };

    // Act
    let reports = tokio::time::timeout(Duration::from_secs(120), compare::run(&args))
        .await
        .expect("compare finishes")
        .expect("compare runs");

    // Assert
    let rows = compare::rows(&reports);
    let names: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
    assert_eq!(names, compare::STRATEGIES);
    for (strategy, report) in &reports {
        assert_eq!(report.config.strategy.as_deref(), Some(strategy.as_str()));
        assert!(
            report.audit.passed(),
            "{strategy}: {:?}",
            report.audit.violations
        );
        assert_eq!(report.audit.sold, 40, "{strategy}");
        let cpu = report.cpu_per_sale.as_ref().expect("measured");
        assert!(
            cpu.server_us.is_some_and(|us| us > 0.0),
            "{strategy}: the started server's CPU per sale: {cpu:?}"
        );
    }
    let ran: Vec<&str> = reports.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        ran,
        [
            "actor",
            "redis_lua",
            "pg_row",
            "redis_lua",
            "pg_row",
            "actor"
        ],
        "the second round starts one place further down"
    );
    for (round, strategy) in [(1, "actor"), (2, "actor"), (1, "pg_row"), (2, "redis_lua")] {
        let html = out
            .path()
            .join(format!("round-{round}/{strategy}/report.html"));
        assert!(html.is_file(), "{}", html.display());
    }
    assert!(rows.iter().all(|row| row.rounds == 2), "{rows:?}");
    let name = db.url.rsplit('/').next().unwrap();
    let left = db
        .raw()
        .await
        .scalar(&format!(
            "SELECT COUNT(*) FROM pg_database WHERE datname LIKE '{name}\\_%'"
        ))
        .await;
    assert_eq!(left, 0, "every run's own database is dropped after it");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.is_empty(),
        "every run's Redis keys are deleted: {keys:?}"
    );
    let table = compare::table(&rows);
    assert!(
        table.contains("redis_lua") && table.contains("pg_row"),
        "{table}"
    );
    drop(redis);
}
