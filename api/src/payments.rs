//! Setting payments up: the gateway clients (each pointing at its configured URL or at the
//! sandbox mounted on this server), the mounted sandbox, the payment workers and their sweeper.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hurry_engine::payment::breaker::GuardedGateway;
use hurry_engine::payment::gateway::nice::NiceGateway;
use hurry_engine::payment::gateway::toss::TossGateway;
use hurry_engine::payment::gateway::{GatewayEndpoint, PaymentGateway};
use hurry_engine::payment::{PaymentSetup, Payments};
use hurry_engine::Engine;
use hurry_persistence::Store;
use secrecy::SecretString;

use crate::auth::{Revocations, TokenAdmins, TokenKeys};
use crate::pg_sandbox::book::Provider;
use crate::pg_sandbox::{Sandbox, SandboxConfig};
use crate::settings::{PaymentsSettings, Settings};

/// Where the mounted sandbox is.
pub const SANDBOX_PATH: &str = "/pg-sandbox";

/// The running payment parts.
pub struct PaymentParts {
    pub payments: Arc<Payments>,
    pub sandbox: Option<Sandbox>,
    pub sweeper: tokio::task::JoinHandle<()>,
}

/// Builds the gateways, the sandbox (when mounted) and the payment workers, and starts the
/// sweeper (which reconciles payments left in doubt by an earlier run at once).
pub async fn start(
    settings: &Settings,
    store: &Arc<dyn Store>,
    engine: &Arc<Engine>,
    local_addr: SocketAddr,
    tokens: &Arc<TokenKeys>,
    revocations: &Arc<Revocations>,
    catalog: &crate::catalog::CatalogCache,
) -> anyhow::Result<PaymentParts> {
    let payments_settings = &settings.payments;
    let gateways = gateways(payments_settings, settings.pg_sandbox.mount, local_addr)?;
    let named = std::iter::once(&payments_settings.default_provider)
        .chain(&payments_settings.fallback_providers);
    for name in named {
        if !gateways.contains_key(name) {
            anyhow::bail!(
                "payments names the gateway {name:?} (default_provider, fallback_providers): \
                 it must be toss, nice or sandbox"
            );
        }
    }
    let sandbox = settings.pg_sandbox.mount.then(|| {
        let admins = TokenAdmins {
            tokens: tokens.clone(),
            revocations: revocations.clone(),
        };
        Sandbox::new(
            sandbox_config(payments_settings, settings.pg_sandbox.admin_key.clone()),
            Some(Arc::new(admins)),
        )
    });
    let setup = PaymentSetup {
        store: store.clone(),
        engine: engine.clone(),
        gateways,
        config: payments_settings.payment_config(),
        stock_released: {
            let catalog = catalog.clone();
            Arc::new(move |ids: &[i64]| catalog.changed(ids))
        },
    };
    let payments = Payments::start(setup)
        .await
        .context("cannot start the payment workers")?;
    let sweeper =
        payments.spawn_sweeper(Duration::from_millis(payments_settings.sweep_interval_ms));
    Ok(PaymentParts {
        payments,
        sandbox,
        sweeper,
    })
}

/// What the sandbox accepts: the keys the gateways are configured with.
pub fn sandbox_config(settings: &PaymentsSettings, admin_key: SecretString) -> SandboxConfig {
    let credentials = settings
        .gateways()
        .into_iter()
        .filter_map(|(name, gateway)| {
            Provider::parse(name).map(|provider| (provider, gateway.credentials().into()))
        })
        .collect();
    SandboxConfig {
        admin_key,
        credentials,
    }
}

fn gateways(
    settings: &PaymentsSettings,
    sandbox_mounted: bool,
    local_addr: SocketAddr,
) -> anyhow::Result<HashMap<String, Arc<dyn PaymentGateway>>> {
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    let breakers = settings.breaker_config();
    let mut gateways: HashMap<String, Arc<dyn PaymentGateway>> = HashMap::new();
    for (name, gateway) in settings.gateways() {
        let base_url = if gateway.base_url.is_empty() {
            if !sandbox_mounted {
                anyhow::bail!(
                    "payments.{name}.base_url is empty but the sandbox gateway is not mounted \
                     (pg_sandbox.mount = false): set the gateway's URL"
                );
            }
            format!("http://{local_addr}{SANDBOX_PATH}/{name}")
        } else {
            gateway.base_url.clone()
        };
        let endpoint = GatewayEndpoint {
            base_url,
            credentials: gateway.credentials(),
            timeout,
        };
        let client: Arc<dyn PaymentGateway> = match name {
            "nice" => Arc::new(NiceGateway::new(endpoint)),
            _ => Arc::new(TossGateway::new(name, endpoint)),
        };
        gateways.insert(
            name.to_owned(),
            Arc::new(GuardedGateway::new(client, &breakers)),
        );
    }
    Ok(gateways)
}
