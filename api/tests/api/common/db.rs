//! Test databases: a fresh SQLite file or PostgreSQL database per test, and raw SQL access for
//! assertions that must not trust the code under test.

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Runs one async scenario against each store, as `<name>::sqlite` and `<name>::postgres`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Store::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Store::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use both_stores;

pub const ADMIN_EMAIL: &str = "admin@hurry.test";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const PASSWORD: &str = "password-123";

/// A database only this test uses; dropped (PostgreSQL) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A handle on the same database that leaves removing it to this one.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            store: self.store,
            _dir: None,
            pg_name: None,
        }
    }

    pub async fn create(store: Store) -> Self {
        match store {
            Store::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("hurry.db").display());
                TestDb {
                    url,
                    store,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Store::Postgres => {
                let admin_url = admin_url();
                let name = format!("hurry_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("PostgreSQL reachable at DATABASE_URL (scripts/test sets it)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                TestDb {
                    url: replace_db_name(&admin_url, &name),
                    store,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A raw connection for assertions that must not trust the code under test.
    pub async fn raw(&self) -> RawDb {
        match self.store {
            Store::Sqlite => RawDb::Sqlite(
                sqlx::SqlitePool::connect(&self.url)
                    .await
                    .expect("open sqlite"),
            ),
            Store::Postgres => RawDb::Pg(sqlx::PgPool::connect(&self.url).await.expect("open pg")),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin_url = admin_url();
        clean_up_blocking(async move {
            if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        });
    }
}

/// Runs `cleanup` to the end on a fresh thread with a runtime of its own: a `Drop` may run
/// inside (or outside) a runtime, where blocking on it would panic.
pub fn clean_up_blocking<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(cleanup);
    })
    .join();
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Another session holding a lock that stops orders from being written, until released: on
/// PostgreSQL `LOCK TABLE orders IN <mode> MODE` (`EXCLUSIVE` still lets reads through, `ACCESS
/// EXCLUSIVE` does not), on SQLite the database's write lock (`BEGIN IMMEDIATE`).
pub enum Stall {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl TestDb {
    /// Stalls every write of orders (see [`Stall`]).
    pub async fn stall_orders(&self, pg_mode: &str) -> Stall {
        use sqlx::Connection;
        match self.store {
            Store::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("pg");
                sqlx::raw_sql(&format!("BEGIN; LOCK TABLE orders IN {pg_mode} MODE"))
                    .execute(&mut conn)
                    .await
                    .expect("lock orders");
                Stall::Pg(conn)
            }
            Store::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("sqlite");
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                Stall::Sqlite(conn)
            }
        }
    }
}

impl Stall {
    /// Lets writes through again.
    pub async fn release(self) {
        match self {
            Stall::Pg(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("unlock");
            }
            Stall::Sqlite(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("unlock");
            }
        }
    }
}

/// Raw SQL access for assertions.
pub enum RawDb {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl RawDb {
    /// One integer from a portable query.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self {
            RawDb::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .expect(sql),
            RawDb::Pg(pool) => sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .expect(sql),
        }
    }

    /// One text value from a portable query.
    pub async fn text(&self, sql: &str) -> String {
        match self {
            RawDb::Sqlite(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_one(pool)
                .await
                .expect(sql),
            RawDb::Pg(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_one(pool)
                .await
                .expect(sql),
        }
    }

    /// Every text value of a portable one-column query.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        match self {
            RawDb::Sqlite(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_all(pool)
                .await
                .expect(sql),
            RawDb::Pg(pool) => sqlx::query_scalar::<_, String>(sql)
                .fetch_all(pool)
                .await
                .expect(sql),
        }
    }

    /// Runs a statement.
    pub async fn execute(&self, sql: &str) {
        match self {
            RawDb::Sqlite(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.expect(sql);
            }
            RawDb::Pg(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.expect(sql);
            }
        }
    }

    /// Whether a batch writer of the server is waiting for a lock (PostgreSQL).
    pub async fn a_batch_waits_for_a_lock(&self) -> bool {
        let sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'hurry-writer' AND wait_event_type = 'Lock'";
        self.scalar(sql).await > 0
    }

    /// `(order id, idempotency key)` of every order of `item_id`.
    pub async fn keys_of_orders(&self, item_id: i64) -> Vec<(i64, Option<String>)> {
        let sql = format!(
            "SELECT o.id, (SELECT k.key FROM idempotency_keys k WHERE k.order_id = o.id) \
             FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = {item_id} \
             ORDER BY o.id"
        );
        match self {
            RawDb::Sqlite(pool) => sqlx::query_as(&sql).fetch_all(pool).await.expect("keys"),
            RawDb::Pg(pool) => sqlx::query_as(&sql).fetch_all(pool).await.expect("keys"),
        }
    }

    /// Order ids in the database.
    pub async fn order_ids(&self) -> Vec<i64> {
        let sql = "SELECT id FROM orders ORDER BY id";
        match self {
            RawDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.expect(sql),
            RawDb::Pg(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.expect(sql),
        }
    }

    /// `(units sold, orders, distinct buyers, most units of one buyer)` of an item.
    pub async fn sales_of(&self, item_id: i64) -> (i64, i64, i64, i64) {
        let units = self
            .scalar(&format!(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM order_lines WHERE item_id = {item_id}"
            ))
            .await;
        let orders = self
            .scalar(&format!(
                "SELECT COUNT(*) FROM order_lines WHERE item_id = {item_id}"
            ))
            .await;
        let buyers = self
            .scalar(&format!(
                "SELECT COUNT(DISTINCT o.user_id) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = {item_id}"
            ))
            .await;
        let most = self
            .scalar(&format!(
                "SELECT CAST(COALESCE(MAX(units), 0) AS BIGINT) FROM (SELECT SUM(l.quantity) AS units FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = {item_id} GROUP BY o.user_id) t"
            ))
            .await;
        (units, orders, buyers, most)
    }
}
