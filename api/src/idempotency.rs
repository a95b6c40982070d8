//! `Idempotency-Key` handling.
//!
//! A keyed request is resolved where its order is written: the key row goes into the order's
//! transaction, and a key stored before makes the store leave that order out (a repeat), so a
//! fresh key costs no store read. Around that:
//! - requests with the same user and key that arrive while the first runs wait for its answer
//!   (coalesced in memory: 50 simultaneous retries are one purchase). The first runs in its
//!   caller's task and moves to a task of its own if the caller stops waiting, so a client that
//!   gives up does not cancel it;
//! - a bounded cache of this node's recent keyed answers serves repeats without the store;
//! - the store is read only for a repeat the cache no longer holds: when the write says the key
//!   was stored before, or when a request of a user who may have stored keys is refused (the
//!   refusal may be the repeat of an earlier success, which must be answered again);
//! - a request whose commit is in doubt answers `503 outcome_unknown`; its entry stays, so a
//!   retry joins it (and learns the outcome once the store tells) instead of buying again.
//!
//! A key reused with a different request is refused with 422 `idempotency_mismatch`. Refusals
//! (409s) are not stored: a later repeat is decided again.
//!
//! The memory index (`idempotency.memory_index`) knows every user that may have a stored key:
//! the ones the store listed at start, and every user whose keyed request this node ran to
//! anything but a refusal. A user enters it before their request leaves the in-flight map, so
//! a repeat either joins the running request or finds the user indexed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, DashSet};
use futures::FutureExt as _;
use hurry_engine::domain::IdempotencyKey;
use hurry_engine::writer::{InDoubt, Settled};
use hurry_engine::PurchaseError;
use hurry_persistence::{IdempotencyEntry, OrderRecord, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::{ApiError, ErrorCode};

type Outcome = Result<OrderRecord, ApiError>;

/// How keyed work can end besides an order.
#[derive(Debug)]
pub enum Failure {
    /// An answer to give as it is.
    Answer(ApiError),
    /// The key was stored before: the first answer is in the store.
    Repeat,
    /// The commit's outcome cannot be told yet.
    InDoubt(InDoubt),
}

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        Failure::Answer(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Answer(err.into())
    }
}

impl From<PurchaseError> for Failure {
    fn from(err: PurchaseError) -> Self {
        match err {
            PurchaseError::Repeat => Failure::Repeat,
            PurchaseError::OutcomeUnknown(doubt) => Failure::InDoubt(doubt),
            other => Failure::Answer(other.into()),
        }
    }
}

/// A request's progress as its joiners see it.
#[derive(Debug, Clone)]
enum Progress {
    Running,
    /// Answered `outcome_unknown`; the outcome follows once the store tells.
    InDoubt,
    Done(Outcome),
}

struct Running {
    request_hash: String,
    progress: watch::Receiver<Progress>,
}

/// A keyed answer of this node, to repeat.
struct Answered {
    key: String,
    request_hash: String,
    order: OrderRecord,
}

/// The recent keyed answers of this node, at most `capacity` (the oldest goes first). Entries
/// are found by user and a hash of the key, and the key itself is checked.
struct RecentAnswers {
    answers: DashMap<(i64, u64), Arc<Answered>>,
    oldest_first: std::sync::Mutex<std::collections::VecDeque<(i64, u64)>>,
    capacity: usize,
}

impl RecentAnswers {
    fn new(capacity: u64) -> Self {
        Self {
            answers: DashMap::new(),
            oldest_first: std::sync::Mutex::default(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
        }
    }

    /// Where `user_id`'s `key` goes. Another key of the same user may land in the same slot
    /// (it takes the slot over; a lookup checks the key): only that user's cache hits suffer.
    fn slot(user_id: i64, key: &str) -> (i64, u64) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        (user_id, hasher.finish())
    }

    fn get(&self, user_id: i64, key: &str) -> Option<Arc<Answered>> {
        let answered = self.answers.get(&Self::slot(user_id, key))?.clone();
        (answered.key == key).then_some(answered)
    }

    fn insert(&self, user_id: i64, answered: Answered) {
        if self.capacity == 0 {
            return;
        }
        let slot = Self::slot(user_id, &answered.key);
        if self.answers.insert(slot, Arc::new(answered)).is_some() {
            return;
        }
        let mut oldest_first = self
            .oldest_first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        oldest_first.push_back(slot);
        while oldest_first.len() > self.capacity {
            if let Some(oldest) = oldest_first.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }
}

/// Requests in flight by `(user id, key)`, recent answers, and the users that may have a
/// stored key.
pub struct Coalescer {
    running: Arc<DashMap<(i64, String), Running>>,
    recent: Arc<RecentAnswers>,
    /// `None`: every keyed request may have a stored answer.
    keyed_users: Option<Arc<DashSet<i64>>>,
    /// How long a repeat of a request in doubt waits for its outcome.
    doubt_wait: Duration,
}

/// The hash that tells two requests under one key apart.
pub fn request_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn mismatch() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyMismatch,
        "this idempotency key was used with a different request",
    )
}

fn outcome_unknown() -> ApiError {
    ApiError::new(
        ErrorCode::OutcomeUnknown,
        "the order's commit cannot be told yet: retry with the same Idempotency-Key",
    )
}

impl Coalescer {
    /// A coalescer remembering up to `recent_answers` answers, whose repeats of a request in
    /// doubt wait up to `doubt_wait`. With `keyed_users` (every user with a stored key, as the
    /// store listed them) it knows whose refusals need no store lookup.
    pub fn new(
        recent_answers: u64,
        doubt_wait: Duration,
        keyed_users: Option<impl IntoIterator<Item = i64>>,
    ) -> Self {
        Self {
            running: Arc::default(),
            recent: Arc::new(RecentAnswers::new(recent_answers)),
            keyed_users: keyed_users.map(|users| Arc::new(users.into_iter().collect())),
            doubt_wait,
        }
    }

    /// Whether a request under `key` would be decided afresh: it is not in flight and the key
    /// cannot be stored (the user is not in the index). Such a request may be refused at once:
    /// no earlier answer exists that it would have to repeat.
    pub fn is_fresh(&self, user_id: i64, key: &IdempotencyKey) -> bool {
        self.is_fresh_with(user_id, key, || {})
    }

    /// [`Coalescer::is_fresh`], running `between` between its two looks. The in-flight map
    /// comes first: a request leaves it only after its user entered the index, so a request
    /// finishing meanwhile is seen by one look or the other.
    fn is_fresh_with(&self, user_id: i64, key: &IdempotencyKey, between: impl FnOnce()) -> bool {
        if self
            .running
            .contains_key(&(user_id, key.as_str().to_owned()))
        {
            return false;
        }
        between();
        !may_have_stored_keys(self.keyed_users.as_deref(), user_id)
    }

    /// Runs `work` at most once per `(user_id, key)` at a time; `work` gets the entry to store
    /// with the order. Without a key it simply runs.
    pub async fn run<F, Fut>(
        &self,
        store: &Arc<dyn Store>,
        user_id: i64,
        key: Option<IdempotencyKey>,
        canonical_request: &str,
        work: F,
    ) -> Outcome
    where
        F: FnOnce(Option<IdempotencyEntry>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<OrderRecord, Failure>> + Send + 'static,
    {
        let Some(key) = key else {
            return work(None).await.map_err(|failure| match failure {
                Failure::Answer(err) => err,
                Failure::InDoubt(_) => outcome_unknown(),
                // Without a key nothing can repeat.
                Failure::Repeat => ApiError::new(ErrorCode::Unavailable, "the request failed"),
            });
        };
        let request_hash = request_hash(canonical_request);
        let map_key = (user_id, key.as_str().to_owned());
        let (progress, joined) = match self.running.entry(map_key.clone()) {
            Entry::Occupied(running) => {
                if running.get().request_hash != request_hash {
                    return Err(mismatch());
                }
                (running.get().progress.clone(), true)
            }
            Entry::Vacant(vacant) => {
                if let Some(answered) = self.recent.get(user_id, &map_key.1) {
                    return replay(&answered, &request_hash);
                }
                let (sender, progress) = watch::channel(Progress::Running);
                vacant.insert(Running {
                    request_hash: request_hash.clone(),
                    progress: progress.clone(),
                });
                let leader = Leader {
                    store: store.clone(),
                    running: self.running.clone(),
                    recent: self.recent.clone(),
                    keyed_users: self.keyed_users.clone(),
                    map_key,
                    request_hash,
                };
                let lead = std::panic::AssertUnwindSafe(leader.lead(sender, work))
                    .catch_unwind()
                    .map(drop);
                return lead_here(Box::pin(lead), progress).await;
            }
        };
        wait(progress, joined, self.doubt_wait).await
    }
}

/// A first request's work, boxed so that it can move to a task of its own midway.
type Lead = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the first request's work in the caller's task (no task to spawn, no hand-over of the
/// answer). Should the caller stop waiting (its client went away) or the outcome be in doubt
/// (it answers `outcome_unknown` now), the rest of the work goes on on a task of its own, so
/// that the key's repeats still get its outcome and nothing is cancelled midway. A panic of the
/// work is caught: it answers `outcome_unknown`.
async fn lead_here(lead: Lead, mut progress: watch::Receiver<Progress>) -> Outcome {
    let mut lead = Detach(Some(lead));
    tokio::select! {
        biased;
        () = lead.run() => {}
        _ = progress.wait_for(|state| !matches!(state, Progress::Running)) => {}
    }
    drop(lead);
    let state = progress.borrow();
    match &*state {
        Progress::Done(outcome) => outcome.clone(),
        _ => Err(outcome_unknown()),
    }
}

/// Work that, dropped before it finished, finishes on a task of its own.
struct Detach(Option<Lead>);

impl Detach {
    async fn run(&mut self) {
        if let Some(lead) = self.0.as_mut() {
            lead.as_mut().await;
            self.0 = None;
        }
    }
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(lead) = self.0.take() {
            tokio::spawn(lead);
        }
    }
}

/// The answer of a joiner or the first request: the first settled answer; a joiner arriving
/// while the request is in doubt waits up to `doubt_wait` for its outcome.
async fn wait(
    mut progress: watch::Receiver<Progress>,
    joined: bool,
    doubt_wait: Duration,
) -> Outcome {
    let already_in_doubt = joined && matches!(*progress.borrow(), Progress::InDoubt);
    if already_in_doubt {
        let done = tokio::time::timeout(
            doubt_wait,
            progress.wait_for(|state| matches!(state, Progress::Done(_))),
        )
        .await;
        return match done {
            Ok(Ok(state)) => match &*state {
                Progress::Done(outcome) => outcome.clone(),
                _ => Err(outcome_unknown()),
            },
            _ => Err(outcome_unknown()),
        };
    }
    match progress
        .wait_for(|state| !matches!(state, Progress::Running))
        .await
    {
        Ok(state) => match &*state {
            Progress::Done(outcome) => outcome.clone(),
            _ => Err(outcome_unknown()),
        },
        // The leading task ended without an answer: it panicked, maybe after its order went
        // to the store.
        Err(_) => Err(outcome_unknown()),
    }
}

/// The first request of a key.
struct Leader {
    store: Arc<dyn Store>,
    running: Arc<DashMap<(i64, String), Running>>,
    recent: Arc<RecentAnswers>,
    keyed_users: Option<Arc<DashSet<i64>>>,
    map_key: (i64, String),
    request_hash: String,
}

impl Leader {
    async fn lead<F, Fut>(self, sender: watch::Sender<Progress>, work: F)
    where
        F: FnOnce(Option<IdempotencyEntry>) -> Fut,
        Fut: Future<Output = Result<OrderRecord, Failure>>,
    {
        // Leaves the in-flight map however this ends, a panic included.
        let _leave = Leave(self.running.clone(), self.map_key.clone());
        let entry = IdempotencyEntry {
            key: self.map_key.1.clone(),
            request_hash: self.request_hash.clone(),
        };
        let may_have_stored = may_have_stored_keys(self.keyed_users.as_deref(), self.map_key.0);
        let (outcome, wrote) = match work(Some(entry)).await {
            Ok(order) => (Ok(order), true),
            Err(Failure::InDoubt(doubt)) => {
                sender.send_replace(Progress::InDoubt);
                (self.settled(doubt).await, true)
            }
            Err(Failure::Repeat) => (self.stored_or_unavailable().await, true),
            Err(Failure::Answer(err)) if err.status().is_client_error() && may_have_stored => {
                (self.stored_or(err).await, false)
            }
            Err(Failure::Answer(err)) => {
                let wrote = !err.status().is_client_error();
                (Err(err), wrote)
            }
        };
        // Before leaving the map: a repeat then finds the answer or the indexed user.
        if let Ok(order) = &outcome {
            self.recent.insert(
                self.map_key.0,
                Answered {
                    key: self.map_key.1.clone(),
                    request_hash: self.request_hash.clone(),
                    order: order.clone(),
                },
            );
        }
        if let Some(users) = &self.keyed_users {
            if wrote {
                users.insert(self.map_key.0);
            }
        }
        sender.send_replace(Progress::Done(outcome));
    }

    /// The outcome of a commit in doubt, once the store tells.
    async fn settled(&self, doubt: InDoubt) -> Outcome {
        match doubt.settled().await {
            Some(Settled::Committed(order)) => Ok(order),
            Some(Settled::NotCommitted) => Err(ApiError::new(
                ErrorCode::Unavailable,
                "the order could not be stored; nothing was bought",
            )),
            Some(Settled::Repeat) => self.stored_or_unavailable().await,
            None => Err(outcome_unknown()),
        }
    }

    /// The key's stored answer; `unavailable` when the store has none (nothing was bought).
    async fn stored_or_unavailable(&self) -> Outcome {
        let none = ApiError::new(ErrorCode::Unavailable, "the request failed; retry");
        self.stored_or(none).await
    }

    /// The key's stored answer, or `otherwise` when it has none.
    async fn stored_or(&self, otherwise: ApiError) -> Outcome {
        let (user_id, key) = (&self.map_key.0, &self.map_key.1);
        let Some(stored) = self.store.idempotency_record(*user_id, key).await? else {
            return Err(otherwise);
        };
        if stored.request_hash != self.request_hash {
            return Err(mismatch());
        }
        let order_id = stored
            .order_id
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "stored answer has no order"))?;
        self.store
            .order_by_id(order_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "stored order is missing"))
    }
}

/// Removes a request from the in-flight map when dropped.
struct Leave(Arc<DashMap<(i64, String), Running>>, (i64, String));

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

/// A recent answer repeated, or a mismatch.
fn replay(answered: &Answered, request_hash: &str) -> Outcome {
    if answered.request_hash == request_hash {
        Ok(answered.order.clone())
    } else {
        Err(mismatch())
    }
}

/// Whether `user_id` may have a stored key: always, without the index.
fn may_have_stored_keys(keyed_users: Option<&DashSet<i64>>, user_id: i64) -> bool {
    keyed_users.is_none_or(|users| users.contains(&user_id))
}

#[cfg(test)]
mod tests;
