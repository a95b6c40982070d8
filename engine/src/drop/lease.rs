//! Where a node's sellable units come from.
//!
//! On a single node the node owns all of a drop's stock ([`LocalLease`]). In cluster mode a
//! Redis allocator grants chunks of units under an epoch that order commits are fenced by; that
//! implementation arrives with cluster mode and plugs in here.

use async_trait::async_trait;

/// Units granted to this node for one item, and the epoch the grant is fenced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub units: i64,
    pub epoch: u64,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
#[error("stock lease unavailable: {0}")]
pub struct LeaseError(pub String);

/// Grants and takes back units of a drop for this node.
#[async_trait]
pub trait StockLease: Send + Sync + 'static {
    /// Asks for up to `want` units of `item_id`, of which `unsold` are not sold anywhere.
    async fn grant(&self, item_id: i64, want: i64, unsold: i64) -> Result<Grant, LeaseError>;

    /// Gives `units` of a grant back (drop closed, shutdown, rebalancing).
    async fn give_back(&self, item_id: i64, epoch: u64, units: i64) -> Result<(), LeaseError>;
}

/// The single-node lease: this node owns every unsold unit, under epoch 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalLease;

#[async_trait]
impl StockLease for LocalLease {
    async fn grant(&self, _item_id: i64, want: i64, unsold: i64) -> Result<Grant, LeaseError> {
        Ok(Grant {
            units: want.min(unsold).max(0),
            epoch: 0,
        })
    }

    async fn give_back(&self, _item_id: i64, _epoch: u64, _units: i64) -> Result<(), LeaseError> {
        Ok(())
    }
}
