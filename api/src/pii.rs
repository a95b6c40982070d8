//! Personal data at rest: AES-256-GCM with a random 96-bit nonce per value and the key id
//! stored with each value (`v1.<key id>.<hex of nonce and ciphertext>`), so keys can rotate;
//! emails are found through an HMAC-SHA256 blind index. Plaintext never reaches the store or a
//! log line.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Why a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("no key with id {0}")]
    UnknownKey(u32),
    #[error("sealed value failed authentication")]
    Tampered,
    #[error("bad key configuration: {0}")]
    Config(String),
}

/// Seals and opens personal fields; computes email blind indexes.
pub struct Pii {
    keys: HashMap<u32, Aes256Gcm>,
    current_key_id: u32,
    blind_index_key: Vec<u8>,
}

/// Parses `ID:HEX,ID:HEX` into 32-byte keys.
pub fn parse_keys(text: &str) -> Result<Vec<(u32, [u8; 32])>, PiiError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| PiiError::Config("expected ID:HEX".into()))?;
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| PiiError::Config("key id must be a number".into()))?;
            Ok((id, parse_key(key)?))
        })
        .collect()
}

/// Parses 64 hex characters into a 32-byte key.
pub fn parse_key(hex_key: &str) -> Result<[u8; 32], PiiError> {
    let bytes =
        hex::decode(hex_key.trim()).map_err(|_| PiiError::Config("key must be hex".into()))?;
    bytes
        .try_into()
        .map_err(|_| PiiError::Config("key must be 32 bytes (64 hex characters)".into()))
}

/// 32 random bytes, hex.
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    hex::encode(key)
}

impl Pii {
    /// Sealing with `current_key_id`, which must be among `keys`.
    pub fn new(
        keys: &[(u32, [u8; 32])],
        current_key_id: u32,
        blind_index_key: [u8; 32],
    ) -> Result<Self, PiiError> {
        let keys: HashMap<u32, Aes256Gcm> = keys
            .iter()
            .map(|(id, key)| (*id, Aes256Gcm::new(key.into())))
            .collect();
        if !keys.contains_key(&current_key_id) {
            return Err(PiiError::UnknownKey(current_key_id));
        }
        Ok(Self {
            keys,
            current_key_id,
            blind_index_key: blind_index_key.to_vec(),
        })
    }

    /// Encrypts `plain` under the current key with a fresh nonce.
    pub fn seal(&self, plain: &str) -> String {
        let cipher = &self.keys[&self.current_key_id];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("v1.{}.{}", self.current_key_id, hex::encode(bytes))
    }

    /// Seals an optional value.
    pub fn seal_opt(&self, plain: Option<&str>) -> Option<String> {
        plain.map(|plain| self.seal(plain))
    }

    /// Decrypts a value sealed by [`Pii::seal`] under any configured key.
    pub fn open(&self, sealed: &str) -> Result<String, PiiError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PiiError::Malformed);
        };
        let key_id: u32 = key_id.parse().map_err(|_| PiiError::Malformed)?;
        let cipher = self.keys.get(&key_id).ok_or(PiiError::UnknownKey(key_id))?;
        let bytes = hex::decode(body).map_err(|_| PiiError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(PiiError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| PiiError::Tampered)?;
        String::from_utf8(plain).map_err(|_| PiiError::Malformed)
    }

    /// Opens an optional value.
    pub fn open_opt(&self, sealed: Option<&str>) -> Result<Option<String>, PiiError> {
        sealed.map(|sealed| self.open(sealed)).transpose()
    }

    /// The blind index of a normalised email.
    pub fn email_index(&self, email: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.blind_index_key)
            .expect("HMAC takes keys of any length");
        mac.update(email.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Pii {
    /// A stored user with its personal fields decrypted.
    pub fn open_user(
        &self,
        mut user: hurry_persistence::UserRecord,
    ) -> Result<hurry_persistence::UserRecord, PiiError> {
        user.email = self.open(&user.email)?;
        user.name = self.open(&user.name)?;
        user.phone = self.open_opt(user.phone.as_deref())?;
        user.address = self.open_opt(user.address.as_deref())?;
        Ok(user)
    }
}

impl From<PiiError> for crate::error::ApiError {
    fn from(err: PiiError) -> Self {
        crate::error::ApiError::internal(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pii(current: u32) -> Pii {
        let keys = parse_keys(&format!("1:{},2:{}", "11".repeat(32), "22".repeat(32))).unwrap();
        Pii::new(&keys, current, [7; 32]).unwrap()
    }

    #[test]
    fn sealed_values_open_and_never_repeat() {
        let pii = pii(1);
        let first = pii.seal("010-1234-5678");
        let second = pii.seal("010-1234-5678");
        assert_ne!(first, second, "a fresh nonce per value");
        assert!(!first.contains("1234"));
        assert_eq!(pii.open(&first).unwrap(), "010-1234-5678");
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let sealed_with_one = pii(1).seal("Seoul");
        assert!(sealed_with_one.starts_with("v1.1."));
        let rotated = pii(2);
        assert!(rotated.seal("x").starts_with("v1.2."));
        assert_eq!(rotated.open(&sealed_with_one).unwrap(), "Seoul");
    }

    #[test]
    fn tampered_malformed_and_unknown_key_values_are_refused() {
        let pii = pii(1);
        let sealed = pii.seal("secret");
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(pii.open(&tampered), Err(PiiError::Tampered)));
        assert!(matches!(pii.open("plain text"), Err(PiiError::Malformed)));
        assert!(matches!(pii.open("v1.9.00"), Err(PiiError::UnknownKey(9))));
    }

    #[test]
    fn the_blind_index_is_stable_and_keyed() {
        let pii = pii(1);
        assert_eq!(pii.email_index("a@b.co"), pii.email_index("a@b.co"));
        assert_ne!(pii.email_index("a@b.co"), pii.email_index("b@b.co"));
        let other = Pii::new(
            &parse_keys(&format!("1:{}", "11".repeat(32))).unwrap(),
            1,
            [8; 32],
        )
        .unwrap();
        assert_ne!(pii.email_index("a@b.co"), other.email_index("a@b.co"));
        assert!(
            Pii::new(&[], 1, [0; 32]).is_err(),
            "the current key must exist"
        );
    }
}
