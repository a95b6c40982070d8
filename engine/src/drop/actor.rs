//! The item actor: one per limited item, deciding purchases from memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;
use hurry_persistence::{DropSpec, OrderLine, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::book::DropBook;
use super::error::DropError;
use super::lease::StockLease;
use super::messages::{ItemMessage, ItemStatus, PurchaseReply, ReleaseChange};
use super::settle::DropUnits;
use super::slot::DropSlot;
use crate::domain::{OrderStatus, Quantity};
use crate::seller::PurchaseRequest;
use crate::writer::{Draft, DraftOrder, Reply, Ticket, WriteError, WriterHandle, WriterMessage};

/// Decides purchases of one drop. See the crate docs for the flow.
#[derive(Debug, Default)]
pub struct ItemActor;

/// What an item actor starts from.
#[derive(Clone)]
pub struct ItemArgs {
    pub item_id: i64,
    /// Won per unit.
    pub unit_price: i64,
    pub spec: DropSpec,
    pub slot: Arc<DropSlot>,
    pub store: Arc<dyn Store>,
    pub lease: Arc<dyn StockLease>,
    /// Whichever writer serves when a draft is handed on.
    pub writer: WriterHandle,
    /// How long a new order may stay unpaid.
    pub payment_window: chrono::Duration,
}

/// The running state of an item actor.
pub struct ItemState {
    args: ItemArgs,
    book: DropBook,
    rates: RateWindow,
    /// Where the writer settles this actor's drafts (one for all of them, so that a batch
    /// tells this actor once).
    units: Arc<DropUnits>,
}

impl Actor for ItemActor {
    type Msg = ItemMessage;
    type State = ItemState;
    type Arguments = ItemArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ItemArgs,
    ) -> Result<ItemState, ActorProcessingErr> {
        // A predecessor's drafts may still be committing: count them only once they settled.
        args.slot.wait_settled().await;
        // The drop's size and price may have changed since it was first served.
        let mut args = args;
        match args.store.item_by_id(args.item_id).await? {
            Some(item) => {
                args.unit_price = item.price;
                if let Some(spec) = item.drop {
                    args.spec = spec;
                }
            }
            // Deleted: the drop is closed.
            None => args.spec.closes_at = args.spec.closes_at.min(chrono::Utc::now()),
        }
        let sales = args.store.drop_sales(args.item_id).await?;
        let unsold = (args.spec.total_units - sales.total()).max(0);
        let grant = args.lease.grant(args.item_id, unsold, unsold).await?;
        let book = DropBook::new(args.spec.clone(), &sales.per_user, grant.units);
        args.slot.leased.store(grant.units, Ordering::Relaxed);
        let units = DropUnits::new(myself.clone(), args.slot.clone());
        let state = ItemState {
            args,
            book,
            rates: RateWindow::default(),
            units,
        };
        state.mirror();
        state.args.slot.set_window(&state.args.spec);
        state.args.slot.mark_mirrored();
        state.args.slot.set_actor(Some(myself));
        tracing::debug!(item_id = state.args.item_id, unsold, "item actor started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: ItemMessage,
        state: &mut ItemState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ItemMessage::Reserve {
                request,
                ticket,
                deadline,
                reply,
            } => state.reserve(request, ticket, deadline, reply),
            ItemMessage::Settle {
                committed_units,
                num_committed,
                released,
            } => state.settle(committed_units, num_committed, &released),
            ItemMessage::Status(reply) => {
                let _ = reply.send(state.status());
            }
            ItemMessage::Release {
                user_id,
                quantity,
                change,
                reply,
            } => state.release(myself, user_id, quantity, change, reply),
            ItemMessage::Restock { user_id, quantity } => {
                state.book.restock(user_id, quantity);
                state.mirror();
            }
            ItemMessage::AdjustUnits { delta, reply } => state.adjust_units(myself, delta, reply),
            ItemMessage::UnitsStored { delta, reply } => {
                state.book.grow(delta);
                state.args.slot.leased.fetch_add(delta, Ordering::Relaxed);
                state.mirror();
                let _ = reply.send(Ok(state.book.spec().total_units));
            }
            ItemMessage::SetPrice { price } => state.args.unit_price = price,
            ItemMessage::Recount => {
                return Err(
                    format!("item {} must recount from the store", state.args.item_id).into(),
                )
            }
            #[cfg(feature = "test-hooks")]
            ItemMessage::Crash => panic!("crash requested for item {}", state.args.item_id),
        }
        Ok(())
    }
}

impl ItemState {
    fn reserve(
        &mut self,
        request: PurchaseRequest,
        ticket: Arc<Ticket>,
        deadline: tokio::time::Instant,
        reply: PurchaseReply,
    ) {
        if ticket.is_abandoned() {
            // The caller stopped waiting while this sat in the mailbox: take nothing.
            return;
        }
        // Microseconds: what both stores keep, so a replayed answer matches the first one.
        let now = hurry_persistence::now_micros();
        let PurchaseRequest {
            user_id,
            quantity,
            idempotency,
            ..
        } = request;
        if let Err(err) = self.book.reserve(user_id, quantity, now) {
            self.rates.record(now.timestamp(), false);
            metrics::counter!("hurry_purchases_total", "outcome" => err.code()).increment(1);
            let _ = reply.send(Err(err.into()));
            return;
        }
        self.rates.record(now.timestamp(), true);
        let units = i64::from(quantity.get());
        let amount = units * self.args.unit_price;
        let draft = Draft {
            order: DraftOrder {
                user_id,
                status: OrderStatus::PendingPayment,
                amount,
                payment_due_at: Some(now + self.args.payment_window),
                created_at: now,
                lines: vec![OrderLine {
                    item_id: self.args.item_id,
                    quantity: units,
                    unit_price: self.args.unit_price,
                    amount,
                }],
                idempotency,
            },
            settlement: self.units.settlement(user_id, quantity),
            ticket,
            deadline,
            // The caller may have stopped listening; then nobody hears the answer.
            reply: Reply::new(move |answer| {
                let _ = reply.send(answer.map_err(Into::into));
            }),
        };
        if let Err(ractor::MessagingErr::SendErr(WriterMessage::Write(draft))) =
            self.args.writer.current().cast(WriterMessage::Write(draft))
        {
            // The writer is gone (its successor is starting): nothing was written. Settling
            // the draft as not committed sends this actor a Settle that gives the units back.
            draft.settlement.settle(false);
            draft.reply.send(Err(WriteError::Unavailable));
        }
        self.mirror();
    }

    /// Changes the drop's size. Fewer units: taken out of the unsold ones here first (so no
    /// shopper gets them), then stored. More units: stored first, then made sellable (never
    /// sell a unit the store does not count). A store failure leaves the outcome in doubt:
    /// the actor restarts from the store.
    fn adjust_units(
        &mut self,
        myself: ActorRef<ItemMessage>,
        delta: i64,
        reply: RpcReplyPort<Result<i64, DropError>>,
    ) {
        if delta < 0 {
            if let Err(err) = self.book.shrink(-delta) {
                let _ = reply.send(Err(err));
                return;
            }
            self.args.slot.leased.fetch_add(delta, Ordering::Relaxed);
            self.mirror();
        }
        let total_after = self.book.spec().total_units;
        let (slot, store, item_id) = (
            self.args.slot.clone(),
            self.args.store.clone(),
            self.args.item_id,
        );
        slot.draft_started();
        tokio::spawn(async move {
            match store.adjust_drop_units(item_id, delta).await {
                Ok(()) if delta > 0 => {
                    let _ = myself.cast(ItemMessage::UnitsStored { delta, reply });
                }
                Ok(()) => {
                    let _ = reply.send(Ok(total_after));
                }
                Err(err) => {
                    tracing::error!(error = %err, item_id, delta, "drop size change outcome unknown");
                    let _ = myself.cast(ItemMessage::Recount);
                    let _ = reply.send(Err(DropError::Unavailable));
                }
            }
            slot.draft_settled();
        });
    }

    /// Runs a release off the actor's loop; the slot counts it in flight so that a restart
    /// waits for the outcome before recounting.
    fn release(
        &self,
        myself: ActorRef<ItemMessage>,
        user_id: i64,
        quantity: Quantity,
        change: ReleaseChange,
        reply: RpcReplyPort<Result<bool, DropError>>,
    ) {
        let slot = self.args.slot.clone();
        slot.draft_started();
        tokio::spawn(async move {
            let answer = match change.0.await {
                Ok(true) => {
                    let _ = myself.cast(ItemMessage::Restock { user_id, quantity });
                    Ok(true)
                }
                Ok(false) => Ok(false),
                Err(err) => {
                    // The change may have landed: only the store can tell how many units are
                    // sold now, so this actor starts again from it.
                    tracing::error!(error = %err, "release outcome unknown");
                    let _ = myself.cast(ItemMessage::Recount);
                    Err(DropError::Unavailable)
                }
            };
            slot.draft_settled();
            let _ = reply.send(answer);
        });
    }

    fn settle(&mut self, committed_units: i64, num_committed: u64, released: &[(i64, Quantity)]) {
        if num_committed > 0 {
            self.book.commit_units(committed_units);
            metrics::counter!("hurry_purchases_total", "outcome" => "created")
                .increment(num_committed);
        }
        for &(user_id, quantity) in released {
            self.book.release(user_id, quantity);
        }
        if !released.is_empty() {
            metrics::counter!("hurry_purchases_total", "outcome" => "unavailable")
                .increment(released.len() as u64);
        }
        self.mirror();
    }

    fn status(&self) -> ItemStatus {
        let now = Utc::now().timestamp();
        ItemStatus {
            item_id: self.args.item_id,
            stock_in_memory: self.book.available(),
            leased: self.args.slot.leased.load(Ordering::Relaxed),
            sold: self.book.sold(),
            pending: self.book.pending(),
            num_buyers: self.book.num_buyers(),
            num_accepted: self.rates.total_accepted,
            num_rejected: self.rates.total_rejected,
            accepted_per_sec: self.rates.per_sec(now, true),
            rejected_per_sec: self.rates.per_sec(now, false),
        }
    }

    /// Copies the book's counters to the slot, where the API reads them without a message.
    fn mirror(&self) {
        let slot = &self.args.slot;
        slot.available
            .store(self.book.available(), Ordering::Relaxed);
        slot.pending.store(self.book.pending(), Ordering::Relaxed);
        slot.sold.store(self.book.sold(), Ordering::Relaxed);
    }
}

/// Accepted and rejected decisions per second over the last [`RateWindow::SECONDS`] seconds.
#[derive(Debug)]
struct RateWindow {
    /// `(unix second, accepted, rejected)` ring, indexed by second modulo its length.
    buckets: [(i64, u32, u32); RateWindow::SECONDS],
    total_accepted: u64,
    total_rejected: u64,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            buckets: [(0, 0, 0); RateWindow::SECONDS],
            total_accepted: 0,
            total_rejected: 0,
        }
    }
}

impl RateWindow {
    const SECONDS: usize = 60;

    fn record(&mut self, second: i64, accepted: bool) {
        let bucket = &mut self.buckets[second.rem_euclid(Self::SECONDS as i64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0, 0);
        }
        if accepted {
            bucket.1 += 1;
            self.total_accepted += 1;
        } else {
            bucket.2 += 1;
            self.total_rejected += 1;
        }
    }

    fn per_sec(&self, now: i64, accepted: bool) -> f64 {
        let window_start = now - Self::SECONDS as i64;
        let sum: u64 = self
            .buckets
            .iter()
            .filter(|bucket| bucket.0 > window_start && bucket.0 <= now)
            .map(|bucket| u64::from(if accepted { bucket.1 } else { bucket.2 }))
            .sum();
        sum as f64 / Self::SECONDS as f64
    }
}

#[cfg(test)]
mod tests {
    use super::RateWindow;

    #[test]
    fn rate_window_forgets_seconds_older_than_a_minute() {
        let mut rates = RateWindow::default();
        for _ in 0..120 {
            rates.record(1_000, true);
        }
        rates.record(1_001, false);
        assert_eq!(rates.per_sec(1_001, true), 2.0);
        assert_eq!(rates.per_sec(1_001, false), 1.0 / 60.0);
        // The bucket of second 1_000 is reused by second 1_060 and the old counts vanish.
        rates.record(1_060, true);
        assert_eq!(rates.per_sec(1_060, true), 1.0 / 60.0);
        assert_eq!(rates.total_accepted, 121);
    }
}
