//! What the resilience layers add to a gateway call, against a gateway that answers at once
//! in process (so only the layers are timed):
//!
//! - `gateway/bare`: the call alone;
//! - `gateway/breaker`: through the circuit breaker ([`GuardedGateway`]);
//! - `gateway/breaker_retry`: through the breaker and the retry layer a confirm uses (backon,
//!   exponential with jitter, transient errors only), when nothing fails.
//!
//! Run with `cargo bench -p hurry-engine --bench gateway`; the figures are in `BENCHMARKS.md`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use criterion::{criterion_group, criterion_main, Criterion};
use hurry_engine::payment::breaker::{BreakerConfig, GuardedGateway};
use hurry_engine::payment::gateway::{GatewayError, GatewayPayment, GatewayStatus, PaymentGateway};

/// Answers every call at once with a paid payment.
struct Instant;

#[async_trait]
impl PaymentGateway for Instant {
    fn provider(&self) -> &str {
        "instant"
    }

    async fn confirm(
        &self,
        key: &str,
        order: &str,
        amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        Ok(GatewayPayment {
            payment_key: key.to_owned(),
            pg_order_id: order.to_owned(),
            status: GatewayStatus::Paid,
            amount,
            refunded_amount: 0,
            approved_at: None,
        })
    }

    async fn cancel(
        &self,
        key: &str,
        order: &str,
        amount: i64,
        _: &str,
        _: &str,
    ) -> Result<GatewayPayment, GatewayError> {
        self.confirm(key, order, amount).await
    }

    async fn lookup(&self, key: &str) -> Result<GatewayPayment, GatewayError> {
        self.confirm(key, "o", 1).await
    }
}

fn gateway(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bare: Arc<dyn PaymentGateway> = Arc::new(Instant);
    let config = BreakerConfig {
        num_failures: 5,
        open_for: Duration::from_secs(10),
    };
    let guarded: Arc<dyn PaymentGateway> = Arc::new(GuardedGateway::new(bare.clone(), &config));
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(2)
        .with_jitter();
    let mut group = c.benchmark_group("gateway");
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.confirm("key", "order", 1_000).await })
    });
    group.bench_function("breaker", |b| {
        b.to_async(&runtime)
            .iter(|| async { guarded.confirm("key", "order", 1_000).await })
    });
    group.bench_function("breaker_retry", |b| {
        b.to_async(&runtime).iter(|| async {
            (|| guarded.confirm("key", "order", 1_000))
                .retry(backoff)
                .when(GatewayError::is_transient)
                .await
        })
    });
    group.finish();
}

criterion_group!(benches, gateway);
criterion_main!(benches);
