//! Order ids, assigned by the engine before the batch that writes them, reserved in blocks.

use std::sync::Arc;

use hurry_persistence::{Store, StoreError};
use tokio::sync::Mutex;

/// Hands out order ids from blocks reserved in the store (one store round trip per block).
pub struct IdAllocator {
    store: Arc<dyn Store>,
    block_size: u32,
    /// `[next, end)` of the current block.
    range: Mutex<(i64, i64)>,
}

impl IdAllocator {
    /// Name of the id sequence in the store.
    pub const ORDERS: &'static str = "orders";

    /// An allocator reserving `block_size` ids at a time.
    pub fn new(store: Arc<dyn Store>, block_size: u32) -> Self {
        Self {
            store,
            block_size: block_size.max(1),
            range: Mutex::new((0, 0)),
        }
    }

    /// Reserves `count` consecutive ids; returns the first.
    pub async fn take(&self, count: u32) -> Result<i64, StoreError> {
        let mut range = self.range.lock().await;
        if range.1 - range.0 < i64::from(count) {
            let want = self.block_size.max(count);
            let first = self.store.allocate_ids(Self::ORDERS, want).await?;
            *range = (first, first + i64::from(want));
        }
        let first = range.0;
        range.0 += i64::from(count);
        Ok(first)
    }
}
