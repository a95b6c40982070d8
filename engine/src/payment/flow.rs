//! What the payment workers do: confirm a payment at its gateway and store the outcome,
//! settle a payment whose outcome was lost, and push owed refunds through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use hurry_persistence::{
    ChargeRecorded, ConfirmStart, OrderRecord, PaymentRecord, RefundRecord, Store,
};
use tokio::sync::Notify;

use super::error::PaymentError;
use super::gateway::{GatewayError, GatewayPayment, GatewayStatus, PaymentGateway};
use crate::domain::OrderStatus;
use crate::order::machine;
use crate::Engine;

/// Payment settings.
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// Calls of one confirm (or lookup) before giving up on transient errors.
    pub num_attempts: usize,
    /// First and longest pause between two attempts (exponential, with jitter).
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// A confirm started this long ago with no outcome stored is looked up.
    pub reconcile_after: Duration,
    /// Payment workers (one order's jobs go to one worker at a time).
    pub num_workers: usize,
    /// The gateway a payment goes to when none is asked for, then the ones that take over
    /// while its breaker is open, in order.
    pub default_provider: String,
    pub fallback_providers: Vec<String>,
    /// When paid orders move on: to `preparing`, `shipping` and `delivered`, each this long
    /// after the move before; and how long after delivery a return is taken.
    pub preparing_after: Duration,
    pub shipping_after: Duration,
    pub delivered_after: Duration,
    pub return_window: Duration,
    /// Longest wait for a confirm's answer; past it the answer is `OutcomeUnknown` (the
    /// worker still settles the payment).
    pub call_timeout: Duration,
}

/// What a charge attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money is taken.
    Taken(chrono::DateTime<Utc>),
    /// Refused for good, or certainly not taken: the payment fails.
    NotTaken,
    /// Nobody can tell yet.
    Unknown,
}

/// Told the ids of the items whose general stock came back.
pub type StockReleased = Arc<dyn Fn(&[i64]) + Send + Sync>;

/// What the workers share.
pub struct PaymentContext {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub gateways: HashMap<String, Arc<dyn PaymentGateway>>,
    pub config: PaymentConfig,
    /// Woken when a refund is queued.
    pub refunds_due: Arc<Notify>,
    /// Told the items whose general stock an order gave back (the API's catalogue cache).
    pub stock_released: StockReleased,
}

impl PaymentContext {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_max_times(self.config.num_attempts.saturating_sub(1))
            .with_jitter()
    }

    fn gateway(&self, provider: &str) -> Result<&Arc<dyn PaymentGateway>, PaymentError> {
        self.gateways.get(provider).ok_or(PaymentError::Unavailable)
    }

    /// The gateway a new payment goes to: the one asked for (or the default), else the first
    /// fallback whose breaker lets calls through; `Unavailable` when every breaker is open.
    pub fn provider_for(&self, requested: Option<&str>) -> Result<String, PaymentError> {
        let first = requested.unwrap_or(&self.config.default_provider);
        std::iter::once(first)
            .chain(self.config.fallback_providers.iter().map(String::as_str))
            .find(|name| {
                self.gateways
                    .get(*name)
                    .is_some_and(|gateway| gateway.permits_calls())
            })
            .map(str::to_owned)
            .ok_or(PaymentError::Unavailable)
    }

    /// Confirms `payment_id` with `payment_key`: stores the key, charges at the gateway
    /// (retrying transient errors; a lost answer is looked up), and stores the outcome. A
    /// settled payment answers as it is; a ready one whose gateway's breaker is open is
    /// `Unavailable` with nothing stored.
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
        if stored.status == "ready" && !self.gateway(&stored.provider)?.permits_calls() {
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
            ConfirmStart::Settled(_) => return Err(PaymentError::OtherKey),
            ConfirmStart::OtherKey(_) => return Err(PaymentError::OtherKey),
        };
        let gateway = self.gateway(&payment.provider)?;
        let outcome = self.charge(gateway.as_ref(), &payment, payment_key).await;
        self.settle(payment, outcome).await
    }

    /// Asks the gateway to take the money.
    async fn charge(
        &self,
        gateway: &dyn PaymentGateway,
        payment: &PaymentRecord,
        payment_key: &str,
    ) -> ChargeOutcome {
        let mut answer_lost = false;
        let confirmed = (|| gateway.confirm(payment_key, &payment.pg_order_id, payment.amount))
            .retry(self.backoff())
            .when(GatewayError::is_transient)
            .notify(|err, _| answer_lost |= matches!(err, GatewayError::OutcomeUnknown(_)))
            .await;
        match confirmed {
            Ok(charge) => outcome_of(&charge, false),
            Err(GatewayError::Refused { code, message }) => {
                tracing::info!(payment_id = payment.id, %code, %message, "payment refused");
                ChargeOutcome::NotTaken
            }
            Err(err) => {
                answer_lost |= matches!(err, GatewayError::OutcomeUnknown(_));
                self.look_up(gateway, payment_key, answer_lost).await
            }
        }
    }

    /// Asks the gateway what became of a payment. `maybe_in_flight`: a confirm's answer was
    /// lost, so one that is still `ready` may yet be charged.
    async fn look_up(
        &self,
        gateway: &dyn PaymentGateway,
        payment_key: &str,
        maybe_in_flight: bool,
    ) -> ChargeOutcome {
        let found = (|| gateway.lookup(payment_key))
            .retry(self.backoff())
            .when(GatewayError::is_transient)
            .await;
        match found {
            Ok(charge) => outcome_of(&charge, maybe_in_flight),
            // The gateway has no such payment: nothing can have been taken.
            Err(GatewayError::Refused { .. }) => ChargeOutcome::NotTaken,
            Err(err) => {
                tracing::warn!(error = %err, "payment lookup failed");
                ChargeOutcome::Unknown
            }
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

    /// Settles a payment whose confirm started long enough ago with no outcome stored.
    pub async fn reconcile(&self, payment: PaymentRecord) -> Result<PaymentRecord, PaymentError> {
        let Some(payment_key) = payment.payment_key.clone() else {
            return Ok(payment);
        };
        let gateway = self.gateway(&payment.provider)?;
        // Long enough ago: a confirm still `ready` at the gateway now is not in flight.
        let outcome = self.look_up(gateway.as_ref(), &payment_key, false).await;
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

    /// Pushes owed refunds through their gateways; answers how many went through.
    pub async fn run_refunds(&self) -> Result<usize, PaymentError> {
        let mut num_done = 0;
        for refund in self.store.refunds("pending", 100).await? {
            match self.refund(&refund).await {
                Ok(()) => {
                    if self.finish_refund(&refund).await? {
                        num_done += 1;
                    }
                }
                Err(err) => {
                    tracing::warn!(refund_id = refund.id, error = %err, "refund failed");
                    self.store
                        .refund_attempt_failed(refund.id, &err.to_string())
                        .await?;
                }
            }
        }
        Ok(num_done)
    }

    /// Stores a refund the gateway did; a return's order becomes `returned` with it, its
    /// units back (through the drop's actor for a drop order).
    async fn finish_refund(&self, refund: &RefundRecord) -> Result<bool, PaymentError> {
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

    async fn refund(&self, refund: &RefundRecord) -> Result<(), GatewayError> {
        let gateway = self
            .gateways
            .get(&refund.provider)
            .ok_or_else(|| GatewayError::Unavailable(format!("no gateway {}", refund.provider)))?;
        let Some(payment_key) = refund.payment_key.as_deref() else {
            return Err(GatewayError::Refused {
                code: "NO_PAYMENT_KEY".into(),
                message: "the payment was never confirmed".into(),
            });
        };
        let idempotency_key = format!("refund-{}", refund.id);
        (|| {
            gateway.cancel(
                payment_key,
                &refund.pg_order_id,
                refund.amount,
                &refund.reason,
                &idempotency_key,
            )
        })
        .retry(self.backoff())
        .when(GatewayError::is_transient)
        .await
        .map(|_| ())
    }
}

/// What a gateway's payment object says about the money.
fn outcome_of(charge: &GatewayPayment, maybe_in_flight: bool) -> ChargeOutcome {
    match charge.status {
        GatewayStatus::Paid => ChargeOutcome::Taken(charge.approved_at.unwrap_or_else(Utc::now)),
        // Given back entirely by someone else: nothing is held.
        GatewayStatus::Failed | GatewayStatus::Cancelled => ChargeOutcome::NotTaken,
        GatewayStatus::Ready if maybe_in_flight => ChargeOutcome::Unknown,
        GatewayStatus::Ready => ChargeOutcome::NotTaken,
    }
}
