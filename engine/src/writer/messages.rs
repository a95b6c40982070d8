//! The writer's protocol.

use super::draft::Draft;

/// Messages the [`WriterActor`](super::WriterActor) handles.
#[derive(Debug)]
pub enum WriterMessage {
    /// Write this draft in a coming batch.
    Write(Draft),
    /// The batching window has passed.
    Flush,
    /// A batch commit finished (either way).
    CommitDone,
    /// Panics the writer. Tests and drills prove supervision and recovery with it.
    #[cfg(feature = "test-hooks")]
    Crash,
}
