//! What the API, the writer and an item actor share about one drop, and the registry of them.
//!
//! The API reads stock and counters from atomics here instead of asking the actor, and finds the
//! current actor (which changes when the supervisor restarts it). The writer counts drafts in
//! flight here, so that a restarted actor rebuilds its counts only once they have settled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hurry_persistence::DropSpec;
use ractor::ActorRef;
use tokio::sync::Notify;

use super::error::DropError;
use super::messages::ItemMessage;

/// Shared state of one drop on this node.
#[derive(Debug)]
pub struct DropSlot {
    pub item_id: i64,
    actor: RwLock<Option<ActorRef<ItemMessage>>>,
    /// Units the actor can still sell (a mirror of its book, for reads).
    pub available: AtomicI64,
    /// Units awaiting their commit (mirror).
    pub pending: AtomicI64,
    /// Units in committed orders (mirror).
    pub sold: AtomicI64,
    /// Units leased to this node (mirror).
    pub leased: AtomicI64,
    /// Drafts handed to the writer and not settled yet (kept by the writer, not the actor).
    in_flight: AtomicI64,
    settled: Notify,
    /// Purchases waiting for the actor's answer: admission control and `mailbox_len`.
    pub queued: AtomicUsize,
    /// Times the supervisor restarted this drop's actor.
    pub restarts: AtomicU32,
    /// Sale window in unix nanoseconds, for refusals that need no actor.
    opens_at_ns: AtomicI64,
    closes_at_ns: AtomicI64,
    /// The mirrors hold an actor's counts (false until the first actor has started).
    mirrored: AtomicBool,
    /// Purchases refused here, without a message to the actor.
    pub num_refused_in_slot: AtomicU64,
}

impl DropSlot {
    /// An empty slot for `item_id`.
    pub fn new(item_id: i64) -> Self {
        Self {
            item_id,
            actor: RwLock::new(None),
            available: AtomicI64::new(0),
            pending: AtomicI64::new(0),
            sold: AtomicI64::new(0),
            leased: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            settled: Notify::new(),
            queued: AtomicUsize::new(0),
            restarts: AtomicU32::new(0),
            opens_at_ns: AtomicI64::new(i64::MAX),
            closes_at_ns: AtomicI64::new(i64::MIN),
            mirrored: AtomicBool::new(false),
            num_refused_in_slot: AtomicU64::new(0),
        }
    }

    /// Records the sale window.
    pub fn set_window(&self, spec: &DropSpec) {
        // Past 2262 a time no longer fits in nanoseconds: such a drop never opens here.
        let nanos = |at: DateTime<Utc>| at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        self.opens_at_ns
            .store(nanos(spec.opens_at), Ordering::Relaxed);
        self.closes_at_ns
            .store(nanos(spec.closes_at), Ordering::Relaxed);
    }

    /// The mirrored counters are an actor's (set by the actor once it has started).
    pub fn mark_mirrored(&self) {
        self.mirrored.store(true, Ordering::Release);
    }

    /// The answer the actor would give right now without looking at the buyer: not open,
    /// closed, or sold out. `None` when the actor has to decide. The sold-out check reads a
    /// mirror that may lag the actor by a message, which is the same as arriving that much
    /// earlier or later.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<DropError> {
        if !self.mirrored.load(Ordering::Acquire) {
            return None;
        }
        let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let opens_at_ns = self.opens_at_ns.load(Ordering::Relaxed);
        let refusal = if now_ns < opens_at_ns {
            DropError::NotOpen {
                opens_at: DateTime::from_timestamp_nanos(opens_at_ns),
            }
        } else if now_ns >= self.closes_at_ns.load(Ordering::Relaxed) {
            DropError::Closed
        } else if self.available.load(Ordering::Relaxed) == 0 {
            DropError::SoldOut
        } else {
            return None;
        };
        self.num_refused_in_slot.fetch_add(1, Ordering::Relaxed);
        Some(refusal)
    }

    /// The running actor, if any.
    pub fn actor(&self) -> Option<ActorRef<ItemMessage>> {
        self.actor
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records the actor now serving this drop (`None` while it restarts).
    pub fn set_actor(&self, actor: Option<ActorRef<ItemMessage>>) {
        *self
            .actor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = actor;
    }

    /// A draft of this drop entered the writer.
    pub fn draft_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A draft of this drop was committed or definitely not committed.
    pub fn draft_settled(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    /// Drafts not settled yet.
    pub fn drafts_in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no draft of this drop is in flight.
    pub async fn wait_settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.drafts_in_flight() <= 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Every drop this node serves, by item id.
#[derive(Debug, Default)]
pub struct DropRegistry {
    slots: RwLock<HashMap<i64, Arc<DropSlot>>>,
}

impl DropRegistry {
    /// The slot of `item_id`, if this node serves that drop.
    pub fn get(&self, item_id: i64) -> Option<Arc<DropSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&item_id)
            .cloned()
    }

    /// The slot of `item_id`, created when absent; `true` when it was created now.
    pub fn get_or_create(&self, item_id: i64) -> (Arc<DropSlot>, bool) {
        let mut slots = self
            .slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slots.get(&item_id) {
            Some(slot) => (slot.clone(), false),
            None => {
                let slot = Arc::new(DropSlot::new(item_id));
                slots.insert(item_id, slot.clone());
                (slot, true)
            }
        }
    }

    /// Every slot, ordered by item id.
    pub fn all(&self) -> Vec<Arc<DropSlot>> {
        let mut slots: Vec<_> = self
            .slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        slots.sort_by_key(|slot| slot.item_id);
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn slot_open_for_an_hour(now: DateTime<Utc>, available: i64) -> DropSlot {
        let slot = DropSlot::new(1);
        slot.set_window(&DropSpec {
            opens_at: now - Duration::minutes(1),
            closes_at: now + Duration::hours(1),
            per_user_limit: 1,
            total_units: 10,
        });
        slot.available.store(available, Ordering::Relaxed);
        slot
    }

    #[test]
    fn nothing_is_refused_before_an_actor_has_mirrored_its_counts() {
        let now = Utc::now();
        let slot = slot_open_for_an_hour(now, 0);
        assert_eq!(slot.refusal(now), None);
        slot.mark_mirrored();
        assert_eq!(slot.refusal(now), Some(DropError::SoldOut));
        assert_eq!(slot.num_refused_in_slot.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_window_and_an_empty_stock_are_refused_and_the_rest_goes_to_the_actor() {
        let now = Utc::now();
        let slot = slot_open_for_an_hour(now, 3);
        slot.mark_mirrored();
        assert_eq!(slot.refusal(now), None);
        assert!(matches!(
            slot.refusal(now - Duration::minutes(2)),
            Some(DropError::NotOpen { .. })
        ));
        assert_eq!(
            slot.refusal(now + Duration::hours(2)),
            Some(DropError::Closed)
        );
    }
}
