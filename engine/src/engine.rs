//! [`Engine`]: starts the writer and the drop supervisor, serves every open drop, and is the
//! [`Seller`] the API buys through.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hurry_persistence::{ItemRecord, OrderRecord, Store, StoreError};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::oneshot;

use crate::drop::{
    DropError, DropRegistry, DropSlot, ItemArgs, ItemMessage, ItemStatus, LocalLease, StockLease,
    SupervisorMessage,
};
use crate::seller::{NotServed, PurchaseError, PurchaseRequest, Seller};
use crate::supervisor::{EngineArgs, EngineMessage, EngineSupervisor};
use crate::writer::{
    CommitFaults, IdAllocator, InDoubt, Ticket, WriterArgs, WriterConfig, WriterHandle,
};

mod release;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub writer: WriterConfig,
    /// How long a new order may stay unpaid.
    pub payment_window: chrono::Duration,
    /// Purchases that may wait for one drop's actor before new ones get `Overloaded`.
    pub max_queue_per_drop: usize,
    /// Longest wait for a purchase's answer, commit included; must leave the writer its
    /// send budget ([`WriterConfig::send_budget`]).
    pub call_timeout: Duration,
    /// Order ids reserved per store round trip.
    pub id_block_size: u32,
    /// How long to keep trying for the store's drops claim at start (a process that just
    /// ended may still hold it for a moment).
    pub claim_wait: Duration,
}

/// Why the engine could not start or serve a drop.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("actor failed to start: {0}")]
    Spawn(String),
    #[error("engine settings cannot work: {0}")]
    Config(String),
}

/// The running engine. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    lease: Arc<dyn StockLease>,
    registry: Arc<DropRegistry>,
    root: ActorRef<EngineMessage>,
    supervisor: ActorRef<SupervisorMessage>,
    /// The writer serving now (the engine supervisor replaces it after a restart).
    writer: WriterHandle,
    /// Order ids, in blocks (shared with the writer).
    order_ids: Arc<IdAllocator>,
    /// This process holds the store's drops claim: it alone sells drops on the store.
    sells_drops: bool,
    /// Faults tests ask of the writer's next commits.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    faults: Arc<CommitFaults>,
    config: EngineConfig,
}

impl Engine {
    /// Takes the store's drops claim (see [`Engine::sells_drops`]), starts the actors and an
    /// item actor for every drop that has not closed.
    pub async fn start(store: Arc<dyn Store>, config: EngineConfig) -> Result<Self, EngineError> {
        if config.writer.send_budget() >= config.call_timeout {
            return Err(EngineError::Config(format!(
                "a purchase's wait ({:?}) must be longer than a batch's time in the store and \
                 its settling ({:?}): raise the call timeout or lower the commit timeout",
                config.call_timeout,
                config.writer.send_budget()
            )));
        }
        let sells_drops = claim_drops(store.as_ref(), config.claim_wait).await?;
        let ids = Arc::new(IdAllocator::new(store.clone(), config.id_block_size));
        let faults = Arc::new(CommitFaults::default());
        let args = EngineArgs {
            writer: WriterArgs {
                store: store.clone(),
                ids: ids.clone(),
                config: config.writer,
                faults: faults.clone(),
            },
            registry: Arc::new(DropRegistry::default()),
        };
        let registry = args.registry.clone();
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
            order_ids: ids,
            sells_drops,
            faults,
            config,
        };
        if sells_drops {
            for item in store.open_drops(Utc::now()).await? {
                engine.serve_drop(&item).await?;
            }
        }
        Ok(engine)
    }

    /// Whether this process sells the store's drops. Until cluster mode has real leases one
    /// process per store may (the first to claim them): another answers drop purchases with
    /// [`NotServed::OtherProcess`].
    pub fn sells_drops(&self) -> bool {
        self.sells_drops
    }

    /// Starts serving the drop of `item` (no-op for a general item, one already served, or
    /// when another process sells this store's drops).
    pub async fn serve_drop(&self, item: &ItemRecord) -> Result<(), EngineError> {
        let Some(spec) = item.drop.clone() else {
            return Ok(());
        };
        if !self.sells_drops {
            return Ok(());
        }
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

    /// The slot of an item no actor serves here yet: why not, or (a drop created through
    /// another node, or one started only now) its slot once served.
    async fn serve_on_demand(&self, item_id: i64) -> Result<Arc<DropSlot>, PurchaseError> {
        let item = self
            .store
            .item_by_id(item_id)
            .await
            .map_err(|_| DropError::Unavailable)?
            .ok_or(NotServed::UnknownItem)?;
        let spec = item.drop.as_ref().ok_or(NotServed::NotADrop)?;
        if spec.closes_at <= Utc::now() {
            return Err(NotServed::Closed.into());
        }
        if !self.sells_drops {
            return Err(NotServed::OtherProcess.into());
        }
        self.serve_drop(&item).await.map_err(|err| {
            tracing::error!(error = %err, item_id, "cannot start the drop");
            DropError::Unavailable
        })?;
        self.registry
            .get(item_id)
            .ok_or_else(|| DropError::Unavailable.into())
    }

    /// Buys through drop `request.item_id`'s actor. The answer is final: `Ok` is committed;
    /// an error means nothing was bought and nothing will be, except `OutcomeUnknown`.
    async fn buy(&self, request: PurchaseRequest) -> Result<OrderRecord, PurchaseError> {
        let slot = match self.registry.get(request.item_id) {
            Some(slot) => slot,
            None => self.serve_on_demand(request.item_id).await?,
        };
        if let Some(refusal) = counted_refusal(&slot) {
            return Err(refusal);
        }
        let _queued = QueueTicket::enter(&slot, self.config.max_queue_per_drop)?;
        let actor = slot.actor().ok_or(DropError::Unavailable)?;
        let ticket = Arc::new(Ticket::default());
        // A caller that goes away (its client hung up) abandons the draft too.
        let _abandon = AbandonOnDrop(ticket.clone());
        let deadline = tokio::time::Instant::now() + self.config.call_timeout;
        let (reply, mut answer) = oneshot::channel();
        actor
            .cast(ItemMessage::Reserve {
                request,
                ticket: ticket.clone(),
                deadline,
                reply,
            })
            .map_err(|_| DropError::Unavailable)?;
        match tokio::time::timeout_at(deadline, &mut answer).await {
            Ok(Ok(result)) => result,
            // No answer in time, or none will come: nothing was bought if the draft never
            // went to the store, which abandoning it makes sure of.
            _ if ticket.abandon() => Err(DropError::Unavailable.into()),
            // The store has it (the writer answers within its write deadline), or had it when
            // the answer was lost.
            Ok(Err(_)) => Err(PurchaseError::OutcomeUnknown(InDoubt::lost())),
            Err(_) => answer
                .await
                .unwrap_or_else(|_| Err(PurchaseError::OutcomeUnknown(InDoubt::lost()))),
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

    /// The order id allocator (shared with the writer).
    pub fn order_ids(&self) -> &Arc<IdAllocator> {
        &self.order_ids
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
        let item = item.ok_or(NotServed::UnknownItem)?;
        let spec = item.drop.ok_or(NotServed::NotADrop)?;
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

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops the actors; the drops claim is given up in the background.
    pub fn shutdown(&self) {
        self.stop_actors();
        if self.sells_drops {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let store = self.store.clone();
                runtime.spawn(async move { store.release_drops().await });
            }
        }
    }

    /// Stops the actors and gives the drops claim up before returning.
    pub async fn stop(&self) {
        self.stop_actors();
        if self.sells_drops {
            self.store.release_drops().await;
        }
    }

    fn stop_actors(&self) {
        self.root.stop(None);
        self.supervisor.stop(None);
        self.writer.current().stop(None);
    }
}

/// Test and drill hooks: they make the engine's parts fail on command.
#[cfg(feature = "test-hooks")]
impl Engine {
    /// Makes drop `item_id`'s actor panic; `false` when none runs.
    pub fn crash_item(&self, item_id: i64) -> bool {
        self.registry
            .get(item_id)
            .and_then(|slot| slot.actor())
            .is_some_and(|actor| actor.cast(ItemMessage::Crash).is_ok())
    }

    /// Makes the writer panic; `false` when it could not be asked.
    pub fn crash_writer(&self) -> bool {
        self.writer
            .current()
            .cast(crate::writer::WriterMessage::Crash)
            .is_ok()
    }

    /// Makes the writer's next commit fail with `fault`.
    pub fn inject_commit_fault(&self, fault: crate::writer::CommitFault) {
        self.faults.inject(fault);
    }
}

#[async_trait]
impl Seller for Engine {
    fn refusal(&self, item_id: i64) -> Option<PurchaseError> {
        counted_refusal(self.registry.get(item_id)?.as_ref())
    }

    async fn purchase(&self, request: PurchaseRequest) -> Result<OrderRecord, PurchaseError> {
        self.buy(request).await
    }

    async fn available(&self, item_id: i64) -> Option<i64> {
        self.item_status(item_id)
            .await
            .map(|status| status.stock_in_memory)
    }
}

/// Takes `store`'s drops claim, trying for up to `wait` (a process that just stopped may
/// hold it a moment longer); `false` when another process keeps it.
async fn claim_drops(store: &dyn Store, wait: Duration) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if store.claim_drops().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The slot's answer at this instant without looking at the buyer (not open, closed, sold
/// out), counted in `hurry_purchases_total` as the actor counts its own refusals.
fn counted_refusal(slot: &DropSlot) -> Option<PurchaseError> {
    let refusal = slot.refusal(Utc::now())?;
    metrics::counter!("hurry_purchases_total", "outcome" => refusal.code()).increment(1);
    Some(refusal.into())
}

/// Abandons a draft when its caller stops waiting, whichever way it stops.
struct AbandonOnDrop(Arc<Ticket>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandon();
    }
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
