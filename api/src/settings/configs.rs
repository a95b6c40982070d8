//! What each settings section builds: the store's connection options, the engine's and the
//! event system's configurations. Startup reads as a list of parts; the translation from
//! configuration units (milliseconds, zero for "pick for the backend") happens here, once.

use std::time::Duration;

use hurry_engine::events::{ConsumerConfig, RelayConfig};
use hurry_engine::writer::WriterConfig;
use hurry_engine::EngineConfig;
use hurry_persistence::{Backend, ConnectOptions};

use super::{EngineSettings, EventsSettings, Settings};

impl Settings {
    /// How the store is opened: `database.max_connections` (0 picks 16 on PostgreSQL, 4 on
    /// SQLite) and the batch commit timeout.
    pub fn connect_options(&self) -> ConnectOptions {
        let max_connections = match self.database.max_connections {
            0 if self.is_postgres() => 16,
            0 => 4,
            configured => configured,
        };
        let mut options = ConnectOptions::new(self.database.url.clone(), max_connections);
        options.commit_timeout = Duration::from_millis(self.persistence.commit_timeout_ms);
        options
    }

    /// The engine's configuration for a store of `backend`.
    pub fn engine_config(&self, backend: Backend) -> EngineConfig {
        let options = self.connect_options();
        let persistence = &self.persistence;
        EngineConfig {
            writer: WriterConfig {
                max_batch: persistence.max_batch.max(1),
                window: Duration::from_micros(persistence.batch_window_us),
                max_concurrent_commits: match persistence.max_concurrent_commits {
                    0 if backend == Backend::Postgres => 4,
                    0 => 1,
                    configured => configured,
                },
                write_deadline: options.write_deadline(),
                settle_timeout: options.commit_timeout,
            },
            payment_window: self.engine.payment_window(),
            max_queue_per_drop: self.engine.max_queue_per_drop,
            call_timeout: self.engine.call_timeout(),
            id_block_size: self.engine.id_block_size,
            claim_wait: Duration::from_millis(self.engine.claim_wait_ms),
        }
    }
}

impl EngineSettings {
    /// How long a new order may stay unpaid (`engine.payment_timeout_secs`).
    pub fn payment_window(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.payment_timeout_secs).unwrap_or(600))
    }

    /// How long a purchase waits for its answer.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

impl EventsSettings {
    /// The outbox relay's configuration on a store of `backend` (SQLite has one relay and one
    /// shard; see `EventStore::relay_outbox`).
    pub fn relay_config(&self, backend: Backend) -> RelayConfig {
        RelayConfig {
            batch: self.relay_batch.max(1),
            shards: match backend {
                Backend::Postgres => self.relay_shards.max(1),
                Backend::Sqlite => 1,
            },
            poll_interval: Duration::from_millis(self.relay_poll_ms.max(1)),
            min_interval: Duration::from_millis(self.relay_min_interval_ms),
            max_backoff: Duration::from_millis(self.relay_max_backoff_ms.max(1)),
            retention: Duration::from_secs(self.retention_hours * 3600),
            prune_interval: Duration::from_secs(self.prune_interval_secs.max(1)),
        }
    }

    /// Every consumer's configuration.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            batch: self.consumer_batch.max(1),
            read_wait: Duration::from_millis(self.read_wait_ms),
            max_deliveries: self.max_deliveries.max(1),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms).max(1)),
            claim_idle: Duration::from_millis(self.claim_idle_ms),
        }
    }
}

impl super::PaymentsSettings {
    /// The payment workers' configuration.
    pub fn payment_config(&self) -> hurry_engine::payment::PaymentConfig {
        hurry_engine::payment::PaymentConfig {
            num_attempts: self.num_attempts.max(1),
            retry_min_delay: Duration::from_millis(self.retry_min_delay_ms),
            retry_max_delay: Duration::from_millis(self.retry_max_delay_ms),
            reconcile_after: Duration::from_millis(self.reconcile_after_ms),
            num_workers: self.num_workers.max(1),
            default_provider: self.default_provider.clone(),
            fallback_providers: self.fallback_providers.clone(),
            preparing_after: Duration::from_secs(self.preparing_after_secs),
            shipping_after: Duration::from_secs(self.shipping_after_secs),
            delivered_after: Duration::from_secs(self.delivered_after_secs),
            return_window: Duration::from_secs(self.return_window_days * 86_400),
            call_timeout: Duration::from_millis(self.confirm_timeout_ms),
        }
    }

    /// The gateways' breakers.
    pub fn breaker_config(&self) -> hurry_engine::payment::breaker::BreakerConfig {
        hurry_engine::payment::breaker::BreakerConfig {
            num_failures: self.breaker_failures.max(1),
            open_for: Duration::from_millis(self.breaker_open_ms),
        }
    }

    /// Each gateway's fee rate in basis points.
    pub fn fee_rates_bp(&self) -> std::collections::HashMap<String, i64> {
        self.gateways()
            .into_iter()
            .map(|(name, gateway)| (name.to_owned(), gateway.fee_rate_bp))
            .collect()
    }

    /// Each gateway's name and settings.
    pub fn gateways(&self) -> [(&'static str, &super::GatewaySettings); 3] {
        [
            ("toss", &self.toss),
            ("nice", &self.nice),
            ("sandbox", &self.sandbox),
        ]
    }
}

impl super::GatewaySettings {
    /// The Basic authorization's `user:password`: NicePay's client key and secret key, or
    /// (Toss's shape, no client key) the secret key and an empty password.
    pub fn credentials(&self) -> String {
        use secrecy::ExposeSecret;
        format!("{}:{}", self.client_key, self.secret_key.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_connections_and_commits_pick_per_backend() {
        let mut settings = Settings::load(None, &[]).expect("defaults load");
        settings.database.max_connections = 0;
        settings.persistence.max_concurrent_commits = 0;
        let sqlite = (
            settings.connect_options().max_connections,
            settings
                .engine_config(Backend::Sqlite)
                .writer
                .max_concurrent_commits,
        );
        settings.database.url = "postgres://postgres@127.0.0.1/hurry".into();
        let postgres = (
            settings.connect_options().max_connections,
            settings
                .engine_config(Backend::Postgres)
                .writer
                .max_concurrent_commits,
        );

        assert_eq!(sqlite, (4, 1));
        assert_eq!(postgres, (16, 4));
    }

    #[test]
    fn sqlite_relays_one_shard_whatever_is_configured() {
        let mut settings = Settings::load(None, &[]).expect("defaults load");
        settings.events.relay_shards = 8;

        assert_eq!(settings.events.relay_config(Backend::Sqlite).shards, 1);
        assert_eq!(settings.events.relay_config(Backend::Postgres).shards, 8);
    }

    #[test]
    fn the_payment_window_is_the_configured_seconds() {
        let mut settings = Settings::load(None, &[]).expect("defaults load");
        settings.engine.payment_timeout_secs = 90;

        assert_eq!(
            settings.engine_config(Backend::Sqlite).payment_window,
            chrono::Duration::seconds(90)
        );
        assert_eq!(
            settings.engine.payment_window(),
            chrono::Duration::seconds(90)
        );
    }
}
