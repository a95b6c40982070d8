//! Payments, refunds and seller settlement.

use chrono::{DateTime, Utc};

/// A payment to create (ids from [`crate::Store::allocate_ids`] `"payments"`).
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    /// The order id the gateway knows this payment by (unique per payment).
    pub pg_order_id: String,
    pub provider: String,
    pub amount: i64,
    pub created_at: DateTime<Utc>,
}

/// A stored payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    pub pg_order_id: String,
    pub provider: String,
    pub amount: i64,
    /// `ready`, `paid`, `failed`, `cancelled` or `refunded`.
    pub status: String,
    /// Set when a confirm starts: the gateway's key of the payment.
    pub payment_key: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub refunded_amount: i64,
    pub created_at: DateTime<Utc>,
}

/// What asking to confirm a payment with a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmStart {
    /// The payment is ready and carries this key now (it may have carried it before: a
    /// confirm with the same key was started earlier and its outcome is not stored yet).
    Started(PaymentRecord),
    /// The payment is settled (not `ready`): nothing to do but answer it.
    Settled(PaymentRecord),
    /// A confirm with another key was started on this payment.
    OtherKey(PaymentRecord),
}

/// What storing a charge the gateway took did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeRecorded {
    /// Payment and order are `paid` (with `order.paid` in the outbox).
    OrderPaid(PaymentRecord),
    /// The payment is `paid` but its order was no longer waiting for it (expired, cancelled,
    /// paid through another payment): a refund of the whole amount is queued.
    RefundOwed(PaymentRecord),
    /// The payment had been settled before (by a concurrent confirm or reconciliation).
    AlreadySettled(PaymentRecord),
}

/// A refund owed on a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: i64,
    pub payment_id: i64,
    pub order_id: i64,
    pub provider: String,
    pub amount: i64,
    pub reason: String,
    /// `pending` or `done`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The payment's gateway key (what the gateway cancels) and order id.
    pub payment_key: Option<String>,
    pub pg_order_id: String,
}

/// One settlement entry to record: a line of a paid order (`sale`) or of a refund
/// (`reversal`, negative amounts). The item's seller is looked up when it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementEntry {
    pub order_id: i64,
    pub item_id: i64,
    pub provider: String,
    /// `sale` or `reversal`.
    pub kind: &'static str,
    pub gross: i64,
    pub fee: i64,
    /// The UTC day the entry belongs to (`YYYY-MM-DD`), unless that day is settled for its
    /// seller: then the next open day.
    pub day: chrono::NaiveDate,
}

/// One seller's day: what was sold, the gateways' fees, what is owed; `settled` once the daily
/// job closed it, `open` before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementDay {
    pub day: chrono::NaiveDate,
    pub gross: i64,
    pub fee: i64,
    pub net: i64,
    pub settled: bool,
}
