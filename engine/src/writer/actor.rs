//! The group-commit writer.
//!
//! Drafts are collected until the batch is full or the window (about a millisecond) has passed,
//! then written in one transaction on a task of their own, so the writer keeps collecting while
//! a commit runs. At most `max_concurrent_commits` batches are in flight; while they are, new
//! drafts simply wait and form the next batch. A draft goes into a batch only if its caller
//! still waits and has time left for the commit ([`WriterConfig::send_budget`]); the others
//! are answered `Unavailable` and give their units back without reaching the store, so a
//! caller that stops waiting can say "nothing was bought" and be right (see [`Ticket`]).
//!
//! [`Ticket`]: super::Ticket

use std::sync::Arc;
use std::time::Duration;

use hurry_persistence::OrderStore;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::commit::{self, CommitFaults};
use super::draft::Draft;
use super::error::WriteError;
use super::ids::IdAllocator;
use super::messages::WriterMessage;

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most orders in one transaction.
    pub max_batch: usize,
    /// How long the first draft of a batch waits for company.
    pub window: Duration,
    /// Batches committing at the same time.
    pub max_concurrent_commits: usize,
    /// Longest a batch may take in the store before it is answered in doubt (the store's
    /// commit timeout and the margin of its answer).
    pub write_deadline: Duration,
    /// How long a batch in doubt is settled in place before its shoppers are answered
    /// `outcome_unknown` (settling goes on in the background).
    pub settle_timeout: Duration,
}

impl WriterConfig {
    /// The least time a draft's caller must still be waiting for the draft to go to the
    /// store: enough for the write and for settling it in place.
    pub fn send_budget(&self) -> Duration {
        self.write_deadline + self.settle_timeout
    }
}

/// What the writer starts from.
#[derive(Clone)]
pub struct WriterArgs {
    /// Where batches are written and settled: all the writer needs of the store.
    pub store: Arc<dyn OrderStore>,
    pub ids: Arc<IdAllocator>,
    pub config: WriterConfig,
    /// Faults a test asks the next commits for.
    pub faults: Arc<CommitFaults>,
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
            #[cfg(feature = "test-hooks")]
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
        let now = tokio::time::Instant::now();
        while !self.buffer.is_empty() && self.num_in_flight < config.max_concurrent_commits {
            let take = self.buffer.len().min(config.max_batch);
            let batch: Vec<Draft> = self
                .buffer
                .drain(..take)
                .filter_map(|draft| admit(draft, now, config.send_budget()))
                .collect();
            if batch.is_empty() {
                continue;
            }
            self.num_in_flight += 1;
            let args = self.args.clone();
            let done = CommitDone(myself.clone());
            tokio::spawn(async move {
                commit::commit_batch(&args, batch).await;
                drop(done);
            });
        }
    }
}

/// The draft, claimed for the store, if its caller still waits with time for the commit;
/// otherwise it is answered `Unavailable` and its units go back (it never reaches the store).
fn admit(draft: Draft, now: tokio::time::Instant, budget: Duration) -> Option<Draft> {
    let in_time = draft.deadline.saturating_duration_since(now) >= budget;
    if in_time && draft.ticket.send() {
        let mut draft = draft;
        draft.settlement.mark_committing();
        return Some(draft);
    }
    draft.ticket.abandon();
    draft.settlement.settle(false);
    draft.reply.send(Err(WriteError::Unavailable));
    None
}

/// Tells the writer a commit slot is free when dropped, also when the commit task panicked.
struct CommitDone(ActorRef<WriterMessage>);

impl Drop for CommitDone {
    fn drop(&mut self) {
        let _ = self.0.cast(WriterMessage::CommitDone);
    }
}
