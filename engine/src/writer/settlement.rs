//! [`Settlement`]: whom to tell once a draft is known to be committed or not.

use std::sync::Arc;

use ractor::ActorRef;

use crate::domain::Quantity;
use crate::drop::{DropSlot, ItemMessage};

/// Whom to tell once a draft is known to be committed or not. Dropping an unsettled
/// settlement settles it as not committed (a writer that dies with drafts in its buffer gives
/// their units back this way), unless its batch had already gone to the store: then the
/// outcome is unknown, so the units stay held and only the in-flight count is released, so
/// that a restarted item actor can recount from the store.
#[derive(Debug)]
pub struct Settlement {
    target: Option<SettleTarget>,
    committing: bool,
}

#[derive(Debug)]
enum SettleTarget {
    /// Units reserved by a drop's item actor.
    Drop {
        actor: ActorRef<ItemMessage>,
        slot: Arc<DropSlot>,
        user_id: i64,
        quantity: Quantity,
    },
}

impl Settlement {
    /// Units of a drop, reserved by `actor` for `user_id`.
    pub fn drop_units(
        actor: ActorRef<ItemMessage>,
        slot: Arc<DropSlot>,
        user_id: i64,
        quantity: Quantity,
    ) -> Self {
        slot.draft_started();
        Self {
            target: Some(SettleTarget::Drop {
                actor,
                slot,
                user_id,
                quantity,
            }),
            committing: false,
        }
    }

    /// The draft's batch is going to the store.
    pub fn mark_committing(&mut self) {
        self.committing = true;
    }

    /// Reports the outcome; a dead actor is fine (its successor counts from the store).
    pub fn settle(mut self, committed: bool) {
        if let Some(target) = self.target.take() {
            target.settle(committed);
        }
    }

    /// Reports many outcomes: one message per drop, however many drafts it had.
    pub fn settle_all(outcomes: impl IntoIterator<Item = (Settlement, bool)>) {
        let mut per_drop: Vec<(ActorRef<ItemMessage>, DropOutcomes)> = Vec::new();
        for (mut settlement, committed) in outcomes {
            let Some(SettleTarget::Drop {
                actor,
                slot,
                user_id,
                quantity,
            }) = settlement.target.take()
            else {
                continue;
            };
            let index = match per_drop
                .iter()
                .position(|(known, _)| known.get_id() == actor.get_id())
            {
                Some(index) => index,
                None => {
                    per_drop.push((actor, DropOutcomes::default()));
                    per_drop.len() - 1
                }
            };
            per_drop[index].1.add(slot, user_id, quantity, committed);
        }
        for (actor, outcomes) in per_drop {
            outcomes.send(&actor);
        }
    }
}

/// What a batch settled for one drop.
#[derive(Default)]
struct DropOutcomes {
    slots: Vec<Arc<DropSlot>>,
    committed_units: i64,
    num_committed: u64,
    released: Vec<(i64, Quantity)>,
}

impl DropOutcomes {
    fn add(&mut self, slot: Arc<DropSlot>, user_id: i64, quantity: Quantity, committed: bool) {
        if committed {
            self.committed_units += i64::from(quantity.get());
            self.num_committed += 1;
        } else {
            self.released.push((user_id, quantity));
        }
        self.slots.push(slot);
    }

    /// Tells the actor first, then counts the drafts settled (a restarted actor recounts only
    /// once none is in flight).
    fn send(self, actor: &ActorRef<ItemMessage>) {
        let _ = actor.cast(ItemMessage::Settle {
            committed_units: self.committed_units,
            num_committed: self.num_committed,
            released: self.released,
        });
        for slot in self.slots {
            slot.draft_settled();
        }
    }
}

impl SettleTarget {
    fn settle(self, committed: bool) {
        match self {
            SettleTarget::Drop {
                actor,
                slot,
                user_id,
                quantity,
            } => {
                let mut outcomes = DropOutcomes::default();
                outcomes.add(slot, user_id, quantity, committed);
                outcomes.send(&actor);
            }
        }
    }

    fn abandon(self) {
        match self {
            SettleTarget::Drop { slot, .. } => slot.draft_settled(),
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        if self.committing {
            tracing::error!("a draft was dropped while its commit was in doubt; units stay held");
            target.abandon();
        } else {
            target.settle(false);
        }
    }
}
