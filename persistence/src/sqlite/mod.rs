//! SQLite backend (the embedded default): one file, WAL journal, `synchronous = FULL` so an
//! acknowledged commit survives a crash of the process or the machine. A batch is one
//! transaction of prepared inserts.
//!
//! SQLite lets one connection write at a time; a second writer waits in SQLite's busy handler,
//! which sleeps in steps of up to 100 ms. So every write goes through one writer connection
//! (`writer`, a pool of one: writers queue, in order, on an async semaphore and never meet in
//! SQLite), and reads use the other pool (WAL readers do not block the writer).

mod cart;
mod catalog;
mod comparison;
mod events;
mod orders;
mod sessions;
mod users;
mod verification;

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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const ITEM_COLUMNS: &str = "i.id, i.seller_id, i.name, i.description, i.price, i.stock, \
     i.created_at, d.opens_at, d.closes_at, d.per_user_limit, d.total_units";
const ORDER_COLUMNS: &str = "id, user_id, status, amount, payment_due_at, created_at";

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
        })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn roles_of(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = ? ORDER BY role")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(normalise_roles(roles))
    }

    async fn finish_user(&self, row: Option<SqliteRow>) -> Result<Option<UserRecord>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let mut user = user_from_row(&row)?;
        user.roles = self.roles_of(user.id).await?;
        Ok(Some(user))
    }

    /// Orders selected by `filter` (a clause over `orders`) with their lines.
    async fn orders_where(
        &self,
        filter: &str,
        binds: &[i64],
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {filter}");
        let mut query = sqlx::query(&sql);
        for value in binds {
            query = query.bind(*value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let lines_sql = format!(
            "SELECT order_id, item_id, quantity, unit_price, amount FROM order_lines \
             WHERE order_id IN (SELECT id FROM orders WHERE {filter}) ORDER BY order_id, line_no"
        );
        let mut lines_query = sqlx::query(&lines_sql);
        for value in binds {
            lines_query = lines_query.bind(*value);
        }
        let lines = lines_query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(line_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        attach_lines(&mut orders, lines);
        Ok(orders)
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

crate::rows::row_decoders!(SqliteRow);

/// Writes an outbox event (version 1, now) inside the caller's transaction.
async fn enqueue_event(
    conn: &mut sqlx::SqliteConnection,
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
    .bind(Utc::now().trunc_subsecs(6))
    .bind(payload.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

fn decode_uuid(row: &SqliteRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    uuid::Uuid::parse_str(&text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(init)
            .execute(&self.writer)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn allocate_ids(&self, name: &str, count: u32) -> Result<i64, StoreError> {
        let next: i64 = sqlx::query_scalar(
            "UPDATE id_blocks SET next_id = next_id + ? WHERE name = ? RETURNING next_id",
        )
        .bind(i64::from(count))
        .bind(name)
        .fetch_one(&self.writer)
        .await?;
        Ok(next - i64::from(count))
    }

    async fn claim_drops(&self) -> Result<bool, StoreError> {
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

    async fn release_drops(&self) {
        // Closing the file ends its lock.
        self.drops_claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}
