//! Storage for Hurry Up Order.
//!
//! The engine and the API talk to a [`Store`]: one trait with a SQLite backend (the embedded
//! default) and a PostgreSQL backend (cluster mode). Both run their own embedded migrations on
//! [`connect`]. Batched order writes ([`Store::commit_orders`]) are what the engine's group-commit
//! writer calls: one transaction for a whole batch of orders, their lines, idempotency keys and
//! outbox events.
//!
//! Modules:
//! - [`model`]: plain records that cross the storage boundary.
//! - [`store`]: the [`Store`] trait and its parts ([`UserStore`], [`CatalogStore`],
//!   [`OrderStore`], [`SessionStore`]).
//! - [`event_store`]: [`EventStore`] (the outbox relay, inboxes, dead letters, the ledger) and
//!   the relay's [`EventSink`].
//! - [`comparison`]: [`ComparisonStore`], the row-locked stock of the `pg_row` baseline (the
//!   stock-strategy comparison of the load tests), apart from [`Store`].
//! - [`sqlite`], [`postgres`]: the two backends: what their dialects do differently (batch
//!   writes, the relay's locks, arrays), and the queries both run as written, from `sql/`
//!   (compiled into each).
//! - [`error`]: the [`StoreError`] type.

pub mod comparison;
pub mod error;
pub mod event_store;
pub mod model;
pub mod postgres;
pub mod sqlite;
pub mod store;

use std::sync::Arc;

pub use comparison::{ComparisonStore, DropOrderRow, RowPurchase};
pub use error::{SinkError, StoreError};
pub use event_store::{EventSink, EventStore};
pub use model::*;
pub use store::{
    Backend, CartStore, CatalogStore, OrderStore, PaymentStore, SessionStore, SettlementStore,
    Store, UserStore, VerificationStore,
};

/// The store traits, for `use hurry_persistence::prelude::*` where their methods are called.
pub mod prelude {
    pub use crate::event_store::EventStore;
    pub use crate::store::{
        CartStore, CatalogStore, OrderLifeStore, OrderStore, PaymentStore, SessionStore,
        SettlementStore, Store, UserStore, VerificationStore,
    };
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// A pooled PostgreSQL connection idle longer than this is pinged before it is used (a
    /// dead one is replaced); busier ones are not, which saves a round trip per query.
    pub ping_idle_after: std::time::Duration,
    /// Longest time the store gives one batch write ([`OrderStore::commit_orders`]): the
    /// PostgreSQL statement timeout of the batch connections, the SQLite writer's busy timeout.
    /// A batch with no answer a while after it is `InDoubt`.
    pub commit_timeout: std::time::Duration,
}

impl ConnectOptions {
    /// `url` with at most `max_connections`, pinging connections idle for over a second, and
    /// batches of at most 2 s.
    pub fn new(url: impl Into<String>, max_connections: u32) -> Self {
        Self {
            url: url.into(),
            max_connections,
            ping_idle_after: std::time::Duration::from_secs(1),
            commit_timeout: std::time::Duration::from_secs(2),
        }
    }

    /// How long a batch write may go without an answer before it is `InDoubt`: the commit
    /// timeout and a margin for the answer to travel.
    pub fn write_deadline(&self) -> std::time::Duration {
        self.commit_timeout + self.commit_timeout / 2 + std::time::Duration::from_millis(100)
    }
}

/// Opens the store named by `options.url`, creating a SQLite file (and its folder) when absent,
/// and runs the migrations.
pub async fn connect(options: &ConnectOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(connect_with_comparison(options).await?.0)
}

/// [`connect`], and the same store as the comparison baselines' [`ComparisonStore`].
pub async fn connect_with_comparison(
    options: &ConnectOptions,
) -> Result<(Arc<dyn Store>, Arc<dyn ComparisonStore>), StoreError> {
    let url = options.url.as_str();
    if url.starts_with("sqlite:") {
        let store = Arc::new(sqlite::SqliteStore::connect(options).await?);
        Ok((store.clone(), store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = Arc::new(postgres::PgStore::connect(options).await?);
        Ok((store.clone(), store))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database url scheme in {url:?}: use sqlite:// or postgres://"
        )))
    }
}
