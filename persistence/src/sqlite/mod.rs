//! SQLite backend (the embedded default): one file, WAL journal, `synchronous = FULL` so an
//! acknowledged commit survives a crash of the process or the machine. A batch is one
//! transaction of prepared inserts.
//!
//! SQLite lets one connection write at a time; a second writer waits in SQLite's busy handler,
//! which sleeps in steps of up to 100 ms. So every write goes through one writer connection
//! (`writer`, a pool of one: writers queue, in order, on an async semaphore and never meet in
//! SQLite), and reads use the other pool (WAL readers do not block the writer).

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

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::*;
use crate::store::{normalise_roles, Backend, Store};
use crate::ConnectOptions;

use sql::rows::*;
use sql::ITEM_COLUMNS;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`Store`] on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write: one connection.
    writer: SqlitePool,
    /// How long a batch write may go without an answer before it is in doubt.
    write_deadline: Duration,
    /// `PATH.lock`, whose lock is the drops claim ([`Store::claim_drops`]); `None` for an
    /// in-memory database.
    lock_path: Option<std::path::PathBuf>,
    /// The locked file while the claim is held.
    drops_claim: std::sync::Arc<std::sync::Mutex<Option<std::fs::File>>>,
    /// Notified after each commit that wrote outbox rows.
    outbox_written: std::sync::Arc<tokio::sync::Notify>,
}

impl SqliteStore {
    /// Opens (creating when absent) the database file and runs the migrations.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StoreError> {
        create_parent_folder(&options.url)?;
        let connect = SqliteConnectOptions::from_str(&options.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No ping before each use: the connection is in-process (a ping is a round trip to its
        // worker thread) and does not break the way a network connection does.
        // The writer waits for SQLite's lock at most a batch's commit timeout.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone().busy_timeout(options.commit_timeout))
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        Ok(Self {
            pool,
            writer,
            write_deadline: options.write_deadline(),
            lock_path: database_path(&options.url).map(|path| {
                let mut name = path.into_os_string();
                name.push(".lock");
                std::path::PathBuf::from(name)
            }),
            drops_claim: std::sync::Arc::default(),
            outbox_written: std::sync::Arc::default(),
        })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The lines of the orders `order_ids`, by order, then line number.
    async fn lines_of(&self, order_ids: &[i64]) -> Result<Vec<(i64, OrderLine)>, StoreError> {
        let ids_json = serde_json::to_string(order_ids).unwrap_or_else(|_| "[]".to_owned());
        let rows = sqlx::query(
            "SELECT order_id, item_id, quantity, unit_price, amount FROM order_lines \
             WHERE order_id IN (SELECT value FROM json_each($1)) ORDER BY order_id, line_no",
        )
        .bind(ids_json)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(line_from_row).collect()
    }
}

/// The file of a `sqlite:` url; `None` for an in-memory database.
fn database_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

fn create_parent_folder(url: &str) -> Result<(), StoreError> {
    let Some(path) = database_path(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|err| StoreError::Config(format!("cannot create {parent:?}: {err}")))?;
        }
    }
    Ok(())
}

/// What the shared queries ([`sql`]) call this backend by.
type SqlStore = SqliteStore;
type Db = sqlx::Sqlite;
type DbRow = SqliteRow;
const BACKEND: Backend = Backend::Sqlite;
/// Empty: a [`SqliteStore::begin_guarded`] transaction holds the write lock already.
const FOR_UPDATE: &str = "";
/// Empty, as [`FOR_UPDATE`]: SQLite's one writer connection already runs one write at a time.
const FOR_NO_KEY_UPDATE: &str = "";
const GREATEST: &str = "MAX";
/// Event payloads are JSON text.
const JSON_TYPE: &str = "TEXT";

fn uuid_param(id: uuid::Uuid) -> String {
    id.to_string()
}

/// The session and code tables keep times as unix seconds.
type TokenTime = i64;

fn token_time(at: DateTime<Utc>) -> TokenTime {
    at.timestamp()
}

fn from_token_time(seconds: TokenTime) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {seconds} out of range")))
}

/// `users.tokens_valid_after`: unix microseconds, as access tokens are compared with it below
/// the second. (Its migration says seconds; the column was never written before it was read.)
type ValidAfterTime = i64;

fn valid_after_time(at: DateTime<Utc>) -> ValidAfterTime {
    at.timestamp_micros()
}

fn from_valid_after_time(micros: ValidAfterTime) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} out of range")))
}

impl SqliteStore {
    fn reads(&self) -> &SqlitePool {
        &self.pool
    }

    fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    /// A transaction with SQLite's write lock from its start (`BEGIN IMMEDIATE`): what it
    /// reads stays as read until it ends.
    async fn begin_guarded(&self) -> Result<sql::Tx<'static>, StoreError> {
        Ok(sql::Tx::new(
            self.writer.begin_with("BEGIN IMMEDIATE").await?,
            &self.outbox_written,
        ))
    }

    /// A write transaction (on the one writer connection).
    async fn begin_write(&self) -> Result<sql::Tx<'static>, StoreError> {
        Ok(sql::Tx::new(
            self.writer.begin().await?,
            &self.outbox_written,
        ))
    }

    /// Takes the drops claim: the lock of `PATH.lock`, held while the file stays open.
    async fn claim(&self) -> Result<bool, StoreError> {
        let Some(path) = &self.lock_path else {
            return Ok(true);
        };
        let mut held = self
            .drops_claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_some() {
            return Ok(true);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|err| StoreError::Config(format!("cannot open {path:?}: {err}")))?;
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(StoreError::Config(format!("cannot lock {path:?}: {err}")))
            }
        }
    }

    async fn release(&self) {
        // Closing the file ends its lock.
        self.drops_claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
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
         VALUES (?, ?, 1, ?, ?, ?)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(event_type)
    .bind(aggregate_id)
    .bind(now_micros())
    .bind(payload.to_string())
    .execute(&mut **tx)
    .await?;
    tx.wrote_outbox();
    Ok(())
}

fn decode_uuid(row: &SqliteRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    uuid::Uuid::parse_str(&text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}
