//! Personal data at rest: AES-256-GCM with a random 96-bit nonce per value, bound to the table,
//! column and row it belongs to (associated data `table.column.row`), and the key id stored
//! with each value (`v2.<key id>.<hex of nonce and ciphertext>`), so keys can rotate; emails
//! are found through an HMAC-SHA256 blind index. Plaintext never reaches the store or a log line.
//!
//! Values sealed before the binding (`v1`, no associated data) open until a re-seal pass
//! ([`reseal`], at start) has rewritten every stored value the current way; from then on a
//! `v1` value is refused, so an old ciphertext copied in from elsewhere does not open either.
//! A value that does not open is reported (an error log line naming its place, and
//! `hurry_pii_unreadable_total`), never shown.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use hurry_persistence::{SealedColumn, Store, StoreError};
use rand::RngCore;
use sha2::Sha256;

/// Why a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("no key with id {0}")]
    UnknownKey(u32),
    #[error("sealed value failed authentication (altered, or moved from another place)")]
    Tampered,
    #[error(
        "sealed value is not bound to its place (v1) and every stored value has been re-sealed"
    )]
    Unbound,
    #[error("bad key configuration: {0}")]
    Config(String),
}

/// Seals and opens personal fields; computes email blind indexes.
pub struct Pii {
    keys: HashMap<u32, Aes256Gcm>,
    current_key_id: u32,
    blind_index_key: Vec<u8>,
    /// Whether `v1` values (sealed without their place) still open.
    opens_unbound: bool,
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

/// The associated data binding a value to its place.
fn place(column: SealedColumn, row: i64) -> String {
    format!("{}.{}.{row}", column.table(), column.column())
}

impl Pii {
    /// Sealing with `current_key_id`, which must be among `keys`. `v1` values do not open
    /// (see [`Pii::opening_unbound`]).
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
            opens_unbound: false,
        })
    }

    /// Whether values sealed before the binding (`v1`) open: only until the first complete
    /// re-seal pass.
    pub fn opening_unbound(mut self, opens: bool) -> Self {
        self.opens_unbound = opens;
        self
    }

    /// How every value sealed now begins: `v2.<current key id>.`.
    pub fn current_prefix(&self) -> String {
        format!("v2.{}.", self.current_key_id)
    }

    /// Encrypts `plain` for `column` of row `row`, under the current key with a fresh nonce.
    pub fn seal(&self, plain: &str, column: SealedColumn, row: i64) -> String {
        let cipher = &self.keys[&self.current_key_id];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = place(column, row);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{}{}", self.current_prefix(), hex::encode(bytes))
    }

    /// Seals an optional value.
    pub fn seal_opt(&self, plain: Option<&str>, column: SealedColumn, row: i64) -> Option<String> {
        plain.map(|plain| self.seal(plain, column, row))
    }

    /// Decrypts a value sealed by [`Pii::seal`] for this place, under any configured key; a
    /// value that does not open is reported.
    pub fn open(&self, sealed: &str, column: SealedColumn, row: i64) -> Result<String, PiiError> {
        self.open_quietly(sealed, column, row).inspect_err(|err| {
            tracing::error!(
                table = column.table(),
                column = column.column(),
                row,
                error = %err,
                "a sealed personal value does not open; it is not shown"
            );
            metrics::counter!("hurry_pii_unreadable_total", "column" => column.column())
                .increment(1);
        })
    }

    fn open_quietly(
        &self,
        sealed: &str,
        column: SealedColumn,
        row: i64,
    ) -> Result<String, PiiError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PiiError::Malformed);
        };
        let aad = match version {
            "v2" => place(column, row),
            "v1" if self.opens_unbound => String::new(),
            "v1" => return Err(PiiError::Unbound),
            _ => return Err(PiiError::Malformed),
        };
        let key_id: u32 = key_id.parse().map_err(|_| PiiError::Malformed)?;
        let cipher = self.keys.get(&key_id).ok_or(PiiError::UnknownKey(key_id))?;
        let bytes = hex::decode(body).map_err(|_| PiiError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(PiiError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PiiError::Tampered)?;
        String::from_utf8(plain).map_err(|_| PiiError::Malformed)
    }

    /// Opens an optional value.
    pub fn open_opt(
        &self,
        sealed: Option<&str>,
        column: SealedColumn,
        row: i64,
    ) -> Result<Option<String>, PiiError> {
        sealed
            .map(|sealed| self.open(sealed, column, row))
            .transpose()
    }

    /// The blind index of a normalised email.
    pub fn email_index(&self, email: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.blind_index_key)
            .expect("HMAC takes keys of any length");
        mac.update(email.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A stored user with its personal fields decrypted.
    pub fn open_user(
        &self,
        mut user: hurry_persistence::UserRecord,
    ) -> Result<hurry_persistence::UserRecord, PiiError> {
        let id = user.id;
        user.email = self.open(&user.email, SealedColumn::UserEmail, id)?;
        user.name = self.open(&user.name, SealedColumn::UserName, id)?;
        user.phone = self.open_opt(user.phone.as_deref(), SealedColumn::UserPhone, id)?;
        user.address = self.open_opt(user.address.as_deref(), SealedColumn::UserAddress, id)?;
        Ok(user)
    }
}

/// What a re-seal pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Values rewritten the current way.
    pub resealed: u64,
    /// Values that did not open (reported, left as they are).
    pub unreadable: u64,
}

/// Rewrites every stored value not sealed the current way (`v1`, or an older key): opened,
/// sealed for its place under the current key, and replaced only if it did not change
/// meanwhile, so a pass can run beside live traffic and beside another node's pass.
pub async fn reseal(store: &dyn Store, pii: &Pii) -> Result<Resealed, StoreError> {
    const PAGE: u32 = 500;
    let prefix = pii.current_prefix();
    let mut done = Resealed::default();
    for column in SealedColumn::ALL {
        let mut after = i64::MIN;
        loop {
            let page = store.sealed_values(column, &prefix, after, PAGE).await?;
            for (row, old) in &page {
                match pii.open(old, column, *row) {
                    Ok(plain) => {
                        let new = pii.seal(&plain, column, *row);
                        if store.replace_sealed(column, *row, old, &new).await? {
                            done.resealed += 1;
                        }
                    }
                    Err(_) => done.unreadable += 1,
                }
            }
            match page.last() {
                Some((row, _)) if page.len() == PAGE as usize => after = *row,
                _ => break,
            }
        }
    }
    Ok(done)
}

impl From<PiiError> for crate::error::ApiError {
    fn from(err: PiiError) -> Self {
        crate::error::ApiError::internal(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SealedColumn::{UserAddress, UserName, UserPhone};

    fn pii(current: u32) -> Pii {
        let keys = parse_keys(&format!("1:{},2:{}", "11".repeat(32), "22".repeat(32))).unwrap();
        Pii::new(&keys, current, [7; 32]).unwrap()
    }

    /// A value as sealed before the binding: no associated data, `v1`.
    fn sealed_unbound(key: [u8; 32], key_id: u32, plain: &str) -> String {
        let nonce = [3u8; 12];
        let sealed = Aes256Gcm::new((&key).into())
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .unwrap();
        format!("v1.{key_id}.{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    #[test]
    fn sealed_values_open_in_their_place_and_never_repeat() {
        let pii = pii(1);
        let first = pii.seal("010-1234-5678", UserPhone, 7);
        let second = pii.seal("010-1234-5678", UserPhone, 7);
        assert_ne!(first, second, "a fresh nonce per value");
        assert!(first.starts_with("v2.1."));
        assert!(!first.contains("1234"));
        assert_eq!(pii.open(&first, UserPhone, 7).unwrap(), "010-1234-5678");
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let pii = pii(1);
        let phone_of_7 = pii.seal("010-1234-5678", UserPhone, 7);
        assert!(matches!(
            pii.open(&phone_of_7, UserPhone, 8),
            Err(PiiError::Tampered)
        ));
        assert!(matches!(
            pii.open(&phone_of_7, UserAddress, 7),
            Err(PiiError::Tampered)
        ));
        assert!(matches!(
            pii.open(&phone_of_7, SealedColumn::EmailCode, 7),
            Err(PiiError::Tampered)
        ));
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let sealed_with_one = pii(1).seal("Seoul", UserAddress, 3);
        let rotated = pii(2);
        assert!(rotated.seal("x", UserAddress, 3).starts_with("v2.2."));
        assert_eq!(rotated.current_prefix(), "v2.2.");
        assert_eq!(
            rotated.open(&sealed_with_one, UserAddress, 3).unwrap(),
            "Seoul"
        );
    }

    #[test]
    fn unbound_values_open_only_until_the_reseal_pass_has_run() {
        let old = sealed_unbound([0x11; 32], 1, "Kim");
        assert!(matches!(
            pii(1).open(&old, UserName, 1),
            Err(PiiError::Unbound)
        ));
        let during = pii(1).opening_unbound(true);
        assert_eq!(during.open(&old, UserName, 1).unwrap(), "Kim");
        assert_eq!(
            during.open(&old, UserName, 2).unwrap(),
            "Kim",
            "unbound: any place"
        );
    }

    #[test]
    fn tampered_malformed_and_unknown_key_values_are_refused() {
        let pii = pii(1).opening_unbound(true);
        let sealed = pii.seal("secret", UserName, 1);
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(
            pii.open(&tampered, UserName, 1),
            Err(PiiError::Tampered)
        ));
        assert!(matches!(
            pii.open("plain text", UserName, 1),
            Err(PiiError::Malformed)
        ));
        assert!(matches!(
            pii.open("v3.1.00", UserName, 1),
            Err(PiiError::Malformed)
        ));
        assert!(matches!(
            pii.open("v2.9.00", UserName, 1),
            Err(PiiError::UnknownKey(9))
        ));
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
