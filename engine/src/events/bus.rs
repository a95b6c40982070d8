//! The event bus: what the relay publishes to and consumers read from. Two implementations
//! with one contract: [`RedisBus`](super::RedisBus) (cluster mode, Redis Streams with consumer
//! groups) and [`LocalBus`](super::LocalBus) (embedded mode, in process).
//!
//! The contract, as Redis Streams has it: one ordered stream per topic; a consumer group sees
//! every message of the topics it joined; each message goes to one consumer of the group and
//! stays pending until acknowledged; a pending message whose consumer went quiet can be
//! claimed by another.

use std::time::Duration;

use async_trait::async_trait;
use hurry_persistence::{Event, OutboxEvent};

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub topic: String,
    /// The bus's id of the message (what `ack` takes).
    pub id: String,
    pub event: Event,
    /// The one group the message is for ([`OutboxEvent::target`], a replayed dead letter);
    /// other groups acknowledge it unread. `None`: every group.
    pub target: Option<String>,
}

impl Delivery {
    /// Whether `group` is to handle this message.
    pub fn is_for(&self, group: &str) -> bool {
        self.target.as_deref().is_none_or(|target| target == group)
    }
}

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends `events` to their topics, in order.
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), BusError>;

    /// Creates consumer group `group` on each of `topics` (from the oldest message the bus
    /// holds) unless it exists.
    async fn join(&self, group: &str, topics: &[&str]) -> Result<(), BusError>;

    /// Up to `count` messages of `topics` that no consumer of `group` has been given yet, now
    /// given to `consumer`; waits up to `wait` for the first.
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Up to `count` messages of `group` that were given to a consumer at least `min_idle`
    /// ago and never acknowledged, now given to `consumer` (a crashed consumer's work).
    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Puts a copy of an event `consumer` gave up on into the bus's dead-letter stream (the
    /// store's `dead_letters` table is the record admins replay from). A bus without one
    /// does nothing.
    async fn publish_dead(
        &self,
        _consumer: &str,
        _event: &Event,
        _error: &str,
    ) -> Result<(), BusError> {
        Ok(())
    }

    /// Whether the bus answers (readiness).
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Acknowledges messages: they are done for `group`.
    async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError>;

    /// For a bus that forgets everything when the process ends: the highest outbox id such
    /// that every event it published up to there is acknowledged by every group. The relay
    /// keeps it in the store and, after a restart, publishes the rows after it again. `None`
    /// for a bus that keeps its messages itself.
    fn acked_through(&self) -> Option<i64> {
        None
    }
}
