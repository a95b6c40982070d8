//! Access tokens: HS256 JWTs with `sub`, `roles`, `jti`, `iat`, `iat_micros` and `exp`. The
//! algorithm is pinned: a token naming any other algorithm (`none` included) is refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Tokens remembered as verified (the most recent ones; each is a few hundred bytes).
const VERIFIED_TOKENS: usize = 100_000;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a string.
    pub sub: String,
    pub roles: Vec<String>,
    /// Unique token id (for revocation).
    pub jti: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Issued at, unix microseconds: a password change refuses the tokens issued before it,
    /// and a login in the same second but after it must still work. Absent from tokens of an
    /// older version (then `iat` counts, as the start of its second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_micros: Option<i64>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The refresh family (login session) this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

impl Claims {
    /// When the token was issued, unix microseconds.
    pub fn issued_at_micros(&self) -> i64 {
        self.iat_micros
            .unwrap_or_else(|| self.iat.saturating_mul(1_000_000))
    }
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Lifetime of new tokens in seconds.
    pub ttl_secs: u64,
    /// Tokens whose signature checked out, with their claims: a token is verified once, not
    /// on every request (its expiry is still checked every time).
    verified: Arc<Verified>,
}

/// Verified tokens, oldest first out.
#[derive(Default)]
struct Verified {
    claims: DashMap<String, Arc<Claims>>,
    oldest_first: Mutex<VecDeque<String>>,
}

impl Verified {
    fn remember(&self, token: &str, claims: Arc<Claims>) {
        if self.claims.insert(token.to_owned(), claims).is_some() {
            return;
        }
        let mut oldest_first = self
            .oldest_first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        oldest_first.push_back(token.to_owned());
        while oldest_first.len() > VERIFIED_TOKENS {
            if let Some(oldest) = oldest_first.pop_front() {
                self.claims.remove(&oldest);
            }
        }
    }
}

impl TokenKeys {
    /// Keys from an HMAC secret.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
            verified: Arc::default(),
        }
    }

    /// A token for `user_id` with `roles` in session `family`, valid for `ttl_secs`.
    pub fn issue(
        &self,
        user_id: i64,
        roles: &[String],
        family: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let issued = chrono::Utc::now();
        let now = issued.timestamp();
        self.sign(&Claims {
            sub: user_id.to_string(),
            roles: roles.to_vec(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            iat_micros: Some(issued.timestamp_micros()),
            exp: now + i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 2),
            fam: family.map(str::to_owned),
        })
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a valid, unexpired token signed with this key.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, jsonwebtoken::errors::Error> {
        if let Some(claims) = self.verified.claims.get(token) {
            // The same token, byte for byte, was verified before: only its expiry can change.
            if claims.exp >= chrono::Utc::now().timestamp() {
                return Ok(claims.clone());
            }
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        let claims = Arc::new(
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims,
        );
        self.verified.remember(token, claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_carry_roles() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let token = keys
            .issue(42, &["customer".into(), "seller".into()], Some("f"))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.fam.as_deref(), Some("f"));
        assert_eq!(claims.fam.as_deref(), Some("f"));
        assert_eq!(claims.roles, vec!["customer", "seller"]);
    }

    #[test]
    fn expired_wrong_key_and_unsigned_tokens_are_refused() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let now = chrono::Utc::now().timestamp();
        let expired = keys
            .sign(&Claims {
                sub: "1".into(),
                roles: vec![],
                jti: "j".into(),
                iat: now - 120,
                iat_micros: None,
                exp: now - 60,
                fam: None,
            })
            .unwrap();
        assert!(keys.verify(&expired).is_err());
        let other = TokenKeys::new(b"another-secret-another-secret-xx", 60);
        assert!(keys.verify(&other.issue(1, &[], None).unwrap()).is_err());
        // header {"alg":"none","typ":"JWT"}, payload {"sub":"1","roles":["admin"],"exp":9999999999}
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwicm9sZXMiOlsiYWRtaW4iXSwianRpIjoiaiIsImlhdCI6MCwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(keys.verify(unsigned).is_err());
    }

    #[test]
    fn a_verified_token_is_remembered_but_a_changed_one_is_checked_again() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let token = keys.issue(42, &["customer".into()], None).unwrap();
        let first = keys.verify(&token).unwrap();
        let again = keys.verify(&token).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check used the first"
        );
        // The same claims with another signature: refused, remembered token or not.
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        assert!(keys.verify(&format!("{unsigned}.AAAA")).is_err());
        let admin = token.replacen('.', ".e", 1);
        assert!(keys.verify(&admin).is_err());
    }
}
