//! The sandbox's ledger: every checkout, charge and refund, and the stored answers of
//! `Idempotency-Key`s. Pure bookkeeping, no HTTP and no faults; the shapes of the two gateways
//! ([`super::toss`], [`super::nice`]) print its answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The gateways the sandbox stands in for. `sandbox` speaks Toss's shape under its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Toss,
    Nice,
    Sandbox,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Toss, Provider::Nice, Provider::Sandbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Toss => "toss",
            Provider::Nice => "nice",
            Provider::Sandbox => "sandbox",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|provider| provider.as_str() == name)
    }
}

/// Where a charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    /// Checked out (the widget step), not confirmed: nothing taken.
    Ready,
    /// Money taken; `refunded_amount` grows with partial refunds.
    Paid,
    /// The confirm was refused: nothing taken.
    Failed,
    /// All of it given back.
    Refunded,
}

/// One payment at the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub provider: Provider,
    pub payment_key: String,
    pub pg_order_id: String,
    pub amount: i64,
    pub status: ChargeStatus,
    pub refunded_amount: i64,
    #[serde(skip)]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub refunds: Vec<Refund>,
}

/// One refund of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub amount: i64,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Why the ledger refused a confirm or a cancel; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No checkout made this payment key (or not with this gateway).
    UnknownPayment,
    /// The order id or amount differ from the checkout's.
    Mismatch,
    /// Confirmed before.
    AlreadyConfirmed,
    /// Cancel of a payment that took nothing, or more than is left to give back.
    NotRefundable,
}

/// An answer stored under an `Idempotency-Key`: the status and the body as sent.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Book {
    charges: HashMap<String, Charge>,
    /// Checkout order, for listing charges in the order they were made.
    order: Vec<String>,
    answers: HashMap<(Provider, String), StoredAnswer>,
    next_key: u64,
}

impl Book {
    /// The widget step: a new payment key for `amount` of `pg_order_id` at `provider`.
    pub fn checkout(&mut self, provider: Provider, pg_order_id: &str, amount: i64) -> String {
        self.next_key += 1;
        let payment_key = format!(
            "{}_{:012}_{}",
            provider.as_str(),
            self.next_key,
            uuid::Uuid::new_v4().simple()
        );
        self.charges.insert(
            payment_key.clone(),
            Charge {
                provider,
                payment_key: payment_key.clone(),
                pg_order_id: pg_order_id.to_owned(),
                amount,
                status: ChargeStatus::Ready,
                refunded_amount: 0,
                approved_at: None,
                refunds: Vec::new(),
            },
        );
        self.order.push(payment_key.clone());
        payment_key
    }

    /// Takes the money of a checked-out payment.
    pub fn confirm(
        &mut self,
        provider: Provider,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
    ) -> Result<Charge, Refusal> {
        let charge = self.charge_mut(provider, payment_key)?;
        if charge.pg_order_id != pg_order_id || charge.amount != amount {
            return Err(Refusal::Mismatch);
        }
        if charge.status != ChargeStatus::Ready {
            return Err(Refusal::AlreadyConfirmed);
        }
        charge.status = ChargeStatus::Paid;
        charge.approved_at = Some(Utc::now());
        Ok(charge.clone())
    }

    /// Refuses a checked-out payment for good (the card was declined): nothing is taken and
    /// the key cannot be confirmed any more.
    pub fn decline(&mut self, provider: Provider, payment_key: &str) -> Result<Charge, Refusal> {
        let charge = self.charge_mut(provider, payment_key)?;
        if charge.status != ChargeStatus::Ready {
            return Err(Refusal::AlreadyConfirmed);
        }
        charge.status = ChargeStatus::Failed;
        Ok(charge.clone())
    }

    /// Gives back `amount` (all that is left when `None`) of a paid charge.
    pub fn cancel(
        &mut self,
        provider: Provider,
        payment_key: &str,
        amount: Option<i64>,
        reason: &str,
    ) -> Result<Charge, Refusal> {
        let charge = self.charge_mut(provider, payment_key)?;
        let left = charge.amount - charge.refunded_amount;
        let amount = amount.unwrap_or(left);
        if charge.status != ChargeStatus::Paid || amount <= 0 || amount > left {
            return Err(Refusal::NotRefundable);
        }
        charge.refunded_amount += amount;
        charge.refunds.push(Refund {
            amount,
            reason: reason.to_owned(),
            at: Utc::now(),
        });
        if charge.refunded_amount == charge.amount {
            charge.status = ChargeStatus::Refunded;
        }
        Ok(charge.clone())
    }

    /// A payment as the gateway knows it.
    pub fn lookup(&self, provider: Provider, payment_key: &str) -> Option<&Charge> {
        self.charges
            .get(payment_key)
            .filter(|charge| charge.provider == provider)
    }

    /// Every confirmed (or refused) payment, in checkout order; checkouts never confirmed are
    /// left out.
    pub fn charges(&self) -> Vec<Charge> {
        self.order
            .iter()
            .filter_map(|key| self.charges.get(key))
            .filter(|charge| charge.status != ChargeStatus::Ready)
            .cloned()
            .collect()
    }

    /// The answer stored under `key` at `provider`.
    pub fn answer(&self, provider: Provider, key: &str) -> Option<StoredAnswer> {
        self.answers.get(&(provider, key.to_owned())).cloned()
    }

    /// Stores the answer of a request made with `key`.
    pub fn keep_answer(&mut self, provider: Provider, key: &str, answer: StoredAnswer) {
        self.answers.insert((provider, key.to_owned()), answer);
    }

    fn charge_mut(
        &mut self,
        provider: Provider,
        payment_key: &str,
    ) -> Result<&mut Charge, Refusal> {
        self.charges
            .get_mut(payment_key)
            .filter(|charge| charge.provider == provider)
            .ok_or(Refusal::UnknownPayment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_is_taken_once_and_only_as_checked_out() {
        let mut book = Book::default();
        let key = book.checkout(Provider::Toss, "hurry-1", 5_000);
        assert_eq!(
            book.confirm(Provider::Toss, &key, "hurry-1", 4_999),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            book.confirm(Provider::Toss, &key, "hurry-2", 5_000),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            book.confirm(Provider::Nice, &key, "hurry-1", 5_000),
            Err(Refusal::UnknownPayment)
        );
        assert!(book.charges().is_empty(), "nothing taken yet");
        let charge = book
            .confirm(Provider::Toss, &key, "hurry-1", 5_000)
            .unwrap();
        assert_eq!(charge.status, ChargeStatus::Paid);
        assert_eq!(
            book.confirm(Provider::Toss, &key, "hurry-1", 5_000),
            Err(Refusal::AlreadyConfirmed)
        );
        assert_eq!(book.charges().len(), 1);
    }

    #[test]
    fn a_declined_payment_takes_nothing_and_cannot_be_confirmed_after() {
        let mut book = Book::default();
        let key = book.checkout(Provider::Toss, "hurry-3", 900);
        let declined = book.decline(Provider::Toss, &key).unwrap();
        assert_eq!(declined.status, ChargeStatus::Failed);
        assert_eq!(
            book.confirm(Provider::Toss, &key, "hurry-3", 900),
            Err(Refusal::AlreadyConfirmed)
        );
        assert_eq!(book.charges(), vec![declined]);
    }

    #[test]
    fn refunds_add_up_to_the_amount_and_no_further() {
        let mut book = Book::default();
        let key = book.checkout(Provider::Nice, "hurry-7", 1_000);
        assert_eq!(
            book.cancel(Provider::Nice, &key, None, "early"),
            Err(Refusal::NotRefundable),
            "nothing taken, nothing to give back"
        );
        book.confirm(Provider::Nice, &key, "hurry-7", 1_000)
            .unwrap();
        let part = book
            .cancel(Provider::Nice, &key, Some(400), "part")
            .unwrap();
        assert_eq!(
            (part.status, part.refunded_amount),
            (ChargeStatus::Paid, 400)
        );
        assert_eq!(
            book.cancel(Provider::Nice, &key, Some(601), "too much"),
            Err(Refusal::NotRefundable)
        );
        assert_eq!(
            book.cancel(Provider::Nice, &key, Some(0), "zero"),
            Err(Refusal::NotRefundable)
        );
        let rest = book.cancel(Provider::Nice, &key, None, "rest").unwrap();
        assert_eq!(
            (rest.status, rest.refunded_amount, rest.refunds.len()),
            (ChargeStatus::Refunded, 1_000, 2)
        );
        assert_eq!(
            book.cancel(Provider::Nice, &key, None, "again"),
            Err(Refusal::NotRefundable)
        );
    }
}
