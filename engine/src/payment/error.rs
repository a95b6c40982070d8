//! Why a payment call did not go through.

use hurry_persistence::StoreError;

/// A payment refusal or failure; each maps to one API code.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No such payment or order (or not the caller's).
    #[error("no such payment")]
    NotFound,
    /// The confirmed amount is not the payment's.
    #[error("the amount is not the payment's")]
    AmountMismatch,
    /// The order is past its payment deadline (or was cancelled): nothing is taken, and a
    /// charge that landed meanwhile is refunded.
    #[error("the order is no longer waiting for payment")]
    OrderExpired,
    /// The order is not in a status that takes a payment (paid already, shipped, ...).
    #[error("the order cannot be paid in status {0}")]
    NotPayable(String),
    /// The order has shipped (or ended): it cannot be cancelled.
    #[error("an order in status {0} cannot be cancelled")]
    NotCancellable(String),
    /// The order is not delivered, or was delivered longer ago than the return window.
    #[error("{0}")]
    NotReturnable(String),
    /// A confirm with another payment key was started on this payment.
    #[error("another payment key is confirming this payment")]
    OtherKey,
    /// No gateway can take the payment now: nothing was taken.
    #[error("no payment gateway is available")]
    Unavailable,
    /// The gateway's answer was lost: the payment is looked up again shortly; a repeated
    /// confirm answers the outcome once it is known.
    #[error("the payment's outcome is not known yet")]
    OutcomeUnknown,
    /// The store could not be reached.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}
