//! Refresh tokens and revoked access tokens.
//!
//! Refresh tokens are 32 random bytes, shown once and stored as SHA-256 hashes. Logged-out
//! access tokens, deleted users and the instant of each user's last password change (before
//! which their access tokens are refused) are kept in the store and mirrored in memory, so
//! checking a token costs no store round trip per request. In cluster mode every revocation is also
//! published on Redis ([`super::feed`]) so every node's memory has it within a round trip.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures::StreamExt;
use hurry_persistence::{Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// A new refresh token: what the client gets and what the store keeps.
pub struct RefreshSecret {
    pub token: String,
    pub hash: String,
}

impl RefreshSecret {
    /// 32 random bytes, hex.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let hash = hash_refresh_token(&token);
        Self { token, hash }
    }
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Access tokens refused before their expiry: by `jti` (logout), by user (deletion) and by
/// user and issue time (password change).
#[derive(Default)]
pub struct Revocations {
    /// jti → expiry (unix seconds).
    denied: DashMap<String, i64>,
    /// Deleted users: every token of theirs is refused.
    deleted_users: DashMap<i64, ()>,
    /// user id → unix microseconds: the user's tokens issued before are refused.
    valid_after: DashMap<i64, i64>,
    /// Lifetime of access tokens in seconds: a `valid_after` older than that refuses nothing.
    token_ttl_secs: i64,
    /// Cluster mode: where revocations are announced to the other nodes.
    feed: Option<super::feed::RevocationFeed>,
}

impl Revocations {
    /// Loads the denylist from the store; `feed` announces revocations to other nodes; access
    /// tokens live `token_ttl_secs`.
    pub async fn load(
        store: &Arc<dyn Store>,
        feed: Option<super::feed::RevocationFeed>,
        token_ttl_secs: u64,
    ) -> Result<Self, StoreError> {
        let revocations = Self {
            feed,
            token_ttl_secs: i64::try_from(token_ttl_secs).unwrap_or(i64::MAX / 4),
            ..Self::default()
        };
        revocations.reload(store).await?;
        Ok(revocations)
    }

    /// Adds every revocation the store holds (after missing announcements).
    pub async fn reload(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        for (jti, expires_at) in store.denied_access_tokens(Utc::now()).await? {
            self.denied.insert(jti, expires_at.timestamp());
        }
        for user_id in store.deleted_user_ids().await? {
            self.deleted_users.insert(user_id, ());
        }
        let since = Utc::now() - chrono::Duration::seconds(self.token_ttl_secs);
        for (user_id, at) in store.tokens_valid_after(since).await? {
            self.refuse_locally(user_id, at.timestamp_micros());
        }
        Ok(())
    }

    /// Applies an announcement from another node (or this one).
    pub fn apply(&self, revocation: &super::feed::Revocation) {
        match revocation {
            super::feed::Revocation::Token { jti, expires_at } => {
                self.denied.insert(jti.clone(), *expires_at);
            }
            super::feed::Revocation::User { user_id } => {
                self.deleted_users.insert(*user_id, ());
            }
            super::feed::Revocation::UserTokensBefore { user_id, at_micros } => {
                self.refuse_locally(*user_id, *at_micros);
            }
        }
    }

    /// Refuses the tokens of `user_id` issued before `at_micros`, here (a later instant wins:
    /// announcements may arrive out of order).
    fn refuse_locally(&self, user_id: i64, at_micros: i64) {
        if self.valid_after.len() > 10_000 {
            let oldest = (Utc::now().timestamp() - self.token_ttl_secs).saturating_mul(1_000_000);
            self.valid_after.retain(|_, after| *after > oldest);
        }
        self.valid_after
            .entry(user_id)
            .and_modify(|after| *after = (*after).max(at_micros))
            .or_insert(at_micros);
    }

    /// Refuses every token of `user_id` issued before `at` from now on, here and on the other
    /// nodes (the store has it already, written with the new password).
    pub async fn refuse_tokens_before(&self, user_id: i64, at: DateTime<Utc>) {
        let at_micros = at.timestamp_micros();
        self.refuse_locally(user_id, at_micros);
        self.announce(super::feed::Revocation::UserTokensBefore { user_id, at_micros })
            .await;
    }

    /// Whether the token with `claims` of `user_id` is refused: logged out, its user deleted,
    /// or issued before its user's last password change.
    pub fn refuses(&self, user_id: i64, claims: &super::Claims) -> bool {
        self.is_denied(&claims.jti)
            || self.is_user_denied(user_id)
            || self
                .valid_after
                .get(&user_id)
                .is_some_and(|after| claims.issued_at_micros() < *after)
    }

    /// Refuses `jti` until `expires_at`, in the store and here.
    pub async fn deny(
        &self,
        store: &Arc<dyn Store>,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        store.deny_access_token(jti, expires_at).await?;
        let now = Utc::now().timestamp();
        if self.denied.len() > 10_000 {
            self.denied.retain(|_, expiry| *expiry > now);
        }
        self.denied.insert(jti.to_owned(), expires_at.timestamp());
        self.announce(super::feed::Revocation::Token {
            jti: jti.to_owned(),
            expires_at: expires_at.timestamp(),
        })
        .await;
        Ok(())
    }

    async fn announce(&self, revocation: super::feed::Revocation) {
        if let Some(feed) = &self.feed {
            feed.publish(&revocation).await;
        }
    }

    /// Whether `jti` was revoked.
    pub fn is_denied(&self, jti: &str) -> bool {
        self.denied.contains_key(jti)
    }

    /// Refuses every token of `user_id` from now on (the user is deleted in the store).
    pub async fn deny_user(&self, user_id: i64) {
        self.deleted_users.insert(user_id, ());
        self.announce(super::feed::Revocation::User { user_id })
            .await;
    }

    /// Whether `user_id` was deleted.
    pub fn is_user_denied(&self, user_id: i64) -> bool {
        self.deleted_users.contains_key(&user_id)
    }

    /// Listens for announcements on the Redis at `url` (channel `{prefix}revocations`) until
    /// aborted, reloading from the store after every (re)subscription.
    pub fn listen(
        self: &Arc<Self>,
        url: &str,
        prefix: &str,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let revocations = self.clone();
        let client = redis::Client::open(url)?;
        let channel = format!("{prefix}revocations");
        Ok(tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            delay = Duration::from_millis(100);
                            if let Err(err) = revocations.reload(&store).await {
                                tracing::warn!(error = %err, "cannot reload revocations");
                            }
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let Ok(text) = message.get_payload::<String>() else {
                                    continue;
                                };
                                match serde_json::from_str::<super::feed::Revocation>(&text) {
                                    Ok(revocation) => revocations.apply(&revocation),
                                    Err(err) => {
                                        tracing::warn!(error = %err, "unreadable revocation announcement");
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot subscribe to revocations"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }))
    }
}
