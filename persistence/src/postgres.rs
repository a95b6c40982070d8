//! PostgreSQL backend (cluster mode). Batches are written with `UNNEST` arrays: one statement
//! per table per batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Row};
use std::str::FromStr;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::*;
use crate::store::{check_new_item, normalise_roles, order_created_payload, Backend, Store};
use crate::ConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

const ITEM_COLUMNS: &str = "i.id, i.seller_id, i.name, i.description, i.price, i.stock, \
     i.created_at, d.opens_at, d.closes_at, d.per_user_limit, d.total_units";

impl PgStore {
    /// Connects and runs the migrations.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.url)?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
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

    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (email, email_index, password_hash, name, phone, address, email_verified, created_at) \
             VALUES ($1, $7, $2, $3, $4, $5, $6, now()) \
             RETURNING id, email, password_hash, name, phone, address, email_verified, created_at",
        )
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.name)
        .bind(&user.phone)
        .bind(&user.address)
        .bind(user.email_verified)
        .bind(&user.email_index)
        .fetch_one(&mut *tx)
        .await?;
        let mut record = user_from_row(&row)?;
        let roles = normalise_roles(user.extra_roles.clone());
        sqlx::query("INSERT INTO user_roles (user_id, role) SELECT $1, UNNEST($2::text[])")
            .bind(record.id)
            .bind(&roles)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        record.roles = roles;
        Ok(record)
    }

    async fn user_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.user_where("email_index = $1", Arg::Text(email_index))
            .await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.user_where("id = $1", Arg::Int(id)).await
    }

    async fn grant_roles(
        &self,
        user_id: i64,
        roles: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        if self.user_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) SELECT $1, UNNEST($2::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(roles)
        .execute(&self.pool)
        .await?;
        Ok(Some(self.roles_of(user_id).await?))
    }

    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError> {
        check_new_item(item)?;
        let mut tx = self.pool.begin().await?;
        let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO items (seller_id, name, description, price, stock, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING id, created_at",
        )
        .bind(item.seller_id)
        .bind(&item.name)
        .bind(&item.description)
        .bind(item.price)
        .bind(item.stock)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(drop) = &item.drop {
            sqlx::query(
                "INSERT INTO drops (item_id, opens_at, closes_at, per_user_limit, total_units) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(drop.opens_at)
            .bind(drop.closes_at)
            .bind(i32::try_from(drop.per_user_limit).unwrap_or_default())
            .bind(drop.total_units)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ItemRecord {
            id,
            seller_id: item.seller_id,
            name: item.name.clone(),
            description: item.description.clone(),
            price: item.price,
            stock: item.stock,
            drop: item.drop.clone(),
            created_at,
        })
    }

    async fn item_by_id(&self, id: i64) -> Result<Option<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN drops d ON d.item_id = i.id \
             WHERE i.id = $1 AND i.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn list_items(&self, page: u32, size: u32) -> Result<Page<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN drops d ON d.item_id = i.id \
             WHERE i.deleted_at IS NULL ORDER BY i.id LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(size))
            .bind(i64::from(page) * i64::from(size))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(Page {
            rows: rows.iter().map(item_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn open_drops(&self, now: DateTime<Utc>) -> Result<Vec<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i JOIN drops d ON d.item_id = i.id \
             WHERE i.deleted_at IS NULL AND d.closes_at > $1 ORDER BY i.id"
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError> {
        let per_user: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT o.user_id, SUM(l.quantity)::BIGINT FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE l.item_id = $1 AND NOT (o.status = ANY($2)) GROUP BY o.user_id",
        )
        .bind(item_id)
        .bind(&RELEASING_STATUSES[..])
        .fetch_all(&self.pool)
        .await?;
        Ok(DropSales { per_user })
    }

    async fn commit_orders(&self, orders: &[NewOrder]) -> Result<(), StoreError> {
        // One statement (so one round trip, atomic without BEGIN/COMMIT): data-modifying CTEs
        // for orders, lines and idempotency keys, and the outbox insert as the main statement.
        // Foreign keys are checked at the end of the statement, when the orders exist.
        let columns = BatchColumns::from_orders(orders);
        let event_ids: Vec<uuid::Uuid> = orders.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let payloads: Vec<String> = orders.iter().map(order_created_payload).collect();
        sqlx::query(
            "WITH new_orders AS ( \
                 INSERT INTO orders (id, user_id, status, amount, payment_due_at, created_at, updated_at) \
                 SELECT id, user_id, status, amount, due, created, created FROM UNNEST( \
                     $1::int8[], $2::int8[], $3::text[], $4::int8[], $5::timestamptz[], $6::timestamptz[]) \
                     AS t(id, user_id, status, amount, due, created)), \
             new_lines AS ( \
                 INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
                 SELECT * FROM UNNEST($7::int8[], $8::int4[], $9::int8[], $10::int8[], $11::int8[], $12::int8[])), \
             new_keys AS ( \
                 INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, order_id, created_at) \
                 SELECT u, k, h, 201, o, now() FROM UNNEST($13::int8[], $14::text[], $15::text[], $16::int8[]) \
                     AS t(u, k, h, o)) \
             INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             SELECT e, 'order.created', 1, a, o, p::json FROM UNNEST( \
                 $17::uuid[], $1::int8[], $6::timestamptz[], $18::text[]) AS t(e, a, o, p)",
        )
        .bind(&columns.order_ids)
        .bind(&columns.user_ids)
        .bind(&columns.statuses)
        .bind(&columns.amounts)
        .bind(&columns.due)
        .bind(&columns.created)
        .bind(&columns.line_order_ids)
        .bind(&columns.line_numbers)
        .bind(&columns.line_item_ids)
        .bind(&columns.line_quantities)
        .bind(&columns.line_prices)
        .bind(&columns.line_amounts)
        .bind(&columns.key_user_ids)
        .bind(&columns.keys)
        .bind(&columns.key_hashes)
        .bind(&columns.key_order_ids)
        .bind(&event_ids)
        .bind(&payloads)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn order_by_id(&self, id: i64) -> Result<Option<OrderRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, status, amount, payment_due_at, created_at FROM orders WHERE id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(self.with_lines(rows).await?.pop())
    }

    async fn list_orders(
        &self,
        user_id: i64,
        page: u32,
        size: u32,
    ) -> Result<Page<OrderRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, status, amount, payment_due_at, created_at FROM orders \
             WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(user_id)
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Page {
            rows: self.with_lines(rows).await?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, now(), $4)",
        )
        .bind(&token.token_hash)
        .bind(token.user_id)
        .bind(&token.family_id)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rotated: Option<(i64, String)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2 RETURNING user_id, family_id",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, family_id)) = rotated {
            tx.commit().await?;
            return Ok(RefreshUse::Rotated { user_id, family_id });
        }
        let used: Option<(i64, String)> = sqlx::query_as(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id)) = used else {
            return Ok(RefreshUse::Invalid);
        };
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(&family_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshUse::Reused { user_id, family_id })
    }

    async fn revoke_family_of(&self, user_id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
        )
        .bind(token_hash)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn revoke_user_families(
        &self,
        user_id: i64,
        keep_family: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL \
             AND family_id IS DISTINCT FROM $2",
        )
        .bind(user_id)
        .bind(keep_family)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO denied_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn denied_access_tokens(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(
            sqlx::query_as(
                "SELECT jti, expires_at FROM denied_access_tokens WHERE expires_at > $1",
            )
            .bind(now)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn update_profile(
        &self,
        user_id: i64,
        change: &ProfileChange,
    ) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "UPDATE users SET name = COALESCE($2, name), phone = COALESCE($3, phone), \
             address = COALESCE($4, address) WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(&change.name)
        .bind(&change.phone)
        .bind(&change.address)
        .execute(&self.pool)
        .await?;
        self.user_by_id(user_id).await
    }

    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn idempotency_record(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<(String, i32, Option<i64>)> = sqlx::query_as(
            "SELECT request_hash, status_code, order_id FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(request_hash, status_code, order_id)| IdempotencyRecord {
                request_hash,
                status_code: u16::try_from(status_code).unwrap_or(500),
                order_id,
            }),
        )
    }
}

/// A batch of orders turned into one array per column, for `UNNEST`.
#[derive(Default)]
struct BatchColumns {
    order_ids: Vec<i64>,
    user_ids: Vec<i64>,
    statuses: Vec<String>,
    amounts: Vec<i64>,
    due: Vec<Option<DateTime<Utc>>>,
    created: Vec<DateTime<Utc>>,
    line_order_ids: Vec<i64>,
    line_numbers: Vec<i32>,
    line_item_ids: Vec<i64>,
    line_quantities: Vec<i64>,
    line_prices: Vec<i64>,
    line_amounts: Vec<i64>,
    key_user_ids: Vec<i64>,
    keys: Vec<String>,
    key_hashes: Vec<String>,
    key_order_ids: Vec<i64>,
}

impl BatchColumns {
    fn from_orders(orders: &[NewOrder]) -> Self {
        let mut columns = BatchColumns::default();
        for order in orders {
            columns.order_ids.push(order.id);
            columns.user_ids.push(order.user_id);
            columns.statuses.push(order.status.clone());
            columns.amounts.push(order.amount);
            columns.due.push(order.payment_due_at);
            columns.created.push(order.created_at);
            for (line_no, line) in (1_i32..).zip(&order.lines) {
                columns.line_order_ids.push(order.id);
                columns.line_numbers.push(line_no);
                columns.line_item_ids.push(line.item_id);
                columns.line_quantities.push(line.quantity);
                columns.line_prices.push(line.unit_price);
                columns.line_amounts.push(line.amount);
            }
            if let Some(entry) = &order.idempotency {
                columns.key_user_ids.push(order.user_id);
                columns.keys.push(entry.key.clone());
                columns.key_hashes.push(entry.request_hash.clone());
                columns.key_order_ids.push(order.id);
            }
        }
        columns
    }
}
