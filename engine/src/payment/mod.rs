//! Payments and what follows an order's purchase: confirming a checked-out payment at its
//! gateway, exactly once per payment key, with retries on transient errors and a lookup when an
//! answer is lost; reconciling payments whose outcome was lost (from the sweeper, also after a
//! restart); the payment deadline, cancel, return and their refunds; shipment progression.
//!
//! Two kinds of workers, each a ractor factory keyed by order id: the **order workers** change
//! orders and payments in the store (one order's jobs one after the other) and ask the
//! **payment workers**, which hold the conversations with the gateways, by message.
//!
//! - [`gateway`]: [`PaymentGateway`](gateway::PaymentGateway) and the Toss and NicePay clients.
//! - [`breaker`]: a circuit breaker per gateway around its client.
//! - [`charges`]: the payment workers' side ([`GatewayDesk`]: charge, look up, refund).
//! - [`orders`]: the order workers' side ([`OrderDesk`]: confirm, settle, expire, cancel,
//!   return, shipments).
//! - [`worker`]: the two workers; [`messages`]: their jobs; [`error`]: the payment errors.

pub mod breaker;
pub mod charges;
pub mod error;
pub mod gateway;
pub mod messages;
pub mod orders;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hurry_persistence::{OrderRecord, PaymentRecord, Store};
use ractor::factory::{
    queues::DefaultQueue, routing::StickyQueuerRouting, Factory, FactoryArguments, FactoryMessage,
    Job, JobOptions,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::Notify;

pub use charges::{ChargeOutcome, GatewayDesk, PaymentConfig};
pub use error::PaymentError;
pub use messages::{OrderMessage, PaymentMessage};
pub use orders::{OrderDesk, PaymentLine, StockReleased};
use worker::{Builder, OrderWorker, PaymentWorker};

type Workers<W, M, D> =
    Factory<i64, M, Arc<D>, W, StickyQueuerRouting<i64, M>, DefaultQueue<i64, M>>;

/// What the payment parts are built from.
pub struct PaymentSetup {
    pub store: Arc<dyn Store>,
    pub engine: Arc<crate::Engine>,
    pub gateways: HashMap<String, Arc<dyn gateway::PaymentGateway>>,
    pub config: PaymentConfig,
    pub stock_released: StockReleased,
}

/// The handle the API holds: dispatches jobs to the order workers.
pub struct Payments {
    orders: ActorRef<FactoryMessage<i64, OrderMessage>>,
    payment_workers: ActorRef<FactoryMessage<i64, PaymentMessage>>,
    desk: Arc<OrderDesk>,
}

impl Payments {
    /// Starts the payment workers, then the order workers that ask them.
    pub async fn start(setup: PaymentSetup) -> Result<Arc<Self>, ractor::SpawnErr> {
        let num_workers = setup.config.num_workers.max(1);
        let gateways = Arc::new(GatewayDesk {
            gateways: setup.gateways,
            config: setup.config.clone(),
        });
        let payment_workers = spawn_workers::<PaymentWorker, PaymentMessage, GatewayDesk>(
            gateways.clone(),
            num_workers,
        )
        .await?;
        let desk = Arc::new(OrderDesk {
            store: setup.store,
            engine: setup.engine,
            payments: PaymentLine {
                factory: payment_workers.clone(),
                timeout: setup.config.call_timeout,
            },
            config: setup.config,
            gateways,
            refunds_due: Arc::new(Notify::new()),
            stock_released: setup.stock_released,
        });
        let orders =
            spawn_workers::<OrderWorker, OrderMessage, OrderDesk>(desk.clone(), num_workers)
                .await?;
        Ok(Arc::new(Self {
            orders,
            payment_workers,
            desk,
        }))
    }

    /// The gateways by name (their breakers' states for the admin view).
    pub fn gateways(&self) -> &HashMap<String, Arc<dyn gateway::PaymentGateway>> {
        &self.desk.gateways.gateways
    }

    /// The gateway a new payment goes to (see [`GatewayDesk::provider_for`]).
    pub fn provider_for(&self, requested: Option<&str>) -> Result<String, PaymentError> {
        self.desk.gateways.provider_for(requested)
    }

    /// Confirms `payment` with `payment_key` on its order's worker.
    pub async fn confirm(
        &self,
        payment: &PaymentRecord,
        payment_key: &str,
    ) -> Result<PaymentRecord, PaymentError> {
        let (payment_id, payment_key) = (payment.id, payment_key.to_owned());
        self.ask(payment.order_id, |reply| OrderMessage::Confirm {
            payment_id,
            payment_key,
            reply,
        })
        .await
    }

    /// Settles `payment` (in doubt) from a lookup at its gateway, on its order's worker.
    pub async fn reconcile(&self, payment: PaymentRecord) -> Result<PaymentRecord, PaymentError> {
        let order_id = payment.order_id;
        self.ask(order_id, |reply| OrderMessage::Reconcile {
            payment,
            reply: Some(reply),
        })
        .await
    }

    /// Cancels order `order_id` on its worker (after any job of it in progress).
    pub async fn cancel(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        self.ask(order_id, |reply| OrderMessage::Cancel { order_id, reply })
            .await
    }

    /// Takes delivered order `order_id` back on its worker.
    pub async fn request_return(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        self.ask(order_id, |reply| OrderMessage::Return { order_id, reply })
            .await
    }

    /// Expires every order unpaid past its deadline at `now` (each on its order's worker, so
    /// after a confirm in progress); answers how many this call expired.
    pub async fn expire_due(&self, now: DateTime<Utc>) -> Result<usize, PaymentError> {
        let due = self.desk.store.orders_past_due(now, 500).await?;
        let expiries = due.into_iter().map(|order| {
            let order_id = order.id;
            self.ask(order_id, move |reply| OrderMessage::Expire {
                order,
                now,
                reply,
            })
        });
        let mut num_expired = 0;
        for expired in futures::future::join_all(expiries).await {
            if expired? {
                num_expired += 1;
            }
        }
        Ok(num_expired)
    }

    /// Moves paid orders on through the shipment statuses (see
    /// [`OrderDesk::advance_shipments`]).
    pub async fn advance_shipments(&self, now: DateTime<Utc>) -> Result<usize, PaymentError> {
        self.desk.advance_shipments(now).await
    }

    /// Hands every payment in doubt for longer than the reconcile delay to its order's
    /// worker; answers how many.
    pub async fn reconcile_due(&self) -> Result<usize, PaymentError> {
        let delay = chrono::Duration::from_std(self.desk.config.reconcile_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let in_doubt = self
            .desk
            .store
            .payments_in_doubt(Utc::now() - delay, 500)
            .await?;
        let num_in_doubt = in_doubt.len();
        for payment in in_doubt {
            let order_id = payment.order_id;
            let _ = self.orders.cast(dispatch(
                order_id,
                OrderMessage::Reconcile {
                    payment,
                    reply: None,
                },
            ));
        }
        Ok(num_in_doubt)
    }

    /// Pushes owed refunds through: a payment worker asks the gateway, then the order's
    /// worker stores it; answers how many went through.
    pub async fn run_refunds(&self) -> Result<usize, PaymentError> {
        let mut num_done = 0;
        for refund in self.desk.store.refunds("pending", 100).await? {
            match self.desk.payments.refund(&refund).await {
                Ok(()) => {
                    let order_id = refund.order_id;
                    let finished = self
                        .ask(order_id, |reply| OrderMessage::FinishRefund {
                            refund,
                            reply,
                        })
                        .await?;
                    if finished {
                        num_done += 1;
                    }
                }
                Err(err) => {
                    tracing::warn!(refund_id = refund.id, error = %err, "refund failed");
                    self.desk
                        .store
                        .refund_attempt_failed(refund.id, &err.to_string())
                        .await?;
                }
            }
        }
        Ok(num_done)
    }

    /// Sends a job to order `order_id`'s worker and waits for its answer; past the call
    /// timeout the outcome is unknown (the worker goes on and stores it).
    async fn ask<T, F>(&self, order_id: i64, job: F) -> Result<T, PaymentError>
    where
        T: Send + 'static,
        F: FnOnce(ractor::RpcReplyPort<Result<T, PaymentError>>) -> OrderMessage,
    {
        let answer = self
            .orders
            .call(
                |reply| dispatch(order_id, job(reply)),
                Some(self.desk.config.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(PaymentError::OutcomeUnknown),
            _ => Err(PaymentError::Unavailable),
        }
    }

    /// Runs the sweeper until the returned task is aborted: every `interval` (and at once,
    /// and whenever a refund is queued) payments in doubt are reconciled, unpaid orders past
    /// their deadline expired, shipments moved on, owed refunds pushed through and the sellers'
    /// settlements of the days before today closed.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let payments = self.clone();
        tokio::spawn(async move {
            loop {
                payments.sweep().await;
                let refunds_due = payments.desk.refunds_due.clone();
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = refunds_due.notified() => {}
                }
            }
        })
    }

    async fn sweep(&self) {
        if let Err(err) = self.reconcile_due().await {
            tracing::warn!(error = %err, "reconciling payments failed");
        }
        if let Err(err) = self.expire_due(Utc::now()).await {
            tracing::warn!(error = %err, "expiring unpaid orders failed");
        }
        if let Err(err) = self.advance_shipments(Utc::now()).await {
            tracing::warn!(error = %err, "moving shipments on failed");
        }
        if let Err(err) = self.run_refunds().await {
            tracing::warn!(error = %err, "refunding failed");
        }
        // The daily settlement: every day before today is closed for every seller.
        if let Some(yesterday) = Utc::now().date_naive().pred_opt() {
            if let Err(err) = self.desk.store.close_settlements(yesterday).await {
                tracing::warn!(error = %err, "closing settlements failed");
            }
        }
    }

    /// Stops the workers.
    pub fn stop(&self) {
        self.orders.stop(None);
        self.payment_workers.stop(None);
    }
}

async fn spawn_workers<W, M, D>(
    desk: Arc<D>,
    num_workers: usize,
) -> Result<ActorRef<FactoryMessage<i64, M>>, ractor::SpawnErr>
where
    W: ractor::factory::Worker<Key = i64, Message = M, State = Arc<D>, Arguments = Arc<D>>,
    M: ractor::Message,
    D: Send + Sync + 'static,
    Builder<D>: ractor::factory::WorkerBuilder<W, Arc<D>>,
{
    let arguments = FactoryArguments::builder()
        .worker_builder(Box::new(Builder(desk)))
        .queue(DefaultQueue::default())
        .router(StickyQueuerRouting::default())
        .num_initial_workers(num_workers)
        .build();
    let (factory, _) = Actor::spawn(None, Workers::<W, M, D>::default(), arguments).await?;
    Ok(factory)
}

fn dispatch<M: ractor::Message>(order_id: i64, msg: M) -> FactoryMessage<i64, M> {
    FactoryMessage::Dispatch(Job {
        key: order_id,
        msg,
        options: JobOptions::default(),
        accepted: None,
    })
}
