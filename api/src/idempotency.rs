//! `Idempotency-Key` handling.
//!
//! Requests with the same user and key that arrive while the first is running wait for its
//! answer and get that same answer (coalesced in memory, so 50 simultaneous retries are one
//! purchase). Later repeats find the key in the store, written in the same transaction as the
//! order, and get the same order back. A key reused with a different request is refused with
//! 422 `idempotency_mismatch`. Rejections (409s) are not stored: a later repeat is decided again.
//!
//! The store lookup costs a database round trip, and in a drop nearly every keyed request is
//! a refusal whose key was never stored. With the memory index on (`idempotency.memory_index`)
//! the coalescer knows every user that may have a stored key: the ones the store listed at
//! start, and every user whose keyed request this node ran to anything but a client error.
//! Anyone else's key cannot be stored, so the lookup is skipped. A user enters the index before
//! their request leaves the in-flight map, so a repeat either joins the running request or
//! finds the user indexed and looks the key up.

use std::future::Future;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, DashSet};
use hurry_engine::domain::IdempotencyKey;
use hurry_persistence::{IdempotencyEntry, OrderRecord, Store};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::ApiError;

type Outcome = Result<OrderRecord, ApiError>;

struct Running {
    request_hash: String,
    answer: watch::Receiver<Option<Outcome>>,
}

/// Requests in flight by `(user id, key)`, and the users that may have a stored key.
#[derive(Default)]
pub struct Coalescer {
    running: Arc<DashMap<(i64, String), Running>>,
    /// `None`: every keyed request looks its key up in the store.
    keyed_users: Option<Arc<DashSet<i64>>>,
}

/// The hash that tells two requests under one key apart.
pub fn request_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn mismatch() -> ApiError {
    ApiError::new(
        "idempotency_mismatch",
        "this idempotency key was used with a different request",
    )
}

impl Coalescer {
    /// A coalescer that skips the store lookup for users outside `keyed_users` (every user
    /// with a stored key, as the store listed them).
    pub fn with_memory_index(keyed_users: impl IntoIterator<Item = i64>) -> Self {
        Self {
            running: Arc::default(),
            keyed_users: Some(Arc::new(keyed_users.into_iter().collect())),
        }
    }

    /// Whether a request under `key` would be decided afresh: the key cannot be stored (the
    /// user is not in the index) and is not in flight. Such a request may be refused at once:
    /// no earlier answer exists that it would have to repeat.
    pub fn is_fresh(&self, user_id: i64, key: &IdempotencyKey) -> bool {
        !may_have_stored_keys(self.keyed_users.as_deref(), user_id)
            && !self
                .running
                .contains_key(&(user_id, key.as_str().to_owned()))
    }

    /// Runs `work` at most once per `(user_id, key)` at a time; `work` gets the entry to store
    /// with the order. Without a key it simply runs.
    ///
    /// The first request's work runs on a task of its own, so a client that gives up does not
    /// cancel it: its entry stays until the outcome is known, and a retry arriving meanwhile
    /// waits for that outcome instead of buying a second time.
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
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let Some(key) = key else {
            return work(None).await;
        };
        let request_hash = request_hash(canonical_request);
        let map_key = (user_id, key.as_str().to_owned());
        let mut answer = match self.running.entry(map_key.clone()) {
            Entry::Occupied(running) => {
                if running.get().request_hash != request_hash {
                    return Err(mismatch());
                }
                running.get().answer.clone()
            }
            Entry::Vacant(vacant) => {
                let (sender, answer) = watch::channel(None);
                vacant.insert(Running {
                    request_hash: request_hash.clone(),
                    answer: answer.clone(),
                });
                let store = store.clone();
                let running = self.running.clone();
                let keyed_users = self.keyed_users.clone();
                tokio::spawn(async move {
                    let look_up = may_have_stored_keys(keyed_users.as_deref(), user_id);
                    let outcome = lead(&store, user_id, &key, &request_hash, look_up, work).await;
                    if let Some(users) = &keyed_users {
                        if may_have_stored(&outcome) {
                            users.insert(user_id);
                        }
                    }
                    let _ = sender.send(Some(outcome));
                    running.remove(&map_key);
                });
                answer
            }
        };
        let outcome = match answer.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The leading task ended without an answer: it panicked.
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| Err(ApiError::new("unavailable", "the request failed; retry")))
    }
}

/// Whether `user_id` may have a stored key: always, without the index.
fn may_have_stored_keys(keyed_users: Option<&DashSet<i64>>, user_id: i64) -> bool {
    keyed_users.is_none_or(|users| users.contains(&user_id))
}

/// Whether a request that ended in `outcome` may have stored its key: anything but a client
/// error (a refusal stores nothing; a failure may have committed before it failed).
fn may_have_stored(outcome: &Outcome) -> bool {
    match outcome {
        Ok(_) => true,
        Err(err) => !err.status().is_client_error(),
    }
}

/// Answers a stored key from the store (when `look_up`), or runs `work` under the entry.
async fn lead<F, Fut>(
    store: &Arc<dyn Store>,
    user_id: i64,
    key: &IdempotencyKey,
    request_hash: &str,
    look_up: bool,
    work: F,
) -> Outcome
where
    F: FnOnce(Option<IdempotencyEntry>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let stored = if look_up {
        store.idempotency_record(user_id, key.as_str()).await?
    } else {
        None
    };
    if let Some(stored) = stored {
        if stored.request_hash != request_hash {
            return Err(mismatch());
        }
        let order_id = stored
            .order_id
            .ok_or_else(|| ApiError::new("unavailable", "stored answer has no order"))?;
        return store
            .order_by_id(order_id)
            .await?
            .ok_or_else(|| ApiError::new("unavailable", "stored order is missing"));
    }
    work(Some(IdempotencyEntry {
        key: key.as_str().to_owned(),
        request_hash: request_hash.to_owned(),
    }))
    .await
}
