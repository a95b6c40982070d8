//! The comparison baselines of the load tests (`engine.stock_strategy`): what flash-sale
//! systems usually do, done correctly, so the harness can set the engine beside them. Both are
//! [`Seller`]s like the engine, built with the `baseline` feature only; a production build has
//! none and [`build`] refuses them. Both answer like the engine (`drop_not_open`,
//! `drop_closed`, `sold_out`, `limit_reached`, `insufficient_stock`, `unavailable`, a repeat
//! for a stored key) and write the order the writer would write, but pay a round trip to a
//! shared service per purchase:
//! - `redis_lua`: a Lua script on a Redis counter, then one insert per order.
//! - `pg_row`: one database transaction per order on a locked stock row.
//!
//! Neither hears of cancellations, expiries or changes of a drop's size or price: a unit given
//! back in the store is not sold again. They are for load tests only.

#[cfg(feature = "baseline")]
mod common;
#[cfg(feature = "baseline")]
mod pg_row;
#[cfg(feature = "baseline")]
mod redis_lua;

use std::sync::Arc;

use hurry_persistence::{ComparisonStore, Store};

use crate::seller::Seller;
use crate::writer::IdAllocator;

/// Which baseline to build.
#[derive(Debug, Clone)]
pub enum BaselineKind {
    /// A Lua script on the Redis at `url`, keys under `prefix`.
    RedisLua { url: String, prefix: String },
    /// A locked stock row per drop in the store.
    PgRow,
}

/// What a baseline works with: the engine's store and ids.
#[derive(Clone)]
pub struct BaselineParts {
    pub store: Arc<dyn Store>,
    pub comparison: Arc<dyn ComparisonStore>,
    pub order_ids: Arc<IdAllocator>,
    /// How long a new order may stay unpaid.
    pub payment_window: chrono::Duration,
}

/// Why a baseline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("this build has no comparison baselines: build with `--features baseline`")]
    NotBuilt,
    #[error("the redis_lua baseline needs redis.url (HURRY__REDIS__URL)")]
    NoRedis,
    #[error("redis: {0}")]
    Redis(String),
}

/// The baseline `kind` over `parts`.
pub fn build(kind: BaselineKind, parts: BaselineParts) -> Result<Arc<dyn Seller>, BaselineError> {
    #[cfg(feature = "baseline")]
    {
        tracing::warn!(
            ?kind,
            "drop purchases use a stock strategy meant for load-test comparison only"
        );
        Ok(match kind {
            BaselineKind::RedisLua { url, prefix } => {
                Arc::new(redis_lua::RedisLua::new(&url, &prefix, parts)?)
            }
            BaselineKind::PgRow => Arc::new(pg_row::PgRow::new(parts)),
        })
    }
    #[cfg(not(feature = "baseline"))]
    {
        let _ = (kind, parts);
        Err(BaselineError::NotBuilt)
    }
}
