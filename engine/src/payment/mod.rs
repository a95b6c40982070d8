//! Payments: confirming a checked-out payment at its gateway, exactly once per payment key,
//! with retries on transient errors and a lookup when an answer is lost; reconciling payments
//! whose outcome was lost (at once and from the sweeper, also after a restart); pushing owed
//! refunds through.
//!
//! - [`gateway`]: [`PaymentGateway`](gateway::PaymentGateway) and the Toss and NicePay clients.
//! - [`breaker`]: a circuit breaker per gateway around its client.
//! - [`flow`]: what a confirm, a reconcile and a refund do ([`PaymentContext`]).
//! - [`worker`]: the ractor factory of payment workers, keyed by order id.
//! - [`messages`], [`error`]: the workers' jobs and the payment errors.

pub mod breaker;
pub mod error;
pub mod flow;
pub mod gateway;
pub mod messages;
pub mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hurry_persistence::{OrderRecord, PaymentRecord};
use ractor::factory::{
    queues::DefaultQueue, routing::StickyQueuerRouting, Factory, FactoryArguments, FactoryMessage,
    Job, JobOptions,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

pub use error::PaymentError;
pub use flow::{PaymentConfig, PaymentContext};
pub use messages::PaymentMessage;
use worker::{PaymentWorker, PaymentWorkerBuilder};

type PaymentFactory = Factory<
    i64,
    PaymentMessage,
    Arc<PaymentContext>,
    PaymentWorker,
    StickyQueuerRouting<i64, PaymentMessage>,
    DefaultQueue<i64, PaymentMessage>,
>;

/// The handle the API holds: dispatches payment jobs to the workers.
pub struct Payments {
    factory: ActorRef<FactoryMessage<i64, PaymentMessage>>,
    context: Arc<PaymentContext>,
}

impl Payments {
    /// Starts the payment workers.
    pub async fn start(context: PaymentContext) -> Result<Arc<Self>, ractor::SpawnErr> {
        let context = Arc::new(context);
        let arguments = FactoryArguments::builder()
            .worker_builder(Box::new(PaymentWorkerBuilder(context.clone())))
            .queue(DefaultQueue::default())
            .router(StickyQueuerRouting::default())
            .num_initial_workers(context.config.num_workers.max(1))
            .build();
        let (factory, _) = Actor::spawn(None, PaymentFactory::default(), arguments).await?;
        Ok(Arc::new(Self { factory, context }))
    }

    /// What the workers share.
    pub fn context(&self) -> &Arc<PaymentContext> {
        &self.context
    }

    /// Confirms `payment` with `payment_key` (one order's confirms one after the other).
    pub async fn confirm(
        &self,
        payment: &PaymentRecord,
        payment_key: &str,
    ) -> Result<PaymentRecord, PaymentError> {
        let (payment_id, payment_key) = (payment.id, payment_key.to_owned());
        self.ask(payment.order_id, |reply| PaymentMessage::Confirm {
            payment_id,
            payment_key,
            reply,
        })
        .await
    }

    /// Cancels order `order_id` on its worker (after any payment call of it in progress).
    pub async fn cancel(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        self.ask(order_id, |reply| PaymentMessage::Cancel { order_id, reply })
            .await
    }

    /// Takes delivered order `order_id` back on its worker.
    pub async fn request_return(&self, order_id: i64) -> Result<OrderRecord, PaymentError> {
        self.ask(order_id, |reply| PaymentMessage::Return { order_id, reply })
            .await
    }

    /// Expires every order unpaid past its deadline at `now` (each on its order's worker, so
    /// after a confirm in progress); answers how many this call expired.
    pub async fn expire_due(&self, now: DateTime<Utc>) -> Result<usize, PaymentError> {
        let due = self.context.store.orders_past_due(now, 500).await?;
        let expiries = due.into_iter().map(|order| {
            let order_id = order.id;
            self.ask(order_id, move |reply| PaymentMessage::Expire {
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

    /// Sends a job to order `order_id`'s worker and waits for its answer; past the call
    /// timeout the outcome is unknown (the worker goes on and stores it).
    async fn ask<T, F>(&self, order_id: i64, job: F) -> Result<T, PaymentError>
    where
        T: Send + 'static,
        F: FnOnce(ractor::RpcReplyPort<Result<T, PaymentError>>) -> PaymentMessage,
    {
        let answer = self
            .factory
            .call(
                |reply| dispatch(order_id, job(reply)),
                Some(self.context.config.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(PaymentError::OutcomeUnknown),
            _ => Err(PaymentError::Unavailable),
        }
    }

    /// Hands every payment in doubt for longer than the reconcile delay to its worker;
    /// answers how many.
    pub async fn reconcile_due(&self) -> Result<usize, PaymentError> {
        let delay = chrono::Duration::from_std(self.context.config.reconcile_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let in_doubt = self
            .context
            .store
            .payments_in_doubt(Utc::now() - delay, 500)
            .await?;
        let num_in_doubt = in_doubt.len();
        for payment in in_doubt {
            let order_id = payment.order_id;
            let _ = self.factory.cast(dispatch(
                order_id,
                PaymentMessage::Reconcile {
                    payment,
                    reply: None,
                },
            ));
        }
        Ok(num_in_doubt)
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
                if let Err(err) = payments.reconcile_due().await {
                    tracing::warn!(error = %err, "reconciling payments failed");
                }
                if let Err(err) = payments.expire_due(Utc::now()).await {
                    tracing::warn!(error = %err, "expiring unpaid orders failed");
                }
                if let Err(err) = payments.context.advance_shipments(Utc::now()).await {
                    tracing::warn!(error = %err, "moving shipments on failed");
                }
                if let Err(err) = payments.context.run_refunds().await {
                    tracing::warn!(error = %err, "refunding failed");
                }
                // The daily settlement: every day before today is closed for every seller.
                let yesterday = Utc::now().date_naive().pred_opt();
                if let Some(yesterday) = yesterday {
                    if let Err(err) = payments.context.store.close_settlements(yesterday).await {
                        tracing::warn!(error = %err, "closing settlements failed");
                    }
                }
                let refunds_due = payments.context.refunds_due.clone();
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = refunds_due.notified() => {}
                }
            }
        })
    }

    /// Stops the workers.
    pub fn stop(&self) {
        self.factory.stop(None);
    }
}

fn dispatch(order_id: i64, msg: PaymentMessage) -> FactoryMessage<i64, PaymentMessage> {
    FactoryMessage::Dispatch(Job {
        key: order_id,
        msg,
        options: JobOptions::default(),
        accepted: None,
    })
}
