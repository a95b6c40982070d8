//! argon2id password hashing on the blocking pool, with the same work for unknown emails.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hashes and verifies passwords with configured argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Arc<Argon2<'static>>,
    /// A hash of a random password, verified when the email is unknown so that the answer takes
    /// as long as for a real account.
    decoy_hash: Arc<String>,
}

/// Hashing failed (bad parameters; never the caller's input).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordHasher {
    /// A hasher with `memory_kib`, `iterations` and `parallelism`.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|err| HashError(err.to_string()))?;
        let argon = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
        let decoy = uuid::Uuid::new_v4().to_string();
        let decoy_hash = hash_with(&argon, &decoy)?;
        Ok(Self {
            argon,
            decoy_hash: Arc::new(decoy_hash),
        })
    }

    /// The PHC string of `password`, computed off the async threads.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || hash_with(&argon, &password))
            .await
            .map_err(|err| HashError(err.to_string()))?
    }

    /// Whether `password` matches `stored` (or, with `None`, does the same work and says no).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let argon = self.argon.clone();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy_hash.as_str().to_owned());
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(|err| HashError(err.to_string()))?;
            Ok(argon.verify_password(password.as_bytes(), &parsed).is_ok() && known)
        })
        .await
        .map_err(|err| HashError(err.to_string()))?
    }
}

fn hash_with(argon: &Argon2<'static>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| HashError(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_accepts_only_the_hashed_password() {
        let hasher = PasswordHasher::new(64, 1, 1).unwrap();
        let stored = hasher.hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(hasher
            .verify("correct horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse".into(), Some(stored))
            .await
            .unwrap());
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }
}
