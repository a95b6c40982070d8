//! PostgreSQL backend (cluster mode). Batches are written with `UNNEST` arrays: one statement
//! per table per batch.

mod events;
mod orders;
/// The queries both backends share, compiled here against this backend's types.
#[path = "../sql/mod.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "one text compiled for each backend, on purpose"
)]
mod sql;
mod users;

use users::insert_roles;
mod writer;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, Row};

use sql::rows::*;
use sql::ITEM_COLUMNS;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::*;
use crate::store::{normalise_roles, Backend, Store};
use crate::ConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`Store`] on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The connections batch writes go through (see [`writer`]).
    writers: Arc<writer::Writers>,
    /// The connection holding the drops claim ([`Store::claim_drops`]), while held.
    drops_claim: Arc<tokio::sync::Mutex<Option<sqlx::PgConnection>>>,
    connect: PgConnectOptions,
    /// Notified after each commit that wrote outbox rows.
    outbox_written: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// Key of the drops claim's advisory lock (per database, like every advisory lock).
const DROPS_LOCK: i64 = 0x6875_7272_7964_726f; // "hurrydro"

impl PgStore {
    /// Connects and runs the migrations.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.url)?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let ping_idle_after = options.ping_idle_after;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every connection it hands out: one more round trip per query, 7 % of
            // the server's CPU in a drop. Only connections idle for a while are pinged (a
            // server restart is noticed there); a busy one that broke fails its query.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= ping_idle_after {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let writers = writer::Writers::new(
            &connect,
            options.max_connections,
            options.commit_timeout,
            options.write_deadline(),
            ping_idle_after,
        );
        Ok(Self {
            pool,
            writers: Arc::new(writers),
            drops_claim: Arc::default(),
            connect,
            outbox_written: Arc::default(),
        })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The lines of the orders `order_ids`, by order, then line number.
    async fn lines_of(&self, order_ids: &[i64]) -> Result<Vec<(i64, OrderLine)>, StoreError> {
        let rows = sqlx::query(
            "SELECT order_id, item_id, quantity, unit_price, amount FROM order_lines \
             WHERE order_id = ANY($1) ORDER BY order_id, line_no",
        )
        .bind(order_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(line_from_row).collect()
    }
}

/// What the shared queries ([`sql`]) call this backend by.
type SqlStore = PgStore;
type Db = sqlx::Postgres;
type DbRow = PgRow;
const BACKEND: Backend = Backend::Postgres;
/// Locks the rows a `SELECT` in a [`PgStore::begin_guarded`] transaction reads.
const FOR_UPDATE: &str = " FOR UPDATE";
/// Locks a selected row against other lockers and writers, not against foreign-key checks.
const FOR_NO_KEY_UPDATE: &str = " FOR NO KEY UPDATE";
const GREATEST: &str = "GREATEST";
/// Event payload columns are `json`.
const JSON_TYPE: &str = "JSON";

fn uuid_param(id: uuid::Uuid) -> uuid::Uuid {
    id
}

/// The session and code tables keep times as `timestamptz`.
type TokenTime = DateTime<Utc>;

fn token_time(at: DateTime<Utc>) -> TokenTime {
    at
}

fn from_token_time(at: TokenTime) -> Result<DateTime<Utc>, StoreError> {
    Ok(at)
}

/// `users.tokens_valid_after`: a `timestamptz` (microseconds).
type ValidAfterTime = DateTime<Utc>;

fn valid_after_time(at: DateTime<Utc>) -> ValidAfterTime {
    at.trunc_subsecs(6)
}

fn from_valid_after_time(at: ValidAfterTime) -> Result<DateTime<Utc>, StoreError> {
    Ok(at)
}

impl PgStore {
    fn reads(&self) -> &PgPool {
        &self.pool
    }

    fn writes(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction.
    async fn begin_write(&self) -> Result<sql::Tx<'static>, StoreError> {
        Ok(sql::Tx::new(self.pool.begin().await?, &self.outbox_written))
    }

    /// A transaction whose `SELECT … FOR UPDATE` rows stay as read until it ends.
    async fn begin_guarded(&self) -> Result<sql::Tx<'static>, StoreError> {
        self.begin_write().await
    }

    /// Takes the drops claim: a session advisory lock, held by a connection of its own for as
    /// long as the claim lasts; then fences the writers of an earlier process.
    async fn claim(&self) -> Result<bool, StoreError> {
        let mut held = self.drops_claim.lock().await;
        if held.is_some() {
            return Ok(true);
        }
        let options = self.connect.clone().application_name("hurry-drops");
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        let claimed: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(DROPS_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !claimed {
            return Ok(false);
        }
        writer::fence_earlier_writers(&mut conn).await?;
        *held = Some(conn);
        Ok(true)
    }

    async fn release(&self) {
        if let Some(conn) = self.drops_claim.lock().await.take() {
            // Closing the session ends its advisory lock.
            let _ = conn.close().await;
        }
    }
}

/// Writes an outbox event (version 1, now) inside the caller's transaction.
async fn enqueue_event(
    tx: &mut sql::Tx<'_>,
    event_type: &str,
    aggregate_id: i64,
    payload: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
         VALUES (gen_random_uuid(), $1, 1, $2, now(), CAST($3 AS JSON))",
    )
    .bind(event_type)
    .bind(aggregate_id)
    .bind(payload.to_string())
    .execute(&mut **tx)
    .await?;
    tx.wrote_outbox();
    Ok(())
}

fn decode_uuid(row: &PgRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    Ok(row.try_get(column)?)
}
