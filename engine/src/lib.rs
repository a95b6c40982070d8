//! The drop engine of Hurry Up Order.
//!
//! One [`ItemActor`](drop::ItemActor) per limited item holds that drop's sellable stock, its
//! sale window and per-user counters in memory, and decides every purchase without touching a
//! store. Accepted purchases become order drafts for the group-commit
//! [`WriterActor`](writer::WriterActor), which writes them in batches; the shopper's answer
//! waits for that commit. The [`DropSupervisor`](drop::DropSupervisor) restarts a failed item
//! actor, which rebuilds its counts from the store once every in-flight draft has settled.
//!
//! Modules:
//! - [`domain`]: validating value types (quantities, idempotency keys, order statuses).
//! - [`drop`]: item actors, their supervisor, the shared registry and the stock lease.
//! - [`writer`]: the group-commit writer and the order id allocator.
//! - [`events`]: the outbox relay, the event bus (Redis Streams or in process), consumers.
//! - [`order`]: the order life cycle, a table of allowed status moves.
//! - [`payment`]: gateways (Toss, NicePay), the payment workers, reconciliation, refunds.
//! - [`supervisor`]: the root actor, which restarts the writer.
//! - [`seller`]: [`Seller`], the one door purchases go through, and its errors.
//! - [`engine`]: [`Engine`], the handle the API holds (the seller of drops).
//! - [`baseline`]: the load tests' comparison sellers (`baseline` feature).
//! - `testing` (tests only): a SQLite shop and `FaultyStore`, a store that fails, stalls or
//!   answers in doubt on command, for the actor tests (`writer/actor_tests.rs`,
//!   `drop/actor_tests.rs`).

pub mod baseline;
pub mod domain;
pub mod drop;
pub mod engine;
pub mod events;
pub mod order;
pub mod payment;
pub mod seller;
pub mod supervisor;
pub mod writer;

#[cfg(test)]
mod testing;

pub use engine::{Engine, EngineConfig};
pub use seller::{NotServed, PurchaseError, PurchaseRequest, Seller};
