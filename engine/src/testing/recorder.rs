//! [`Recorder`], a holder of units for the writer's tests: it records what it is told.

use std::sync::Mutex;

use crate::writer::{HeldUnits, Outcome, Settle};

/// A holder of units that records what the writer told it.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Each `settle` call: `(user, committed)` per draft.
    settled: Mutex<Vec<Vec<(i64, bool)>>>,
    abandoned: Mutex<Vec<i64>>,
}

impl Settle for Recorder {
    fn settle(&self, outcomes: Vec<Outcome>) {
        let outcomes = outcomes
            .into_iter()
            .map(|(units, committed)| (units.user_id, committed))
            .collect();
        self.settled.lock().unwrap().push(outcomes);
    }

    fn abandon(&self, units: HeldUnits) {
        self.abandoned.lock().unwrap().push(units.user_id);
    }
}

impl Recorder {
    pub fn settled(&self) -> Vec<Vec<(i64, bool)>> {
        self.settled.lock().unwrap().clone()
    }

    /// Every draft's outcome, whichever call told it, ordered by user.
    pub fn outcomes(&self) -> Vec<(i64, bool)> {
        let mut all: Vec<_> = self.settled().into_iter().flatten().collect();
        all.sort_unstable();
        all
    }

    pub fn abandoned(&self) -> Vec<i64> {
        self.abandoned.lock().unwrap().clone()
    }
}
