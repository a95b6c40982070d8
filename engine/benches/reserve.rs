//! Purchase decisions per second in process.
//!
//! - `book/*`: [`DropBook::reserve`] alone, the pure decision (window, per-user limit, stock).
//! - `actor/purchase_*`: [`Engine::purchase`] through the item actor's mailbox and back, on drops
//!   whose answer comes from memory without a commit (sold out, not open yet), from many callers.
//! - `actor/ractor_echo*`: the same callers against an actor that answers at once, the floor
//!   under any ractor round trip on this machine.
//!
//! Run with `cargo bench -p hurry-engine --bench reserve`; the figures are in `BENCHMARKS.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hurry_engine::domain::Quantity;
use hurry_engine::drop::{DropBook, DropError};
use hurry_engine::writer::WriterConfig;
use hurry_engine::{Engine, EngineConfig};
use hurry_engine::{PurchaseError, PurchaseRequest, Seller};
use hurry_persistence::{ConnectOptions, DropSpec, NewItem, NewUser, Store};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Distinct buyers reserved per timed iteration of the accepting `book` benches.
const NUM_BUYERS_PER_ITER: u64 = 50_000;

/// Buyers already in the book of `book/reserve_distinct_users/after_1m_buyers`.
const NUM_EARLIER_BUYERS: i64 = 1_000_000;

/// Concurrent callers of the actor benches.
const CALLER_COUNTS: [u64; 3] = [1, 64, 1024];

/// The engine's longest wait for an actor's answer, also used by the bare ractor calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn one() -> Quantity {
    Quantity::new(1).expect("1 is a valid quantity")
}

/// A drop open for an hour from now with `total_units` and a limit of one per user.
fn open_spec(total_units: i64) -> DropSpec {
    let opens_at = Utc::now();
    DropSpec {
        opens_at,
        closes_at: opens_at + chrono::Duration::hours(1),
        per_user_limit: 1,
        total_units,
    }
}

fn during(spec: &DropSpec) -> DateTime<Utc> {
    spec.opens_at + chrono::Duration::minutes(1)
}

fn bench_book(criterion: &mut Criterion) {
    let huge = i64::MAX / 2;
    let spec = open_spec(huge);
    let now = during(&spec);
    let mut group = criterion.benchmark_group("book");

    // Accepting: every call takes a unit for a new user, so the holdings map grows as in a
    // real drop. Each timed iteration starts from a fresh copy of the book (copied untimed).
    group.throughput(Throughput::Elements(NUM_BUYERS_PER_ITER));
    let empty = DropBook::new(spec.clone(), &[], huge);
    let earlier: Vec<(i64, i64)> = (0..NUM_EARLIER_BUYERS).map(|user| (user, 1)).collect();
    let crowded = DropBook::new(spec.clone(), &earlier, huge);
    for (name, template, first_user) in [
        ("empty_book", &empty, 0),
        ("after_1m_buyers", &crowded, NUM_EARLIER_BUYERS),
    ] {
        group.bench_function(format!("reserve_distinct_users/{name}"), |bencher| {
            bencher.iter_batched(
                || template.clone(),
                |mut book| {
                    let last_user = first_user + NUM_BUYERS_PER_ITER as i64;
                    for user_id in first_user..last_user {
                        let decided = book.reserve(user_id, one(), now);
                        debug_assert!(decided.is_ok());
                        std::hint::black_box(decided).ok();
                    }
                    book
                },
                BatchSize::PerIteration,
            );
        });
    }

    // Refusing: nothing left, so every call is answered before the holdings are looked at.
    group.throughput(Throughput::Elements(1));
    let mut sold_out = DropBook::new(spec, &[], 0);
    let mut user_id = 0_i64;
    group.bench_function("reserve_sold_out", |bencher| {
        bencher.iter(|| {
            user_id += 1;
            let decided = sold_out.reserve(std::hint::black_box(user_id), one(), now);
            debug_assert_eq!(decided, Err(DropError::SoldOut));
            decided
        });
    });
    group.finish();
}

/// A running engine over a SQLite file, serving one sold-out drop and one not open yet.
struct Fixture {
    engine: Arc<Engine>,
    sold_out_item: i64,
    not_open_item: i64,
    /// Keeps the SQLite file alive while the engine runs.
    _folder: tempfile::TempDir,
}

async fn start_engine() -> anyhow::Result<Fixture> {
    let folder = tempfile::tempdir()?;
    let options = ConnectOptions::new(
        format!("sqlite://{}", folder.path().join("bench.db").display()),
        4,
    );
    let store = hurry_persistence::connect(&options).await?;
    let seller = store
        .create_user(&NewUser {
            id: store.allocate_ids("users", 1).await?,
            email: "seller@example.com".into(),
            email_index: "seller@example.com".into(),
            password_hash: "not-a-hash".into(),
            name: "Seller".into(),
            phone: None,
            address: None,
            email_verified: true,
            extra_roles: vec!["seller".into()],
            verification: None,
        })
        .await?;
    let sold_out = create_drop(store.as_ref(), seller.id, open_spec(1)).await?;
    let in_a_day = Utc::now() + chrono::Duration::days(1);
    let later = DropSpec {
        opens_at: in_a_day,
        closes_at: in_a_day + chrono::Duration::hours(1),
        per_user_limit: 1,
        total_units: 1_000,
    };
    let not_open = create_drop(store.as_ref(), seller.id, later).await?;

    let config = EngineConfig {
        writer: WriterConfig {
            max_batch: 1024,
            window: Duration::from_millis(1),
            max_concurrent_commits: 1,
            write_deadline: Duration::from_millis(3_100),
            settle_timeout: Duration::from_secs(2),
        },
        payment_window: chrono::Duration::minutes(10),
        // Far above the callers, so that no answer is `Overloaded`.
        max_queue_per_drop: 1 << 20,
        call_timeout: CALL_TIMEOUT,
        id_block_size: 1024,
        claim_wait: Duration::ZERO,
    };
    let engine = Engine::start(store, config).await?;
    // Sell the only unit for real (one commit), so the drop is sold out the way drops get so.
    engine
        .purchase(request(sold_out, 0))
        .await
        .map_err(|err| anyhow::anyhow!("the first purchase failed: {err}"))?;
    for (item_id, expected) in [
        (sold_out, DropError::SoldOut),
        (not_open, DropError::NotOpen { opens_at: in_a_day }),
    ] {
        let answer = engine.purchase(request(item_id, 1)).await;
        anyhow::ensure!(
            matches!(&answer, Err(PurchaseError::Drop(got)) if *got == expected),
            "item {item_id}: expected {expected:?}, got {answer:?}"
        );
    }
    Ok(Fixture {
        engine: Arc::new(engine),
        sold_out_item: sold_out,
        not_open_item: not_open,
        _folder: folder,
    })
}

/// One unit of `item_id` for `user_id`, unkeyed.
fn request(item_id: i64, user_id: i64) -> PurchaseRequest {
    PurchaseRequest {
        item_id,
        user_id,
        quantity: one(),
        idempotency: None,
    }
}

async fn create_drop(store: &dyn Store, seller_id: i64, spec: DropSpec) -> anyhow::Result<i64> {
    let item = store
        .create_item(&NewItem {
            seller_id,
            name: "Numbered sneaker".into(),
            description: "bench".into(),
            price: 189_000,
            stock: spec.total_units,
            drop: Some(spec),
        })
        .await?;
    Ok(item.id)
}

/// What the callers of an actor bench call.
#[derive(Clone)]
enum Target {
    /// `Engine::purchase` of a drop that refuses every purchase from memory.
    Purchase { engine: Arc<Engine>, item_id: i64 },
    /// A bare ractor call to an actor that answers at once, with the engine's call timeout.
    Echo(ActorRef<EchoMessage>),
    /// The same without a timeout (no timer entry per call).
    EchoWithoutTimeout(ActorRef<EchoMessage>),
}

impl Target {
    /// Makes one call; `false` when the answer is not the expected refusal or echo.
    async fn call(&self, user_id: i64) -> bool {
        match self {
            Target::Purchase { engine, item_id } => matches!(
                engine.purchase(request(*item_id, user_id)).await,
                Err(PurchaseError::Drop(
                    DropError::SoldOut | DropError::NotOpen { .. }
                ))
            ),
            Target::Echo(actor) => matches!(
                actor.call(EchoMessage, Some(CALL_TIMEOUT)).await,
                Ok(CallResult::Success(()))
            ),
            Target::EchoWithoutTimeout(actor) => matches!(
                actor.call(EchoMessage, None).await,
                Ok(CallResult::Success(()))
            ),
        }
    }
}

/// Makes `num_calls` calls to `target` from `num_callers` tasks and returns how long they took.
/// Every answer must be the expected one; anything else would spoil the figure.
async fn call_concurrently(target: &Target, num_callers: u64, num_calls: u64) -> Duration {
    let started = Instant::now();
    let callers: Vec<_> = (0..num_callers)
        .map(|caller| {
            let target = target.clone();
            let share = num_calls / num_callers + u64::from(caller < num_calls % num_callers);
            tokio::spawn(async move {
                let mut num_unexpected = 0_u64;
                for call in 0..share {
                    let user_id = i64::try_from(call * num_callers + caller).unwrap_or(i64::MAX);
                    if !target.call(user_id).await {
                        num_unexpected += 1;
                    }
                }
                num_unexpected
            })
        })
        .collect();
    let mut num_unexpected = 0;
    for caller in callers {
        num_unexpected += caller.await.expect("a caller task panicked");
    }
    let elapsed = started.elapsed();
    assert_eq!(num_unexpected, 0, "some calls got an unexpected answer");
    elapsed
}

/// Answers every message at once: the floor under any ractor call round trip.
struct EchoActor;

/// Asks the [`EchoActor`] for an empty answer.
struct EchoMessage(RpcReplyPort<()>);

impl Actor for EchoActor {
    type Msg = EchoMessage;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        EchoMessage(reply): EchoMessage,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(());
        Ok(())
    }
}

fn bench_actor(criterion: &mut Criterion) {
    // One worker per core, as the server runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fixture = runtime
        .block_on(start_engine())
        .expect("engine over SQLite starts");
    let (echo, _) = runtime
        .block_on(Actor::spawn(None, EchoActor, ()))
        .expect("echo actor starts");
    let purchase = |item_id| Target::Purchase {
        engine: fixture.engine.clone(),
        item_id,
    };
    let targets = [
        ("purchase_sold_out", purchase(fixture.sold_out_item)),
        ("purchase_not_open", purchase(fixture.not_open_item)),
        ("ractor_echo", Target::Echo(echo.clone())),
        (
            "ractor_echo_without_timeout",
            Target::EchoWithoutTimeout(echo.clone()),
        ),
    ];
    let mut group = criterion.benchmark_group("actor");
    group.throughput(Throughput::Elements(1));
    for (name, target) in &targets {
        for num_callers in CALLER_COUNTS {
            group.bench_function(format!("{name}/callers_{num_callers}"), |bencher| {
                bencher
                    .to_async(&runtime)
                    .iter_custom(|iters| call_concurrently(target, num_callers, iters));
            });
        }
    }
    group.finish();
    echo.stop(None);
    fixture.engine.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = bench_book, bench_actor
}
criterion_main!(benches);
