//! What every handler can reach.

use std::sync::Arc;

use hurry_engine::{Engine, Seller};
use hurry_persistence::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::{PasswordHasher, Revocations, TokenKeys};
use crate::events::EventSystem;
use crate::idempotency::Coalescer;
use crate::pii::Pii;
use crate::rate_limit::RateLimits;
use crate::settings::Settings;

/// Shared application state: one `Arc`, so the per-request clone axum makes is one increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// Stops the background work: event relay and consumers, the revocation listener, the
    /// payment workers and their sweeper.
    pub fn stop_background(&self) {
        self.events.stop();
        if let Some(listener) = &self.revocation_listener {
            listener.abort();
        }
        self.payment_sweeper.abort();
        self.payments.stop();
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub catalog: crate::catalog::CatalogCache,
    pub events: Arc<EventSystem>,
    pub tokens: Arc<TokenKeys>,
    pub revocations: Arc<Revocations>,
    /// Cluster mode: the task that applies other nodes' revocations.
    pub revocation_listener: Option<tokio::task::JoinHandle<()>>,
    pub passwords: PasswordHasher,
    pub pii: Arc<Pii>,
    pub idempotency: Arc<Coalescer>,
    /// What drop purchases go through: the engine, or a comparison baseline
    /// (`engine.stock_strategy`).
    pub seller: Arc<dyn Seller>,
    pub rate_limits: RateLimits,
    pub metrics: PrometheusHandle,
    /// Confirms, reconciliation and refunds.
    pub payments: Arc<hurry_engine::payment::Payments>,
    /// The sandbox gateway mounted at `/pg-sandbox` (when `pg_sandbox.mount`).
    pub sandbox: Option<crate::pg_sandbox::Sandbox>,
    /// Reconciles payments in doubt and retries owed refunds.
    pub payment_sweeper: tokio::task::JoinHandle<()>,
}
