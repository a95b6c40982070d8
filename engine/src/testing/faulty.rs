//! [`FaultyStore`]: the writer's store (an [`OrderStore`]) around a real one, failing,
//! stalling or answering in doubt on command.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hurry_persistence::{
    DropOrderRow, IdempotencyRecord, NewGeneralOrder, NewOrder, OrderRecord, OrderStore, Page,
    Placement, Store, StoreError,
};
use tokio::sync::watch;

/// What the next batch writes meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Written by the real store.
    Pass,
    /// The database answers with an error: nothing is written.
    Refuse,
    /// Waits until [`FaultyStore::release_commits`], then written.
    Stall,
    /// Written, then the answer is lost (`InDoubt`).
    InDoubtAfterWrite,
    /// Lost before it reached the database (`InDoubt`, nothing written).
    InDoubtBeforeWrite,
}

/// What the next settle calls meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleMode {
    /// Answered by the real store.
    Pass,
    /// The store cannot be reached (the writer asks again).
    Refuse,
    /// Waits until [`FaultyStore::release_settles`], then answered.
    Stall,
}

/// An order store that does what it is told, around a real store. Commits and settles are
/// counted so that tests see how the writer used it.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    modes: Mutex<(CommitMode, SettleMode)>,
    /// The ids of every batch the writer sent, in order (also the refused ones).
    batches: Mutex<Vec<Vec<i64>>>,
    /// Counts calls: `(commits, settles)`, for tests to wait on.
    calls: watch::Sender<(usize, usize)>,
    commit_gate: watch::Sender<bool>,
    settle_gate: watch::Sender<bool>,
}

impl FaultyStore {
    /// A store passing every call to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            modes: Mutex::new((CommitMode::Pass, SettleMode::Pass)),
            batches: Mutex::new(Vec::new()),
            calls: watch::channel((0, 0)).0,
            commit_gate: watch::channel(false).0,
            settle_gate: watch::channel(false).0,
        })
    }

    /// Batch writes from now on meet `mode`.
    pub fn set_commit(&self, mode: CommitMode) {
        self.lock_modes().0 = mode;
    }

    /// Settle calls from now on meet `mode`.
    pub fn set_settle(&self, mode: SettleMode) {
        self.lock_modes().1 = mode;
    }

    /// Lets stalled batch writes (and later ones) go on.
    pub fn release_commits(&self) {
        self.commit_gate.send_replace(true);
    }

    /// Lets stalled settle calls (and later ones) go on.
    pub fn release_settles(&self) {
        self.settle_gate.send_replace(true);
    }

    /// The ids of each batch the writer sent so far.
    pub fn batches(&self) -> Vec<Vec<i64>> {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Settle calls so far.
    pub fn num_settles(&self) -> usize {
        self.calls.borrow().1
    }

    /// Waits until the writer has sent `count` batches.
    pub async fn until_commits(&self, count: usize) {
        let mut calls = self.calls.subscribe();
        calls
            .wait_for(|&(commits, _)| commits >= count)
            .await
            .expect("the store lives");
    }

    /// Waits until the writer has asked to settle `count` times.
    pub async fn until_settles(&self, count: usize) {
        let mut calls = self.calls.subscribe();
        calls
            .wait_for(|&(_, settles)| settles >= count)
            .await
            .expect("the store lives");
    }

    fn lock_modes(&self) -> std::sync::MutexGuard<'_, (CommitMode, SettleMode)> {
        self.modes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a store answers when the database refuses.
fn refused() -> StoreError {
    StoreError::Database(sqlx::Error::PoolTimedOut)
}

async fn pass(gate: &watch::Sender<bool>) {
    let mut open = gate.subscribe();
    open.wait_for(|&open| open).await.expect("the store lives");
}

#[async_trait]
impl OrderStore for FaultyStore {
    async fn commit_orders(&self, orders: &[NewOrder]) -> Result<Vec<i64>, StoreError> {
        let mode = self.lock_modes().0;
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(orders.iter().map(|order| order.id).collect());
        self.calls.send_modify(|calls| calls.0 += 1);
        match mode {
            CommitMode::Pass => self.inner.commit_orders(orders).await,
            CommitMode::Refuse => Err(refused()),
            CommitMode::Stall => {
                pass(&self.commit_gate).await;
                self.inner.commit_orders(orders).await
            }
            CommitMode::InDoubtAfterWrite => {
                self.inner.commit_orders(orders).await?;
                Err(StoreError::InDoubt("the answer was lost".into()))
            }
            CommitMode::InDoubtBeforeWrite => {
                Err(StoreError::InDoubt("the connection broke".into()))
            }
        }
    }

    async fn settle_orders(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mode = self.lock_modes().1;
        self.calls.send_modify(|calls| calls.1 += 1);
        match mode {
            SettleMode::Pass => self.inner.settle_orders(ids).await,
            SettleMode::Refuse => Err(refused()),
            SettleMode::Stall => {
                pass(&self.settle_gate).await;
                self.inner.settle_orders(ids).await
            }
        }
    }

    async fn order_by_id(&self, id: i64) -> Result<Option<OrderRecord>, StoreError> {
        self.inner.order_by_id(id).await
    }

    async fn list_orders(
        &self,
        user_id: i64,
        page: u32,
        size: u32,
    ) -> Result<Page<OrderRecord>, StoreError> {
        self.inner.list_orders(user_id, page, size).await
    }

    async fn transition_order(
        &self,
        order_id: i64,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        self.inner.transition_order(order_id, from, to).await
    }

    async fn place_order(&self, order: &NewGeneralOrder) -> Result<Placement, StoreError> {
        self.inner.place_order(order).await
    }

    async fn orders_in_status(
        &self,
        user_id: i64,
        status: &str,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        self.inner.orders_in_status(user_id, status).await
    }

    async fn idempotency_record(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency_record(user_id, key).await
    }

    async fn users_with_idempotency_keys(&self) -> Result<Vec<i64>, StoreError> {
        self.inner.users_with_idempotency_keys().await
    }

    async fn drop_orders(&self, item_id: i64) -> Result<Vec<DropOrderRow>, StoreError> {
        self.inner.drop_orders(item_id).await
    }
}
