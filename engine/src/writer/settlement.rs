//! [`Settlement`]: whom to tell once a draft is known to be committed or not, through the
//! [`Settle`] trait its maker implements.

use std::fmt::Debug;
use std::sync::Arc;

use crate::domain::Quantity;

/// Units a draft holds for its buyer until its outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldUnits {
    pub user_id: i64,
    pub quantity: Quantity,
}

/// A draft's held units and whether its order is committed.
pub type Outcome = (HeldUnits, bool);

/// Whoever holds units for drafts and must hear what became of them (a drop's item actor).
/// Each settlement ends in exactly one `settle` or `abandon`.
pub trait Settle: Send + Sync + Debug {
    /// The outcomes of drafts of one batch whose units this holder reserved, all at once:
    /// `(units, committed)`. Committed units are sold; the others are definitely not.
    fn settle(&self, outcomes: Vec<Outcome>);

    /// A draft whose outcome will never be reported (it was dropped while its commit was in
    /// doubt): its units stay held; only stop waiting for it.
    fn abandon(&self, units: HeldUnits);
}

/// Whom to tell once a draft is known to be committed or not. Dropping an unsettled
/// settlement settles it as not committed (a writer that dies with drafts in its buffer gives
/// their units back this way), unless its batch had already gone to the store: then the
/// outcome is unknown, so the units stay held and the holder is only told to stop waiting
/// ([`Settle::abandon`]), so that a restarted item actor can recount from the store.
#[derive(Debug)]
pub struct Settlement {
    held: Option<(Arc<dyn Settle>, HeldUnits)>,
    committing: bool,
}

impl Settlement {
    /// `units` held by `holder` until the draft settles.
    pub fn new(holder: Arc<dyn Settle>, units: HeldUnits) -> Self {
        Self {
            held: Some((holder, units)),
            committing: false,
        }
    }

    /// The draft's batch is going to the store.
    pub fn mark_committing(&mut self) {
        self.committing = true;
    }

    /// Reports the outcome; a holder that is gone is fine (its successor counts from the
    /// store).
    pub fn settle(mut self, committed: bool) {
        if let Some((holder, units)) = self.held.take() {
            holder.settle(vec![(units, committed)]);
        }
    }

    /// Reports many outcomes: one [`Settle::settle`] per holder, however many drafts it had.
    pub fn settle_all(outcomes: impl IntoIterator<Item = (Settlement, bool)>) {
        let mut per_holder: Vec<(Arc<dyn Settle>, Vec<Outcome>)> = Vec::new();
        for (mut settlement, committed) in outcomes {
            let Some((holder, units)) = settlement.held.take() else {
                continue;
            };
            match per_holder
                .iter_mut()
                .find(|(known, _)| Arc::ptr_eq(known, &holder))
            {
                Some((_, held)) => held.push((units, committed)),
                None => per_holder.push((holder, vec![(units, committed)])),
            }
        }
        for (holder, outcomes) in per_holder {
            holder.settle(outcomes);
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some((holder, units)) = self.held.take() else {
            return;
        };
        if self.committing {
            tracing::error!("a draft was dropped while its commit was in doubt; units stay held");
            holder.abandon(units);
        } else {
            holder.settle(vec![(units, false)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Recorder;

    use super::*;

    fn settlement(holder: &Arc<Recorder>, user_id: i64) -> Settlement {
        let quantity = Quantity::new(1).expect("one unit");
        Settlement::new(holder.clone(), HeldUnits { user_id, quantity })
    }

    #[test]
    fn a_batch_tells_each_holder_once_with_all_of_its_drafts() {
        let (first, second) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));

        Settlement::settle_all([
            (settlement(&first, 1), true),
            (settlement(&second, 2), false),
            (settlement(&first, 3), false),
        ]);

        assert_eq!(first.settled(), [vec![(1, true), (3, false)]]);
        assert_eq!(second.settled(), [vec![(2, false)]]);
    }

    #[test]
    fn a_settlement_dropped_before_its_commit_gives_the_units_back() {
        let holder = Arc::new(Recorder::default());

        drop(settlement(&holder, 1));

        assert_eq!(holder.settled(), [vec![(1, false)]]);
        assert!(holder.abandoned().is_empty());
    }

    #[test]
    fn a_settlement_dropped_while_committing_holds_the_units_and_is_abandoned() {
        let holder = Arc::new(Recorder::default());
        let mut committing = settlement(&holder, 1);
        committing.mark_committing();

        drop(committing);

        assert!(holder.settled().is_empty(), "the units stay held");
        assert_eq!(*holder.abandoned(), [1]);
    }

    #[test]
    fn a_settled_settlement_tells_nothing_more_when_dropped() {
        let holder = Arc::new(Recorder::default());
        let mut committing = settlement(&holder, 1);
        committing.mark_committing();

        committing.settle(true);

        assert_eq!(holder.settled(), [vec![(1, true)]]);
        assert!(holder.abandoned().is_empty());
    }
}
