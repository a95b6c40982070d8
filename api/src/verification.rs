//! Email verification: codes, and the consumer that mails them.
//!
//! A code is 8 characters from an alphabet without look-alikes (40 bits), lives
//! `auth.email_code_ttl_secs` (5 minutes), survives `auth.email_code_max_attempts` wrong
//! guesses (5), is used once, and is stored sealed like personal data. Signup and resend write
//! it with a `user.verification_requested` event in the same transaction; the
//! [`MailerConsumer`] mails it, never inside the request.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use hurry_engine::events::{Consumer, ConsumerError};
use hurry_persistence::{Effect, Event, NewEmailCode, SealedColumn, Store};
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::mail::{Mail, Mailer};
use crate::pii::Pii;

/// The mailer's consumer group and inbox name.
pub const MAILER: &str = "mailer";

/// Letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L).
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;

/// A new random code.
pub fn new_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A new code, sealed, expiring `ttl_secs` from now.
pub fn sealed_code(pii: &Pii, user_id: i64, ttl_secs: u64) -> NewEmailCode {
    NewEmailCode {
        code: pii.seal(&new_code(), SealedColumn::EmailCode, user_id),
        expires_at: Utc::now()
            + chrono::Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 4)),
    }
}

/// Whether `typed` is `code` (case and surrounding blanks ignored), in constant time.
pub fn code_matches(typed: &str, code: &str) -> bool {
    let typed = typed.trim().to_ascii_uppercase();
    typed.len() == code.len() && bool::from(typed.as_bytes().ct_eq(code.as_bytes()))
}

/// Mails verification codes (`user.verification_requested`).
pub struct MailerConsumer {
    store: Arc<dyn Store>,
    pii: Arc<Pii>,
    mailer: Arc<dyn Mailer>,
}

impl MailerConsumer {
    pub fn new(store: Arc<dyn Store>, pii: Arc<Pii>, mailer: Arc<dyn Mailer>) -> Self {
        Self { store, pii, mailer }
    }

    /// The mail for `event`, or `None` when there is nothing to send any more (the code was
    /// replaced, used or has expired, or the user is gone).
    async fn mail_for(&self, event: &Event) -> Result<Option<Mail>, ConsumerError> {
        let user_id = event.aggregate_id;
        let generation = event.payload.value()["generation"].as_i64();
        let Some(code) = self.store.email_code(user_id).await? else {
            return Ok(None);
        };
        if Some(code.generation) != generation || code.consumed || code.expires_at <= Utc::now() {
            return Ok(None);
        }
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Ok(None);
        };
        let email = self
            .pii
            .open(&user.email, SealedColumn::UserEmail, user_id)
            .map_err(ConsumerError::permanent)?;
        let plain_code = self
            .pii
            .open(&code.code, SealedColumn::EmailCode, user_id)
            .map_err(ConsumerError::permanent)?;
        let minutes = (code.expires_at - Utc::now()).num_minutes().max(1);
        Ok(Some(Mail {
            to: email,
            subject: "Your Hurry Up Order verification code".to_owned(),
            body: format!(
                "Your verification code: {plain_code}\n\n\
                 Enter it within {minutes} minutes to verify your email address.\n\
                 If you did not sign up, ignore this message.\n"
            ),
        }))
    }
}

#[async_trait]
impl Consumer for MailerConsumer {
    fn group(&self) -> &'static str {
        MAILER
    }

    fn topics(&self) -> &'static [&'static str] {
        &["user"]
    }

    /// Mails are sent one by one, each recorded in the inbox right after it went out: a crash
    /// between the two sends that one mail again (at least once; a mail cannot be rolled back).
    /// A store or mail server that cannot be reached is transient (waited out, never a dead
    /// letter); a mail the server refuses or a sealed value that does not open is permanent.
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        for event in events {
            if event.event_type != "user.verification_requested"
                || self.store.event_processed(MAILER, event.event_id).await?
            {
                continue;
            }
            if let Some(mail) = self.mail_for(event).await? {
                self.mailer.send(&mail).await.map_err(|err| {
                    if err.is_transient() {
                        ConsumerError::transient(err)
                    } else {
                        ConsumerError::permanent(err)
                    }
                })?;
                metrics::counter!("hurry_mails_sent_total").increment(1);
            }
            self.store
                .apply_effects(MAILER, &[(event.event_id, Effect::Record)])
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_characters_of_the_alphabet_and_differ() {
        let codes: Vec<String> = (0..100).map(|_| new_code()).collect();
        for code in &codes {
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|byte| ALPHABET.contains(&byte)), "{code}");
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn matching_ignores_case_and_blanks_but_nothing_else() {
        assert!(code_matches(" abcd2345 ", "ABCD2345"));
        assert!(!code_matches("ABCD2346", "ABCD2345"));
        assert!(!code_matches("ABCD234", "ABCD2345"));
        assert!(!code_matches("", "ABCD2345"));
    }
}
