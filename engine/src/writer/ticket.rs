//! [`Ticket`]: who decides whether a draft goes to the store, its caller or the writer.

use std::sync::atomic::{AtomicU8, Ordering};

const WAITING: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

/// Shared by a draft and the caller waiting for it. The writer claims the draft just before
/// its batch goes to the store ([`Ticket::send`]); a caller that stops waiting abandons it
/// ([`Ticket::abandon`]). Exactly one of the two wins, so a caller that abandoned its draft
/// may answer "nothing was bought" and be right: the draft never reaches the store. A caller
/// that finds the draft sent waits for the writer's answer, which the store's commit timeout
/// bounds.
#[derive(Debug, Default)]
pub struct Ticket(AtomicU8);

impl Ticket {
    /// The writer takes the draft to the store; `false` when its caller abandoned it first.
    pub fn send(&self) -> bool {
        self.0
            .compare_exchange(WAITING, SENT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The caller gives up on the draft; `true` when it will never reach the store (abandoned
    /// now or before), `false` when the writer has sent it.
    pub fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == ABANDONED,
        }
    }

    /// Whether the caller gave up (the draft need not be made at all).
    pub fn is_abandoned(&self) -> bool {
        self.0.load(Ordering::Acquire) == ABANDONED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_draft_cannot_be_abandoned_and_an_abandoned_one_is_never_sent() {
        let sent = Ticket::default();
        assert!(sent.send());
        assert!(!sent.abandon(), "the store has it: the caller must wait");
        assert!(!sent.is_abandoned());

        let abandoned = Ticket::default();
        assert!(abandoned.abandon());
        assert!(abandoned.abandon(), "abandoning twice is still abandoned");
        assert!(!abandoned.send(), "the writer must drop it");
        assert!(abandoned.is_abandoned());
    }

    #[test]
    fn of_a_caller_and_a_writer_racing_exactly_one_wins() {
        for _ in 0..1_000 {
            let ticket = std::sync::Arc::new(Ticket::default());
            let writer = {
                let ticket = ticket.clone();
                std::thread::spawn(move || ticket.send())
            };
            let abandoned = ticket.abandon();
            let sent = writer.join().unwrap();
            assert_ne!(sent, abandoned, "one and only one of them");
        }
    }
}
