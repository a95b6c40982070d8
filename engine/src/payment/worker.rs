//! The payment workers: a ractor factory whose jobs are keyed by order id and routed
//! sticky (a job goes to the worker busy with its order, if any, else to a free one), so one
//! order's payment calls run one after the other while other orders' run beside them.

use std::sync::Arc;

use ractor::factory::{FactoryMessage, Job, Worker, WorkerBuilder, WorkerId};
use ractor::{ActorProcessingErr, ActorRef};

use super::flow::PaymentContext;
use super::messages::PaymentMessage;

/// One payment worker.
pub struct PaymentWorker;

impl Worker for PaymentWorker {
    type Key = i64;
    type Message = PaymentMessage;
    type State = Arc<PaymentContext>;
    type Arguments = Arc<PaymentContext>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, PaymentMessage>>,
        context: Arc<PaymentContext>,
    ) -> Result<Arc<PaymentContext>, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, PaymentMessage>>,
        Job { key, msg, .. }: Job<i64, PaymentMessage>,
        context: &mut Arc<PaymentContext>,
    ) -> Result<i64, ActorProcessingErr> {
        match msg {
            PaymentMessage::Confirm {
                payment_id,
                payment_key,
                reply,
            } => {
                let answer = context.confirm(payment_id, &payment_key).await;
                let _ = reply.send(answer);
            }
            PaymentMessage::Expire { order, now, reply } => {
                let _ = reply.send(context.expire(order, now).await);
            }
            PaymentMessage::Cancel { order_id, reply } => {
                let _ = reply.send(context.cancel(order_id).await);
            }
            PaymentMessage::Return { order_id, reply } => {
                let _ = reply.send(context.request_return(order_id).await);
            }
            PaymentMessage::Reconcile { payment, reply } => {
                let answer = context.reconcile(payment).await;
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
        Ok(key)
    }
}

/// Builds the workers, each with the shared context.
pub struct PaymentWorkerBuilder(pub Arc<PaymentContext>);

impl WorkerBuilder<PaymentWorker, Arc<PaymentContext>> for PaymentWorkerBuilder {
    fn build(&mut self, _wid: WorkerId) -> (PaymentWorker, Arc<PaymentContext>) {
        (PaymentWorker, self.0.clone())
    }
}
