//! The event backbone (DESIGN §7): committed outbox rows go onto a bus, consumers react once.
//!
//! - [`bus`]: the [`EventBus`] contract (Redis Streams semantics).
//! - [`local`]: [`LocalBus`], in process (embedded mode).
//! - [`redis`]: [`RedisBus`], Redis Streams (cluster mode).
//! - [`relay`]: [`OutboxRelay`], outbox to bus, at least once.
//! - [`consumer`]: the [`Consumer`] trait, its [`ConsumerError`] (transient or permanent).
//! - `runner`: the loop feeding a consumer ([`spawn_consumer`]: retries, dead letters,
//!   claiming, replays for one group).
//! - [`ledger`]: [`LedgerConsumer`], the sales ledger.
//! - [`settlement`]: [`SettlementConsumer`], the sellers' settlement entries.
//!
//! `docs/events.md` lists every event type and its payload.

pub mod bus;
pub mod consumer;
pub mod ledger;
pub mod local;
pub mod redis;
pub mod relay;
mod runner;
pub mod settlement;

pub use bus::{BusError, Delivery, EventBus};
pub use consumer::{spawn_consumer, BoxError, Consumer, ConsumerConfig, ConsumerError};
pub use ledger::{LedgerConsumer, LEDGER};
pub use local::LocalBus;
pub use redis::RedisBus;
pub use relay::{OutboxRelay, RelayConfig};
pub use settlement::{SettlementConsumer, SETTLEMENT};
