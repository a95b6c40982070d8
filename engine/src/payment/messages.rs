//! The workers' protocols. Jobs are keyed by order id, so one order's jobs are handled one
//! after the other by each kind of worker. The order workers own the store's side; they ask
//! the payment workers, which own the gateways' side, and wait for the answer.

use chrono::{DateTime, Utc};
use hurry_persistence::{OrderRecord, PaymentRecord, RefundRecord};
use ractor::RpcReplyPort;

use super::charges::ChargeOutcome;
use super::error::PaymentError;
use super::gateway::GatewayError;

/// A job for an [`OrderWorker`](super::worker::OrderWorker).
#[derive(Debug)]
pub enum OrderMessage {
    /// Confirm `payment_id` with the key the checkout gave; answers the payment as stored
    /// afterwards (`paid` or `failed`).
    Confirm {
        payment_id: i64,
        payment_key: String,
        reply: RpcReplyPort<Result<PaymentRecord, PaymentError>>,
    },
    /// Settle a payment whose confirm's outcome is not stored, from a lookup at its gateway;
    /// answers the payment afterwards (still `ready` when the gateway cannot tell).
    Reconcile {
        payment: PaymentRecord,
        reply: Option<RpcReplyPort<Result<PaymentRecord, PaymentError>>>,
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
    /// The gateway gave `refund` back: store it (a return's order becomes `returned`, its
    /// units back); answers whether this job stored it.
    FinishRefund {
        refund: RefundRecord,
        reply: RpcReplyPort<Result<bool, PaymentError>>,
    },
}

/// A job for a [`PaymentWorker`](super::worker::PaymentWorker): one conversation with a
/// gateway.
#[derive(Debug)]
pub enum PaymentMessage {
    /// Take the money of `payment` with `payment_key` (retries, and a lookup when the answer
    /// is lost).
    Charge {
        payment: PaymentRecord,
        payment_key: String,
        reply: RpcReplyPort<ChargeOutcome>,
    },
    /// What became of `payment`, whose confirm started long enough ago.
    LookUp {
        payment: PaymentRecord,
        reply: RpcReplyPort<ChargeOutcome>,
    },
    /// Give `refund` back.
    Refund {
        refund: RefundRecord,
        reply: RpcReplyPort<Result<(), GatewayError>>,
    },
}
