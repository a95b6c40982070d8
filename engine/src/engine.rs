//! [`Engine`]: starts the writer and the drop supervisor, serves every open drop, and is the
//! one door the API uses to buy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hurry_persistence::{IdempotencyEntry, ItemRecord, OrderRecord, Store, StoreError};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

use crate::domain::{OrderStatus, Quantity};
use crate::drop::{
    DropError, DropRegistry, DropSlot, ItemArgs, ItemMessage, ItemStatus, LocalLease, StockLease,
    SupervisorMessage,
};
use crate::supervisor::{EngineArgs, EngineMessage, EngineSupervisor};
use crate::writer::{IdAllocator, WriterArgs, WriterConfig, WriterMessage};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub writer: WriterConfig,
    /// How long a new order may stay unpaid.
    pub payment_window: chrono::Duration,
    /// Purchases that may wait for one drop's actor before new ones get `Overloaded`.
    pub max_queue_per_drop: usize,
    /// Longest wait for an actor's answer (including the commit).
    pub call_timeout: Duration,
    /// Order ids reserved per store round trip.
    pub id_block_size: u32,
}

/// Why the engine could not start or serve a drop.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("actor failed to start: {0}")]
    Spawn(String),
}

/// Why a purchase did not become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurchaseError {
    /// This node serves no drop for the item (a general item, or a drop that has closed).
    #[error("no live drop for this item")]
    NotServed,
    #[error(transparent)]
    Drop(#[from] DropError),
}

/// The running engine. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    lease: Arc<dyn StockLease>,
    registry: Arc<DropRegistry>,
    root: ActorRef<EngineMessage>,
    supervisor: ActorRef<SupervisorMessage>,
    /// The first writer; after a restart the drop supervisor substitutes the current one.
    writer: ActorRef<WriterMessage>,
    /// Woken whenever the engine has written outbox rows (the relay listens).
    outbox_written: Arc<tokio::sync::Notify>,
    /// Order ids, in blocks (shared with the writer).
    order_ids: Arc<IdAllocator>,
    config: EngineConfig,
}

impl Engine {
    /// Starts the actors and an item actor for every drop that has not closed.
    pub async fn start(store: Arc<dyn Store>, config: EngineConfig) -> Result<Self, EngineError> {
        let ids = Arc::new(IdAllocator::new(store.clone(), config.id_block_size));
        let order_ids = ids.clone();
        let outbox_written = Arc::new(tokio::sync::Notify::new());
        let writer_args = WriterArgs {
            store: store.clone(),
            ids,
            config: config.writer,
            committed: outbox_written.clone(),
        };
        let registry = Arc::new(DropRegistry::default());
        let args = EngineArgs {
            writer: writer_args,
            registry: registry.clone(),
        };
        let (root, _) = Actor::spawn(None, EngineSupervisor, args)
            .await
            .map_err(|err| EngineError::Spawn(err.to_string()))?;
        let (writer, supervisor) = root
            .call(EngineMessage::Children, Some(config.call_timeout))
            .await
            .ok()
            .and_then(|answer| match answer {
                CallResult::Success(children) => Some(children),
                _ => None,
            })
            .ok_or_else(|| EngineError::Spawn("engine supervisor did not answer".into()))?;
        let engine = Self {
            store: store.clone(),
            lease: Arc::new(LocalLease),
            registry,
            root,
            supervisor,
            writer,
            outbox_written,
            order_ids,
            config,
        };
        for item in store.open_drops(Utc::now()).await? {
            engine.serve_drop(&item).await?;
        }
        Ok(engine)
    }

    /// What the outbox relay waits on: woken after the engine writes outbox rows.
    pub fn outbox_written(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_written.clone()
    }

    /// Starts serving the drop of `item` (no-op for a general item or one already served).
    pub async fn serve_drop(&self, item: &ItemRecord) -> Result<(), EngineError> {
        let Some(spec) = item.drop.clone() else {
            return Ok(());
        };
        let (slot, _) = self.registry.get_or_create(item.id);
        let args = ItemArgs {
            item_id: item.id,
            unit_price: item.price,
            spec,
            slot,
            store: self.store.clone(),
            lease: self.lease.clone(),
            writer: self.writer.clone(),
            payment_window: self.config.payment_window,
        };
        let started = self
            .supervisor
            .call(
                |reply| SupervisorMessage::Start { args, reply },
                Some(self.config.call_timeout),
            )
            .await;
        match started {
            Ok(CallResult::Success(Ok(()))) => Ok(()),
            Ok(CallResult::Success(Err(err))) => Err(EngineError::Spawn(err)),
            Ok(_) | Err(_) => Err(EngineError::Spawn("drop supervisor did not answer".into())),
        }
    }

    /// The answer a purchase of drop `item_id` gets right now whoever asks (not open, closed,
    /// sold out), decided from memory; `None` when the actor has to decide.
    pub fn refusal(&self, item_id: i64) -> Option<PurchaseError> {
        counted_refusal(self.registry.get(item_id)?.as_ref())
    }

    /// Buys `quantity` units of drop `item_id` for `user_id`; the order is committed when this
    /// returns `Ok`.
    pub async fn purchase(
        &self,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        idempotency: Option<IdempotencyEntry>,
    ) -> Result<OrderRecord, PurchaseError> {
        let slot = self.registry.get(item_id).ok_or(PurchaseError::NotServed)?;
        if let Some(refusal) = counted_refusal(&slot) {
            return Err(refusal);
        }
        let _queued = QueueTicket::enter(&slot, self.config.max_queue_per_drop)?;
        let actor = slot.actor().ok_or(DropError::Unavailable)?;
        let answer = actor
            .call(
                |reply| ItemMessage::Reserve {
                    user_id,
                    quantity,
                    idempotency,
                    reply,
                },
                Some(self.config.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result.map_err(PurchaseError::Drop),
            Ok(CallResult::Timeout) | Ok(CallResult::SenderError) | Err(_) => {
                Err(PurchaseError::Drop(DropError::Unavailable))
            }
        }
    }

    /// Cancels pending order `order_id` whose one line is `quantity` units of `item_id`,
    /// giving the units back to the drop when it is served here; `Ok(false)` when the order was
    /// no longer pending.
    pub async fn cancel_order(
        &self,
        order_id: i64,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
    ) -> Result<bool, PurchaseError> {
        let Some(actor) = self.registry.get(item_id).and_then(|slot| slot.actor()) else {
            if self.registry.get(item_id).is_some() {
                // Served, but restarting: its recount must not race this change.
                return Err(DropError::Unavailable.into());
            }
            return self
                .store
                .transition_order(
                    order_id,
                    OrderStatus::PendingPayment.as_str(),
                    OrderStatus::Cancelled.as_str(),
                )
                .await
                .map_err(|_| PurchaseError::Drop(DropError::Unavailable));
        };
        let answer = actor
            .call(
                |reply| ItemMessage::Cancel {
                    order_id,
                    user_id,
                    quantity,
                    reply,
                },
                Some(self.config.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result.map_err(PurchaseError::Drop),
            _ => Err(DropError::Unavailable.into()),
        }
    }

    /// Tells drop `item_id`'s actor (when served here) to price new orders at `price`.
    pub fn reprice_drop(&self, item_id: i64, price: i64) {
        if let Some(actor) = self.registry.get(item_id).and_then(|slot| slot.actor()) {
            let _ = actor.cast(ItemMessage::SetPrice { price });
        }
    }

    /// Closes drop `item_id` (its item was deleted): purchases are refused as `Closed` from
    /// now on, from the slot, without reaching the actor.
    pub fn close_drop(&self, item_id: i64, spec: &hurry_persistence::DropSpec) {
        if let Some(slot) = self.registry.get(item_id) {
            let mut closed = spec.clone();
            closed.closes_at = closed.closes_at.min(Utc::now());
            slot.set_window(&closed);
        }
    }

    /// A fresh order id (for orders written outside the drop path).
    pub async fn next_order_id(&self) -> Result<i64, StoreError> {
        self.order_ids.take(1).await
    }

    /// Changes the size of drop `item_id` by `delta` units; answers its units afterwards.
    /// A served drop changes through its actor (added units are sellable when this returns);
    /// a drop not served here (closed) changes in the store, never below what is sold.
    pub async fn adjust_drop_units(&self, item_id: i64, delta: i64) -> Result<i64, PurchaseError> {
        if let Some(slot) = self.registry.get(item_id) {
            let Some(actor) = slot.actor() else {
                return Err(DropError::Unavailable.into());
            };
            let answer = actor
                .call(
                    |reply| ItemMessage::AdjustUnits { delta, reply },
                    Some(self.config.call_timeout),
                )
                .await;
            return match answer {
                Ok(CallResult::Success(result)) => result.map_err(PurchaseError::Drop),
                _ => Err(DropError::Unavailable.into()),
            };
        }
        let unavailable = |_| PurchaseError::Drop(DropError::Unavailable);
        let item = self.store.item_by_id(item_id).await.map_err(unavailable)?;
        let Some(spec) = item.and_then(|item| item.drop) else {
            return Err(PurchaseError::NotServed);
        };
        let sold = self
            .store
            .drop_sales(item_id)
            .await
            .map_err(unavailable)?
            .total();
        let after = spec.total_units + delta;
        if after < sold {
            return Err(DropError::InsufficientStock {
                available: spec.total_units - sold,
            }
            .into());
        }
        self.store
            .adjust_drop_units(item_id, delta)
            .await
            .map_err(unavailable)?;
        Ok(after)
    }

    /// The shared state of drop `item_id`, if served here.
    pub fn drop_slot(&self, item_id: i64) -> Option<Arc<DropSlot>> {
        self.registry.get(item_id)
    }

    /// Every drop served here.
    pub fn drop_slots(&self) -> Vec<Arc<DropSlot>> {
        self.registry.all()
    }

    /// Asks drop `item_id`'s actor for its status.
    pub async fn item_status(&self, item_id: i64) -> Option<ItemStatus> {
        let actor = self.registry.get(item_id)?.actor()?;
        match actor
            .call(ItemMessage::Status, Some(self.config.call_timeout))
            .await
        {
            Ok(CallResult::Success(status)) => Some(status),
            _ => None,
        }
    }

    /// Makes drop `item_id`'s actor panic (tests and drills); `false` when none runs.
    pub fn crash_item(&self, item_id: i64) -> bool {
        self.registry
            .get(item_id)
            .and_then(|slot| slot.actor())
            .is_some_and(|actor| actor.cast(ItemMessage::Crash).is_ok())
    }

    /// Makes the writer panic (tests and drills); `false` when it could not be asked.
    pub async fn crash_writer(&self) -> bool {
        match self
            .root
            .call(EngineMessage::Children, Some(self.config.call_timeout))
            .await
        {
            Ok(CallResult::Success((writer, _))) => writer.cast(WriterMessage::Crash).is_ok(),
            _ => false,
        }
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops the actors.
    pub fn shutdown(&self) {
        self.root.stop(None);
        self.supervisor.stop(None);
        self.writer.stop(None);
    }
}

/// The slot's answer at this instant without looking at the buyer (not open, closed, sold
/// out), counted in `hurry_purchases_total` as the actor counts its own refusals.
fn counted_refusal(slot: &DropSlot) -> Option<PurchaseError> {
    let refusal = slot.refusal(Utc::now())?;
    metrics::counter!("hurry_purchases_total", "outcome" => refusal.code()).increment(1);
    Some(refusal.into())
}

/// Counts a purchase as waiting for its drop's actor while it lives.
struct QueueTicket<'a>(&'a DropSlot);

impl<'a> QueueTicket<'a> {
    fn enter(slot: &'a DropSlot, limit: usize) -> Result<Self, DropError> {
        let waiting = slot.queued.fetch_add(1, Ordering::AcqRel);
        let ticket = QueueTicket(slot);
        if waiting >= limit {
            return Err(DropError::Overloaded);
        }
        Ok(ticket)
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}
