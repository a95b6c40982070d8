//! Expected outcomes of a purchase that are not an order.

use chrono::{DateTime, Utc};

/// Why a purchase did not become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropError {
    /// No units left.
    #[error("sold out")]
    SoldOut,
    /// Fewer units left than asked for.
    #[error("only {available} units left")]
    InsufficientStock { available: i64 },
    /// The user already holds as many units as the drop allows.
    #[error("per-user limit of {limit} reached")]
    LimitReached { limit: u32 },
    /// The sale window has not opened yet.
    #[error("drop opens at {opens_at}")]
    NotOpen { opens_at: DateTime<Utc> },
    /// The sale window has closed.
    #[error("drop is closed")]
    Closed,
    /// Too many purchases are already waiting for this drop.
    #[error("too many purchases waiting")]
    Overloaded,
    /// The order could not be made durable, or the actor did not answer in time.
    #[error("order store unavailable")]
    Unavailable,
}

impl DropError {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            DropError::SoldOut => "sold_out",
            DropError::InsufficientStock { .. } => "insufficient_stock",
            DropError::LimitReached { .. } => "limit_reached",
            DropError::NotOpen { .. } => "drop_not_open",
            DropError::Closed => "drop_closed",
            DropError::Overloaded => "overloaded",
            DropError::Unavailable => "unavailable",
        }
    }
}
