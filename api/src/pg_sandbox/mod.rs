//! The sandbox gateway: a real HTTP server in the shape of Toss Payments (`/toss/v1/...`, and
//! `/sandbox/v1/...` for the provider named `sandbox`) and of NicePay (`/nice/v1/...`), with a
//! checkout step that stands in for the gateways' browser widgets, a ledger of every charge
//! and refund, and fault settings per gateway that can be changed while it runs (API.md, "The
//! sandbox gateway"). Mounted at `/pg-sandbox` on the embedded server; `hurry pg-sandbox
//! --listen ADDR` serves it alone.
//!
//! - [`book`]: the ledger (checkouts, charges, refunds, stored idempotent answers).
//! - [`faults`]: the fault settings and the draw of one request's fate.
//! - [`toss`], [`nice`]: the two gateways' request and answer shapes.

pub mod book;
pub mod faults;
mod nice;
mod toss;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, FieldError};
use crate::extract::ApiJson;
use book::{Book, Charge, Provider, StoredAnswer};
use faults::{Fate, Faults};

/// Tells whether a request comes from an administrator of the server the sandbox is mounted
/// in (its admin token); the sandbox's own admin key works besides.
#[async_trait]
pub trait AdminCheck: Send + Sync {
    async fn is_admin(&self, headers: &HeaderMap) -> bool;
}

/// What the sandbox accepts.
#[derive(Clone)]
pub struct SandboxConfig {
    /// `X-Sandbox-Key` value for the fault settings and the charge list. Empty: only the
    /// server's admins (or nobody, standalone).
    pub admin_key: SecretString,
    /// Per gateway, the `user:password` its Basic authorization must carry (Toss: the secret
    /// key and an empty password; NicePay: client key and secret key).
    pub credentials: HashMap<Provider, SecretString>,
}

/// The sandbox gateway: cheap to clone.
#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

struct Inner {
    book: Mutex<Book>,
    faults: Mutex<HashMap<Provider, Faults>>,
    config: SandboxConfig,
    admins: Option<Arc<dyn AdminCheck>>,
}

impl Sandbox {
    /// A sandbox with an empty ledger and no faults.
    pub fn new(config: SandboxConfig, admins: Option<Arc<dyn AdminCheck>>) -> Self {
        Self(Arc::new(Inner {
            book: Mutex::new(Book::default()),
            faults: Mutex::new(HashMap::new()),
            config,
            admins,
        }))
    }

    /// Every confirmed or refused charge, in checkout order.
    pub fn charges(&self) -> Vec<Charge> {
        self.book().charges()
    }

    /// Sets the faults of one gateway.
    pub fn set_faults(&self, provider: Provider, faults: Faults) {
        self.0
            .faults
            .lock()
            .expect("faults lock")
            .insert(provider, faults);
    }

    fn faults(&self, provider: Provider) -> Faults {
        self.0
            .faults
            .lock()
            .expect("faults lock")
            .get(&provider)
            .copied()
            .unwrap_or_default()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.book.lock().expect("sandbox book lock")
    }

    /// Whether `headers` carry the Basic authorization of `provider`.
    fn authorized(&self, provider: Provider, headers: &HeaderMap) -> bool {
        let Some(expected) = self.0.config.credentials.get(&provider) else {
            return false;
        };
        let Some(given) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|value| base64::engine::general_purpose::STANDARD.decode(value).ok())
        else {
            return false;
        };
        bool::from(given.ct_eq(expected.expose_secret().as_bytes()))
    }

    /// `Ok` for the sandbox's admin key or a server admin, 403 otherwise.
    async fn require_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.is_admin(headers).await {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "needs the sandbox admin key or an admin",
            ))
        }
    }

    async fn is_admin(&self, headers: &HeaderMap) -> bool {
        let key = self.0.config.admin_key.expose_secret();
        let by_key = !key.is_empty()
            && headers
                .get("x-sandbox-key")
                .is_some_and(|given| bool::from(given.as_bytes().ct_eq(key.as_bytes())));
        if by_key {
            return true;
        }
        match &self.0.admins {
            Some(admins) => admins.is_admin(headers).await,
            None => false,
        }
    }

    /// Runs one gateway call under the gateway's faults and its `Idempotency-Key`: a key seen
    /// before answers its first answer again (and does nothing); otherwise the fate drawn
    /// decides whether `act` runs (under the ledger's lock, so two requests with one key do
    /// it once) and whether its answer comes back.
    async fn call(
        &self,
        provider: Provider,
        idempotency_key: Option<&str>,
        error: fn() -> StoredAnswer,
        act: impl FnOnce(&mut Book, Fate) -> StoredAnswer,
    ) -> Response {
        let faults = self.faults(provider);
        if !faults.latency().is_zero() {
            tokio::time::sleep(faults.latency()).await;
        }
        if let Some(answer) = idempotency_key.and_then(|key| self.book().answer(provider, key)) {
            return answer.into_response();
        }
        let fate = faults.draw(&mut rand::thread_rng());
        match fate {
            Fate::Error => return error().into_response(),
            Fate::Timeout => {
                tokio::time::sleep(faults.hold()).await;
                return error().into_response();
            }
            Fate::Decline | Fate::ChargeThenTimeout | Fate::Through => {}
        }
        let answer = {
            let mut book = self.book();
            match idempotency_key.and_then(|key| book.answer(provider, key)) {
                Some(first) => first,
                None => {
                    let answer = act(&mut book, fate);
                    if let Some(key) = idempotency_key {
                        book.keep_answer(provider, key, answer.clone());
                    }
                    answer
                }
            }
        };
        if fate == Fate::ChargeThenTimeout {
            tokio::time::sleep(faults.hold()).await;
        }
        answer.into_response()
    }

    /// A gateway lookup: latency and errors apply, timeouts do not.
    async fn look_up(
        &self,
        provider: Provider,
        error: fn() -> StoredAnswer,
        answer: impl FnOnce(&Book) -> StoredAnswer,
    ) -> Response {
        let faults = self.faults(provider);
        if !faults.latency().is_zero() {
            tokio::time::sleep(faults.latency()).await;
        }
        if faults.draw(&mut rand::thread_rng()) == Fate::Error {
            return error().into_response();
        }
        answer(&self.book()).into_response()
    }
}

impl IntoResponse for StoredAnswer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// The sandbox's routes, to be nested (at `/pg-sandbox`) or served at the root.
pub fn router(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/checkout", post(checkout))
        .route("/faults", put(set_faults).get(get_faults))
        .route("/charges", get(list_charges))
        .nest("/toss/v1", toss::router(Provider::Toss))
        .nest("/sandbox/v1", toss::router(Provider::Sandbox))
        .nest("/nice/v1", nice::router())
        .with_state(sandbox)
}

/// `hurry pg-sandbox --listen ADDR`: serves the sandbox alone until Ctrl-C.
pub async fn serve(listen: SocketAddr, sandbox: Sandbox) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "sandbox gateway is ready");
    axum::serve(listener, router(sandbox))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

#[derive(Deserialize)]
struct CheckoutBody {
    provider: String,
    pg_order_id: String,
    amount: i64,
}

#[derive(Serialize)]
struct CheckoutAnswer {
    payment_key: String,
}

/// Largest amount the sandbox takes in one payment, in won.
const MAX_AMOUNT: i64 = 1_000_000_000_000;

async fn checkout(
    State(sandbox): State<Sandbox>,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<(StatusCode, Json<CheckoutAnswer>), ApiError> {
    let mut details = Vec::new();
    let provider = Provider::parse(&body.provider);
    if provider.is_none() {
        details.push(FieldError::new("provider", "must be toss, nice or sandbox"));
    }
    let id_ok = (1..=64).contains(&body.pg_order_id.len())
        && body.pg_order_id.bytes().all(|byte| byte.is_ascii_graphic());
    if !id_ok {
        details.push(FieldError::new(
            "pg_order_id",
            "must be 1 to 64 visible ASCII characters",
        ));
    }
    if !(1..=MAX_AMOUNT).contains(&body.amount) {
        details.push(FieldError::new("amount", "must be between 1 and 10^12"));
    }
    let Some(provider) = provider.filter(|_| details.is_empty()) else {
        return Err(ApiError::validation(details));
    };
    let payment_key = sandbox
        .book()
        .checkout(provider, &body.pg_order_id, body.amount);
    Ok((StatusCode::CREATED, Json(CheckoutAnswer { payment_key })))
}

#[derive(Deserialize)]
struct FaultsBody {
    provider: String,
    #[serde(flatten)]
    faults: Faults,
}

async fn set_faults(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FaultsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    sandbox.require_admin(&headers).await?;
    let mut details: Vec<FieldError> = body
        .faults
        .problems()
        .into_iter()
        .map(|(field, reason)| FieldError::new(field, reason))
        .collect();
    let provider = Provider::parse(&body.provider);
    if provider.is_none() {
        details.insert(
            0,
            FieldError::new("provider", "must be toss, nice or sandbox"),
        );
    }
    let Some(provider) = provider.filter(|_| details.is_empty()) else {
        return Err(ApiError::validation(details));
    };
    sandbox.set_faults(provider, body.faults);
    Ok(Json(faults_view(provider, body.faults)))
}

async fn get_faults(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    sandbox.require_admin(&headers).await?;
    let faults: Vec<serde_json::Value> = Provider::ALL
        .into_iter()
        .map(|provider| faults_view(provider, sandbox.faults(provider)))
        .collect();
    Ok(Json(serde_json::json!({ "faults": faults })))
}

fn faults_view(provider: Provider, faults: Faults) -> serde_json::Value {
    let mut view = serde_json::to_value(faults).unwrap_or_default();
    view["provider"] = provider.as_str().into();
    view
}

async fn list_charges(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    sandbox.require_admin(&headers).await?;
    Ok(Json(serde_json::json!({ "charges": sandbox.charges() })))
}

/// The `Idempotency-Key` header, when present and readable.
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
}

/// An RFC 3339 time as the gateways print it.
fn gateway_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
