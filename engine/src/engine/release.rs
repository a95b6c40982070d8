//! Giving an order's units back: through the drop's actor when it is served here (which
//! restocks once the store change commits), else the store change alone.

use hurry_persistence::{OrderRecord, StoreError};
use ractor::rpc::CallResult;

use super::Engine;
use crate::domain::Quantity;
use crate::drop::{DropError, ItemMessage};
use crate::seller::PurchaseError;

impl Engine {
    /// Runs `change`, a store transaction that moves an order of `quantity` units of
    /// `item_id` for `user_id` to a status that gives its units back. When the item is a drop
    /// served here the change runs through its actor, which restocks the units once the
    /// change answers `true` (and recounts when the change's outcome is unknown); otherwise
    /// the change runs as it is. Answers what the change answered.
    pub async fn release_units<F>(
        &self,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        change: F,
    ) -> Result<bool, PurchaseError>
    where
        F: std::future::Future<Output = Result<bool, StoreError>> + Send + 'static,
    {
        let Some(slot) = self.registry.get(item_id) else {
            return change
                .await
                .map_err(|_| PurchaseError::Drop(DropError::Unavailable));
        };
        // Served, but restarting: its recount must not race this change.
        let actor = slot.actor().ok_or(DropError::Unavailable)?;
        let change = crate::drop::ReleaseChange(Box::pin(change));
        let answer = actor
            .call(
                |reply| ItemMessage::Release {
                    user_id,
                    quantity,
                    change,
                    reply,
                },
                Some(self.config.call_timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(result)) => result.map_err(PurchaseError::Drop),
            _ => Err(DropError::Unavailable.into()),
        }
    }

    /// [`Engine::release_units`] for a whole order: its drop line when it is a drop order,
    /// else `change` as it is (a general order's stock comes back in the change itself).
    pub async fn release_order<F>(
        &self,
        order: &OrderRecord,
        change: F,
    ) -> Result<bool, PurchaseError>
    where
        F: std::future::Future<Output = Result<bool, StoreError>> + Send + 'static,
    {
        if let [line] = order.lines.as_slice() {
            if let Some(quantity) = Quantity::new(line.quantity) {
                return self
                    .release_units(line.item_id, order.user_id, quantity, change)
                    .await;
            }
        }
        change
            .await
            .map_err(|_| PurchaseError::Drop(DropError::Unavailable))
    }
}
