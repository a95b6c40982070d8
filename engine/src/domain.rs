//! Small validating value types. An invalid value cannot be constructed.

use std::fmt;

/// Units of one order line: `1..=10_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    /// Largest quantity one line may ask for.
    pub const MAX: u32 = 10_000;

    /// A quantity, or `None` outside `1..=10_000`.
    pub fn new(value: i64) -> Option<Self> {
        u32::try_from(value)
            .ok()
            .filter(|units| (1..=Self::MAX).contains(units))
            .map(Self)
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A client's `Idempotency-Key`: 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A key, or `None` when empty, too long or not visible ASCII.
    pub fn new(value: &str) -> Option<Self> {
        let valid =
            (1..=128).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_graphic());
        valid.then(|| Self(value.to_owned()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Preparing,
    Shipping,
    Delivered,
    PaymentFailed,
    Expired,
    Cancelled,
    ReturnRequested,
    Returned,
}

impl OrderStatus {
    /// Every status, in life order.
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Preparing,
        OrderStatus::Shipping,
        OrderStatus::Delivered,
        OrderStatus::PaymentFailed,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
        OrderStatus::ReturnRequested,
        OrderStatus::Returned,
    ];

    /// The API and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Shipping => "shipping",
            OrderStatus::Delivered => "delivered",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::ReturnRequested => "return_requested",
            OrderStatus::Returned => "returned",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether an order in this status has given its units back.
    pub fn releases_stock(self) -> bool {
        matches!(
            self,
            OrderStatus::PaymentFailed
                | OrderStatus::Expired
                | OrderStatus::Cancelled
                | OrderStatus::Returned
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_accepts_only_one_to_ten_thousand() {
        assert_eq!(Quantity::new(1).map(Quantity::get), Some(1));
        assert_eq!(Quantity::new(10_000).map(Quantity::get), Some(10_000));
        for bad in [0, -1, 10_001, 1_000_000_000_000, i64::MIN, i64::MAX] {
            assert!(Quantity::new(bad).is_none(), "{bad} must be refused");
        }
    }

    #[test]
    fn idempotency_key_is_one_to_128_visible_ascii_characters() {
        assert!(IdempotencyKey::new("a").is_some());
        assert!(IdempotencyKey::new(&"k".repeat(128)).is_some());
        assert!(IdempotencyKey::new("").is_none());
        assert!(IdempotencyKey::new(&"k".repeat(129)).is_none());
        assert!(IdempotencyKey::new("has space").is_none());
        assert!(IdempotencyKey::new("ünïcode").is_none());
    }

    #[test]
    fn status_names_round_trip_and_releasing_ones_match_storage() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                status.releases_stock(),
                hurry_persistence::RELEASING_STATUSES.contains(&status.as_str())
            );
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
