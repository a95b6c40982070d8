//! The outbox and everything after it, as the [`Store`](crate::Store) sees them: the relay's
//! [`EventSink`], and [`EventStore`] (relaying the outbox by shard, consumers' inboxes, dead
//! letters, the ledger, retention).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use std::sync::Arc;

use crate::error::{SinkError, StoreError};
use crate::model::*;

/// Where a relay hands outbox events on (the event bus).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes `events` in order; an error leaves them unpublished.
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), SinkError>;
}

/// The outbox, consumers' inboxes, dead letters and the ledger.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Notified after every commit that wrote outbox rows (an order, an item's change, a
    /// user's creation, a replayed dead letter, …): the relay waits on it rather than on its
    /// poll. Whoever writes through the store never mentions it.
    fn outbox_written(&self) -> Arc<tokio::sync::Notify>;

    /// Hands up to `limit` unpublished events of `shard`, oldest first, to `sink`, then marks
    /// them published. On PostgreSQL the shard is held with an advisory lock and the rows with
    /// `FOR UPDATE SKIP LOCKED` while the sink publishes, so relays on several nodes never
    /// publish the same rows twice; a relay that dies before the mark leaves the rows
    /// unpublished (at least once). SQLite has one relay (one node) and one shard: other
    /// shard indexes find nothing. A sink error is `StoreError::Sink` and marks nothing.
    async fn relay_outbox(
        &self,
        shard: RelayShard,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError>;

    /// [`EventStore::relay_outbox`] over every shard of `count` that no other relay holds, in
    /// one pass: up to `limit` events in all, oldest first across the shards (each shard's
    /// own order kept). `busy` when every shard was held. PostgreSQL takes the free shards in
    /// one transaction (a handful of round trips, not a handful per shard); the default runs
    /// the shards one after another.
    async fn relay_outbox_shards(
        &self,
        count: u32,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let count = count.max(1);
        let mut total = RelayRun {
            published: 0,
            busy: true,
        };
        for index in 0..count {
            let left = limit.saturating_sub(u32::try_from(total.published).unwrap_or(u32::MAX));
            if left == 0 {
                total.busy = false;
                break;
            }
            let run = self
                .relay_outbox(RelayShard { index, count }, left, sink)
                .await?;
            total.published += run.published;
            total.busy &= run.busy;
        }
        Ok(total)
    }

    /// Unpublished outbox rows.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;

    /// Marks published rows after outbox id `id` unpublished again, so they are relayed once
    /// more (an in-process bus lost them with the process); returns how many.
    async fn unpublish_outbox_after(&self, id: i64) -> Result<u64, StoreError>;

    /// For each `(event_id, effect)`: records the event in `consumer`'s inbox and applies the
    /// effect, skipping events already there; all in one transaction. Returns how many
    /// effects were applied. A ledger entry for an unknown item is `Invalid` (nothing written).
    async fn apply_effects(
        &self,
        consumer: &str,
        effects: &[(uuid::Uuid, Effect)],
    ) -> Result<usize, StoreError>;

    /// Whether `consumer` has recorded `event_id`.
    async fn event_processed(
        &self,
        consumer: &str,
        event_id: uuid::Uuid,
    ) -> Result<bool, StoreError>;

    /// Stores a dead letter; returns its id.
    async fn add_dead_letter(&self, letter: &NewDeadLetter) -> Result<i64, StoreError>;

    /// Dead letters, newest first; `page` counts from 0.
    async fn dead_letters(
        &self,
        page: u32,
        size: u32,
    ) -> Result<Page<DeadLetterRecord>, StoreError>;

    /// Puts dead letter `id`'s event back in the outbox for the consumer that gave up on it
    /// only (the row's [`OutboxEvent::target`]; other groups acknowledge and skip it, so a
    /// group whose inbox row is long pruned does not have the effect twice) and stamps
    /// `replayed_at`, in one transaction; `false` for an unknown id. Same event id, outbox
    /// order and shard as any new row: at least once, after the aggregate's earlier events.
    async fn replay_dead_letter(&self, id: i64) -> Result<bool, StoreError>;

    /// Ledger entries of an order, oldest first.
    async fn ledger_of_order(&self, order_id: i64) -> Result<Vec<LedgerRecord>, StoreError>;

    /// Deletes outbox rows published before `published_before` (and, when given, with an id
    /// at most `max_outbox_id`), and inbox rows processed before `processed_before` except
    /// those of events that have a dead letter (any consumer's): the dead letter may be
    /// replayed any time, and those rows are what makes the replay skip consumers that had it.
    async fn prune_events(
        &self,
        published_before: DateTime<Utc>,
        max_outbox_id: Option<i64>,
        processed_before: DateTime<Utc>,
    ) -> Result<Pruned, StoreError>;
}
