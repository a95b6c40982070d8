//! What a shopper learns of a commit in doubt, and later.

use hurry_persistence::OrderRecord;
use tokio::sync::watch;

/// What finally became of a draft whose commit was in doubt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The order is stored.
    Committed(OrderRecord),
    /// Nothing was stored; the units are back on sale.
    NotCommitted,
    /// Its idempotency key had been stored before: the first answer is in the store.
    Repeat,
}

/// A commit whose outcome the store could not tell yet: its units stay held, and this learns
/// the outcome once the store can (the writer keeps asking).
#[derive(Debug, Clone)]
pub struct InDoubt(watch::Receiver<Option<Settled>>);

/// The writer's side of an [`InDoubt`].
#[derive(Debug)]
pub struct Resolver(watch::Sender<Option<Settled>>);

impl InDoubt {
    /// A new doubt and the resolver that ends it.
    pub fn new() -> (Resolver, InDoubt) {
        let (sender, receiver) = watch::channel(None);
        (Resolver(sender), InDoubt(receiver))
    }

    /// A doubt nobody will resolve: the answer was lost with a task that panicked.
    pub fn lost() -> InDoubt {
        InDoubt::new().1
    }

    /// The outcome, once known; `None` when the engine stopped before the store could tell.
    pub async fn settled(mut self) -> Option<Settled> {
        let known = self.0.wait_for(Option::is_some).await.ok()?;
        known.clone()
    }
}

impl Resolver {
    /// Tells every waiter the outcome.
    pub fn resolve(self, settled: Settled) {
        self.0.send_replace(Some(settled));
    }
}
