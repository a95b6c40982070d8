//! `redis_lua`: the usual flash-sale design, done correctly. Per drop, a Redis counter of
//! unsold units (`{prefix}strategy:stock:{ITEM}`) and a hash of units per buyer
//! (`{prefix}strategy:bought:{ITEM}`; the braces are literal, a hash tag, so both keys live
//! in one Redis Cluster slot). One Lua script checks stock and the per-user limit and takes
//! the units atomically; then the order is inserted on its own (one transaction per order, no
//! batching). An insert that certainly failed gives the units back; one whose outcome is
//! unknown keeps them taken (never sell a unit twice).

use std::time::Duration;

use hurry_engine::domain::Quantity;
use hurry_engine::drop::DropError;
use hurry_persistence::{DropSpec, IdempotencyEntry, OrderRecord};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{count_created, new_order, open_drop, refuse, unavailable, OncePerItem};
use crate::error::ApiError;
use crate::state::AppState;

/// Takes `ARGV[2]` units for user `ARGV[1]` under limit `ARGV[3]`. Answers `{code, units}`:
/// 0 taken (units left), 1 sold out, 2 limit reached, 3 too few units (units left),
/// -1 no counter (never set up, or gone).
const TAKE: &str = r"
local stock = tonumber(redis.call('GET', KEYS[1]))
if stock == nil then return {-1, 0} end
if stock <= 0 then return {1, 0} end
local wanted = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + wanted > tonumber(ARGV[3]) then return {2, stock} end
if stock < wanted then return {3, stock} end
redis.call('DECRBY', KEYS[1], wanted)
redis.call('HINCRBY', KEYS[2], ARGV[1], wanted)
return {0, stock - wanted}
";

/// Sets the counter to `ARGV[1]` unless it exists; when it did not, replaces the buyers'
/// hash with the `user, units` pairs that follow, in the same step (no buyer can slip in
/// between). Answers 1 when it set the counter.
const SEED: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('DEL', KEYS[2])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
";

/// Gives `ARGV[2]` units of user `ARGV[1]` back.
const GIVE_BACK: &str = r"
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
return 1
";

/// The `redis_lua` strategy.
pub struct RedisLua {
    /// Shared, multiplexed connection (reconnects by itself).
    conn: ConnectionManager,
    prefix: String,
    take: redis::Script,
    seed: redis::Script,
    give_back: redis::Script,
    /// Items whose counter this process has set up.
    seeded: OncePerItem,
    /// How long a new order may stay unpaid.
    payment_window: chrono::Duration,
}

/// What the take script decided.
enum Take {
    Taken,
    Refused(DropError),
    NoCounter,
}

impl RedisLua {
    /// The strategy on the Redis at `url`, keys under `prefix`; connects lazily.
    pub fn new(url: &str, prefix: &str, payment_window: chrono::Duration) -> anyhow::Result<Self> {
        if url.is_empty() {
            anyhow::bail!(
                "engine.stock_strategy = \"redis_lua\" needs redis.url (HURRY__REDIS__URL)"
            );
        }
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        Ok(Self {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: prefix.to_owned(),
            take: redis::Script::new(TAKE),
            seed: redis::Script::new(SEED),
            give_back: redis::Script::new(GIVE_BACK),
            seeded: OncePerItem::default(),
            payment_window,
        })
    }

    /// The counter and the buyers' hash of `item_id`.
    fn keys(&self, item_id: i64) -> (String, String) {
        (
            format!("{}strategy:stock:{{{item_id}}}", self.prefix),
            format!("{}strategy:bought:{{{item_id}}}", self.prefix),
        )
    }

    /// Buys `quantity` units of drop `item_id` for `user_id`; the order is committed when
    /// this returns `Ok`.
    pub async fn purchase(
        &self,
        state: &AppState,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        idempotency: Option<IdempotencyEntry>,
    ) -> Result<OrderRecord, ApiError> {
        let (item, spec) = open_drop(state, item_id, chrono::Utc::now()).await?;
        let mut taken = Take::NoCounter;
        // A counter that vanished (flushed, expired by hand) is set up again, once.
        for _ in 0..2 {
            self.seeded
                .ensure(item_id, || self.set_up(state, item_id, &spec))
                .await?;
            taken = self.take(item_id, user_id, quantity, &spec).await?;
            if !matches!(taken, Take::NoCounter) {
                break;
            }
            self.seeded.forget(item_id);
        }
        match taken {
            Take::Taken => {}
            Take::Refused(err) => return Err(refuse(err)),
            Take::NoCounter => return Err(unavailable()),
        }
        let Ok(id) = state.engine.next_order_id().await else {
            self.give_back(item_id, user_id, quantity).await;
            return Err(unavailable());
        };
        let order = new_order(
            id,
            user_id,
            &item,
            quantity,
            idempotency,
            self.payment_window,
        );
        if let Err(err) = state
            .store
            .commit_orders(std::slice::from_ref(&order))
            .await
        {
            tracing::warn!(error = %err, order_id = id, "order insert failed");
            // The insert may have landed all the same: only give the units back when the
            // store says it did not.
            match state.store.order_by_id(id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.give_back(item_id, user_id, quantity).await;
                    return Err(unavailable());
                }
                Err(err) => {
                    tracing::error!(error = %err, order_id = id, "order outcome unknown; units stay taken");
                    return Err(unavailable());
                }
            }
        }
        state.engine.outbox_written().notify_one();
        count_created();
        Ok(order.to_record())
    }

    /// Runs the take script.
    async fn take(
        &self,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        spec: &DropSpec,
    ) -> Result<Take, ApiError> {
        let (stock, bought) = self.keys(item_id);
        let (code, units): (i64, i64) = self
            .take
            .key(stock)
            .key(bought)
            .arg(user_id)
            .arg(quantity.get())
            .arg(spec.per_user_limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_down)?;
        Ok(match code {
            0 => Take::Taken,
            1 => Take::Refused(DropError::SoldOut),
            2 => Take::Refused(DropError::LimitReached {
                limit: spec.per_user_limit,
            }),
            3 => Take::Refused(DropError::InsufficientStock { available: units }),
            _ => Take::NoCounter,
        })
    }

    /// Sets the counter to the drop's unsold units and the buyers' hash to what they hold,
    /// unless the counter exists (another node or an earlier run set it up).
    async fn set_up(
        &self,
        state: &AppState,
        item_id: i64,
        spec: &DropSpec,
    ) -> Result<(), ApiError> {
        let sales = state.store.drop_sales(item_id).await?;
        let unsold = (spec.total_units - sales.total()).max(0);
        let (stock, bought) = self.keys(item_id);
        let mut invocation = self.seed.key(stock);
        invocation.key(bought).arg(unsold);
        for (user_id, units) in &sales.per_user {
            invocation.arg(user_id).arg(units);
        }
        let created: i64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_down)?;
        tracing::info!(
            item_id,
            unsold,
            created = created == 1,
            "redis stock counter ready"
        );
        Ok(())
    }

    /// Gives units taken for an order that was not written back to the counter.
    async fn give_back(&self, item_id: i64, user_id: i64, quantity: Quantity) {
        let (stock, bought) = self.keys(item_id);
        let given: Result<i64, _> = self
            .give_back
            .key(stock)
            .key(bought)
            .arg(user_id)
            .arg(quantity.get())
            .invoke_async(&mut self.conn.clone())
            .await;
        if let Err(err) = given {
            tracing::error!(error = %err, item_id, user_id, "cannot give units back; they stay taken");
        }
    }

    /// The counter of `item_id`; `None` when it is not set up.
    pub async fn available(&self, item_id: i64) -> Result<Option<i64>, ApiError> {
        let (stock, _) = self.keys(item_id);
        redis::cmd("GET")
            .arg(stock)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_down)
    }
}

/// Redis did not answer: `503 unavailable`.
fn redis_down(err: redis::RedisError) -> ApiError {
    tracing::warn!(error = %err, "redis unavailable");
    unavailable()
}
