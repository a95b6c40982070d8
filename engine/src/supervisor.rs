//! The root of the actor tree: starts the writer and the drop supervisor, and restarts the
//! writer when it fails, putting the new one in the [`WriterHandle`] every item actor hands
//! its drafts to. Drafts that were waiting in the dead writer's buffer settle as not committed
//! when they are dropped, so their units go back and their shoppers get 503.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::drop::{DropRegistry, DropSupervisor, SupervisorMessage};
use crate::writer::{WriterActor, WriterArgs, WriterHandle};

/// Messages the [`EngineSupervisor`] handles.
pub enum EngineMessage {
    /// The writer handle and the drop supervisor.
    Children(RpcReplyPort<(WriterHandle, ActorRef<SupervisorMessage>)>),
}

/// Parent of the writer and the drop supervisor.
#[derive(Debug, Default)]
pub struct EngineSupervisor;

/// What the engine supervisor starts from.
pub struct EngineArgs {
    pub writer: WriterArgs,
    pub registry: Arc<DropRegistry>,
}

/// The engine supervisor's children.
pub struct EngineState {
    writer_args: WriterArgs,
    writer: WriterHandle,
    drops: ActorRef<SupervisorMessage>,
    /// Times the writer was restarted.
    num_writer_restarts: u32,
}

impl Actor for EngineSupervisor {
    type Msg = EngineMessage;
    type State = EngineState;
    type Arguments = EngineArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: EngineArgs,
    ) -> Result<EngineState, ActorProcessingErr> {
        let (writer, _) =
            Actor::spawn_linked(None, WriterActor, args.writer.clone(), myself.get_cell()).await?;
        let (drops, _) =
            Actor::spawn_linked(None, DropSupervisor, args.registry, myself.get_cell()).await?;
        Ok(EngineState {
            writer_args: args.writer,
            writer: WriterHandle::new(writer),
            drops,
            num_writer_restarts: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: EngineMessage,
        state: &mut EngineState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EngineMessage::Children(reply) => {
                let _ = reply.send((state.writer.clone(), state.drops.clone()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut EngineState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err)
                if cell.get_id() == state.writer.current().get_id() =>
            {
                state.num_writer_restarts += 1;
                tracing::error!(
                    error = %err,
                    restarts = state.num_writer_restarts,
                    "writer failed; restarting it"
                );
                let (writer, _) = Actor::spawn_linked(
                    None,
                    WriterActor,
                    state.writer_args.clone(),
                    myself.get_cell(),
                )
                .await?;
                state.writer.replace(writer);
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                // The drop supervisor only fails on a bug; its children keep serving.
                tracing::error!(actor = ?cell.get_id(), error = %err, "engine child failed");
            }
            _ => {}
        }
        Ok(())
    }
}
