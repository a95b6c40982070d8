//! The item actor and its supervisor as actors, with the real writer over a real SQLite store
//! that stalls or answers in doubt on command ([`FaultyStore`]): a restarted actor recounts
//! from the store only once none of its predecessor's drafts is in flight.

use std::sync::Arc;
use std::time::Duration;

use hurry_persistence::OrderRecord;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    DropError, DropRegistry, DropSlot, DropSupervisor, ItemArgs, ItemMessage, ItemStatus,
    LocalLease, SupervisorMessage,
};
use crate::domain::Quantity;
use crate::seller::{PurchaseError, PurchaseRequest};
use crate::testing::{CommitMode, FaultyStore, SettleMode, TestShop};
use crate::writer::{
    CommitFaults, IdAllocator, Settled, Ticket, WriterActor, WriterArgs, WriterConfig,
    WriterHandle, WriterMessage,
};

/// Longest a test waits for something the actors owe it.
const WAIT: Duration = Duration::from_secs(10);

/// A drop served by a supervised item actor, whose drafts go to a writer over a faulty store.
struct Harness {
    shop: TestShop,
    store: Arc<FaultyStore>,
    slot: Arc<DropSlot>,
    supervisor: ActorRef<SupervisorMessage>,
    writer: ActorRef<WriterMessage>,
}

impl Harness {
    /// A drop of `total_units`, one per buyer.
    async fn start(total_units: i64, settle_timeout: Duration) -> Self {
        let shop = TestShop::open(total_units, 1).await;
        let store = FaultyStore::new(shop.store.clone());
        let writer_args = WriterArgs {
            store: store.clone(),
            ids: Arc::new(IdAllocator::new(shop.store.clone(), 64)),
            config: WriterConfig {
                max_batch: 100,
                window: Duration::from_millis(20),
                max_concurrent_commits: 1,
                write_deadline: Duration::from_secs(2),
                settle_timeout,
            },
            faults: Arc::new(CommitFaults::default()),
        };
        let (writer, _) = Actor::spawn(None, WriterActor, writer_args)
            .await
            .expect("the writer starts");
        let registry = Arc::new(DropRegistry::default());
        let (supervisor, _) = Actor::spawn(None, DropSupervisor, registry.clone())
            .await
            .expect("the supervisor starts");
        let (slot, _) = registry.get_or_create(shop.item.id);
        let args = ItemArgs {
            item_id: shop.item.id,
            unit_price: shop.item.price,
            spec: shop.item.drop.clone().expect("a drop"),
            slot: slot.clone(),
            store: shop.store.clone(),
            lease: Arc::new(LocalLease),
            writer: WriterHandle::new(writer.clone()),
            payment_window: chrono::Duration::minutes(10),
        };
        let started = supervisor
            .call(|reply| SupervisorMessage::Start { args, reply }, Some(WAIT))
            .await;
        assert!(
            matches!(started, Ok(CallResult::Success(Ok(())))),
            "the drop is served"
        );
        Self {
            shop,
            store,
            slot,
            supervisor,
            writer,
        }
    }

    /// Asks the actor serving now to sell one unit to each of `buyers`.
    fn buy(&self, buyers: &[i64]) -> Vec<oneshot::Receiver<Result<OrderRecord, PurchaseError>>> {
        let actor = self.slot.actor().expect("an actor serves the drop");
        let deadline = Instant::now() + Duration::from_secs(60);
        buyers
            .iter()
            .map(|&user_id| {
                let (reply, answer) = oneshot::channel();
                let reserve = ItemMessage::Reserve {
                    request: PurchaseRequest {
                        item_id: self.shop.item.id,
                        user_id,
                        quantity: Quantity::new(1).expect("one unit"),
                        idempotency: None,
                    },
                    ticket: Arc::new(Ticket::default()),
                    deadline,
                    reply,
                };
                actor.cast(reserve).expect("the actor runs");
                answer
            })
            .collect()
    }

    /// The status of the actor serving now, once one serves.
    async fn status(&self) -> ItemStatus {
        until(|| self.slot.actor().is_some()).await;
        let actor = self.slot.actor().expect("an actor serves the drop");
        match actor.call(ItemMessage::Status, Some(WAIT)).await {
            Ok(CallResult::Success(status)) => status,
            _ => panic!("the actor answers its status"),
        }
    }

    /// Fails the actor serving now, as a store in doubt does, and waits for the supervisor
    /// to have seen it.
    async fn fail_the_actor(&self) {
        let actor = self.slot.actor().expect("an actor serves the drop");
        actor.cast(ItemMessage::Recount).expect("the actor runs");
        until(|| {
            self.slot
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1
        })
        .await;
    }

    /// Asserts that no actor serves the drop for a while (its successor is waiting).
    async fn assert_none_serves(&self) {
        let started = tokio::time::timeout(
            Duration::from_millis(300),
            until(|| self.slot.actor().is_some()),
        )
        .await;
        assert!(started.is_err(), "an actor started with drafts in flight");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.supervisor.stop(None);
        self.writer.stop(None);
    }
}

/// Waits (at most [`WAIT`]) until `condition` holds.
async fn until(condition: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the condition holds in time");
}

async fn answers(
    pending: Vec<oneshot::Receiver<Result<OrderRecord, PurchaseError>>>,
) -> Vec<Result<OrderRecord, PurchaseError>> {
    let mut answers = Vec::with_capacity(pending.len());
    for answer in pending {
        let answer = tokio::time::timeout(WAIT, answer)
            .await
            .expect("answered in time")
            .expect("answered");
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_item_actor_recounts_only_once_its_drafts_in_flight_have_settled() {
    // Arrange: three purchases of a drop of five are committing, slowly.
    let harness = Harness::start(5, Duration::from_secs(2)).await;
    let buyers = harness.shop.buyers(6).await;
    harness.store.set_commit(CommitMode::Stall);
    let first = harness.buy(&buyers[..3]);
    tokio::time::timeout(WAIT, harness.store.until_commits(1))
        .await
        .expect("the batch reaches the store");
    assert_eq!(harness.slot.drafts_in_flight(), 3);

    // Act: the actor fails while they are in flight; then the store answers.
    harness.fail_the_actor().await;
    harness.assert_none_serves().await;
    harness.store.release_commits();

    // Assert: the three are sold, in the store and in the new actor's count.
    for answer in answers(first).await {
        assert!(answer.is_ok(), "{answer:?}");
    }
    let status = harness.status().await;
    assert_eq!(harness.shop.units_sold().await, 3);
    assert_eq!((status.sold, status.pending), (3, 0));
    assert_eq!(status.stock_in_memory, 2);
    assert_eq!(harness.slot.drafts_in_flight(), 0);

    // The two units left are sold, and no more.
    let rest = answers(harness.buy(&buyers[3..])).await;
    assert_eq!(rest.iter().filter(|answer| answer.is_ok()).count(), 2);
    assert!(
        matches!(rest[2], Err(PurchaseError::Drop(DropError::SoldOut))),
        "{:?}",
        rest[2]
    );
    assert_eq!(harness.shop.units_sold().await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_item_actor_waits_for_a_commit_in_doubt_to_be_settled() {
    // Arrange: two purchases land, but the store cannot tell for a while.
    let harness = Harness::start(3, Duration::from_millis(100)).await;
    let buyers = harness.shop.buyers(3).await;
    harness.store.set_commit(CommitMode::InDoubtAfterWrite);
    harness.store.set_settle(SettleMode::Stall);
    let doubts: Vec<_> = answers(harness.buy(&buyers[..2]))
        .await
        .into_iter()
        .map(|answer| match answer {
            Err(PurchaseError::OutcomeUnknown(doubt)) => doubt,
            other => panic!("expected outcome_unknown, got {other:?}"),
        })
        .collect();
    assert_eq!(harness.slot.drafts_in_flight(), 2, "the units stay held");

    // Act: the actor fails while the doubt lasts; then the store tells.
    harness.fail_the_actor().await;
    harness.assert_none_serves().await;
    harness.store.set_commit(CommitMode::Pass);
    harness.store.release_settles();

    // Assert: both were committed, and the new actor counts them.
    for doubt in doubts {
        let settled = tokio::time::timeout(WAIT, doubt.settled()).await;
        assert!(
            matches!(settled, Ok(Some(Settled::Committed(_)))),
            "{settled:?}"
        );
    }
    let status = harness.status().await;
    assert_eq!(harness.shop.units_sold().await, 2);
    assert_eq!((status.sold, status.stock_in_memory), (2, 1));
    let last = answers(harness.buy(&buyers[2..])).await;
    assert!(last[0].is_ok(), "{:?}", last[0]);
    assert_eq!(harness.shop.units_sold().await, 3);
}
