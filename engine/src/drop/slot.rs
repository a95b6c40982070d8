//! What the API, the writer and an item actor share about one drop, and the registry of them.
//!
//! The API reads stock and counters from atomics here instead of asking the actor, and finds the
//! current actor (which changes when the supervisor restarts it). The writer counts drafts in
//! flight here, so that a restarted actor rebuilds its counts only once they have settled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use ractor::ActorRef;
use tokio::sync::Notify;

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
        }
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
