//! PostgreSQL backend (cluster mode). Batches are written with `UNNEST` arrays: one statement
//! per table per batch.

mod cart;
mod catalog;
mod comparison;
mod events;
mod orders;
mod sessions;
mod users;
mod verification;
mod writer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, Row};
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
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// Key of the drops claim's advisory lock (per database, like every advisory lock).
const DROPS_LOCK: i64 = 0x6875_7272_7964_726f; // "hurrydro"

const ITEM_COLUMNS: &str = "i.id, i.seller_id, i.name, i.description, i.price, i.stock, \
     i.created_at, d.opens_at, d.closes_at, d.per_user_limit, d.total_units";

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
        })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn roles_of(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(normalise_roles(roles))
    }

    async fn user_where(
        &self,
        clause: &str,
        arg: Arg<'_>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!(
            "SELECT id, email, password_hash, name, phone, address, email_verified, created_at \
             FROM users WHERE {clause} AND deleted_at IS NULL"
        );
        let query = sqlx::query(&sql);
        let query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
        };
        let Some(row) = query.fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut user = user_from_row(&row)?;
        user.roles = self.roles_of(user.id).await?;
        Ok(Some(user))
    }

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

    async fn with_lines(&self, rows: Vec<PgRow>) -> Result<Vec<OrderRecord>, StoreError> {
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = orders.iter().map(|order| order.id).collect();
        attach_lines(&mut orders, self.lines_of(&ids).await?);
        Ok(orders)
    }
}

enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

crate::rows::row_decoders!(PgRow);

/// Writes an outbox event (version 1, now) inside the caller's transaction.
async fn enqueue_event(
    conn: &mut sqlx::PgConnection,
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
    .execute(conn)
    .await?;
    Ok(())
}

fn decode_uuid(row: &PgRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    Ok(row.try_get(column)?)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(init)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn allocate_ids(&self, name: &str, count: u32) -> Result<i64, StoreError> {
        let next: i64 = sqlx::query_scalar(
            "UPDATE id_blocks SET next_id = next_id + $2 WHERE name = $1 RETURNING next_id",
        )
        .bind(name)
        .bind(i64::from(count))
        .fetch_one(&self.pool)
        .await?;
        Ok(next - i64::from(count))
    }

    async fn claim_drops(&self) -> Result<bool, StoreError> {
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

    async fn release_drops(&self) {
        if let Some(conn) = self.drops_claim.lock().await.take() {
            // Closing the session ends its advisory lock.
            let _ = conn.close().await;
        }
    }
}
