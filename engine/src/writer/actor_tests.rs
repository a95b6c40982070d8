//! The writer as an actor, over a real SQLite store that fails, stalls or answers in doubt on
//! command ([`FaultyStore`]): the flush rules, the answers of a refused and of a doubtful
//! commit, and the rule that a draft without time for its commit never reaches the store.

use std::sync::Arc;
use std::time::Duration;

use hurry_persistence::{OrderLine, OrderRecord};
use ractor::{Actor, ActorRef};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    Answer, CommitFaults, Draft, DraftOrder, HeldUnits, IdAllocator, Reply, Settled, Settlement,
    Ticket, WriteError, WriterActor, WriterArgs, WriterConfig, WriterMessage,
};
use crate::domain::{OrderStatus, Quantity};
use crate::testing::{CommitMode, FaultyStore, Recorder, SettleMode, TestShop};

/// Longest a test waits for an answer the writer owes it.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// A writer over a faulty store around a fresh SQLite store, with buyers and a recorder.
struct Harness {
    shop: TestShop,
    store: Arc<FaultyStore>,
    writer: ActorRef<WriterMessage>,
    holder: Arc<Recorder>,
    buyers: Vec<i64>,
}

/// Settings that never flush by time unless a test says so, with room for slow machines.
fn config() -> WriterConfig {
    WriterConfig {
        max_batch: 100,
        window: Duration::from_millis(50),
        max_concurrent_commits: 1,
        write_deadline: Duration::from_secs(2),
        settle_timeout: Duration::from_secs(2),
    }
}

impl Harness {
    async fn start(config: WriterConfig, num_buyers: usize) -> Self {
        let shop = TestShop::open(100, 10).await;
        let buyers = shop.buyers(num_buyers).await;
        let store = FaultyStore::new(shop.store.clone());
        let args = WriterArgs {
            store: store.clone(),
            ids: Arc::new(IdAllocator::new(shop.store.clone(), 64)),
            config,
            faults: Arc::new(CommitFaults::default()),
        };
        let (writer, _) = Actor::spawn(None, WriterActor, args)
            .await
            .expect("the writer starts");
        Self {
            shop,
            store,
            writer,
            holder: Arc::new(Recorder::default()),
            buyers,
        }
    }

    /// Hands the writer a one-unit draft of `user_id` whose caller waits until `deadline`.
    fn write(&self, user_id: i64, deadline: Instant) -> Pending {
        let (sender, answer) = oneshot::channel();
        let ticket = Arc::new(Ticket::default());
        let now = hurry_persistence::now_micros();
        let price = self.shop.item.price;
        let quantity = Quantity::new(1).expect("one unit");
        let draft = Draft {
            order: DraftOrder {
                user_id,
                status: OrderStatus::PendingPayment,
                amount: price,
                payment_due_at: Some(now + chrono::Duration::minutes(10)),
                created_at: now,
                lines: vec![OrderLine {
                    item_id: self.shop.item.id,
                    quantity: 1,
                    unit_price: price,
                    amount: price,
                }],
                idempotency: None,
            },
            settlement: Settlement::new(self.holder.clone(), HeldUnits { user_id, quantity }),
            ticket: ticket.clone(),
            deadline,
            reply: Reply::new(move |answer| {
                let _ = sender.send(answer);
            }),
        };
        self.writer
            .cast(WriterMessage::Write(draft))
            .expect("the writer runs");
        Pending { answer, ticket }
    }

    /// Drafts of every buyer, waiting long.
    fn write_all(&self) -> Vec<Pending> {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.buyers
            .iter()
            .map(|&user_id| self.write(user_id, deadline))
            .collect()
    }

    /// Every buyer with `committed`, as the recorder orders outcomes.
    fn every_buyer(&self, committed: bool) -> Vec<(i64, bool)> {
        let mut all: Vec<_> = self.buyers.iter().map(|&id| (id, committed)).collect();
        all.sort_unstable();
        all
    }

    /// The ids of every batch the writer sent, in one list.
    fn ids_sent(&self) -> Vec<i64> {
        self.store.batches().into_iter().flatten().collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.writer.stop(None);
    }
}

/// A draft's caller.
struct Pending {
    answer: oneshot::Receiver<Answer>,
    ticket: Arc<Ticket>,
}

impl Pending {
    async fn answer(self) -> Answer {
        tokio::time::timeout(ANSWER_WAIT, self.answer)
            .await
            .expect("the writer answers in time")
            .expect("the writer answers")
    }
}

async fn answers(pending: Vec<Pending>) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(pending.len());
    for caller in pending {
        answers.push(caller.answer().await);
    }
    answers
}

fn committed(answer: Answer) -> OrderRecord {
    match answer {
        Ok(order) => order,
        Err(err) => panic!("expected a committed order, got {err:?}"),
    }
}

fn is_unavailable(answer: &Answer) -> bool {
    matches!(answer, Err(WriteError::Unavailable))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_committed_at_once_without_waiting_for_the_window() {
    // Arrange: a window far longer than the test may wait.
    let harness = Harness::start(
        WriterConfig {
            max_batch: 4,
            window: Duration::from_secs(3_600),
            ..config()
        },
        4,
    )
    .await;

    // Act
    let answers = answers(harness.write_all()).await;

    // Assert
    let batches = harness.store.batches();
    assert_eq!(
        batches.len(),
        1,
        "one commit for the full batch: {batches:?}"
    );
    assert_eq!(batches[0].len(), 4);
    for answer in answers {
        let order = committed(answer);
        assert!(batches[0].contains(&order.id));
        assert!(harness.shop.has_order(order.id).await);
    }
    assert_eq!(harness.shop.units_sold().await, 4);
    assert_eq!(
        harness.holder.settled().len(),
        1,
        "one settle for the batch"
    );
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_drafts_than_a_batch_are_committed_together_once_the_window_passes() {
    let harness = Harness::start(
        WriterConfig {
            max_batch: 100,
            window: Duration::from_millis(200),
            ..config()
        },
        3,
    )
    .await;

    let answers = answers(harness.write_all()).await;

    let batches = harness.store.batches();
    assert_eq!(batches.len(), 1, "the window gathers them: {batches:?}");
    assert_eq!(batches[0].len(), 3);
    for answer in answers {
        assert!(harness.shop.has_order(committed(answer).id).await);
    }
    assert_eq!(harness.holder.settled().len(), 1);
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_answers_unavailable_and_gives_every_unit_back() {
    let harness = Harness::start(config(), 3).await;
    harness.store.set_commit(CommitMode::Refuse);

    let answers = answers(harness.write_all()).await;

    assert!(answers.iter().all(is_unavailable), "{answers:?}");
    assert_eq!(harness.store.batches().len(), 1);
    for id in harness.ids_sent() {
        assert!(!harness.shop.has_order(id).await, "order {id} was stored");
    }
    assert_eq!(harness.shop.units_sold().await, 0);
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(false));
    assert_eq!(harness.store.num_settles(), 0, "a refusal is not in doubt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_doubt_that_landed_is_answered_committed_once_settled() {
    let harness = Harness::start(config(), 2).await;
    harness.store.set_commit(CommitMode::InDoubtAfterWrite);

    let answers = answers(harness.write_all()).await;

    let sent = harness.ids_sent();
    for answer in answers {
        let order = committed(answer);
        assert!(sent.contains(&order.id));
        assert!(harness.shop.has_order(order.id).await);
    }
    assert_eq!(harness.store.num_settles(), 1, "settled in place at once");
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(true));
    assert!(harness.holder.abandoned().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_doubt_that_did_not_land_answers_unavailable_and_gives_the_units_back() {
    let harness = Harness::start(config(), 2).await;
    harness.store.set_commit(CommitMode::InDoubtBeforeWrite);

    let answers = answers(harness.write_all()).await;

    assert!(answers.iter().all(is_unavailable), "{answers:?}");
    assert_eq!(harness.store.num_settles(), 1);
    for id in harness.ids_sent() {
        assert!(!harness.shop.has_order(id).await, "order {id} was stored");
    }
    assert_eq!(harness.shop.units_sold().await, 0);
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_slower_than_its_timeout_answers_outcome_unknown_and_holds_the_units_until_known()
{
    // Arrange: the write lands, its answer is lost, and the store is slow to tell.
    let harness = Harness::start(
        WriterConfig {
            settle_timeout: Duration::from_millis(100),
            ..config()
        },
        2,
    )
    .await;
    harness.store.set_commit(CommitMode::InDoubtAfterWrite);
    harness.store.set_settle(SettleMode::Stall);

    // Act
    let answers = answers(harness.write_all()).await;

    // Assert: unknown for now, nothing settled, and the writer goes on asking.
    let doubts: Vec<_> = answers
        .into_iter()
        .map(|answer| match answer {
            Err(WriteError::OutcomeUnknown(doubt)) => doubt,
            other => panic!("expected outcome_unknown, got {other:?}"),
        })
        .collect();
    assert!(harness.holder.settled().is_empty(), "the units stay held");
    assert!(harness.holder.abandoned().is_empty());
    tokio::time::timeout(ANSWER_WAIT, harness.store.until_settles(2))
        .await
        .expect("the writer asks again in the background");

    // Act: the store can tell now.
    harness.store.release_settles();

    // Assert: each doubt ends committed, and the units are sold.
    let sent = harness.ids_sent();
    for doubt in doubts {
        let settled = tokio::time::timeout(ANSWER_WAIT, doubt.settled())
            .await
            .expect("the doubt resolves in time");
        match settled {
            Some(Settled::Committed(order)) => {
                assert!(sent.contains(&order.id));
                assert!(harness.shop.has_order(order.id).await);
            }
            other => panic!("expected committed, got {other:?}"),
        }
    }
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(true));
    assert_eq!(harness.shop.units_sold().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_without_time_left_for_its_commit_never_reaches_the_store() {
    // Arrange: the send budget is 2 s; one caller waits a minute, the other half a second.
    let harness = Harness::start(
        WriterConfig {
            write_deadline: Duration::from_secs(1),
            settle_timeout: Duration::from_secs(1),
            ..config()
        },
        2,
    )
    .await;
    let (patient, hurried) = (harness.buyers[0], harness.buyers[1]);

    // Act
    let now = Instant::now();
    let late = harness.write(hurried, now + Duration::from_millis(500));
    let in_time = harness.write(patient, now + Duration::from_secs(60));

    // Assert
    assert!(is_unavailable(&late.answer().await));
    let order = committed(in_time.answer().await);
    assert_eq!(
        harness.store.batches(),
        vec![vec![order.id]],
        "only the patient one"
    );
    assert_eq!(harness.shop.units_sold().await, 1);
    let mut expected = vec![(patient, true), (hurried, false)];
    expected.sort_unstable();
    assert_eq!(harness.holder.outcomes(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_abandoned_while_the_writer_was_busy_never_reaches_the_store() {
    // Arrange: the one commit slot is taken by a stalled batch.
    let harness = Harness::start(config(), 2).await;
    let (first, second) = (harness.buyers[0], harness.buyers[1]);
    harness.store.set_commit(CommitMode::Stall);
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = harness.write(first, deadline);
    tokio::time::timeout(ANSWER_WAIT, harness.store.until_commits(1))
        .await
        .expect("the first batch reaches the store");
    let waiting = harness.write(second, deadline);

    // Act: the second caller gives up, then the store answers the first batch.
    assert!(waiting.ticket.abandon(), "not sent yet: the slot is busy");
    harness.store.release_commits();

    // Assert
    let order = committed(busy.answer().await);
    assert!(is_unavailable(&waiting.answer().await));
    assert_eq!(harness.store.batches(), vec![vec![order.id]]);
    assert_eq!(harness.shop.units_sold().await, 1);
    let mut expected = vec![(first, true), (second, false)];
    expected.sort_unstable();
    assert_eq!(harness.holder.outcomes(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_the_store_refuses_is_asked_again_until_the_store_can_tell() {
    // Arrange: the write lands, its answer is lost, and the store cannot be reached.
    let harness = Harness::start(config(), 1).await;
    harness.store.set_commit(CommitMode::InDoubtAfterWrite);
    harness.store.set_settle(SettleMode::Refuse);

    // Act
    let answer = harness.write_all().pop().expect("one draft").answer().await;

    // Assert: unknown, and asked again while the store refuses.
    let Err(WriteError::OutcomeUnknown(doubt)) = answer else {
        panic!("expected outcome_unknown, got {answer:?}");
    };
    tokio::time::timeout(ANSWER_WAIT, harness.store.until_settles(3))
        .await
        .expect("the writer keeps asking");
    assert!(harness.holder.settled().is_empty(), "the units stay held");

    // Act: the store answers again.
    harness.store.set_settle(SettleMode::Pass);

    // Assert
    let settled = tokio::time::timeout(ANSWER_WAIT, doubt.settled())
        .await
        .expect("the doubt resolves in time");
    let Some(Settled::Committed(order)) = settled else {
        panic!("expected committed, got {settled:?}");
    };
    assert!(harness.shop.has_order(order.id).await);
    assert_eq!(harness.holder.outcomes(), harness.every_buyer(true));
}
