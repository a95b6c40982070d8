//! SQLite backend (the embedded default): one file, WAL journal, `synchronous = FULL` so an
//! acknowledged commit survives a crash of the process or the machine. A batch is one
//! transaction of prepared inserts.

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
use crate::store::{check_new_item, normalise_roles, order_created_payload, Backend, Store};
use crate::ConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const ITEM_COLUMNS: &str = "i.id, i.seller_id, i.name, i.description, i.price, i.stock, \
     i.created_at, d.opens_at, d.closes_at, d.per_user_limit, d.total_units";
const ORDER_COLUMNS: &str = "id, user_id, status, amount, payment_due_at, created_at";

/// A [`Store`] on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
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

fn create_parent_folder(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|err| StoreError::Config(format!("cannot create {parent:?}: {err}")))?;
        }
    }
    Ok(())
}

crate::rows::row_decoders!(SqliteRow);

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
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn allocate_ids(&self, name: &str, count: u32) -> Result<i64, StoreError> {
        let next: i64 = sqlx::query_scalar(
            "UPDATE id_blocks SET next_id = next_id + ? WHERE name = ? RETURNING next_id",
        )
        .bind(i64::from(count))
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(next - i64::from(count))
    }

    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (email, password_hash, name, phone, address, email_verified, created_at, email_index) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING id, email, password_hash, name, phone, address, email_verified, created_at",
        )
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.name)
        .bind(&user.phone)
        .bind(&user.address)
        .bind(user.email_verified)
        .bind(Utc::now().trunc_subsecs(6))
        .bind(&user.email_index)
        .fetch_one(&mut *tx)
        .await?;
        let mut record = user_from_row(&row)?;
        let roles = normalise_roles(user.extra_roles.clone());
        for role in &roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES (?, ?)")
                .bind(record.id)
                .bind(role)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        record.roles = roles;
        Ok(record)
    }

    async fn user_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, name, phone, address, email_verified, created_at \
             FROM users WHERE email_index = ? AND deleted_at IS NULL",
        )
        .bind(email_index)
        .fetch_optional(&self.pool)
        .await?;
        self.finish_user(row).await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, name, phone, address, email_verified, created_at \
             FROM users WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.finish_user(row).await
    }

    async fn grant_roles(
        &self,
        user_id: i64,
        roles: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        if self.user_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        for role in roles {
            sqlx::query(
                "INSERT INTO user_roles (user_id, role) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(self.roles_of(user_id).await?))
    }

    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError> {
        check_new_item(item)?;
        let created_at = Utc::now().trunc_subsecs(6);
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO items (seller_id, name, description, price, stock, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(item.seller_id)
        .bind(&item.name)
        .bind(&item.description)
        .bind(item.price)
        .bind(item.stock)
        .bind(created_at)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(drop) = &item.drop {
            sqlx::query(
                "INSERT INTO drops (item_id, opens_at, closes_at, per_user_limit, total_units) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(drop.opens_at)
            .bind(drop.closes_at)
            .bind(i64::from(drop.per_user_limit))
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
             WHERE i.id = ? AND i.deleted_at IS NULL"
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
             WHERE i.deleted_at IS NULL ORDER BY i.id LIMIT ? OFFSET ?"
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
             WHERE i.deleted_at IS NULL ORDER BY i.id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Timestamps are text here: compare them as times, not as strings.
        Ok(items
            .into_iter()
            .filter(|item| item.drop.as_ref().is_some_and(|drop| drop.closes_at > now))
            .collect())
    }

    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError> {
        let per_user: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT o.user_id, SUM(l.quantity) FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE l.item_id = ? AND o.status NOT IN (?, ?, ?, ?) GROUP BY o.user_id",
        )
        .bind(item_id)
        .bind(RELEASING_STATUSES[0])
        .bind(RELEASING_STATUSES[1])
        .bind(RELEASING_STATUSES[2])
        .bind(RELEASING_STATUSES[3])
        .fetch_all(&self.pool)
        .await?;
        Ok(DropSales { per_user })
    }

    async fn commit_orders(&self, orders: &[NewOrder]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for order in orders {
            sqlx::query(
                "INSERT INTO orders (id, user_id, status, amount, payment_due_at, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(order.id)
            .bind(order.user_id)
            .bind(&order.status)
            .bind(order.amount)
            .bind(order.payment_due_at)
            .bind(order.created_at)
            .bind(order.created_at)
            .execute(&mut *tx)
            .await?;
            for (line_no, line) in (1_i64..).zip(&order.lines) {
                sqlx::query(
                    "INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
                     VALUES (?, ?, ?, ?, ?, ?)",
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
                     VALUES (?, ?, ?, 201, ?, ?)",
                )
                .bind(order.user_id)
                .bind(&entry.key)
                .bind(&entry.request_hash)
                .bind(order.id)
                .bind(order.created_at)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
                 VALUES (?, 'order.created', 1, ?, ?, ?)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(order.id)
            .bind(order.created_at)
            .bind(order_created_payload(order))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn order_by_id(&self, id: i64) -> Result<Option<OrderRecord>, StoreError> {
        Ok(self.orders_where("id = ?", &[id]).await?.pop())
    }

    async fn list_orders(
        &self,
        user_id: i64,
        page: u32,
        size: u32,
    ) -> Result<Page<OrderRecord>, StoreError> {
        let rows = self
            .orders_where(
                "id IN (SELECT id FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?) \
                 ORDER BY id DESC",
                &[user_id, i64::from(size), i64::from(page) * i64::from(size)],
            )
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Page {
            rows,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(token.user_id)
        .bind(&token.family_id)
        .bind(Utc::now().timestamp())
        .bind(token.expires_at.timestamp())
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
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > ?2 RETURNING user_id, family_id",
        )
        .bind(token_hash)
        .bind(now.timestamp())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, family_id)) = rotated {
            tx.commit().await?;
            return Ok(RefreshUse::Rotated { user_id, family_id });
        }
        let used: Option<(i64, String)> = sqlx::query_as(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = ? AND used_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id)) = used else {
            return Ok(RefreshUse::Invalid);
        };
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        )
        .bind(&family_id)
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshUse::Reused { user_id, family_id })
    }

    async fn revoke_family_of(&self, user_id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?3 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = ?1 AND user_id = ?2)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(Utc::now().timestamp())
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
            "UPDATE refresh_tokens SET revoked_at = ?3 WHERE user_id = ?1 AND revoked_at IS NULL \
             AND family_id IS NOT ?2",
        )
        .bind(user_id)
        .bind(keep_family)
        .bind(Utc::now().timestamp())
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
            "INSERT INTO denied_access_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn denied_access_tokens(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT jti, expires_at FROM denied_access_tokens WHERE expires_at > ?")
                .bind(now.timestamp())
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(jti, expires_at)| {
                DateTime::from_timestamp(expires_at, 0).map(|expires_at| (jti, expires_at))
            })
            .collect())
    }

    async fn update_profile(
        &self,
        user_id: i64,
        change: &ProfileChange,
    ) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "UPDATE users SET name = COALESCE(?2, name), phone = COALESCE(?3, phone), \
             address = COALESCE(?4, address) WHERE id = ?1 AND deleted_at IS NULL",
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
        sqlx::query("UPDATE users SET password_hash = ?2 WHERE id = ?1")
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
        let row: Option<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT request_hash, status_code, order_id FROM idempotency_keys \
             WHERE user_id = ? AND key = ?",
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
