//! Starts item actors and restarts the ones that fail.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use super::actor::{ItemActor, ItemArgs};
use super::slot::DropRegistry;

/// Messages the [`DropSupervisor`] handles.
pub enum SupervisorMessage {
    /// Serve the drop of `item` on this node (no-op when it is served already).
    Start {
        args: ItemArgs,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Start a failed drop again.
    Restart { item_id: i64 },
    /// A restarted child finished starting (or failed to).
    Restarted {
        item_id: i64,
        child: Result<ActorCell, String>,
    },
}

/// Parent of every item actor on this node.
#[derive(Debug, Default)]
pub struct DropSupervisor;

/// The supervisor's children and the registry the API reads.
pub struct SupervisorState {
    registry: Arc<DropRegistry>,
    /// How to start each drop again, by item id.
    args: HashMap<i64, ItemArgs>,
    /// Which drop each running child serves.
    children: HashMap<ActorId, i64>,
}

impl Actor for DropSupervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = Arc<DropRegistry>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        registry: Arc<DropRegistry>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            registry,
            args: HashMap::new(),
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisorMessage,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Start { args, reply } => {
                let result = state.start(myself, args).await;
                let _ = reply.send(result);
            }
            SupervisorMessage::Restart { item_id } => state.restart_now(myself, item_id),
            SupervisorMessage::Restarted { item_id, child } => match child {
                Ok(cell) => {
                    state.children.insert(cell.get_id(), item_id);
                    tracing::info!(item_id, "item actor restarted");
                }
                Err(err) => {
                    tracing::error!(item_id, error = %err, "item actor failed to restart; retrying");
                    state.restart_later(myself, item_id);
                }
            },
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(item_id) = state.children.remove(&cell.get_id()) {
                    tracing::error!(item_id, error = %err, "item actor failed");
                    if let Some(slot) = state.registry.get(item_id) {
                        slot.set_actor(None);
                        slot.restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    state.restart_now(myself, item_id);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(item_id) = state.children.remove(&cell.get_id()) {
                    if let Some(slot) = state.registry.get(item_id) {
                        slot.set_actor(None);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn start(
        &mut self,
        myself: ActorRef<SupervisorMessage>,
        args: ItemArgs,
    ) -> Result<(), String> {
        let item_id = args.item_id;
        if self.args.contains_key(&item_id) {
            return Ok(());
        }
        let (actor, _) = Actor::spawn_linked(None, ItemActor, args.clone(), myself.get_cell())
            .await
            .map_err(|err| err.to_string())?;
        self.children.insert(actor.get_id(), item_id);
        self.args.insert(item_id, args);
        Ok(())
    }

    /// Starts a failed drop again off the supervisor's own loop: the new actor first waits for
    /// its predecessor's drafts to settle, which may take as long as a commit.
    fn restart_now(&self, myself: ActorRef<SupervisorMessage>, item_id: i64) {
        let Some(args) = self.args.get(&item_id).cloned() else {
            return;
        };
        tokio::spawn(async move {
            let child = Actor::spawn_linked(None, ItemActor, args, myself.get_cell())
                .await
                .map(|(actor, _)| actor.get_cell())
                .map_err(|err| err.to_string());
            let _ = myself.cast(SupervisorMessage::Restarted { item_id, child });
        });
    }

    fn restart_later(&self, myself: ActorRef<SupervisorMessage>, item_id: i64) {
        myself.send_after(std::time::Duration::from_secs(1), move || {
            SupervisorMessage::Restart { item_id }
        });
    }
}
