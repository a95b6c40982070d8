//! Typed configuration: `config/base.toml`, the mode file, an optional `--config FILE`, then
//! `HURRY__SECTION__KEY` environment variables. The built-in files are compiled in, so the
//! binary runs from any working directory.

use std::net::SocketAddr;
use std::path::Path;

mod configs;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;

const BASE: &str = include_str!("../../config/base.toml");
const EMBEDDED: &str = include_str!("../../config/embedded.toml");
const CLUSTER: &str = include_str!("../../config/cluster.toml");
/// The test layer, for the test suite and tools that want cheap hashing.
pub const TEST: &str = include_str!("../../config/test.toml");

/// Every setting of the server.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub admin: AdminSettings,
    pub auth: AuthSettings,
    pub pii: PiiSettings,
    pub engine: EngineSettings,
    pub persistence: PersistenceSettings,
    pub rate_limit: RateLimitSettings,
    pub events: EventsSettings,
    pub mail: MailSettings,
    pub catalog: CatalogSettings,
    pub loadtest: LoadtestSettings,
    pub idempotency: IdempotencySettings,
    pub payments: PaymentsSettings,
    pub pg_sandbox: PgSandboxSettings,
    pub log: LogSettings,
}

/// `[payments]`: the gateways and how hard to try them.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentsSettings {
    /// The gateway a payment goes to when the shopper names none.
    pub default_provider: String,
    /// The gateways that take new payments over while the chosen one's breaker is open, in
    /// order.
    pub fallback_providers: Vec<String>,
    /// Consecutive failed calls (5xx, no answer) that open a gateway's breaker, and how long
    /// it stays open before a probe, in milliseconds.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    /// Longest wait for one gateway answer, in milliseconds.
    pub request_timeout_ms: u64,
    /// Calls of one confirm, lookup or refund before giving up on transient errors.
    pub num_attempts: usize,
    /// First and longest pause between attempts, in milliseconds (exponential, jittered).
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// A confirm with no stored outcome this many milliseconds after it started is looked up.
    pub reconcile_after_ms: u64,
    /// How often the sweeper reconciles and retries refunds, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Payment workers.
    pub num_workers: usize,
    /// Longest wait for a confirm's answer, in milliseconds (then 503 `outcome_unknown`).
    pub confirm_timeout_ms: u64,
    /// Seconds a paid order waits before `preparing`, then before `shipping`, then before
    /// `delivered`; days after delivery a return is taken.
    pub preparing_after_secs: u64,
    pub shipping_after_secs: u64,
    pub delivered_after_secs: u64,
    pub return_window_days: u64,
    pub toss: GatewaySettings,
    pub nice: GatewaySettings,
    pub sandbox: GatewaySettings,
}

/// One gateway's address and keys.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// Base URL without `/v1`. Empty: the sandbox mounted on this server.
    pub base_url: String,
    /// NicePay's client key (the Basic authorization's user); unused by Toss.
    pub client_key: String,
    /// The secret key.
    pub secret_key: SecretString,
    /// The gateway's fee, in basis points of each payment (300 is 3 %), for settlement.
    pub fee_rate_bp: i64,
}

/// `[pg_sandbox]`: the sandbox gateway mounted at `/pg-sandbox`.
#[derive(Debug, Clone, Deserialize)]
pub struct PgSandboxSettings {
    /// Serve the sandbox at `/pg-sandbox` on this server.
    pub mount: bool,
    /// `X-Sandbox-Key` for its fault settings and charge list (admins' tokens work too).
    pub admin_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// Keep in memory which users have a stored key, so a keyed request of anyone else skips
    /// the store lookup. Exact only while this node is the one storing keys.
    pub memory_index: bool,
    /// Keyed answers kept in memory to repeat without the store.
    pub recent_answers: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Bytes.
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    /// 0: 4 for SQLite, 16 for PostgreSQL.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty: embedded mode.
    pub url: String,
    /// Prefix of every key this deployment uses.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventsSettings {
    pub relay_enabled: bool,
    pub consumers_enabled: bool,
    pub relay_batch: u32,
    pub relay_shards: u32,
    pub relay_poll_ms: u64,
    pub relay_min_interval_ms: u64,
    pub relay_max_backoff_ms: u64,
    pub retention_hours: u64,
    pub prune_interval_secs: u64,
    pub stream_max_len: usize,
    pub consumer_batch: usize,
    pub read_wait_ms: u64,
    pub max_deliveries: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub claim_idle_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdminSettings {
    pub email: String,
    pub password: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub require_email_verification: bool,
    pub email_code_ttl_secs: u64,
    pub email_code_max_attempts: u32,
    pub email_code_resend_interval_secs: u64,
    /// Empty: generated once and kept in the database.
    pub jwt_secret: SecretString,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PiiSettings {
    /// `ID:HEX,ID:HEX`; empty: generated and kept in the database.
    pub keys: SecretString,
    pub current_key_id: u32,
    /// 64 hex characters; empty: generated and kept in the database.
    pub blind_index_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EngineSettings {
    pub payment_timeout_secs: u64,
    pub max_queue_per_drop: usize,
    pub call_timeout_ms: u64,
    pub id_block_size: u32,
    /// Milliseconds to keep trying for the store's drops claim at start.
    pub claim_wait_ms: u64,
    /// How drop purchases take stock: `actor` (default), `redis_lua` or `pg_row`.
    pub stock_strategy: StockStrategy,
}

/// How a drop purchase takes its units (`engine.stock_strategy`). Only `actor` is the engine;
/// the other two exist for the load-test comparison, in builds with the `baseline` feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockStrategy {
    /// The drop's item actor decides in memory; the writer group-commits the orders.
    #[default]
    Actor,
    /// A Lua script on a Redis counter and a per-user hash, then one insert per order.
    RedisLua,
    /// One database transaction per purchase on a locked stock row.
    PgRow,
}

impl StockStrategy {
    /// The setting's value, as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StockStrategy::Actor => "actor",
            StockStrategy::RedisLua => "redis_lua",
            StockStrategy::PgRow => "pg_row",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PersistenceSettings {
    pub max_batch: usize,
    /// Microseconds.
    pub batch_window_us: u64,
    /// 0: 1 for SQLite, 4 for PostgreSQL.
    pub max_concurrent_commits: usize,
    /// Longest time a batch may take in the store, in milliseconds.
    pub commit_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub login_per_ip_per_min: u32,
    pub login_per_account_per_min: u32,
    pub signup_per_ip_per_min: u32,
    pub verify_per_ip_per_min: u32,
    pub verify_per_account_per_min: u32,
    pub resend_per_ip_per_min: u32,
    pub purchase_per_user_per_sec: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoadtestSettings {
    pub provisioning_enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogSettings {
    pub cache_ttl_ms: u64,
    pub cache_max_items: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MailSettings {
    /// `file` or `smtp`.
    pub backend: String,
    /// Folder of the file mailbox.
    pub dir: String,
    /// `smtps://user:pass@host:465` or `smtp://user:pass@host:587?tls=required`.
    pub smtp_url: String,
    pub from: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: String,
    pub filter: String,
}

impl Settings {
    /// Loads the layers in order; `extra_layers` (TOML text) go between the mode file and
    /// `config_file`.
    pub fn load(
        config_file: Option<&Path>,
        extra_layers: &[&str],
    ) -> Result<Self, config::ConfigError> {
        Self::load_with_env(config_file, extra_layers, environment())
    }

    /// [`Settings::load`] with `environment` as the last layer.
    fn load_with_env(
        config_file: Option<&Path>,
        extra_layers: &[&str],
        environment: Environment,
    ) -> Result<Self, config::ConfigError> {
        let cluster = std::env::var("HURRY__REDIS__URL").is_ok_and(|url| !url.is_empty());
        let mut builder = Config::builder()
            .add_source(File::from_str(BASE, FileFormat::Toml))
            .add_source(File::from_str(
                if cluster { CLUSTER } else { EMBEDDED },
                FileFormat::Toml,
            ));
        for layer in extra_layers {
            builder = builder.add_source(File::from_str(layer, FileFormat::Toml));
        }
        if let Some(path) = config_file {
            builder = builder.add_source(File::from(path).required(true));
        }
        builder.add_source(environment).build()?.try_deserialize()
    }

    /// Whether the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.url.starts_with("postgres")
    }
}

/// The `HURRY__SECTION__KEY` environment variables.
fn environment() -> Environment {
    Environment::with_prefix("HURRY")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_serve_the_embedded_shop() {
        let settings = Settings::load(None, &[]).expect("defaults load");
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database.url, "sqlite://./data/hurry.db");
        assert_eq!(settings.http.body_limit_bytes, 64 * 1024);
        assert!(!settings.is_postgres());
        assert!(settings.auth.require_email_verification);
        assert_eq!(settings.mail.backend, "file");
        assert_eq!(settings.engine.stock_strategy, StockStrategy::Actor);
    }

    #[test]
    fn the_stock_strategy_comes_from_a_layer_or_the_environment() {
        let layered = Settings::load(None, &["[engine]\nstock_strategy = \"redis_lua\"\n"])
            .expect("layer loads");
        let variables = [("HURRY__ENGINE__STOCK_STRATEGY", "pg_row")]
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let from_env = Settings::load_with_env(
            None,
            &[],
            environment().source(Some(variables.into_iter().collect())),
        )
        .expect("environment loads");
        let unknown = Settings::load(None, &["[engine]\nstock_strategy = \"lottery\"\n"]);

        assert_eq!(layered.engine.stock_strategy, StockStrategy::RedisLua);
        assert_eq!(from_env.engine.stock_strategy, StockStrategy::PgRow);
        assert!(unknown.is_err(), "an unknown strategy is refused");
    }

    #[test]
    fn layers_override_earlier_ones() {
        let settings = Settings::load(None, &[TEST, "[engine]\nmax_queue_per_drop = 7\n"])
            .expect("layers load");
        assert_eq!(settings.auth.argon2_memory_kib, 64);
        assert_eq!(settings.engine.max_queue_per_drop, 7);
        assert!(!settings.rate_limit.enabled);
    }
}
