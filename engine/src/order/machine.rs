//! The order life cycle as a table: which status may follow which. Every change of an order's
//! status is checked here first; a move the table does not hold is refused (409).

use crate::domain::OrderStatus;

use OrderStatus::*;

/// Every allowed move, `(from, to)`. An order starts `pending_payment`; `expired`,
/// `payment_failed`, `cancelled` and `returned` end it (their units are back in stock).
pub const MOVES: [(OrderStatus, OrderStatus); 11] = [
    // The payment: taken, refused by the gateway, or never made before the deadline.
    (PendingPayment, Paid),
    (PendingPayment, PaymentFailed),
    (PendingPayment, Expired),
    // The shopper gives up before the parcel leaves (a paid order is refunded).
    (PendingPayment, Cancelled),
    (Paid, Cancelled),
    (Preparing, Cancelled),
    // Shipment progression.
    (Paid, Preparing),
    (Preparing, Shipping),
    (Shipping, Delivered),
    // A return within the window after delivery, refunded once the refund is through.
    (Delivered, ReturnRequested),
    (ReturnRequested, Returned),
];

/// A move the life cycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot go from {from} to {to}")]
pub struct IllegalMove {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

/// Whether an order in `from` may move to `to`.
pub fn allows(from: OrderStatus, to: OrderStatus) -> bool {
    MOVES.contains(&(from, to))
}

/// `Ok` when an order in `from` may move to `to`, the refusal otherwise.
pub fn check(from: OrderStatus, to: OrderStatus) -> Result<(), IllegalMove> {
    if allows(from, to) {
        Ok(())
    } else {
        Err(IllegalMove { from, to })
    }
}

/// Whether no move leaves `status`.
pub fn is_final(status: OrderStatus) -> bool {
    !MOVES.iter().any(|&(from, _)| from == status)
}

/// Whether the shopper may cancel an order in `status` (before it ships).
pub fn cancellable(status: OrderStatus) -> bool {
    allows(status, Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole life cycle written out a second time, one row per `from` status: the
    /// statuses each may move to. Every one of the 100 pairs is checked against it.
    fn expected(from: OrderStatus) -> &'static [OrderStatus] {
        match from {
            PendingPayment => &[Paid, PaymentFailed, Expired, Cancelled],
            Paid => &[Preparing, Cancelled],
            Preparing => &[Shipping, Cancelled],
            Shipping => &[Delivered],
            Delivered => &[ReturnRequested],
            ReturnRequested => &[Returned],
            PaymentFailed | Expired | Cancelled | Returned => &[],
        }
    }

    #[test]
    fn every_pair_of_statuses_is_allowed_or_refused_as_the_life_cycle_says() {
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let allowed = expected(from).contains(&to);
                assert_eq!(allows(from, to), allowed, "{from} -> {to}");
                match check(from, to) {
                    Ok(()) => assert!(allowed, "{from} -> {to} must be refused"),
                    Err(refusal) => {
                        assert!(!allowed, "{from} -> {to} must be allowed");
                        assert_eq!(refusal, IllegalMove { from, to });
                    }
                }
            }
        }
    }

    #[test]
    fn the_table_holds_no_move_twice() {
        for (index, pair) in MOVES.iter().enumerate() {
            assert!(!MOVES[index + 1..].contains(pair), "{pair:?} twice");
        }
    }

    #[test]
    fn final_statuses_are_exactly_those_whose_units_are_back() {
        for status in OrderStatus::ALL {
            assert_eq!(is_final(status), status.releases_stock(), "{status}");
        }
    }

    #[test]
    fn only_orders_that_have_not_shipped_can_be_cancelled() {
        let cancellable_ones: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|&status| cancellable(status))
            .collect();
        assert_eq!(cancellable_ones, [PendingPayment, Paid, Preparing]);
    }

    #[test]
    fn a_refusal_names_both_statuses() {
        let refusal = check(Shipping, Cancelled).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "an order cannot go from shipping to cancelled"
        );
    }
}
