//! One batch's way through the store.
//!
//! The batch is written on a task of its own, so that a panic there is a write of unknown
//! outcome like any other rather than a lost batch. What the store answers decides:
//! - written: each order it wrote is committed; a keyed order it left out is a repeat (its key
//!   was stored before), and its units go back;
//! - refused (the database answered with an error): nothing was written, units go back,
//!   shoppers get `Unavailable`;
//! - no answer (`InDoubt`, or the write task panicked): the batch may have landed or may still
//!   land. The store settles it ([`Store::settle_orders`]: fence the lost write, then read what
//!   landed); within `settle_timeout` the shoppers get the real answer, else `OutcomeUnknown`
//!   while the writer keeps asking, their units held until the store can tell.
//!
//! [`Store::settle_orders`]: hurry_persistence::OrderStore::settle_orders

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hurry_persistence::{NewOrder, OrderStore, StoreError};

use super::actor::WriterArgs;
use super::draft::Draft;
use super::error::WriteError;
use super::outcome::{InDoubt, Settled};
use super::settlement::Settlement;

/// Faults a test can ask of the next commit, to prove that a panic on the write path settles
/// what it held. Always present so the writer has one shape; only the `test-hooks` feature
/// can set one.
#[derive(Debug, Default)]
pub struct CommitFaults(AtomicU8);

/// A fault for the next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CommitFault {
    /// The write task panics before the store sees the batch.
    PanicBeforeWrite = 1,
    /// The write task panics after the store wrote the batch (its answer is lost).
    PanicAfterWrite = 2,
}

impl CommitFaults {
    /// Makes the next commit fail with `fault`.
    #[cfg(feature = "test-hooks")]
    pub fn inject(&self, fault: CommitFault) {
        self.0.store(fault as u8, Ordering::Release);
    }

    fn take(&self) -> Option<CommitFault> {
        match self.0.swap(0, Ordering::AcqRel) {
            1 => Some(CommitFault::PanicBeforeWrite),
            2 => Some(CommitFault::PanicAfterWrite),
            _ => None,
        }
    }
}

/// Writes `batch` and answers every draft in it.
pub(super) async fn commit_batch(args: &WriterArgs, batch: Vec<Draft>) {
    let started = Instant::now();
    let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let first_id = match args.ids.take(count).await {
        Ok(first_id) => first_id,
        Err(err) => {
            tracing::error!(error = %err, "cannot reserve order ids");
            return refuse_all(batch);
        }
    };
    let orders: Vec<NewOrder> = (first_id..)
        .zip(&batch)
        .map(|(id, draft)| draft.order.with_id(id))
        .collect();
    let store = args.store.clone();
    let fault = args.faults.take();
    let write = tokio::spawn(async move {
        assert_ne!(fault, Some(CommitFault::PanicBeforeWrite), "injected fault");
        let written = store.commit_orders(&orders).await;
        assert_ne!(fault, Some(CommitFault::PanicAfterWrite), "injected fault");
        (orders, written)
    })
    .await;
    metrics::histogram!("hurry_batch_size").record(batch.len() as f64);
    metrics::histogram!("hurry_commit_seconds").record(started.elapsed().as_secs_f64());
    match write {
        Ok((orders, Ok(written))) => {
            debug_assert!(
                orders
                    .iter()
                    .all(|order| order.idempotency.is_some() || written.contains(&order.id)),
                "a written batch left out an unkeyed order"
            );
            answer(batch, orders, &written);
        }
        Ok((orders, Err(err))) if err.is_in_doubt() => settle(args, batch, orders).await,
        Ok((_, Err(err))) => {
            tracing::error!(error = %err, batch = batch.len(), "batch commit failed");
            refuse_all(batch);
        }
        Err(panicked) => {
            tracing::error!(error = %panicked, "the batch write panicked; settling it");
            let orders = (first_id..)
                .zip(&batch)
                .map(|(id, draft)| draft.order.with_id(id))
                .collect();
            settle(args, batch, orders).await;
        }
    }
}

/// Answers each draft by what the store holds: `stored` are the ids written (ascending).
/// The drops hear first (one message each), so a shopper's retry finds the units back.
fn answer(batch: Vec<Draft>, orders: Vec<NewOrder>, stored: &[i64]) {
    let stored: HashSet<i64> = stored.iter().copied().collect();
    let mut settlements = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for (draft, order) in batch.into_iter().zip(orders) {
        let settled = settled_as(&stored, &order);
        settlements.push((draft.settlement, matches!(settled, Settled::Committed(_))));
        let answer = match settled {
            Settled::Committed(record) => Ok(record),
            Settled::Repeat => Err(WriteError::Repeat),
            Settled::NotCommitted => Err(WriteError::Unavailable),
        };
        replies.push((draft.reply, answer));
    }
    Settlement::settle_all(settlements);
    for (reply, answer) in replies {
        reply.send(answer);
    }
}

/// What became of `order` when the store holds `stored`: a keyed order left out is a repeat
/// (whoever asks the store for its key learns the first answer, or that there is none).
fn settled_as(stored: &HashSet<i64>, order: &NewOrder) -> Settled {
    if stored.contains(&order.id) {
        Settled::Committed(order.to_record())
    } else if order.idempotency.is_some() {
        Settled::Repeat
    } else {
        Settled::NotCommitted
    }
}

/// Settles every draft of a batch that is known not to be committed and answers `Unavailable`.
fn refuse_all(batch: Vec<Draft>) {
    let mut replies = Vec::with_capacity(batch.len());
    let settlements: Vec<(Settlement, bool)> = batch
        .into_iter()
        .map(|draft| {
            replies.push(draft.reply);
            (draft.settlement, false)
        })
        .collect();
    // The actor hears first, so a shopper's retry finds the units back.
    Settlement::settle_all(settlements);
    for reply in replies {
        reply.send(Err(WriteError::Unavailable));
    }
}

/// A batch whose write may or may not have landed: asks the store at once (within
/// `settle_timeout`), and answers for real when it can tell; otherwise answers
/// `OutcomeUnknown` and keeps asking in the background, the units held meanwhile.
async fn settle(args: &WriterArgs, batch: Vec<Draft>, orders: Vec<NewOrder>) {
    let ids: Vec<i64> = orders.iter().map(|order| order.id).collect();
    let at_once =
        tokio::time::timeout(args.config.settle_timeout, args.store.settle_orders(&ids)).await;
    if let Ok(Ok(stored)) = at_once {
        tracing::warn!(
            first_id = ids.first(),
            num_stored = stored.len(),
            "a batch in doubt is settled"
        );
        return answer(batch, orders, &stored);
    }
    let mut pending = Vec::with_capacity(batch.len());
    for (draft, order) in batch.into_iter().zip(orders) {
        let (resolver, doubt) = InDoubt::new();
        draft.reply.send(Err(WriteError::OutcomeUnknown(doubt)));
        pending.push((draft.settlement, resolver, order));
    }
    let store = args.store.clone();
    tokio::spawn(async move {
        let stored = settled_later(store.as_ref(), &ids).await;
        let stored: HashSet<i64> = stored.into_iter().collect();
        let mut settlements = Vec::with_capacity(pending.len());
        let mut resolutions = Vec::with_capacity(pending.len());
        for (settlement, resolver, order) in pending {
            let settled = settled_as(&stored, &order);
            settlements.push((settlement, matches!(settled, Settled::Committed(_))));
            resolutions.push((resolver, settled));
        }
        Settlement::settle_all(settlements);
        for (resolver, settled) in resolutions {
            resolver.resolve(settled);
        }
    });
}

/// The ids of `ids` the store holds, asking until it can tell.
async fn settled_later(store: &dyn OrderStore, ids: &[i64]) -> Vec<i64> {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.settle_orders(ids).await {
            Ok(stored) => return stored,
            Err(err) => {
                log_unsettled(&err, ids);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn log_unsettled(err: &StoreError, ids: &[i64]) {
    tracing::warn!(error = %err, first_id = ids.first(), "cannot settle a batch in doubt yet");
}
