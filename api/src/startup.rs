//! Building and running the application: store, engine, state, router, listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hurry_engine::baseline::{self, BaselineKind, BaselineParts};
use hurry_engine::events::SettlementConsumer;
use hurry_engine::{Engine, Seller};
use hurry_persistence::{ComparisonStore, Store};
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::{feed, PasswordHasher, Revocations, TokenKeys};
use crate::events::EventSystem;
use crate::idempotency::Coalescer;
use crate::mail;
use crate::pii::{self, Pii};
use crate::rate_limit::RateLimits;
use crate::routes;
use crate::settings::{Settings, StockStrategy};
use crate::state::{AppState, Shared};
use crate::telemetry;
use crate::verification::MailerConsumer;

/// A built server, bound to its address, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects the store (running migrations), starts the engine, creates the bootstrap admin
    /// and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let options = settings.connect_options();
        let (store, comparison) = hurry_persistence::connect_with_comparison(&options)
            .await
            .with_context(|| "cannot open the database")?;
        // Bound first: the gateways of the mounted sandbox call this address.
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        let local_addr = listener.local_addr()?;
        let state = build_state(settings, store, comparison, local_addr).await?;
        if let Err(err) = crate::bootstrap::bootstrap_admin(&state).await {
            state.stop_background();
            state.engine.stop().await;
            return Err(err.context("cannot set up the bootstrap admin"));
        }
        Ok(Self { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The state handlers see (tests reach the engine and the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM, then stops the engine.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let engine = self.state.engine.clone();
        let state_for_stop = self.state.clone();
        let state = self.state.clone();
        let forget = tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                state.rate_limits.forget_idle();
            }
        });
        let router = routes::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!(addr = %self.listener.local_addr()?, "serving");
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await;
        forget.abort();
        state_for_stop.stop_background();
        engine.shutdown();
        served
    }
}

async fn build_state(
    settings: Settings,
    store: Arc<dyn Store>,
    comparison: Arc<dyn ComparisonStore>,
    local_addr: SocketAddr,
) -> anyhow::Result<AppState> {
    let secret = match settings.auth.jwt_secret.expose_secret() {
        "" => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            store
                .setting_or_init("jwt_secret", &hex::encode(bytes))
                .await
                .context("cannot read the token key")?
        }
        configured => configured.to_owned(),
    };
    let tokens = TokenKeys::new(secret.as_bytes(), settings.auth.access_token_ttl_secs);
    let passwords = PasswordHasher::new(
        settings.auth.argon2_memory_kib,
        settings.auth.argon2_iterations,
        settings.auth.argon2_parallelism,
    )?;
    let pii = Arc::new(build_pii(&settings, &store).await?);
    let mailer = mail::from_settings(&settings.mail)?;
    let cluster = !settings.redis.url.is_empty();
    let feed = cluster
        .then(|| feed::RevocationFeed::new(&settings.redis.url, &settings.redis.key_prefix))
        .transpose()
        .context("cannot set up the revocation feed")?;
    let revocations = Arc::new(
        Revocations::load(&store, feed, settings.auth.access_token_ttl_secs)
            .await
            .context("cannot load revoked tokens")?,
    );
    let revocation_listener = cluster
        .then(|| {
            revocations.listen(
                &settings.redis.url,
                &settings.redis.key_prefix,
                store.clone(),
            )
        })
        .transpose()?;
    let engine = Arc::new(
        Engine::start(store.clone(), settings.engine_config(store.backend()))
            .await
            .context("cannot start the engine")?,
    );
    if !engine.sells_drops() {
        if !cluster {
            engine.stop().await;
            anyhow::bail!(
                "another hurry process uses this database ({}): stop it first (one process \
                 per store sells drops until cluster mode has real leases)",
                redacted(&settings.database.url)
            );
        }
        tracing::warn!(
            "another process on this store sells its drops: this node serves everything but \
             drops, whose purchases answer 503 unavailable"
        );
    }
    let seller = seller(&settings, &engine, store.clone(), comparison)?;
    let mail_consumer = Arc::new(MailerConsumer::new(store.clone(), pii.clone(), mailer));
    let settlement = Arc::new(SettlementConsumer::new(
        store.clone(),
        settings.payments.fee_rates_bp(),
    ));
    let events = EventSystem::start(&settings, &store, vec![mail_consumer, settlement]).await?;
    let rate_limits = RateLimits::new(&settings.rate_limit);
    let keyed_users = if settings.idempotency.memory_index {
        let users = store
            .users_with_idempotency_keys()
            .await
            .context("cannot list the users with idempotency keys")?;
        Some(users)
    } else {
        None
    };
    let idempotency = Coalescer::new(
        settings.idempotency.recent_answers,
        settings.engine.call_timeout(),
        keyed_users,
    );
    let catalog = crate::catalog::CatalogCache::new(
        Duration::from_millis(settings.catalog.cache_ttl_ms),
        settings.catalog.cache_max_items,
    );
    let tokens = Arc::new(tokens);
    let payments = crate::payments::start(
        &settings,
        &store,
        &engine,
        local_addr,
        &tokens,
        &revocations,
        &catalog,
    )
    .await?;
    Ok(AppState::new(Shared {
        settings: Arc::new(settings),
        store,
        engine,
        catalog,
        events: Arc::new(events),
        tokens,
        revocations,
        payments: payments.payments,
        sandbox: payments.sandbox,
        payment_sweeper: payments.sweeper,
        revocation_listener,
        passwords,
        pii,
        idempotency: Arc::new(idempotency),
        seller,
        rate_limits,
        metrics: telemetry::metrics_handle(),
    }))
}

/// What drop purchases go through: the engine, or the comparison baseline `engine.stock_strategy`
/// names (builds with the `baseline` feature only).
fn seller(
    settings: &Settings,
    engine: &Arc<Engine>,
    store: Arc<dyn Store>,
    comparison: Arc<dyn ComparisonStore>,
) -> anyhow::Result<Arc<dyn Seller>> {
    let kind = match settings.engine.stock_strategy {
        StockStrategy::Actor => return Ok(engine.clone()),
        StockStrategy::RedisLua => BaselineKind::RedisLua {
            url: settings.redis.url.clone(),
            prefix: settings.redis.key_prefix.clone(),
        },
        StockStrategy::PgRow => BaselineKind::PgRow,
    };
    let parts = BaselineParts {
        store,
        comparison,
        order_ids: engine.order_ids().clone(),
        payment_window: settings.engine.payment_window(),
    };
    baseline::build(kind, parts).with_context(|| {
        format!(
            "engine.stock_strategy = {:?}",
            settings.engine.stock_strategy.as_str()
        )
    })
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_end = url[scheme + 3..at].find(':').map(|i| scheme + 3 + i);
            match user_end {
                Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// PII keys from configuration, or generated once and kept in the store.
async fn build_pii(settings: &Settings, store: &Arc<dyn Store>) -> anyhow::Result<Pii> {
    let configured = settings.pii.keys.expose_secret();
    let (keys, current_key_id) = if configured.trim().is_empty() {
        let key = store
            .setting_or_init("pii_key_1", &pii::generate_key())
            .await
            .context("cannot read the PII key")?;
        (vec![(1, pii::parse_key(&key)?)], 1)
    } else {
        (pii::parse_keys(configured)?, settings.pii.current_key_id)
    };
    let blind = match settings.pii.blind_index_key.expose_secret() {
        "" => store
            .setting_or_init("pii_blind_index_key", &pii::generate_key())
            .await
            .context("cannot read the blind index key")?,
        configured => configured.to_owned(),
    };
    let pii = Pii::new(&keys, current_key_id, pii::parse_key(&blind)?)?;
    // Which way every stored value was sealed after the last complete re-seal pass ("" before
    // the first one, when values sealed without their place may still be stored).
    let sealed_as = store
        .setting_or_init(PII_SEALED_AS, "")
        .await
        .context("cannot read how personal data is sealed")?;
    if sealed_as == pii.current_prefix() {
        return Ok(pii);
    }
    let first_pass = !sealed_as.starts_with("v2.");
    let pii = pii.opening_unbound(first_pass);
    let done = pii::reseal(store.as_ref(), &pii)
        .await
        .context("cannot re-seal personal data")?;
    store
        .put_setting(PII_SEALED_AS, &pii.current_prefix())
        .await
        .context("cannot record the re-seal pass")?;
    if done != pii::Resealed::default() {
        tracing::info!(
            resealed = done.resealed,
            unreadable = done.unreadable,
            sealed_as = %pii.current_prefix(),
            "personal data re-sealed, each value bound to its place under the current key"
        );
    }
    Ok(pii.opening_unbound(false))
}

/// The setting naming how every stored personal value is sealed (`v2.<key id>.`).
const PII_SEALED_AS: &str = "pii_sealed_as";

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
