//! Orders after they are placed: the life cycle ([`machine`]).

pub mod machine;

pub use machine::{IllegalMove, MOVES};
