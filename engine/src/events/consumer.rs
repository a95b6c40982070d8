//! Consumers and the loop that feeds them ([`spawn_consumer`], in `runner.rs`).
//!
//! A [`Consumer`] has its effects through the store's inbox ([`EventStore::apply_effects`]), so
//! a message delivered twice (a relay that died before marking, a consumer that died before
//! acknowledging) has one effect. Its errors say whether trying again later can help
//! ([`ConsumerError::Transient`]: the store is unreachable) or not
//! ([`ConsumerError::Permanent`]: this event cannot be applied); the loop retries the first
//! kind without limit and isolates the second to the one event that has it.
//!
//! [`EventStore::apply_effects`]: hurry_persistence::EventStore::apply_effects

use std::time::Duration;

use async_trait::async_trait;
use hurry_persistence::{Event, StoreError};

pub use super::runner::spawn_consumer;

/// Any error, as a consumer's handler meets it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a consumer could not handle events, and so how the loop tries again.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Something the consumer needs could not be reached or did not answer in time (the
    /// store, the mail server): the same events will do later. The loop waits (a delay that
    /// doubles up to `retry_max`) and tries again, spending none of the events' deliveries;
    /// such an error never makes a dead letter.
    #[error("{0}")]
    Transient(BoxError),
    /// These events cannot be handled as they are (a payload that does not parse, a ledger
    /// entry for an unknown item, a panic): the loop tries each event of the batch alone, and
    /// the one that fails gets up to `max_deliveries` attempts, then becomes a dead letter.
    #[error("{0}")]
    Permanent(BoxError),
}

impl ConsumerError {
    /// A [`ConsumerError::Transient`] of `err`.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        Self::Transient(err.into())
    }

    /// A [`ConsumerError::Permanent`] of `err`.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        Self::Permanent(err.into())
    }

    /// Whether trying the same events again later may well succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// The error and its causes, `: `-separated (what a dead letter keeps).
    pub fn describe(&self) -> String {
        let (Self::Transient(inner) | Self::Permanent(inner)) = self;
        let mut text = inner.to_string();
        let mut source = inner.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// A store error is transient when the store could not be reached or answer
/// ([`StoreError::is_unavailable`]), permanent otherwise.
impl From<StoreError> for ConsumerError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            Self::transient(err)
        } else {
            Self::permanent(err)
        }
    }
}

/// Something that reacts to events, exactly once per event.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The consumer group (and inbox) name.
    fn group(&self) -> &'static str;

    /// Topics it reads.
    fn topics(&self) -> &'static [&'static str];

    /// Has the effects of `events` (in order), skipping those its inbox already holds; all or
    /// none when they are store effects.
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError>;
}

/// Consumer loop settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Most messages per read.
    pub batch: usize,
    /// How long a read waits for messages.
    pub read_wait: Duration,
    /// Attempts per event that fails permanently before it becomes a dead letter.
    pub max_deliveries: u32,
    /// Delay before the second attempt; doubles after each.
    pub retry_base: Duration,
    /// Longest delay between attempts while the failure is transient.
    pub retry_max: Duration,
    /// A message unacknowledged this long is taken over from its consumer.
    pub claim_idle: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_cannot_be_reached_is_transient_and_an_invalid_value_permanent() {
        let unreachable = ConsumerError::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        let in_doubt = ConsumerError::from(StoreError::InDoubt("connection reset".into()));
        let invalid = ConsumerError::from(StoreError::Invalid("unknown item 4".into()));
        let corrupt = ConsumerError::from(StoreError::Corrupt("bad uuid".into()));

        assert!(unreachable.is_transient());
        assert!(in_doubt.is_transient());
        assert!(!invalid.is_transient());
        assert!(!corrupt.is_transient());
        assert_eq!(invalid.describe(), "invalid value: unknown item 4");
    }
}
