//! Limited drops: one [`ItemActor`] per item, supervised by the [`DropSupervisor`].
//!
//! - [`book`]: [`DropBook`], the pure decision logic (window, per-user limit, stock).
//! - [`actor`]: the item actor around a book.
//! - [`supervisor`]: starts item actors and restarts failed ones.
//! - [`slot`]: what the API, the writer and the actor share about one drop.
//! - [`settle`]: [`DropUnits`], where the writer settles an actor's drafts.
//! - [`lease`]: where a node's sellable units come from ([`LocalLease`] on a single node).
//! - [`messages`], [`error`]: the actor's protocol and its expected failures.

pub mod actor;
pub mod book;
pub mod error;
pub mod lease;
pub mod messages;
pub mod settle;
pub mod slot;
pub mod supervisor;

pub use actor::{ItemActor, ItemArgs};
pub use book::DropBook;
pub use error::DropError;
pub use lease::{LocalLease, StockLease};
pub use messages::{ItemMessage, ItemStatus, PurchaseReply, ReleaseChange};
pub use settle::DropUnits;
pub use slot::{DropRegistry, DropSlot};
pub use supervisor::{DropSupervisor, SupervisorMessage};

#[cfg(test)]
mod actor_tests;
