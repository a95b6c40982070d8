//! Throughput of the outbox relay and end-to-end lag of the event flow.
//!
//! Two measurements per setup (SQLite + in-process bus, PostgreSQL + in-process bus,
//! PostgreSQL + Redis Streams):
//!
//! 1. **Relay throughput**: 100,000 `order.created` rows waiting in the outbox; the relay
//!    publishes them all (passes of `relay_batch`); events per second.
//! 2. **Lag**: orders committed at a steady rate (batches every 5 ms) while the relay and the
//!    ledger consumer run, woken as the server wakes them; for every event, the time from its
//!    commit to the end of the consumer's transaction that had its effect; p50, p99, max.
//!    The baseline, in the same run: PostgreSQL + Redis with the relay left to poll (every
//!    100 ms) instead of being woken by commits.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, a
//! throw-away database is created and dropped) and Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`, keys under a random prefix, deleted afterwards). Run with
//! `cargo run --release -p hurry-engine --example event_flow`; figures go in BENCHMARKS.md.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use hurry_engine::events::{
    spawn_consumer, Consumer, ConsumerConfig, ConsumerError, EventBus, LedgerConsumer, LocalBus,
    OutboxRelay, RedisBus, RelayConfig,
};
use hurry_persistence::{connect, ConnectOptions, Event, NewItem, NewOrder, NewUser, OrderLine};
use sqlx::Connection;
use tokio::sync::Notify;

const BACKLOG: i64 = 100_000;
const RATE_PER_SEC: u64 = 2_000;
const LAG_SECONDS: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pg_admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    println!("setup                      relay events/s   lag p50    lag p99    lag max   (rate {RATE_PER_SEC}/s for {LAG_SECONDS}s)");
    for setup in [
        Setup::SqliteLocal,
        Setup::PostgresLocal,
        Setup::PostgresRedis,
        Setup::PostgresRedisPolling,
    ] {
        let (relay_rate, lags) = run(setup, &pg_admin, &redis_url).await?;
        println!(
            "{:<26} {:>14.0}   {:>8}   {:>8}   {:>8}",
            setup.name(),
            relay_rate,
            fmt(percentile(&lags, 0.50)),
            fmt(percentile(&lags, 0.99)),
            fmt(percentile(&lags, 1.0)),
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Setup {
    SqliteLocal,
    PostgresLocal,
    PostgresRedis,
    /// The baseline: the same, but the relay is not woken by commits and polls every 100 ms.
    PostgresRedisPolling,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::SqliteLocal => "sqlite + in-process bus",
            Setup::PostgresLocal => "postgres + in-process bus",
            Setup::PostgresRedis => "postgres + redis streams",
            Setup::PostgresRedisPolling => "  same, relay polling only",
        }
    }
}

fn fmt(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    sorted[index]
}

/// A fresh database for one setup; dropped at the end.
struct Database {
    url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    async fn create(setup: Setup, pg_admin: &str) -> anyhow::Result<Self> {
        if let Setup::SqliteLocal = setup {
            let dir = tempfile::tempdir()?;
            return Ok(Self {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                admin: None,
                _dir: Some(dir),
            });
        }
        let name = format!("hurry_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(pg_admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(base, _)| base);
        Ok(Self {
            url: format!("{base}/{name}"),
            admin: Some((pg_admin.to_owned(), name)),
            _dir: None,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = self.admin {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}

/// The ledger consumer, timing each event from its commit to the end of its effect.
struct Timed {
    inner: LedgerConsumer,
    lags: Arc<Mutex<Vec<Duration>>>,
}

#[async_trait]
impl Consumer for Timed {
    fn group(&self) -> &'static str {
        self.inner.group()
    }

    fn topics(&self) -> &'static [&'static str] {
        self.inner.topics()
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        self.inner.handle(events).await?;
        let now = Utc::now();
        let mut lags = self.lags.lock().unwrap();
        for event in events {
            lags.push((now - event.occurred_at).to_std().unwrap_or_default());
        }
        Ok(())
    }
}

fn order(id: i64, item_id: i64) -> NewOrder {
    NewOrder {
        id,
        user_id: 1,
        status: "pending_payment".to_owned(),
        amount: 1_000,
        payment_due_at: None,
        created_at: Utc::now(),
        lines: vec![OrderLine {
            item_id,
            quantity: 1,
            unit_price: 1_000,
            amount: 1_000,
        }],
        idempotency: None,
    }
}

async fn run(
    setup: Setup,
    pg_admin: &str,
    redis_url: &str,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let database = Database::create(setup, pg_admin).await?;
    let store = connect(&ConnectOptions::new(database.url.clone(), 8))
        .await
        .context("connect")?;
    let prefix = format!("bench-{}:", uuid::Uuid::new_v4().simple());
    let bus: Arc<dyn EventBus> = match setup {
        Setup::PostgresRedis | Setup::PostgresRedisPolling => {
            Arc::new(RedisBus::new(redis_url, &prefix, 1_000_000)?)
        }
        _ => Arc::new(LocalBus::new()),
    };
    let seller = store
        .create_user(&NewUser {
            id: store.allocate_ids("users", 1).await?,
            email: "seller".into(),
            email_index: "seller".into(),
            password_hash: "x".into(),
            name: "seller".into(),
            phone: None,
            address: None,
            email_verified: true,
            extra_roles: vec!["seller".into()],
            verification: None,
        })
        .await?;
    let item = store
        .create_item(&NewItem {
            seller_id: seller.id,
            name: "bench".into(),
            description: String::new(),
            price: 1_000,
            stock: 1_000_000,
            drop: None,
        })
        .await?;
    let config = RelayConfig {
        batch: 512,
        shards: match setup {
            Setup::SqliteLocal => 1,
            _ => 8,
        },
        poll_interval: Duration::from_millis(100),
        min_interval: Duration::ZERO,
        max_backoff: Duration::from_secs(1),
        retention: Duration::from_secs(3600),
        prune_interval: Duration::from_secs(3600),
    };

    // 1. Relay throughput over a backlog (no consumer: only the relay is timed).
    let mut next_id = 1;
    while next_id <= BACKLOG {
        let orders: Vec<NewOrder> = (next_id..next_id + 1_000)
            .map(|id| order(id, item.id))
            .collect();
        store.commit_orders(&orders).await?;
        next_id += 1_000;
    }
    let throughput_bus: Arc<dyn EventBus> = match setup {
        Setup::PostgresRedis | Setup::PostgresRedisPolling => bus.clone(),
        _ => Arc::new(LocalBus::new()),
    };
    let relay = OutboxRelay::new(
        store.clone(),
        throughput_bus,
        Arc::new(Notify::new()),
        config.clone(),
    );
    let started = Instant::now();
    let mut published = 0;
    while store.outbox_backlog().await? > 0 {
        published += relay.pass().await?.0;
    }
    let relay_rate = published as f64 / started.elapsed().as_secs_f64();

    // 2. Lag at a steady rate, with the consumer running. The backlog went to another bus:
    // tell the relay's start-up recovery that it is done with.
    store
        .put_setting(
            hurry_engine::events::relay::ACKED_THROUGH_KEY,
            &i64::MAX.to_string(),
        )
        .await?;
    bus.join("ledger", &["order"]).await?;
    if let Setup::PostgresRedis | Setup::PostgresRedisPolling = setup {
        // Start the group after the backlog: only the steady-rate events are timed.
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: () = redis::cmd("XGROUP")
            .arg("SETID")
            .arg(format!("{prefix}events:order"))
            .arg("ledger")
            .arg("$")
            .query_async(&mut conn)
            .await?;
    }
    let lags = Arc::new(Mutex::new(Vec::new()));
    let consumer = spawn_consumer(
        Arc::new(Timed {
            inner: LedgerConsumer::new(store.clone()),
            lags: lags.clone(),
        }),
        "bench".into(),
        bus.clone(),
        store.clone(),
        ConsumerConfig {
            batch: 256,
            read_wait: Duration::from_millis(1_000),
            max_deliveries: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            claim_idle: Duration::from_secs(30),
        },
    );
    let wake = Arc::new(Notify::new());
    let relay = OutboxRelay::new(store.clone(), bus.clone(), wake.clone(), config).spawn();
    let per_tick = RATE_PER_SEC / 200;
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let total = RATE_PER_SEC * LAG_SECONDS;
    let mut sent = 0;
    while sent < total {
        ticker.tick().await;
        let orders: Vec<NewOrder> = (next_id..next_id + per_tick as i64)
            .map(|id| order(id, item.id))
            .collect();
        next_id += per_tick as i64;
        store.commit_orders(&orders).await?;
        if !matches!(setup, Setup::PostgresRedisPolling) {
            wake.notify_one();
        }
        sent += per_tick;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (lags.lock().unwrap().len() as u64) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.abort();
    consumer.abort();
    let mut lags = std::mem::take(&mut *lags.lock().unwrap());
    anyhow::ensure!(
        lags.len() as u64 == total,
        "{} of {total} events consumed",
        lags.len()
    );
    lags.sort();
    drop(store);
    if let Setup::PostgresRedis | Setup::PostgresRedisPolling = setup {
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}events:order"))
            .query_async(&mut conn)
            .await?;
    }
    database.drop_database().await?;
    Ok((relay_rate, lags))
}
