//! Cluster mode: revocations (logged-out access tokens, deleted users, password changes) announced to every node
//! over Redis pub/sub, so each node's in-memory denylist learns of them within a round trip and
//! checking a token stays a memory lookup. The store stays the record: a node that starts, or
//! whose subscription broke (Redis restarted, network), reloads the denylist from the store
//! after subscribing again, so an announcement it missed is not lost. While Redis is down,
//! other nodes learn of a revocation when it is back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Access token `jti` is refused until `expires_at` (unix seconds).
    Token { jti: String, expires_at: i64 },
    /// Every token of the user is refused.
    User { user_id: i64 },
    /// The user's tokens issued before `at_micros` (unix microseconds) are refused.
    UserTokensBefore { user_id: i64, at_micros: i64 },
}

/// Where revocations are published.
pub struct RevocationFeed {
    conn: ConnectionManager,
    channel: String,
}

impl RevocationFeed {
    /// A feed on the Redis at `url`, channel `{prefix}revocations`.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            conn,
            channel: format!("{prefix}revocations"),
        })
    }

    /// Announces a revocation; a failure is logged (the store has it; nodes reload it when
    /// their subscription comes back).
    pub async fn publish(&self, revocation: &Revocation) {
        let Ok(payload) = serde_json::to_string(revocation) else {
            return;
        };
        let mut conn = self.conn.clone();
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(&mut conn)
            .await;
        if let Err(err) = sent {
            tracing::warn!(error = %err, "cannot announce a revocation; other nodes reload it later");
        }
    }
}
