//! Orders per second written by [`Store::commit_orders`], batched and one order at a time.
//!
//! Every order is what a drop purchase writes: one order row, one line, one idempotency key and
//! one `order.created` outbox event, so each order is four rows. Throughput is counted in
//! orders; multiply by four for rows.
//!
//! - `postgres/*` runs in a fresh database `hurry_bench_<uuid>` created from `DATABASE_URL`
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped at the end; it is
//!   skipped with a message when PostgreSQL cannot be reached.
//! - `sqlite/*` runs on a file in a temporary folder, with the store's own settings (WAL,
//!   `synchronous = FULL`).
//!
//! Order ids come from [`Store::allocate_ids`] and the orders are built before the clock starts:
//! only the writes are timed. Run with `cargo bench -p hurry-persistence --bench batch_writer`;
//! the figures are in `BENCHMARKS.md`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, SamplingMode, Throughput};
use hurry_persistence::postgres::PgStore;
use hurry_persistence::{ConnectOptions, IdempotencyEntry, NewOrder, OrderLine, Store};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::runtime::Runtime;

/// Orders per batch, the writer's default `max_batch`.
const BATCH_SIZE: usize = 1024;

/// Concurrent batch commits, the writer's default `max_concurrent_commits` on PostgreSQL.
const NUM_CONCURRENT_BATCHES: usize = 4;

/// Concurrent one-order transactions, as a server without group commit would run them.
const NUM_CONCURRENT_SINGLES: usize = 16;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_postgres(&mut criterion, &runtime);
    bench_sqlite(&mut criterion, &runtime);
    criterion.final_summary();
}

fn bench_postgres(criterion: &mut Criterion, runtime: &Runtime) {
    let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let reached = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
    });
    let mut admin = match reached {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => {
            println!("skipping the PostgreSQL benches: cannot connect to {admin_url}: {err}");
            return;
        }
        Err(_) => {
            println!("skipping the PostgreSQL benches: {admin_url} did not answer in 5 s");
            return;
        }
    };
    let database = format!("hurry_bench_{}", uuid::Uuid::new_v4().simple());
    runtime
        .block_on(admin.execute(format!("CREATE DATABASE {database}").as_str()))
        .expect("create the bench database");
    let options = ConnectOptions::new(
        with_database(&admin_url, &database),
        u32::try_from(NUM_CONCURRENT_SINGLES).unwrap_or(16) + 2,
    );
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let store = runtime
            .block_on(PgStore::connect(&options))
            .expect("connect to the bench database");
        run_postgres_group(criterion, runtime, &store);
        runtime.block_on(store.pool().close());
    }));
    let dropped = runtime.block_on(
        admin.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str()),
    );
    if let Err(err) = dropped {
        println!("could not drop the bench database {database}: {err}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn run_postgres_group(criterion: &mut Criterion, runtime: &Runtime, store: &PgStore) {
    let pool = store.pool().clone();
    let store: Arc<dyn Store> = Arc::new(store.clone());
    let mut group = criterion.benchmark_group("postgres");
    // Some of these take a good part of a second per iteration.
    group.sampling_mode(SamplingMode::Flat);

    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/batch_1024",
        BATCH_SIZE,
        1,
    );
    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/batch_1024_x4_concurrent",
        BATCH_SIZE,
        NUM_CONCURRENT_BATCHES,
    );
    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/one_order_per_tx",
        1,
        1,
    );
    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/one_order_per_tx_x16_concurrent",
        1,
        NUM_CONCURRENT_SINGLES,
    );

    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function("row_by_row/one_tx_1024", |bencher| {
        bencher.iter_custom(|iters| {
            runtime.block_on(async {
                let batches = prepare(store.as_ref(), num_iters(iters), BATCH_SIZE).await;
                let started = Instant::now();
                for batch in &batches {
                    insert_row_by_row(&pool, batch)
                        .await
                        .expect("row-by-row insert");
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn bench_sqlite(criterion: &mut Criterion, runtime: &Runtime) {
    let folder = tempfile::tempdir().expect("temporary folder");
    let options = ConnectOptions::new(
        format!("sqlite://{}", folder.path().join("bench.db").display()),
        4,
    );
    let store = runtime
        .block_on(hurry_persistence::connect(&options))
        .expect("open the SQLite store");
    let mut group = criterion.benchmark_group("sqlite");
    group.sampling_mode(SamplingMode::Flat);
    // The SQLite backend writes a batch as prepared inserts in one transaction, so the batch
    // *is* the row-by-row transaction here; one writer at a time, so no concurrent variants.
    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/batch_1024",
        BATCH_SIZE,
        1,
    );
    bench_commits(
        &mut group,
        runtime,
        &store,
        "commit_orders/one_order_per_tx",
        1,
        1,
    );
    group.finish();
}

/// Times `commit_orders` on batches of `batch_size` orders, `concurrency` commits at a time;
/// one iteration is `concurrency` batches.
fn bench_commits(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    store: &Arc<dyn Store>,
    name: &str,
    batch_size: usize,
    concurrency: usize,
) {
    group.throughput(Throughput::Elements((batch_size * concurrency) as u64));
    group.bench_function(name, |bencher| {
        bencher.iter_custom(|iters| {
            runtime.block_on(async {
                let num_batches = num_iters(iters) * concurrency;
                let batches = prepare(store.as_ref(), num_batches, batch_size).await;
                commit_all(store, batches, concurrency).await
            })
        });
    });
}

fn num_iters(iters: u64) -> usize {
    usize::try_from(iters).expect("iteration count fits in memory")
}

/// `num_batches` batches of `batch_size` new orders with ids from the store, built untimed.
async fn prepare(store: &dyn Store, num_batches: usize, batch_size: usize) -> Vec<Vec<NewOrder>> {
    let count = u32::try_from(num_batches * batch_size).expect("fewer than 2^32 orders");
    let first_id = store
        .allocate_ids("orders", count)
        .await
        .expect("allocate order ids");
    let now = hurry_persistence::now_micros();
    let mut ids = first_id..;
    (0..num_batches)
        .map(|_| {
            (&mut ids)
                .take(batch_size)
                .map(|id| purchase_order(id, now))
                .collect()
        })
        .collect()
}

/// The order a drop purchase writes: one line, an idempotency key, due in ten minutes.
fn purchase_order(id: i64, now: chrono::DateTime<Utc>) -> NewOrder {
    let unit_price = 189_000;
    NewOrder {
        id,
        // Distinct users, so the idempotency keys never clash.
        user_id: id,
        status: "pending_payment".into(),
        amount: unit_price,
        payment_due_at: Some(now + chrono::Duration::minutes(10)),
        created_at: now,
        lines: vec![OrderLine {
            item_id: 1,
            quantity: 1,
            unit_price,
            amount: unit_price,
        }],
        idempotency: Some(IdempotencyEntry {
            key: format!("bench-{id}"),
            request_hash: "0".repeat(64),
        }),
    }
}

/// Commits `batches` from `concurrency` tasks; returns the time from the first to the last.
async fn commit_all(
    store: &Arc<dyn Store>,
    batches: Vec<Vec<NewOrder>>,
    concurrency: usize,
) -> Duration {
    let mut lanes: Vec<Vec<Vec<NewOrder>>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (index, batch) in batches.into_iter().enumerate() {
        lanes[index % concurrency].push(batch);
    }
    let started = Instant::now();
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in lane {
                    store.commit_orders(&batch).await.expect("commit a batch");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a committing task panicked");
    }
    started.elapsed()
}

/// The baseline: the same four rows per order as `commit_orders`, one `INSERT` per row, all in
/// one transaction.
async fn insert_row_by_row(pool: &PgPool, orders: &[NewOrder]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for order in orders {
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, amount, payment_due_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(order.id)
        .bind(order.user_id)
        .bind(&order.status)
        .bind(order.amount)
        .bind(order.payment_due_at)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await?;
        for (line_no, line) in (1_i32..).zip(&order.lines) {
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order.id)
            .bind(line_no)
            .bind(line.item_id)
            .bind(line.quantity)
            .bind(line.unit_price)
            .bind(line.amount)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(entry) = &order.idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, order_id, created_at) \
                 VALUES ($1, $2, $3, 201, $4, now())",
            )
            .bind(order.user_id)
            .bind(&entry.key)
            .bind(&entry.request_hash)
            .bind(order.id)
            .execute(&mut *tx)
            .await?;
        }
        let payload = serde_json::json!({
            "order_id": order.id,
            "user_id": order.user_id,
            "status": order.status,
            "amount": order.amount,
            "lines": order.lines.iter().map(|line| serde_json::json!({
                "item_id": line.item_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
            })).collect::<Vec<_>>(),
        });
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             VALUES ($1, 'order.created', 1, $2, $3, $4::jsonb)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(order.id)
        .bind(order.created_at)
        .bind(payload.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// `url` with its database name replaced by `database` (query parameters kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
