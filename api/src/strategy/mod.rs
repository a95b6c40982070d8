//! How a drop purchase takes its units (`engine.stock_strategy`).
//!
//! `actor` is the engine: the route hands the purchase to the drop's item actor and the writer
//! group-commits the order; nothing here runs for it. The other two exist only so the load-test
//! harness can compare the engine with what flash-sale systems usually do (issue 6); both are
//! correct (no oversell, per-user limits hold, every 201 is committed) but pay a round trip to a
//! shared service per purchase:
//! - [`redis_lua`]: [`RedisLua`], a Lua script on a Redis counter, then one insert per order.
//! - [`pg_row`]: [`PgRow`], one database transaction per order on a locked stock row.
//!
//! Both answer like the actor (`drop_not_open`, `drop_closed`, `sold_out`, `limit_reached`,
//! `insufficient_stock`, `unavailable`) and write the order the writer would write. Neither
//! hears of cancellations or expiries: a unit given back in the store is not sold again.

pub mod pg_row;
pub mod redis_lua;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use dashmap::DashMap;
use hurry_engine::domain::{OrderStatus, Quantity};
use hurry_engine::drop::DropError;
use hurry_persistence::{DropSpec, IdempotencyEntry, ItemRecord, NewOrder, OrderLine};
use tokio::sync::OnceCell;

pub use pg_row::PgRow;
pub use redis_lua::RedisLua;

use crate::error::ApiError;
use crate::routes::orders::{item_not_found, not_a_drop};
use crate::settings::{Settings, StockStrategy};
use crate::state::AppState;

/// The running stock strategy, built from `engine.stock_strategy`.
pub enum Strategy {
    /// The engine's item actors (the route calls the engine).
    Actor,
    /// A Lua script on a Redis counter, then one insert per order.
    RedisLua(RedisLua),
    /// One transaction per order on a locked stock row.
    PgRow(PgRow),
}

impl Strategy {
    /// The strategy `settings` name; `redis_lua` needs `redis.url`.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let payment_window = chrono::Duration::seconds(
            i64::try_from(settings.engine.payment_timeout_secs).unwrap_or(600),
        );
        let strategy = match settings.engine.stock_strategy {
            StockStrategy::Actor => return Ok(Strategy::Actor),
            StockStrategy::RedisLua => Strategy::RedisLua(RedisLua::new(
                &settings.redis.url,
                &settings.redis.key_prefix,
                payment_window,
            )?),
            StockStrategy::PgRow => Strategy::PgRow(PgRow::new(payment_window)),
        };
        tracing::warn!(
            strategy = strategy.kind().as_str(),
            "drop purchases use a stock strategy meant for load-test comparison only"
        );
        Ok(strategy)
    }

    /// Which strategy this is.
    pub fn kind(&self) -> StockStrategy {
        match self {
            Strategy::Actor => StockStrategy::Actor,
            Strategy::RedisLua(_) => StockStrategy::RedisLua,
            Strategy::PgRow(_) => StockStrategy::PgRow,
        }
    }

    /// Units of drop `item_id` still sellable according to this strategy; `None` when unknown
    /// (no actor runs for it, or its counter or row was never set up).
    pub async fn available(&self, state: &AppState, item_id: i64) -> Result<Option<i64>, ApiError> {
        match self {
            Strategy::Actor => Ok(state
                .engine
                .item_status(item_id)
                .await
                .map(|status| status.stock_in_memory)),
            Strategy::RedisLua(lua) => lua.available(item_id).await,
            Strategy::PgRow(_) => Ok(state.store.row_stock(item_id).await?),
        }
    }
}

/// The drop of live item `item_id` (from the catalogue cache) if it is open at `now`, with the
/// actor's refusals otherwise.
async fn open_drop(
    state: &AppState,
    item_id: i64,
    now: DateTime<Utc>,
) -> Result<(Arc<ItemRecord>, DropSpec), ApiError> {
    let item = state
        .catalog
        .item(&state.store, item_id)
        .await?
        .ok_or_else(|| item_not_found(item_id))?;
    let spec = item.drop.clone().ok_or_else(not_a_drop)?;
    if now < spec.opens_at {
        return Err(refuse(DropError::NotOpen {
            opens_at: spec.opens_at,
        }));
    }
    if now >= spec.closes_at {
        return Err(refuse(DropError::Closed));
    }
    Ok((item, spec))
}

/// Counts a purchase that did not become an order, as the item actor does, and answers it.
fn refuse(err: DropError) -> ApiError {
    metrics::counter!("hurry_purchases_total", "outcome" => err.code()).increment(1);
    err.into()
}

/// Counts a purchase that became an order.
fn count_created() {
    metrics::counter!("hurry_purchases_total", "outcome" => "created").increment(1);
}

/// A purchase whose order could not be made durable: `503 unavailable`, counted.
fn unavailable() -> ApiError {
    refuse(DropError::Unavailable)
}

/// What the writer would write for this purchase: pending payment until `payment_window`
/// from now, one line at the item's price, under the idempotency entry.
fn new_order(
    id: i64,
    user_id: i64,
    item: &ItemRecord,
    quantity: Quantity,
    idempotency: Option<IdempotencyEntry>,
    payment_window: chrono::Duration,
) -> NewOrder {
    // Microseconds: what both stores keep, so a replayed answer matches the first one.
    let now = Utc::now().trunc_subsecs(6);
    let units = i64::from(quantity.get());
    let amount = units * item.price;
    NewOrder {
        id,
        user_id,
        status: OrderStatus::PendingPayment.as_str().to_owned(),
        amount,
        payment_due_at: Some(now + payment_window),
        created_at: now,
        lines: vec![OrderLine {
            item_id: item.id,
            quantity: units,
            unit_price: item.price,
            amount,
        }],
        idempotency,
    }
}

/// Per-item set-up that runs once per process (a Redis counter, a stock row): concurrent
/// first purchases wait for one set-up; a failed one is tried again by the next purchase.
#[derive(Default)]
struct OncePerItem(DashMap<i64, Arc<OnceCell<()>>>);

impl OncePerItem {
    /// Runs `set_up` for `item_id` unless it has succeeded before.
    async fn ensure<F, Fut>(&self, item_id: i64, set_up: F) -> Result<(), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), ApiError>>,
    {
        let cell = match self.0.get(&item_id) {
            Some(cell) if cell.initialized() => return Ok(()),
            Some(cell) => cell.clone(),
            None => self.0.entry(item_id).or_default().clone(),
        };
        cell.get_or_try_init(set_up).await.map(|_| ())
    }

    /// Forgets `item_id`'s set-up (what it made has gone): the next purchase runs it again.
    fn forget(&self, item_id: i64) {
        self.0.remove(&item_id);
    }
}
