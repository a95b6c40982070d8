//! A circuit breaker per gateway: failsafe's state machine (closed, open, half-open) with a
//! consecutive-failures policy, wrapped around the gateway's client ([`GuardedGateway`]). Its
//! state is kept where the provider choice, the admin view and `/metrics`
//! (`hurry_gateway_breaker_state{provider}`: 0 closed, 1 open, 2 half-open) read it.
//!
//! A gateway is unhealthy when a call finds it unavailable or gets no answer; a refusal (a
//! declined card, a wrong amount) is a healthy answer.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use failsafe::failure_policy::{consecutive_failures, ConsecutiveFailures};
use failsafe::{backoff, Config, Instrument, StateMachine};
use serde::Serialize;

use super::gateway::{GatewayError, GatewayPayment, PaymentGateway};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused without being made, until the open time is over.
    Open,
    /// The open time is over: the next call is a probe; its success closes the breaker, its
    /// failure opens it again.
    HalfOpen,
}

impl BreakerState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// When a breaker opens and for how long.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive unhealthy calls that open it.
    pub num_failures: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

/// Keeps the state where it is read, and reports every change.
struct Tracker {
    provider: String,
    state: Arc<AtomicU8>,
}

impl Tracker {
    fn set(&self, state: BreakerState) {
        self.state.store(state as u8, Ordering::Relaxed);
        metrics::gauge!("hurry_gateway_breaker_state", "provider" => self.provider.clone())
            .set(f64::from(state as u8));
        metrics::counter!("hurry_gateway_breaker_changes_total",
            "provider" => self.provider.clone(), "to" => format!("{state:?}"))
        .increment(1);
    }
}

impl Instrument for Tracker {
    fn on_call_rejected(&self) {
        metrics::counter!("hurry_gateway_calls_total",
            "provider" => self.provider.clone(), "outcome" => "rejected")
        .increment(1);
    }

    fn on_open(&self) {
        tracing::warn!(provider = %self.provider, "gateway breaker open");
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        tracing::info!(provider = %self.provider, "gateway breaker half-open");
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        self.set(BreakerState::Closed);
    }
}

type Machine = StateMachine<ConsecutiveFailures<backoff::Constant>, Tracker>;

/// One gateway's breaker.
pub struct Breaker {
    machine: Machine,
    state: Arc<AtomicU8>,
}

impl Breaker {
    pub fn new(provider: &str, config: &BreakerConfig) -> Self {
        let state = Arc::new(AtomicU8::new(BreakerState::Closed as u8));
        let policy = consecutive_failures(
            config.num_failures.max(1),
            backoff::constant(config.open_for),
        );
        let machine = Config::new()
            .failure_policy(policy)
            .instrument(Tracker {
                provider: provider.to_owned(),
                state: state.clone(),
            })
            .build();
        Self { machine, state }
    }

    /// Whether a call may be made now (an open breaker whose time is over turns half-open
    /// and lets this call through as its probe).
    pub fn permits(&self) -> bool {
        self.machine.is_call_permitted()
    }

    /// The state as last changed.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn record(&self, healthy: bool) {
        if healthy {
            self.machine.on_success();
        } else {
            self.machine.on_error();
        }
    }
}

/// A gateway behind its breaker: a call the breaker refuses is `Unavailable` without being
/// made.
pub struct GuardedGateway {
    inner: Arc<dyn PaymentGateway>,
    breaker: Breaker,
}

impl GuardedGateway {
    pub fn new(inner: Arc<dyn PaymentGateway>, config: &BreakerConfig) -> Self {
        let breaker = Breaker::new(inner.provider(), config);
        Self { inner, breaker }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    async fn guard<F>(&self, call: F) -> Result<GatewayPayment, GatewayError>
    where
        F: std::future::Future<Output = Result<GatewayPayment, GatewayError>>,
    {
        if !self.breaker.permits() {
            return Err(GatewayError::CircuitOpen);
        }
        let answer = call.await;
        let healthy = !matches!(
            answer,
            Err(GatewayError::Unavailable(_) | GatewayError::OutcomeUnknown(_))
        );
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(GatewayError::Refused { .. } | GatewayError::AlreadyProcessed) => "refused",
            Err(GatewayError::Unavailable(_)) => "unavailable",
            Err(GatewayError::OutcomeUnknown(_)) => "no_answer",
            Err(GatewayError::CircuitOpen) => "rejected",
        };
        metrics::counter!("hurry_gateway_calls_total",
            "provider" => self.inner.provider().to_owned(), "outcome" => outcome)
        .increment(1);
        self.breaker.record(healthy);
        answer
    }
}

#[async_trait]
impl PaymentGateway for GuardedGateway {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    async fn confirm(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        self.guard(self.inner.confirm(payment_key, pg_order_id, amount))
            .await
    }

    async fn cancel(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<GatewayPayment, GatewayError> {
        self.guard(
            self.inner
                .cancel(payment_key, pg_order_id, amount, reason, idempotency_key),
        )
        .await
    }

    async fn lookup(&self, payment_key: &str) -> Result<GatewayPayment, GatewayError> {
        self.guard(self.inner.lookup(payment_key)).await
    }

    fn breaker_state(&self) -> Option<BreakerState> {
        Some(self.breaker.state())
    }

    fn permits_calls(&self) -> bool {
        self.breaker.permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(num_failures: u32) -> BreakerConfig {
        BreakerConfig {
            num_failures,
            open_for: Duration::from_secs(10),
        }
    }

    #[test]
    fn failures_in_a_row_open_it_and_after_its_time_one_probe_closes_it() {
        failsafe::clock::freeze(|clock| {
            let breaker = Breaker::new("toss", &config(3));
            breaker.record(false);
            breaker.record(true);
            breaker.record(false);
            breaker.record(false);
            assert_eq!(breaker.state(), BreakerState::Closed, "not three in a row");
            breaker.record(false);
            assert_eq!(breaker.state(), BreakerState::Open);
            assert!(!breaker.permits());

            clock.advance(Duration::from_secs(9));
            assert!(!breaker.permits(), "still open");
            clock.advance(Duration::from_secs(2));
            assert!(breaker.permits(), "the probe");
            assert_eq!(breaker.state(), BreakerState::HalfOpen);
            breaker.record(true);
            assert_eq!(breaker.state(), BreakerState::Closed);
            assert!(breaker.permits());
        });
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        failsafe::clock::freeze(|clock| {
            let breaker = Breaker::new("nice", &config(1));
            breaker.record(false);
            clock.advance(Duration::from_secs(11));
            assert!(breaker.permits());
            breaker.record(false);
            assert_eq!(breaker.state(), BreakerState::Open);
            assert!(!breaker.permits());
        });
    }

    /// A gateway that is down and counts the calls it gets.
    struct Down(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl PaymentGateway for Down {
        fn provider(&self) -> &str {
            "down"
        }

        async fn confirm(&self, _: &str, _: &str, _: i64) -> Result<GatewayPayment, GatewayError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(GatewayError::OutcomeUnknown("timeout".into()))
        }

        async fn cancel(
            &self,
            _: &str,
            _: &str,
            _: i64,
            _: &str,
            _: &str,
        ) -> Result<GatewayPayment, GatewayError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(GatewayError::Refused {
                code: "NOT_CANCELABLE_AMOUNT".into(),
                message: "no".into(),
            })
        }

        async fn lookup(&self, _: &str) -> Result<GatewayPayment, GatewayError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(GatewayError::Unavailable("503".into()))
        }
    }

    #[tokio::test]
    async fn an_open_breaker_makes_no_call_and_refusals_count_as_healthy() {
        let inner = Arc::new(Down(0.into()));
        let gateway = GuardedGateway::new(inner.clone(), &config(2));
        for _ in 0..5 {
            let refused = gateway.cancel("k", "o", 1, "r", "i").await;
            assert!(matches!(refused, Err(GatewayError::Refused { .. })));
        }
        assert_eq!(gateway.breaker().state(), BreakerState::Closed);
        assert!(gateway.confirm("k", "o", 1).await.is_err());
        assert!(gateway.lookup("k").await.is_err());
        assert_eq!(gateway.breaker().state(), BreakerState::Open);

        let refused = gateway.confirm("k", "o", 1).await;

        assert_eq!(refused, Err(GatewayError::CircuitOpen));
        assert_eq!(
            inner.0.load(Ordering::Relaxed),
            7,
            "the refused call was not made"
        );
    }
}
