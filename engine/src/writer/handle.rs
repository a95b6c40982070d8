//! [`WriterHandle`]: the writer serving now, for whoever hands it drafts.

use std::sync::{Arc, RwLock};

use ractor::ActorRef;

use super::messages::WriterMessage;

/// The writer now serving: the engine supervisor replaces it when it restarts the writer,
/// and every item actor hands its drafts to whichever one this holds at that moment.
#[derive(Debug, Clone)]
pub struct WriterHandle(Arc<RwLock<ActorRef<WriterMessage>>>);

impl WriterHandle {
    /// A handle on `writer`.
    pub fn new(writer: ActorRef<WriterMessage>) -> Self {
        Self(Arc::new(RwLock::new(writer)))
    }

    /// The writer serving now.
    pub fn current(&self) -> ActorRef<WriterMessage> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `writer` the one serving.
    pub fn replace(&self, writer: ActorRef<WriterMessage>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = writer;
    }
}
