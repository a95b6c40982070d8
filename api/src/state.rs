//! What every handler can reach.

use std::sync::Arc;

use hurry_engine::Engine;
use hurry_persistence::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::{PasswordHasher, TokenKeys};
use crate::idempotency::Coalescer;
use crate::settings::Settings;

/// Shared application state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub tokens: Arc<TokenKeys>,
    pub passwords: PasswordHasher,
    pub idempotency: Arc<Coalescer>,
    pub metrics: PrometheusHandle,
}
