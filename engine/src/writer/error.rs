//! [`WriteError`]: what the writer answers for a draft it could not commit.

use super::outcome::InDoubt;

/// Why a draft did not become a stored order (or cannot say yet).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The order was not made durable, and never will be: its units go back.
    #[error("order store unavailable")]
    Unavailable,
    /// The draft's idempotency key was stored before: its first answer is in the store.
    #[error("the idempotency key was used before")]
    Repeat,
    /// The store could not tell whether the commit landed: the units stay held, and the
    /// [`InDoubt`] resolves once the store can tell.
    #[error("the outcome of the commit is not known yet")]
    OutcomeUnknown(InDoubt),
}
