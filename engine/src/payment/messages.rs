//! The payment workers' protocol: jobs keyed by order id, so that one order's payment calls
//! are handled one after the other.

use hurry_persistence::PaymentRecord;
use ractor::RpcReplyPort;

use super::error::PaymentError;

/// A job for a [`PaymentWorker`](super::worker::PaymentWorker).
#[derive(Debug)]
pub enum PaymentMessage {
    /// Confirm `payment_id` at its gateway with the key the checkout gave; answers the payment
    /// as stored afterwards (`paid` or `failed`).
    Confirm {
        payment_id: i64,
        payment_key: String,
        reply: RpcReplyPort<Result<PaymentRecord, PaymentError>>,
    },
    /// Settle a payment whose confirm's outcome is not stored, by looking it up at its
    /// gateway; answers the payment afterwards (still `ready` when the gateway cannot tell).
    Reconcile {
        payment: PaymentRecord,
        reply: Option<RpcReplyPort<Result<PaymentRecord, PaymentError>>>,
    },
}
