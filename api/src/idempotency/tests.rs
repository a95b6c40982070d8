use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use hurry_engine::writer::InDoubt;

use super::*;

fn key(text: &str) -> Option<IdempotencyKey> {
    IdempotencyKey::new(text)
}

fn order(id: i64) -> OrderRecord {
    OrderRecord {
        id,
        user_id: 7,
        status: "pending_payment".into(),
        amount: 1_000,
        payment_due_at: None,
        created_at: Utc::now(),
        lines: Vec::new(),
    }
}

async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("unit.db").display());
    let options = hurry_persistence::ConnectOptions::new(url, 1);
    let store = hurry_persistence::connect(&options).await.unwrap();
    (dir, store)
}

fn coalescer() -> Coalescer {
    Coalescer::new(100, Duration::from_secs(5), Some(Vec::<i64>::new()))
}

#[test]
fn a_request_finishing_between_the_two_looks_is_never_fresh() {
    let coalescer = coalescer();
    let running_key = (7, "k".to_owned());
    let (_sender, progress) = watch::channel(Progress::Running);
    coalescer.running.insert(
        running_key.clone(),
        Running {
            request_hash: "h".into(),
            progress,
        },
    );
    let users = coalescer.keyed_users.clone().unwrap();
    // The first request ends right between the two looks, as its leader ends it: the user
    // enters the index, then the request leaves the map.
    let fresh = coalescer.is_fresh_with(7, &key("k").unwrap(), || {
        users.insert(7);
        coalescer.running.remove(&running_key);
    });
    assert!(
        !fresh,
        "a retry racing the first answer must not be refused from memory"
    );
    assert!(
        !coalescer.is_fresh(7, &key("k").unwrap()),
        "indexed afterwards"
    );
    assert!(
        coalescer.is_fresh(8, &key("k").unwrap()),
        "another user is fresh"
    );
}

#[tokio::test]
async fn a_repeat_of_a_recent_answer_is_served_without_running_again() {
    let (_dir, store) = store().await;
    let coalescer = coalescer();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let runs = runs.clone();
        let answer = coalescer
            .run(&store, 7, key("k"), "buy 1", move |entry| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                assert_eq!(entry.unwrap().key, "k");
                Ok(order(41))
            })
            .await;
        assert_eq!(answer.unwrap().id, 41);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the cache answered the repeats"
    );
    let other = coalescer
        .run(&store, 7, key("k"), "buy 2", |_| async { Ok(order(42)) })
        .await;
    assert_eq!(other.unwrap_err().code(), ErrorCode::IdempotencyMismatch);
}

#[tokio::test]
async fn a_panicking_leader_answers_outcome_unknown_and_frees_the_key() {
    let (_dir, store) = store().await;
    let coalescer = coalescer();
    let first = coalescer
        .run(&store, 7, key("k"), "buy 1", |_| async {
            panic!("the leader fails");
        })
        .await;
    assert_eq!(first.unwrap_err().code(), ErrorCode::OutcomeUnknown);
    // The key is not stuck on that answer: the next request runs.
    let again = coalescer
        .run(&store, 7, key("k"), "buy 1", |_| async { Ok(order(43)) })
        .await;
    assert_eq!(again.unwrap().id, 43);
}

#[tokio::test]
async fn a_retry_of_a_request_in_doubt_joins_it_and_learns_its_outcome() {
    let (_dir, store) = store().await;
    let coalescer = Arc::new(coalescer());
    let (resolver, doubt) = InDoubt::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let first = coalescer
        .run(&store, 7, key("k"), "buy 1", move |_| async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(Failure::InDoubt(doubt))
        })
        .await;
    assert_eq!(first.unwrap_err().code(), ErrorCode::OutcomeUnknown);

    let retry = {
        let (coalescer, store) = (coalescer.clone(), store.clone());
        tokio::spawn(async move {
            coalescer
                .run(&store, 7, key("k"), "buy 1", |_| async {
                    panic!("a retry in doubt must not buy again")
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    resolver.resolve(Settled::Committed(order(44)));
    assert_eq!(retry.await.unwrap().unwrap().id, 44);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Settled and cached: later repeats replay it.
    let later = coalescer
        .run(&store, 7, key("k"), "buy 1", |_| async { Ok(order(45)) })
        .await;
    assert_eq!(later.unwrap().id, 44);
}

#[test]
fn recent_answers_keep_the_newest_and_tell_keys_of_a_slot_apart() {
    let recent = RecentAnswers::new(2);
    let answered = |key: &str, id| Answered {
        key: key.to_owned(),
        request_hash: "h".into(),
        order: order(id),
    };
    recent.insert(7, answered("a", 1));
    recent.insert(7, answered("b", 2));
    recent.insert(8, answered("a", 3));
    assert!(recent.get(7, "a").is_none(), "the oldest went");
    assert_eq!(recent.get(7, "b").map(|hit| hit.order.id), Some(2));
    assert_eq!(recent.get(8, "a").map(|hit| hit.order.id), Some(3));
    assert!(recent.get(7, "c").is_none());
    let none = RecentAnswers::new(0);
    none.insert(7, answered("a", 1));
    assert!(none.get(7, "a").is_none(), "a capacity of 0 keeps nothing");
}
