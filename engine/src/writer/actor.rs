//! The group-commit writer.
//!
//! Drafts are collected until the batch is full or the window (about a millisecond) has passed,
//! then written in one transaction on a task of their own, so the writer keeps collecting while
//! a commit runs. At most `max_concurrent_commits` batches are in flight; while they are, new
//! drafts simply wait and form the next batch. After a commit the shoppers are answered; if it
//! failed they get `Unavailable`, and their units go back only once the store confirms the batch
//! is absent (a failed COMMIT may still have landed; releasing then would oversell).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hurry_persistence::{NewOrder, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::ids::IdAllocator;
use super::{Draft, WriterMessage};
use crate::drop::DropError;

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most orders in one transaction.
    pub max_batch: usize,
    /// How long the first draft of a batch waits for company.
    pub window: Duration,
    /// Batches committing at the same time.
    pub max_concurrent_commits: usize,
}

/// What the writer starts from.
#[derive(Clone)]
pub struct WriterArgs {
    pub store: Arc<dyn Store>,
    pub ids: Arc<IdAllocator>,
    pub config: WriterConfig,
    /// Woken after every commit: the outbox has new rows for the relay.
    pub committed: Arc<tokio::sync::Notify>,
}

/// The persistence actor. See the module docs.
#[derive(Debug, Default)]
pub struct WriterActor;

/// The writer's pending drafts and commit slots.
pub struct WriterState {
    args: WriterArgs,
    buffer: Vec<Draft>,
    /// Batches committing now.
    num_in_flight: usize,
    /// A `Flush` is already scheduled for the current buffer.
    flush_scheduled: bool,
}

impl Actor for WriterActor {
    type Msg = WriterMessage;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        Ok(WriterState {
            args,
            buffer: Vec::new(),
            num_in_flight: 0,
            flush_scheduled: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: WriterMessage,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WriterMessage::Write(draft) => state.push(myself, draft),
            WriterMessage::Flush => {
                state.flush_scheduled = false;
                state.flush(&myself);
            }
            WriterMessage::CommitDone => {
                state.num_in_flight -= 1;
                state.flush(&myself);
            }
            WriterMessage::Crash => panic!("writer crash requested"),
        }
        Ok(())
    }
}

impl WriterState {
    fn push(&mut self, myself: ActorRef<WriterMessage>, draft: Draft) {
        self.buffer.push(draft);
        let config = self.args.config;
        if self.buffer.len() >= config.max_batch || config.window.is_zero() {
            self.flush(&myself);
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            myself.send_after(config.window, || WriterMessage::Flush);
        }
    }

    /// Starts commits for buffered drafts while commit slots are free.
    fn flush(&mut self, myself: &ActorRef<WriterMessage>) {
        let config = self.args.config;
        while !self.buffer.is_empty() && self.num_in_flight < config.max_concurrent_commits {
            let take = self.buffer.len().min(config.max_batch);
            let mut batch: Vec<Draft> = self.buffer.drain(..take).collect();
            for draft in &mut batch {
                draft.settlement.mark_committing();
            }
            self.num_in_flight += 1;
            let args = self.args.clone();
            let myself = myself.clone();
            tokio::spawn(async move {
                commit_batch(&args, batch).await;
                let _ = myself.cast(WriterMessage::CommitDone);
            });
        }
    }
}

/// What became of a batch.
enum Outcome {
    Committed(Vec<NewOrder>),
    NotCommitted,
    /// The commit failed in a way that may have landed anyway; settle after checking.
    Unknown(i64),
}

async fn commit_batch(args: &WriterArgs, batch: Vec<Draft>) {
    let started = Instant::now();
    let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let outcome = match args.ids.take(count).await {
        Err(err) => {
            tracing::error!(error = %err, "cannot reserve order ids");
            Outcome::NotCommitted
        }
        Ok(first_id) => {
            let orders: Vec<NewOrder> = (first_id..)
                .zip(&batch)
                .map(|(id, draft)| draft.order.with_id(id))
                .collect();
            match args.store.commit_orders(&orders).await {
                Ok(()) => Outcome::Committed(orders),
                Err(err) => {
                    tracing::error!(error = %err, batch = batch.len(), "batch commit failed");
                    Outcome::Unknown(first_id)
                }
            }
        }
    };
    metrics::histogram!("hurry_batch_size").record(batch.len() as f64);
    metrics::histogram!("hurry_commit_seconds").record(started.elapsed().as_secs_f64());
    match outcome {
        Outcome::Committed(orders) => {
            args.committed.notify_one();
            for (draft, order) in batch.into_iter().zip(orders) {
                draft.settlement.settle(true);
                let _ = draft.reply.send(Ok(order.to_record()));
            }
        }
        Outcome::NotCommitted => refuse_all(batch),
        Outcome::Unknown(first_id) => settle_unknown(args, batch, first_id).await,
    }
}

/// A failed commit may still have landed. Ask the store at once: when it answers, settle and
/// answer for real (the units are back, or the orders exist, before the shoppers hear of it).
/// When it cannot answer, the shoppers get `Unavailable` now and the units stay held until a
/// background check can tell.
async fn settle_unknown(args: &WriterArgs, batch: Vec<Draft>, first_id: i64) {
    match args.store.order_by_id(first_id).await {
        Ok(Some(_)) => {
            tracing::warn!(first_id, "a batch reported as failed was committed");
            let orders: Vec<NewOrder> = (first_id..)
                .zip(&batch)
                .map(|(id, draft)| draft.order.with_id(id))
                .collect();
            for (draft, order) in batch.into_iter().zip(orders) {
                draft.settlement.settle(true);
                let _ = draft.reply.send(Ok(order.to_record()));
            }
        }
        Ok(None) => refuse_all(batch),
        Err(_) => {
            let mut settlements = Vec::with_capacity(batch.len());
            for draft in batch {
                let _ = draft.reply.send(Err(DropError::Unavailable));
                settlements.push(draft.settlement);
            }
            let store = args.store.clone();
            tokio::spawn(async move {
                let committed = batch_landed(store.as_ref(), first_id).await;
                for settlement in settlements {
                    settlement.settle(committed);
                }
            });
        }
    }
}

/// Settles every draft of a batch that is known not to be committed and answers `Unavailable`.
fn refuse_all(batch: Vec<Draft>) {
    for draft in batch {
        // The actor hears first, so a shopper's retry finds the units back.
        draft.settlement.settle(false);
        let _ = draft.reply.send(Err(DropError::Unavailable));
    }
}

/// Whether the batch whose first order is `first_id` is in the store, asking until it answers.
async fn batch_landed(store: &dyn Store, first_id: i64) -> bool {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.order_by_id(first_id).await {
            Ok(found) => return found.is_some(),
            Err(err) => {
                tracing::warn!(error = %err, first_id, "cannot check a failed batch yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
