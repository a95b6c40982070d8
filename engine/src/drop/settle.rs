//! [`DropUnits`]: an item actor's side of the writer's settlements, so that the units of a
//! draft come back to the actor (or become sold) once the writer knows its outcome.

use std::sync::Arc;

use ractor::ActorRef;

use super::messages::ItemMessage;
use super::slot::DropSlot;
use crate::domain::Quantity;
use crate::writer::{HeldUnits, Outcome, Settle, Settlement};

/// The units one item actor reserved for drafts, and where it hears their outcomes. One per
/// actor: the writer tells it once per batch, however many of the batch's drafts are its.
#[derive(Debug)]
pub struct DropUnits {
    actor: ActorRef<ItemMessage>,
    /// Counts the drafts in flight, so that a restarted actor recounts only once they settled.
    slot: Arc<DropSlot>,
}

impl DropUnits {
    /// The units reserved by `actor`, counted in flight on `slot`.
    pub fn new(actor: ActorRef<ItemMessage>, slot: Arc<DropSlot>) -> Arc<Self> {
        Arc::new(Self { actor, slot })
    }

    /// The settlement of a draft of `quantity` units reserved for `user_id`: counted in
    /// flight from now until it settles.
    pub fn settlement(self: &Arc<Self>, user_id: i64, quantity: Quantity) -> Settlement {
        self.slot.draft_started();
        Settlement::new(self.clone(), HeldUnits { user_id, quantity })
    }
}

impl Settle for DropUnits {
    /// Tells the actor first, then counts the drafts settled (a restarted actor recounts only
    /// once none is in flight). A dead actor is fine: its successor counts from the store.
    fn settle(&self, outcomes: Vec<Outcome>) {
        let num_settled = outcomes.len();
        let mut settled = DropOutcomes::default();
        for (units, committed) in outcomes {
            settled.add(units, committed);
        }
        let _ = self.actor.cast(ItemMessage::Settle {
            committed_units: settled.committed_units,
            num_committed: settled.num_committed,
            released: settled.released,
        });
        for _ in 0..num_settled {
            self.slot.draft_settled();
        }
    }

    fn abandon(&self, _units: HeldUnits) {
        self.slot.draft_settled();
    }
}

/// What a batch settled for one drop.
#[derive(Default)]
struct DropOutcomes {
    committed_units: i64,
    num_committed: u64,
    released: Vec<(i64, Quantity)>,
}

impl DropOutcomes {
    fn add(&mut self, units: HeldUnits, committed: bool) {
        if committed {
            self.committed_units += i64::from(units.quantity.get());
            self.num_committed += 1;
        } else {
            self.released.push((units.user_id, units.quantity));
        }
    }
}
