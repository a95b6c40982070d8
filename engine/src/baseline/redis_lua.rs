//! `redis_lua`: the usual flash-sale design, done correctly. Per drop, a Redis counter of
//! unsold units (`{prefix}strategy:stock:{ITEM}`) and a hash of units per buyer
//! (`{prefix}strategy:bought:{ITEM}`; the braces are literal, a hash tag, so both keys live
//! in one Redis Cluster slot). One Lua script checks stock and the per-user limit and takes
//! the units atomically; then the order is inserted on its own (one transaction per order, no
//! batching). An insert that certainly failed gives the units back; one whose outcome is
//! unknown is settled by the store, and stays taken while it cannot tell (never sell a unit
//! twice).

use std::time::Duration;

use async_trait::async_trait;
use hurry_persistence::{DropSpec, OrderRecord};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::common::{count_created, new_order, refuse, unavailable, Items, OncePerItem};
use super::{BaselineError, BaselineParts};
use crate::domain::Quantity;
use crate::drop::DropError;
use crate::seller::{PurchaseError, PurchaseRequest, Seller};
use crate::writer::InDoubt;

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

/// The `redis_lua` baseline.
pub(super) struct RedisLua {
    parts: BaselineParts,
    items: Items,
    /// Shared, multiplexed connection (reconnects by itself).
    conn: ConnectionManager,
    prefix: String,
    take: redis::Script,
    seed: redis::Script,
    give_back: redis::Script,
    /// Items whose counter this process has set up.
    seeded: OncePerItem,
}

/// What the take script decided.
enum Take {
    Taken,
    Refused(DropError),
    NoCounter,
}

impl RedisLua {
    /// The baseline on the Redis at `url`, keys under `prefix`; connects lazily.
    pub(super) fn new(
        url: &str,
        prefix: &str,
        parts: BaselineParts,
    ) -> Result<Self, BaselineError> {
        if url.is_empty() {
            return Err(BaselineError::NoRedis);
        }
        let redis_error = |err: redis::RedisError| BaselineError::Redis(err.to_string());
        let client = redis::Client::open(url).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        Ok(Self {
            parts,
            items: Items::default(),
            conn: ConnectionManager::new_lazy_with_config(client, config).map_err(redis_error)?,
            prefix: prefix.to_owned(),
            take: redis::Script::new(TAKE),
            seed: redis::Script::new(SEED),
            give_back: redis::Script::new(GIVE_BACK),
            seeded: OncePerItem::default(),
        })
    }

    /// The counter and the buyers' hash of `item_id`.
    fn keys(&self, item_id: i64) -> (String, String) {
        (
            format!("{}strategy:stock:{{{item_id}}}", self.prefix),
            format!("{}strategy:bought:{{{item_id}}}", self.prefix),
        )
    }

    /// Takes the units in Redis, setting the counter up first (again, once, if it vanished).
    async fn take_units(
        &self,
        request: &PurchaseRequest,
        spec: &DropSpec,
    ) -> Result<(), PurchaseError> {
        let item_id = request.item_id;
        let mut taken = Take::NoCounter;
        for _ in 0..2 {
            self.seeded
                .ensure(item_id, || self.set_up(item_id, spec))
                .await?;
            taken = self
                .take(item_id, request.user_id, request.quantity, spec)
                .await?;
            if !matches!(taken, Take::NoCounter) {
                break;
            }
            self.seeded.forget(item_id);
        }
        match taken {
            Take::Taken => Ok(()),
            Take::Refused(err) => Err(refuse(err)),
            Take::NoCounter => Err(unavailable()),
        }
    }

    /// Runs the take script.
    async fn take(
        &self,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        spec: &DropSpec,
    ) -> Result<Take, PurchaseError> {
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
    async fn set_up(&self, item_id: i64, spec: &DropSpec) -> Result<(), PurchaseError> {
        let sales = self
            .parts
            .store
            .drop_sales(item_id)
            .await
            .map_err(|_| unavailable())?;
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

    /// Whether order `id`, whose insert ended in doubt, is stored: `None` while the store
    /// cannot tell.
    async fn landed(&self, id: i64) -> Option<bool> {
        match self.parts.store.settle_orders(&[id]).await {
            Ok(stored) => Some(stored.contains(&id)),
            Err(err) => {
                tracing::error!(error = %err, order_id = id, "order outcome unknown; units stay taken");
                None
            }
        }
    }
}

#[async_trait]
impl Seller for RedisLua {
    fn refusal(&self, _item_id: i64) -> Option<PurchaseError> {
        None
    }

    async fn purchase(&self, request: PurchaseRequest) -> Result<OrderRecord, PurchaseError> {
        let parts = &self.parts;
        let (item_id, user_id, quantity) = (request.item_id, request.user_id, request.quantity);
        let (item, spec) = self
            .items
            .open_drop(parts.store.as_ref(), item_id, chrono::Utc::now())
            .await?;
        self.take_units(&request, &spec).await?;
        let Ok(id) = parts.order_ids.take(1).await else {
            self.give_back(item_id, user_id, quantity).await;
            return Err(unavailable());
        };
        let order = new_order(
            id,
            user_id,
            &item,
            quantity,
            request.idempotency,
            parts.payment_window,
        );
        let written = match parts
            .store
            .commit_orders(std::slice::from_ref(&order))
            .await
        {
            Ok(written) => !written.is_empty(),
            Err(err) if err.is_in_doubt() => match self.landed(id).await {
                Some(landed) => landed,
                None => return Err(PurchaseError::OutcomeUnknown(InDoubt::lost())),
            },
            Err(err) => {
                tracing::warn!(error = %err, order_id = id, "order insert failed");
                false
            }
        };
        if !written {
            self.give_back(item_id, user_id, quantity).await;
            return Err(if order.idempotency.is_some() {
                PurchaseError::Repeat
            } else {
                unavailable()
            });
        }
        count_created();
        Ok(order.to_record())
    }

    async fn available(&self, item_id: i64) -> Option<i64> {
        let (stock, _) = self.keys(item_id);
        redis::cmd("GET")
            .arg(stock)
            .query_async(&mut self.conn.clone())
            .await
            .ok()
            .flatten()
    }
}

/// Redis did not answer: `Unavailable`.
fn redis_down(err: redis::RedisError) -> PurchaseError {
    tracing::warn!(error = %err, "redis unavailable");
    unavailable()
}
