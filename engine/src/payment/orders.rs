//! The order workers' side: every change of an order and its payments in the store, one
//! order's jobs one after the other. A confirm stores its key, asks a payment worker to charge
//! (a message; the gateway conversation is the payment worker's) and stores what came of it;
//! expiry, cancel and return give units back through the drop's actor.

use std::sync::Arc;

use chrono::Utc;
use hurry_persistence::{
    ChargeRecorded, ConfirmStart, OrderRecord, PaymentRecord, RefundRecord, Store,
};
use ractor::factory::FactoryMessage;
use ractor::rpc::CallResult;
use ractor::ActorRef;
use tokio::sync::Notify;

use super::charges::{ChargeOutcome, GatewayDesk, PaymentConfig};
use super::error::PaymentError;
use super::gateway::GatewayError;
use super::messages::PaymentMessage;
use crate::domain::OrderStatus;
use crate::order::machine;
use crate::Engine;

/// Told the ids of the items whose general stock came back.
pub type StockReleased = Arc<dyn Fn(&[i64]) + Send + Sync>;

/// How the order workers reach the payment workers.
pub struct PaymentLine {
    pub factory: ActorRef<FactoryMessage<i64, PaymentMessage>>,
    pub timeout: std::time::Duration,
}

impl PaymentLine {
    async fn ask<T: Send + 'static>(
        &self,
        order_id: i64,
        job: impl FnOnce(ractor::RpcReplyPort<T>) -> PaymentMessage,
    ) -> Option<T> {
        let answer = self
            .factory
            .call(
                |reply| super::dispatch(order_id, job(reply)),
                Some(self.timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(answer)) => Some(answer),
            _ => None,
        }
    }

    /// Has a payment worker take the money of `payment`; no answer in time is `Unknown`.
    pub async fn charge(&self, payment: &PaymentRecord, payment_key: &str) -> ChargeOutcome {
        let (payment, payment_key) = (payment.clone(), payment_key.to_owned());
        self.ask(payment.order_id, |reply| PaymentMessage::Charge {
            payment,
            payment_key,
            reply,
        })
        .await
        .unwrap_or(ChargeOutcome::Unknown)
    }

    /// Has a payment worker look `payment` up at its gateway.
    pub async fn look_up(&self, payment: &PaymentRecord) -> ChargeOutcome {
        let payment = payment.clone();
        self.ask(payment.order_id, |reply| PaymentMessage::LookUp {
            payment,
            reply,
        })
        .await
        .unwrap_or(ChargeOutcome::Unknown)
    }

    /// Has a payment worker give `refund` back.
    pub async fn refund(&self, refund: &RefundRecord) -> Result<(), GatewayError> {
        let job = refund.clone();
        self.ask(refund.order_id, |reply| PaymentMessage::Refund {
            refund: job,
            reply,
        })
        .await
        .unwrap_or_else(|| {
            Err(GatewayError::Unavailable(
                "no payment worker answered".into(),
            ))
        })
    }
}

/// What the order workers share.
pub struct OrderDesk {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub config: PaymentConfig,
    /// Read for the breakers' state only; calls go through `payments`.
    pub gateways: Arc<GatewayDesk>,
    pub payments: PaymentLine,
    /// Woken when a refund is queued.
    pub refunds_due: Arc<Notify>,
    /// Told the items whose general stock an order gave back (the API's catalogue cache).
    pub stock_released: StockReleased,
}

impl OrderDesk {
    /// Confirms `payment_id` with `payment_key`: stores the key, has a payment worker charge
    /// at the gateway, and stores the outcome. A settled payment answers as it is; a ready
    /// one whose gateway's breaker is open is `Unavailable` with nothing stored.
    pub async fn confirm(
        &self,
        payment_id: i64,
        payment_key: &str,
    ) -> Result<PaymentRecord, PaymentError> {
        let stored = self
            .store
            .payment_by_id(payment_id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if stored.status == "ready" && !self.gateways.permits(&stored.provider) {
            return Err(PaymentError::Unavailable);
        }
        let start = self
            .store
            .start_confirm(payment_id, payment_key)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let payment = match start {
            ConfirmStart::Started(payment) => payment,
            ConfirmStart::Settled(payment)
                if payment.payment_key.as_deref() == Some(payment_key) =>
            {
                return Ok(payment)
            }
            ConfirmStart::Settled(_) | ConfirmStart::OtherKey(_) => {
                return Err(PaymentError::OtherKey)
            }
        };
        let outcome = self.payments.charge(&payment, payment_key).await;
        self.settle(payment, outcome).await
    }

    /// Settles a payment whose confirm started long enough ago with no outcome stored.
    pub async fn reconcile(&self, payment: PaymentRecord) -> Result<PaymentRecord, PaymentError> {
        if payment.payment_key.is_none() {
            return Ok(payment);
        }
        let outcome = self.payments.look_up(&payment).await;
        tracing::info!(
            payment_id = payment.id,
            ?outcome,
            "reconciled a payment in doubt"
        );
        match outcome {
            ChargeOutcome::Unknown => Ok(payment),
            outcome => self.settle(payment, outcome).await,
        }
    }

    /// Stores what a charge came to.
    async fn settle(
        &self,
        payment: PaymentRecord,
        outcome: ChargeOutcome,
    ) -> Result<PaymentRecord, PaymentError> {
        match outcome {
            ChargeOutcome::Taken(approved_at) => {
                match self.store.record_charge(payment.id, approved_at).await? {
                    Some(ChargeRecorded::OrderPaid(paid)) => {
                        metrics::counter!("hurry_payments_total", "outcome" => "paid",
                            "provider" => paid.provider.clone())
                        .increment(1);
                        Ok(paid)
                    }
                    Some(ChargeRecorded::AlreadySettled(settled)) => Ok(settled),
                    Some(ChargeRecorded::RefundOwed(paid)) => {
                        tracing::warn!(
                            payment_id = paid.id,
                            order_id = paid.order_id,
                            "payment taken after its order stopped waiting: refunding"
                        );
                        metrics::counter!("hurry_payments_total", "outcome" => "late",
                            "provider" => paid.provider.clone())
                        .increment(1);
                        self.refunds_due.notify_one();
                        Err(PaymentError::OrderExpired)
                    }
                    None => Err(PaymentError::NotFound),
                }
            }
            ChargeOutcome::NotTaken => self.fail(payment).await,
            ChargeOutcome::Unknown => {
                metrics::counter!("hurry_payments_total", "outcome" => "unknown",
                    "provider" => payment.provider.clone())
                .increment(1);
                Err(PaymentError::OutcomeUnknown)
            }
        }
    }

    /// Stores a payment that took nothing as failed, and its order's units as released
    /// (through the drop's actor when it is a drop order).
    async fn fail(&self, payment: PaymentRecord) -> Result<PaymentRecord, PaymentError> {
        let order = self
            .store
            .order_by_id(payment.order_id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let store = self.store.clone();
        let payment_id = payment.id;
        let change = async move {
            store
                .record_failure(payment_id)
                .await
                .map(|released| released.is_some())
        };
        let released = self
            .engine
            .release_order(&order, change)
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        if released {
            self.released(&order);
        }
        metrics::counter!("hurry_payments_total", "outcome" => "failed",
            "provider" => payment.provider.clone())
        .increment(1);
        self.store
            .payment_by_id(payment.id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    /// Stores a refund the gateway did; a return's order becomes `returned` with it, its
    /// units back (through the drop's actor for a drop order).
    pub async fn finish_refund(&self, refund: &RefundRecord) -> Result<bool, PaymentError> {
        if refund.reason != "return" {
            return Ok(self.store.finish_refund(refund.id).await?);
        }
        let order = self
            .store
            .order_by_id(refund.order_id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let store = self.store.clone();
        let refund_id = refund.id;
        let change = async move { store.finish_refund(refund_id).await };
        let finished = self
            .engine
            .release_order(&order, change)
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        if finished {
            self.released(&order);
        }
        Ok(finished)
    }

    /// Tells the catalogue that `order`'s items have stock back.
    fn released(&self, order: &OrderRecord) {
        let ids: Vec<i64> = order.lines.iter().map(|line| line.item_id).collect();
        (self.stock_released)(&ids);
    }

    /// Expires `order` if it is still unpaid past its deadline at `now`.
    pub async fn expire(
        &self,
        order: OrderRecord,
        now: chrono::DateTime<Utc>,
    ) -> Result<bool, PaymentError> {
        let store = self.store.clone();
        let order_id = order.id;
        let change = async move { store.expire_order(order_id, now).await };
        let expired = self
            .engine
            .release_order(&order, change)
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        if expired {
            metrics::counter!("hurry_orders_expired_total").increment(1);
            self.released(&order);
        }
        Ok(expired)
    }

    /// Cancels order `order_id` if it has not shipped: its units back and its paid payment
    /// (if any) refunded.
    pub async fn cancel(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        let order = self.order(order_id).await?;
        let status = OrderStatus::parse(&order.status)
            .filter(|&status| machine::cancellable(status))
            .ok_or_else(|| PaymentError::NotCancellable(order.status.clone()))?;
        let store = self.store.clone();
        let change = async move { store.cancel_order(order_id, status.as_str()).await };
        let cancelled = self
            .engine
            .release_order(&order, change)
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        let after = self.order(order_id).await?;
        if !cancelled {
            return Err(PaymentError::NotCancellable(after.status));
        }
        self.released(&order);
        self.refunds_due.notify_one();
        Ok(after)
    }

    /// Takes delivered order `order_id` back if it was delivered within the return window.
    pub async fn request_return(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        let order = self.order(order_id).await?;
        if order.status != OrderStatus::Delivered.as_str() {
            return Err(PaymentError::NotReturnable(format!(
                "an order in status {} cannot be returned",
                order.status
            )));
        }
        let window = chrono::Duration::from_std(self.config.return_window)
            .unwrap_or_else(|_| chrono::Duration::days(7));
        if !self
            .store
            .request_return(order_id, Utc::now() - window)
            .await?
        {
            return Err(PaymentError::NotReturnable(
                "the return window of this order is over".into(),
            ));
        }
        self.refunds_due.notify_one();
        self.order(order_id).await
    }

    /// Moves paid orders on through `preparing`, `shipping` and `delivered`, each once its
    /// time in the status before is over at `now`; answers how many moved.
    pub async fn advance_shipments(
        &self,
        now: chrono::DateTime<Utc>,
    ) -> Result<usize, PaymentError> {
        let steps = [
            (
                OrderStatus::Paid,
                OrderStatus::Preparing,
                self.config.preparing_after,
            ),
            (
                OrderStatus::Preparing,
                OrderStatus::Shipping,
                self.config.shipping_after,
            ),
            (
                OrderStatus::Shipping,
                OrderStatus::Delivered,
                self.config.delivered_after,
            ),
        ];
        let mut num_moved = 0;
        for (from, to, after) in steps {
            debug_assert!(machine::allows(from, to));
            let after =
                chrono::Duration::from_std(after).unwrap_or_else(|_| chrono::Duration::zero());
            let due = self
                .store
                .orders_in_status_since(from.as_str(), now - after, 500)
                .await?;
            for order_id in due {
                if self
                    .store
                    .transition_order(order_id, from.as_str(), to.as_str())
                    .await?
                {
                    num_moved += 1;
                }
            }
        }
        Ok(num_moved)
    }

    async fn order(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        self.store
            .order_by_id(order_id)
            .await?
            .ok_or(PaymentError::NotFound)
    }
}
