//! Harness of the store conformance suite: `TestStore::open(backend)` connects a store to a
//! fresh SQLite file or a fresh PostgreSQL database (dropped afterwards, also on panic), keeps a
//! separate raw pool for assertions that must not trust the code under test, and the builders
//! below make the records the scenarios write.

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use hurry_persistence::{
    connect_with_comparison, Backend, ComparisonStore, ConnectOptions, DropSpec, IdempotencyEntry,
    ItemRecord, NewItem, NewOrder, NewUser, OrderLine, Store, UserRecord,
};
use sqlx::Connection;

/// Runs each async scenario `fn(Backend) -> anyhow::Result<()>` against both backends, as the
/// tests `<scenario>::sqlite` and `<scenario>::postgres`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() -> anyhow::Result<()> {
                    super::$scenario(hurry_persistence::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() -> anyhow::Result<()> {
                    super::$scenario(hurry_persistence::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A store on a database only this test uses; derefs to the store under test.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    /// The same store as the `pg_row` baseline sees it.
    pub comparison: Arc<dyn ComparisonStore>,
    raw: RawPool,
    // Last: dropping the database needs the pools above to be gone (or forced off).
    _database: TestDatabase,
}

impl TestStore {
    /// Creates a fresh database of `backend` and connects to it (which runs the migrations).
    pub async fn open(backend: Backend) -> anyhow::Result<Self> {
        Self::open_with(backend, |_| {}).await
    }

    /// [`TestStore::open`] with connection settings changed by `adjust`.
    pub async fn open_with(
        backend: Backend,
        adjust: impl FnOnce(&mut ConnectOptions),
    ) -> anyhow::Result<Self> {
        let database = TestDatabase::create(backend).await?;
        let mut options = ConnectOptions::new(database.url.clone(), 4);
        adjust(&mut options);
        let (store, comparison) = connect_with_comparison(&options)
            .await
            .with_context(|| format!("connect the store to {}", database.url))?;
        let raw = RawPool::connect(backend, &database.url).await?;
        Ok(Self {
            store,
            comparison,
            raw,
            _database: database,
        })
    }

    /// Another store handle on the same database (as another process would open it).
    pub async fn second_handle(&self) -> anyhow::Result<Arc<dyn Store>> {
        let options = ConnectOptions::new(self._database.url.clone(), 2);
        Ok(connect_with_comparison(&options).await?.0)
    }

    /// The database's url.
    pub fn url(&self) -> &str {
        &self._database.url
    }

    /// Rows in `table`, counted behind the store's back.
    pub async fn num_rows(&self, table: &str) -> anyhow::Result<i64> {
        self.raw
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await
    }

    /// One integer from a query run behind the store's back.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.raw.scalar(sql).await
    }

    /// Runs a statement behind the store's back.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let done = match &self.raw {
            RawPool::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            RawPool::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        };
        done.with_context(|| format!("raw statement {sql:?}"))
    }

    /// `order.created` events in the outbox.
    pub async fn num_order_created_events(&self) -> anyhow::Result<i64> {
        self.raw
            .scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.created'")
            .await
    }

    /// Payloads of the `order.created` events, in outbox order.
    pub async fn order_created_payloads(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let sql = "SELECT CAST(payload AS TEXT) FROM outbox \
                   WHERE event_type = 'order.created' ORDER BY id";
        let texts: Vec<String> = match &self.raw {
            RawPool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
            RawPool::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
        };
        texts
            .iter()
            .map(|text| serde_json::from_str(text).context("outbox payload is json"))
            .collect()
    }

    /// `(orders, order_lines, idempotency_keys, outbox)` row counts.
    pub async fn order_table_counts(&self) -> anyhow::Result<[i64; 4]> {
        Ok([
            self.num_rows("orders").await?,
            self.num_rows("order_lines").await?,
            self.num_rows("idempotency_keys").await?,
            self.num_rows("outbox").await?,
        ])
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

/// A second, independent pool on the test database.
enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawPool {
    async fn connect(backend: Backend, url: &str) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Sqlite => RawPool::Sqlite(sqlx::SqlitePool::connect(url).await?),
            Backend::Postgres => RawPool::Postgres(sqlx::PgPool::connect(url).await?),
        })
    }

    /// One integer from a query both dialects understand.
    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let value = match self {
            RawPool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            RawPool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        };
        value.with_context(|| format!("raw query {sql:?}"))
    }
}

/// A throw-away database: a SQLite file in a temporary folder, or a PostgreSQL database that
/// `Drop` removes again.
struct TestDatabase {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDatabase {
    async fn create(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                Ok(Self {
                    url: format!("sqlite://{}", dir.path().join("t.db").display()),
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin_url = admin_url();
                let name = format!("hurry_conf_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("PostgreSQL reachable at {admin_url}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                // From here on the guard exists, so any later failure still drops the database.
                Ok(Self {
                    url: with_database(&admin_url, &name),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside a runtime (or while unwinding out of one), where blocking on the
        // current runtime is not allowed: use a thread with its own runtime.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// The server-level PostgreSQL url test databases are created through.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database (the path) replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let authority_start = base.find("://").map_or(0, |start| start + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |start| authority_start + start);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fixed instant with microseconds (what both backends keep), moved by `offset_secs`.
pub fn at(offset_secs: i64) -> DateTime<Utc> {
    let base =
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::microseconds(123_456);
    base + Duration::seconds(offset_secs)
}

/// Owned role names.
pub fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// The blind index the tests store for `email` (the store treats it as an opaque key).
pub fn email_index(email: &str) -> String {
    format!("index-of:{email}")
}

/// A user with every optional field set and the given extra roles, under an id no other
/// user of the test process has (each test has its own database).
pub fn new_user(email: &str, extra_roles: &[&str]) -> NewUser {
    static NEXT_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    NewUser {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        email: email.to_owned(),
        email_index: email_index(email),
        password_hash: format!("$argon2id$hash-of-{email}"),
        name: format!("Name of {email}"),
        phone: Some("010-1234-5678".to_owned()),
        address: Some("1 Sejong-daero, Seoul".to_owned()),
        email_verified: true,
        extra_roles: strings(extra_roles),
        verification: None,
    }
}

/// Every field of a user, in declaration order.
pub type UserFields<'a> = (
    i64,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    bool,
    &'a [String],
    DateTime<Utc>,
);

/// Every field of a user, comparable (records do not implement `PartialEq`).
pub fn user_fields(user: &UserRecord) -> UserFields<'_> {
    (
        user.id,
        &user.email,
        &user.password_hash,
        &user.name,
        user.phone.as_deref(),
        user.address.as_deref(),
        user.email_verified,
        &user.roles,
        user.created_at,
    )
}

/// A sale window from `opens_at` to `closes_at` (offsets from [`at`]).
pub fn drop_spec(opens_at: i64, closes_at: i64) -> DropSpec {
    DropSpec {
        opens_at: at(opens_at),
        closes_at: at(closes_at),
        per_user_limit: 2,
        total_units: 100,
    }
}

/// An item of `seller_id`, limited when `drop` is given.
pub fn new_item(seller_id: i64, name: &str, drop: Option<DropSpec>) -> NewItem {
    NewItem {
        seller_id,
        name: name.to_owned(),
        description: format!("All about {name}"),
        price: 189_000,
        stock: drop.as_ref().map_or(7, |drop| drop.total_units),
        drop,
    }
}

/// Every field of an item, in declaration order.
pub type ItemFields<'a> = (
    i64,
    i64,
    &'a str,
    &'a str,
    i64,
    i64,
    Option<&'a DropSpec>,
    DateTime<Utc>,
);

/// Every field of an item, comparable (records do not implement `PartialEq`).
pub fn item_fields(item: &ItemRecord) -> ItemFields<'_> {
    (
        item.id,
        item.seller_id,
        &item.name,
        &item.description,
        item.price,
        item.stock,
        item.drop.as_ref(),
        item.created_at,
    )
}

/// Order `id` of `user_id` with one line per `(item_id, quantity)`, created `id` seconds after
/// [`at`]`(0)` so that higher ids are newer.
pub fn order(id: i64, user_id: i64, status: &str, lines: &[(i64, i64)]) -> NewOrder {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|&(item_id, quantity)| OrderLine {
            item_id,
            quantity,
            unit_price: 1_000 + item_id,
            amount: quantity * (1_000 + item_id),
        })
        .collect();
    NewOrder {
        id,
        user_id,
        status: status.to_owned(),
        amount: lines.iter().map(|line| line.amount).sum(),
        payment_due_at: Some(at(id + 600)),
        created_at: at(id),
        lines,
        idempotency: None,
    }
}

/// `order` created under idempotency key `key` for a request hashing to `request_hash`.
pub fn keyed(mut order: NewOrder, key: &str, request_hash: &str) -> NewOrder {
    order.idempotency = Some(IdempotencyEntry {
        key: key.to_owned(),
        request_hash: request_hash.to_owned(),
    });
    order
}
