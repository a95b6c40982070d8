//! Refresh tokens and revoked access tokens.
//!
//! Refresh tokens are 32 random bytes, shown once and stored as SHA-256 hashes. Logged-out
//! access tokens are kept in the store until they expire and mirrored in memory, so checking
//! them costs no store round trip per request.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use hurry_persistence::{Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// Access tokens refused before their expiry: by `jti` (logout) and by user (deletion).
#[derive(Default)]
pub struct Revocations {
    /// jti → expiry (unix seconds).
    denied: DashMap<String, i64>,
    /// Deleted users: every token of theirs is refused.
    deleted_users: DashMap<i64, ()>,
}

impl Revocations {
    /// Loads the denylist from the store.
    pub async fn load(store: &Arc<dyn Store>) -> Result<Self, StoreError> {
        let revocations = Self::default();
        for (jti, expires_at) in store.denied_access_tokens(Utc::now()).await? {
            revocations.denied.insert(jti, expires_at.timestamp());
        }
        for user_id in store.deleted_user_ids().await? {
            revocations.deleted_users.insert(user_id, ());
        }
        Ok(revocations)
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
        Ok(())
    }

    /// Whether `jti` was revoked.
    pub fn is_denied(&self, jti: &str) -> bool {
        self.denied.contains_key(jti)
    }

    /// Refuses every token of `user_id` from now on (the user is deleted in the store).
    pub fn deny_user(&self, user_id: i64) {
        self.deleted_users.insert(user_id, ());
    }

    /// Whether `user_id` was deleted.
    pub fn is_user_denied(&self, user_id: i64) -> bool {
        self.deleted_users.contains_key(&user_id)
    }
}
