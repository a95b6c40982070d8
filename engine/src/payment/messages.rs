//! The payment workers' protocol: jobs keyed by order id, so that one order's payment calls
//! are handled one after the other.

use chrono::{DateTime, Utc};
use hurry_persistence::{OrderRecord, PaymentRecord};
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
    /// Expire `order` when it is still unpaid at `now` past its deadline, its units back;
    /// answers whether this job expired it.
    Expire {
        order: OrderRecord,
        now: DateTime<Utc>,
        reply: RpcReplyPort<Result<bool, PaymentError>>,
    },
    /// Cancel order `order_id` (before it ships): units back, a paid payment refunded;
    /// answers the order afterwards.
    Cancel {
        order_id: i64,
        reply: RpcReplyPort<Result<OrderRecord, PaymentError>>,
    },
    /// Take delivered order `order_id` back (within the return window): its payment is
    /// refunded, and the order is `returned`, units back, once the refund is through.
    Return {
        order_id: i64,
        reply: RpcReplyPort<Result<OrderRecord, PaymentError>>,
    },
    /// Settle a payment whose confirm's outcome is not stored, by looking it up at its
    /// gateway; answers the payment afterwards (still `ready` when the gateway cannot tell).
    Reconcile {
        payment: PaymentRecord,
        reply: Option<RpcReplyPort<Result<PaymentRecord, PaymentError>>>,
    },
}
