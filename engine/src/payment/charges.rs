//! The payment workers' side: conversations with the gateways. A charge is confirmed with
//! retries on transient errors (backon: exponential with jitter) and looked up when its answer
//! was lost; a refund is asked for under its own idempotency key. Nothing here writes the
//! store: the order workers ([`super::orders`]) store what the answers say.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use hurry_persistence::{PaymentRecord, RefundRecord};

use super::error::PaymentError;
use super::gateway::{GatewayError, GatewayPayment, GatewayStatus, PaymentGateway};

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
    /// Order workers, and payment workers (one order's jobs go to one worker of each kind at
    /// a time).
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
    /// Longest wait for a worker's answer (a confirm's included); past it the answer is
    /// `OutcomeUnknown` (the worker still settles the payment).
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

/// The gateways and how hard to try them.
pub struct GatewayDesk {
    pub gateways: HashMap<String, Arc<dyn PaymentGateway>>,
    pub config: PaymentConfig,
}

impl GatewayDesk {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_max_times(self.config.num_attempts.saturating_sub(1))
            .with_jitter()
    }

    fn gateway(&self, provider: &str) -> Option<&Arc<dyn PaymentGateway>> {
        self.gateways.get(provider)
    }

    /// Whether `provider`'s breaker lets calls through now.
    pub fn permits(&self, provider: &str) -> bool {
        self.gateway(provider)
            .is_some_and(|gateway| gateway.permits_calls())
    }

    /// The gateway a new payment goes to: the one asked for (or the default), else the first
    /// fallback whose breaker lets calls through; `Unavailable` when every breaker is open.
    pub fn provider_for(&self, requested: Option<&str>) -> Result<String, PaymentError> {
        let first = requested.unwrap_or(&self.config.default_provider);
        std::iter::once(first)
            .chain(self.config.fallback_providers.iter().map(String::as_str))
            .find(|name| self.permits(name))
            .map(str::to_owned)
            .ok_or(PaymentError::Unavailable)
    }

    /// Takes the money of `payment` with `payment_key` at its gateway.
    pub async fn charge(&self, payment: &PaymentRecord, payment_key: &str) -> ChargeOutcome {
        match self.gateway(&payment.provider) {
            Some(gateway) => self.confirm(gateway.as_ref(), payment, payment_key).await,
            None => ChargeOutcome::Unknown,
        }
    }

    /// What became of `payment` (whose confirm started long enough ago that a `ready` one is
    /// not in flight).
    pub async fn look_up_settled(&self, payment: &PaymentRecord) -> ChargeOutcome {
        let (Some(gateway), Some(key)) = (self.gateway(&payment.provider), &payment.payment_key)
        else {
            return ChargeOutcome::Unknown;
        };
        self.look_up(gateway.as_ref(), key, false).await
    }

    /// Asks `gateway` to take the money.
    async fn confirm(
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

    /// Gives `refund` back through the gateway that took the money.
    pub async fn refund(&self, refund: &RefundRecord) -> Result<(), GatewayError> {
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
