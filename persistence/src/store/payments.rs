//! The payment side of [`Store`](super::Store): payments and refunds, an order's life after
//! its payment, seller settlement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::model::*;

/// Payments of orders and the refunds owed on them.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Stores a new `ready` payment.
    async fn create_payment(&self, payment: &NewPayment) -> Result<PaymentRecord, StoreError>;

    /// Finds a payment by id.
    async fn payment_by_id(&self, id: i64) -> Result<Option<PaymentRecord>, StoreError>;

    /// Finds a payment by the order id the gateway knows it by.
    async fn payment_by_pg_order_id(
        &self,
        pg_order_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError>;

    /// Stores `payment_key` on ready payment `payment_id` before its confirm goes to the
    /// gateway (so a lost answer can be looked up); `None` for an unknown payment.
    async fn start_confirm(
        &self,
        payment_id: i64,
        payment_key: &str,
    ) -> Result<Option<ConfirmStart>, StoreError>;

    /// Stores a charge the gateway took, in one transaction: the payment becomes `paid`, and
    /// its order `paid` with an `order.paid` event when the order was waiting for it;
    /// otherwise a refund of the whole amount is queued (reason `late`).
    async fn record_charge(
        &self,
        payment_id: i64,
        approved_at: DateTime<Utc>,
    ) -> Result<Option<ChargeRecorded>, StoreError>;

    /// Stores a confirm the gateway refused for good, in one transaction: a ready payment
    /// becomes `failed` (`payment.failed`), and its order, when it was waiting for payment,
    /// `payment_failed` (`order.payment_failed`) with the general stock of its lines given
    /// back. Answers the order so released (its drop lines are the caller's to give back to
    /// their actors); `None` when nothing was released.
    async fn record_failure(&self, payment_id: i64) -> Result<Option<OrderRecord>, StoreError>;

    /// Ready payments with a confirm started longer than `older_than` ago whose outcome is
    /// not stored (reconciliation looks them up), oldest first.
    async fn payments_in_doubt(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Refunds in `status` (`pending` or `done`), oldest first.
    async fn refunds(&self, status: &str, limit: u32) -> Result<Vec<RefundRecord>, StoreError>;

    /// Marks a refund done and adds its amount to its payment's `refunded_amount` (the
    /// payment becomes `refunded` when all of it is back), with a `payment.refunded` event;
    /// a `return` refund also moves its order from `return_requested` to `returned`, its
    /// general stock back, with `order.returned`. `false` when it was done before.
    async fn finish_refund(&self, refund_id: i64) -> Result<bool, StoreError>;

    /// Counts a failed attempt at a refund and keeps its error.
    async fn refund_attempt_failed(&self, refund_id: i64, error: &str) -> Result<(), StoreError>;
}

/// An order's life after its payment: the deadline, cancel, return, shipment.
#[async_trait]
pub trait OrderLifeStore: Send + Sync {
    /// Unpaid orders whose payment deadline is at or before `now`, with their lines, soonest
    /// deadline first.
    async fn orders_past_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// Expires order `order_id` when it is still unpaid at `now` past its deadline, in one
    /// transaction: `expired`, its general stock back, `order.expired`. `false` (nothing
    /// written) otherwise.
    async fn expire_order(&self, order_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Cancels order `order_id` when it is in `from`, in one transaction: `cancelled`, its
    /// general stock back, a refund (reason `cancel`) of what its paid payment has not given
    /// back yet, `order.cancelled`. `false` (nothing written) when it was not in `from`.
    async fn cancel_order(&self, order_id: i64, from: &str) -> Result<bool, StoreError>;

    /// Moves delivered order `order_id` to `return_requested` when it was delivered at or
    /// after `delivered_since`, with a refund (reason `return`) of its paid payment's rest
    /// and `order.return_requested`; `false` (nothing written) otherwise. The order becomes
    /// `returned`, its stock back, when the refund is through ([`PaymentStore::finish_refund`]).
    async fn request_return(
        &self,
        order_id: i64,
        delivered_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Orders in `status` whose last change was before `before`, oldest first.
    async fn orders_in_status_since(
        &self,
        status: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError>;
}

/// Seller settlement: entries from payment events, closed per seller and day.
#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// Records the entries of each event under `consumer`'s inbox, in one transaction:
    /// events the inbox holds already are skipped. Answers how many events were new.
    async fn record_settlement(
        &self,
        consumer: &str,
        events: &[(uuid::Uuid, Vec<SettlementEntry>)],
    ) -> Result<usize, StoreError>;

    /// Closes every seller's days up to `through` (included) that have entries and are not
    /// closed yet; answers how many seller days it closed.
    async fn close_settlements(&self, through: chrono::NaiveDate) -> Result<usize, StoreError>;

    /// A seller's days from `from` to `to` (included) that have entries, oldest first.
    async fn settlements(
        &self,
        seller_id: i64,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<SettlementDay>, StoreError>;
}
