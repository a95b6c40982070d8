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
                let _ = actor.cast(ItemMessage::Settle {
                    user_id,
                    quantity,
                    committed,
                });
                slot.draft_settled();
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
