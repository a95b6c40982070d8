//! The two kinds of workers, each a ractor factory whose jobs are keyed by order id and routed
//! sticky (a job goes to the worker busy with its order, if any, else to a free one): one
//! order's jobs run one after the other while other orders' run beside them.

use std::sync::Arc;

use ractor::factory::{FactoryMessage, Job, Worker, WorkerBuilder, WorkerId};
use ractor::{ActorProcessingErr, ActorRef};

use super::charges::GatewayDesk;
use super::messages::{OrderMessage, PaymentMessage};
use super::orders::OrderDesk;

/// Changes orders and their payments in the store.
pub struct OrderWorker;

impl Worker for OrderWorker {
    type Key = i64;
    type Message = OrderMessage;
    type State = Arc<OrderDesk>;
    type Arguments = Arc<OrderDesk>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, OrderMessage>>,
        desk: Arc<OrderDesk>,
    ) -> Result<Arc<OrderDesk>, ActorProcessingErr> {
        Ok(desk)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, OrderMessage>>,
        Job { key, msg, .. }: Job<i64, OrderMessage>,
        desk: &mut Arc<OrderDesk>,
    ) -> Result<i64, ActorProcessingErr> {
        match msg {
            OrderMessage::Confirm {
                payment_id,
                payment_key,
                reply,
            } => {
                let _ = reply.send(desk.confirm(payment_id, &payment_key).await);
            }
            OrderMessage::Reconcile { payment, reply } => {
                let answer = desk.reconcile(payment).await;
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            OrderMessage::Expire { order, now, reply } => {
                let _ = reply.send(desk.expire(order, now).await);
            }
            OrderMessage::Cancel { order_id, reply } => {
                let _ = reply.send(desk.cancel(order_id).await);
            }
            OrderMessage::Return { order_id, reply } => {
                let _ = reply.send(desk.request_return(order_id).await);
            }
            OrderMessage::FinishRefund { refund, reply } => {
                let _ = reply.send(desk.finish_refund(&refund).await);
            }
        }
        Ok(key)
    }
}

/// Talks to the gateways.
pub struct PaymentWorker;

impl Worker for PaymentWorker {
    type Key = i64;
    type Message = PaymentMessage;
    type State = Arc<GatewayDesk>;
    type Arguments = Arc<GatewayDesk>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, PaymentMessage>>,
        desk: Arc<GatewayDesk>,
    ) -> Result<Arc<GatewayDesk>, ActorProcessingErr> {
        Ok(desk)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<i64, PaymentMessage>>,
        Job { key, msg, .. }: Job<i64, PaymentMessage>,
        desk: &mut Arc<GatewayDesk>,
    ) -> Result<i64, ActorProcessingErr> {
        match msg {
            PaymentMessage::Charge {
                payment,
                payment_key,
                reply,
            } => {
                let _ = reply.send(desk.charge(&payment, &payment_key).await);
            }
            PaymentMessage::LookUp { payment, reply } => {
                let _ = reply.send(desk.look_up_settled(&payment).await);
            }
            PaymentMessage::Refund { refund, reply } => {
                let _ = reply.send(desk.refund(&refund).await);
            }
        }
        Ok(key)
    }
}

/// Builds workers that share one desk.
pub struct Builder<D>(pub Arc<D>);

impl WorkerBuilder<OrderWorker, Arc<OrderDesk>> for Builder<OrderDesk> {
    fn build(&mut self, _wid: WorkerId) -> (OrderWorker, Arc<OrderDesk>) {
        (OrderWorker, self.0.clone())
    }
}

impl WorkerBuilder<PaymentWorker, Arc<GatewayDesk>> for Builder<GatewayDesk> {
    fn build(&mut self, _wid: WorkerId) -> (PaymentWorker, Arc<GatewayDesk>) {
        (PaymentWorker, self.0.clone())
    }
}
