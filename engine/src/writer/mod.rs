//! Group commit: order drafts from many purchases are written in one transaction per batch.
//!
//! The writer sits below the drops: it knows drafts, the store and whom to tell, never who
//! made a draft. Its callers settle through [`Settle`] and read [`WriteError`].
//!
//! - [`actor`]: [`WriterActor`], which collects drafts by size or by a short window.
//! - [`commit`]: a batch's way through the store, and how a commit in doubt is settled.
//! - [`draft`]: [`Draft`], [`DraftOrder`] and [`Reply`], what a caller hands the writer.
//! - [`messages`], [`error`]: the writer's protocol ([`WriterMessage`]) and its answers.
//! - [`handle`]: [`WriterHandle`], the writer serving now (it changes on a restart).
//! - [`ticket`]: [`Ticket`], which tells whether a draft's caller or the writer decided first.
//! - [`settlement`]: [`Settlement`] and [`Settle`], how a draft's held units are settled.
//! - [`outcome`]: [`InDoubt`] and [`Settled`], the answer to a commit the store could not tell.
//! - [`ids`]: [`IdAllocator`], which hands out order ids in blocks reserved in the store.

pub mod actor;
mod commit;
pub mod draft;
pub mod error;
pub mod handle;
pub mod ids;
pub mod messages;
pub mod outcome;
pub mod settlement;
pub mod ticket;

pub use actor::{WriterActor, WriterArgs, WriterConfig};
pub use commit::{CommitFault, CommitFaults};
pub use draft::{Answer, Draft, DraftOrder, Reply};
pub use error::WriteError;
pub use handle::WriterHandle;
pub use ids::IdAllocator;
pub use messages::WriterMessage;
pub use outcome::{InDoubt, Settled};
pub use settlement::{HeldUnits, Outcome, Settle, Settlement};
pub use ticket::Ticket;

#[cfg(test)]
mod actor_tests;
