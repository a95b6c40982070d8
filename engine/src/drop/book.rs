//! The in-memory ledger of one drop and the purchase decision. Pure: no actor, no I/O, no clock
//! (the caller passes `now`), so every rule is unit-tested directly.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hurry_persistence::DropSpec;

use super::error::DropError;
use crate::domain::Quantity;

/// Stock and per-user holdings of one drop on this node.
#[derive(Debug, Clone)]
pub struct DropBook {
    spec: DropSpec,
    /// Units this node may still hand out (leased minus pending minus sold).
    available: i64,
    /// Units handed to the writer whose commit has not settled.
    pending: i64,
    /// Units in committed orders.
    sold: i64,
    /// Units each user holds (pending and sold), for the per-user limit.
    holdings: HashMap<i64, u32>,
}

impl DropBook {
    /// A book for `spec` after `sold_per_user` were already sold, with `leased` units to sell.
    pub fn new(spec: DropSpec, sold_per_user: &[(i64, i64)], leased: i64) -> Self {
        let holdings: HashMap<i64, u32> = sold_per_user
            .iter()
            .map(|&(user, units)| (user, u32::try_from(units.max(0)).unwrap_or(u32::MAX)))
            .collect();
        let sold = sold_per_user.iter().map(|(_, units)| units).sum();
        Self {
            spec,
            available: leased.max(0),
            pending: 0,
            sold,
            holdings,
        }
    }

    /// The drop's window and limits.
    pub fn spec(&self) -> &DropSpec {
        &self.spec
    }

    /// Units this node can still sell.
    pub fn available(&self) -> i64 {
        self.available
    }

    /// Units awaiting their commit.
    pub fn pending(&self) -> i64 {
        self.pending
    }

    /// Units in committed orders.
    pub fn sold(&self) -> i64 {
        self.sold
    }

    /// Number of distinct users holding units.
    pub fn num_buyers(&self) -> usize {
        self.holdings.len()
    }

    /// Decides a purchase at `now`; on success the units move to pending.
    pub fn reserve(
        &mut self,
        user_id: i64,
        quantity: Quantity,
        now: DateTime<Utc>,
    ) -> Result<(), DropError> {
        if now < self.spec.opens_at {
            return Err(DropError::NotOpen {
                opens_at: self.spec.opens_at,
            });
        }
        if now >= self.spec.closes_at {
            return Err(DropError::Closed);
        }
        if self.available == 0 {
            return Err(DropError::SoldOut);
        }
        let wanted = quantity.get();
        let held = self.holdings.get(&user_id).copied().unwrap_or(0);
        if held.saturating_add(wanted) > self.spec.per_user_limit {
            return Err(DropError::LimitReached {
                limit: self.spec.per_user_limit,
            });
        }
        if i64::from(wanted) > self.available {
            return Err(DropError::InsufficientStock {
                available: self.available,
            });
        }
        self.available -= i64::from(wanted);
        self.pending += i64::from(wanted);
        *self.holdings.entry(user_id).or_insert(0) += wanted;
        self.debug_check();
        Ok(())
    }

    /// A pending reservation was committed.
    pub fn commit(&mut self, quantity: Quantity) {
        self.commit_units(i64::from(quantity.get()));
    }

    /// Pending reservations of `units` units in all were committed.
    pub fn commit_units(&mut self, units: i64) {
        self.pending -= units;
        self.sold += units;
        self.debug_check();
    }

    /// A pending reservation failed to commit: its units become sellable again.
    pub fn release(&mut self, user_id: i64, quantity: Quantity) {
        let units = quantity.get();
        self.pending -= i64::from(units);
        self.available += i64::from(units);
        if let Some(held) = self.holdings.get_mut(&user_id) {
            *held = held.saturating_sub(units);
            if *held == 0 {
                self.holdings.remove(&user_id);
            }
        }
        self.debug_check();
    }

    /// A committed order gave its units back (cancelled, expired, returned).
    pub fn restock(&mut self, user_id: i64, quantity: Quantity) {
        let units = quantity.get();
        self.sold -= i64::from(units);
        self.available += i64::from(units);
        if let Some(held) = self.holdings.get_mut(&user_id) {
            *held = held.saturating_sub(units);
            if *held == 0 {
                self.holdings.remove(&user_id);
            }
        }
        self.debug_check();
    }

    /// Takes `units` unsold units out of the drop (the seller makes it smaller); refused when
    /// fewer are unsold (sold and pending units stay).
    pub fn shrink(&mut self, units: i64) -> Result<(), DropError> {
        if units > self.available {
            return Err(DropError::InsufficientStock {
                available: self.available,
            });
        }
        self.available -= units;
        self.spec.total_units -= units;
        self.debug_check();
        Ok(())
    }

    /// Adds `units` to the drop (already durable), sellable at once.
    pub fn grow(&mut self, units: i64) {
        self.available += units;
        self.spec.total_units += units;
        self.debug_check();
    }

    fn debug_check(&self) {
        debug_assert!(self.available >= 0, "available went negative");
        debug_assert!(self.pending >= 0, "pending went negative");
        debug_assert!(
            self.sold + self.pending <= self.spec.total_units,
            "more units out than the drop has"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn spec(total_units: i64, per_user_limit: u32) -> DropSpec {
        let opens_at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        DropSpec {
            opens_at,
            closes_at: opens_at + Duration::hours(1),
            per_user_limit,
            total_units,
        }
    }

    fn during(book: &DropBook) -> DateTime<Utc> {
        book.spec().opens_at + Duration::minutes(1)
    }

    fn qty(units: i64) -> Quantity {
        Quantity::new(units).unwrap()
    }

    #[test]
    fn reserve_takes_units_until_sold_out() {
        let mut book = DropBook::new(spec(3, 10), &[], 3);
        let now = during(&book);
        assert_eq!(book.reserve(1, qty(2), now), Ok(()));
        assert_eq!(book.reserve(2, qty(1), now), Ok(()));
        assert_eq!(book.reserve(3, qty(1), now), Err(DropError::SoldOut));
        assert_eq!((book.available(), book.pending(), book.sold()), (0, 3, 0));
    }

    #[test]
    fn asking_for_more_than_is_left_takes_nothing() {
        let mut book = DropBook::new(spec(3, 10), &[], 3);
        let now = during(&book);
        assert_eq!(
            book.reserve(1, qty(4), now),
            Err(DropError::InsufficientStock { available: 3 })
        );
        assert_eq!(book.available(), 3);
        assert_eq!(book.num_buyers(), 0);
    }

    #[test]
    fn per_user_limit_counts_pending_and_sold_units() {
        let mut book = DropBook::new(spec(10, 2), &[(7, 1)], 9);
        let now = during(&book);
        assert_eq!(book.reserve(7, qty(1), now), Ok(()));
        assert_eq!(
            book.reserve(7, qty(1), now),
            Err(DropError::LimitReached { limit: 2 })
        );
        assert_eq!(book.reserve(8, qty(2), now), Ok(()));
    }

    #[test]
    fn window_is_checked_before_any_stock_is_taken() {
        let mut book = DropBook::new(spec(5, 1), &[], 5);
        let opens_at = book.spec().opens_at;
        let closes_at = book.spec().closes_at;
        assert_eq!(
            book.reserve(1, qty(1), opens_at - Duration::seconds(1)),
            Err(DropError::NotOpen { opens_at })
        );
        assert_eq!(book.reserve(1, qty(1), closes_at), Err(DropError::Closed));
        assert_eq!(book.available(), 5);
        assert_eq!(book.reserve(1, qty(1), opens_at), Ok(()));
    }

    #[test]
    fn release_gives_units_and_the_users_allowance_back() {
        let mut book = DropBook::new(spec(1, 1), &[], 1);
        let now = during(&book);
        book.reserve(1, qty(1), now).unwrap();
        book.release(1, qty(1));
        assert_eq!((book.available(), book.pending(), book.sold()), (1, 0, 0));
        assert_eq!(book.reserve(1, qty(1), now), Ok(()));
        book.commit(qty(1));
        assert_eq!((book.available(), book.pending(), book.sold()), (0, 0, 1));
    }

    #[test]
    fn restock_returns_sold_units_and_the_allowance() {
        let mut book = DropBook::new(spec(2, 1), &[(1, 1), (2, 1)], 0);
        let now = during(&book);
        assert_eq!(book.reserve(3, qty(1), now), Err(DropError::SoldOut));
        book.restock(1, qty(1));
        assert_eq!((book.available(), book.sold()), (1, 1));
        assert_eq!(book.reserve(1, qty(1), now), Ok(()), "user 1 may buy again");
    }

    #[test]
    fn a_rebuilt_book_counts_earlier_sales() {
        let book = DropBook::new(spec(10, 3), &[(1, 2), (2, 3)], 5);
        assert_eq!(book.sold(), 5);
        assert_eq!(book.available(), 5);
        assert_eq!(book.num_buyers(), 2);
    }
}
