//! The catalogue cache: item records and listing pages in memory (`moka`), so reads of a
//! busy catalogue do not touch the store. Every change made through this node invalidates
//! what it touched at once (item edits, deletions, stock adjustments, general orders; pages
//! on any change). Other nodes' changes are seen after `catalog.cache_ttl_ms`: in cluster mode
//! the entries live briefly (1 s by default), in embedded mode every change goes through this
//! one node. A drop's live stock never comes from here: it comes from its actor's slot.

use std::sync::Arc;
use std::time::Duration;

use hurry_persistence::{ItemRecord, Page, Store, StoreError};
use moka::sync::Cache;

/// Cheap to clone: the clones share the caches.
#[derive(Clone)]
pub struct CatalogCache {
    items: Cache<i64, Arc<ItemRecord>>,
    pages: Cache<(u32, u32), Arc<Page<ItemRecord>>>,
}

impl CatalogCache {
    pub fn new(ttl: Duration, max_items: u64) -> Self {
        Self {
            items: Cache::builder()
                .max_capacity(max_items)
                .time_to_live(ttl)
                .build(),
            pages: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// A live item, from memory or the store.
    pub async fn item(
        &self,
        store: &Arc<dyn Store>,
        id: i64,
    ) -> Result<Option<Arc<ItemRecord>>, StoreError> {
        if let Some(item) = self.items.get(&id) {
            return Ok(Some(item));
        }
        let Some(item) = store.item_by_id(id).await? else {
            return Ok(None);
        };
        let item = Arc::new(item);
        self.items.insert(id, item.clone());
        Ok(Some(item))
    }

    /// A page of the listing, from memory or the store.
    pub async fn page(
        &self,
        store: &Arc<dyn Store>,
        page: u32,
        size: u32,
    ) -> Result<Arc<Page<ItemRecord>>, StoreError> {
        if let Some(listing) = self.pages.get(&(page, size)) {
            return Ok(listing);
        }
        let listing = Arc::new(store.list_items(page, size).await?);
        self.pages.insert((page, size), listing.clone());
        Ok(listing)
    }

    /// Forgets `ids` and every page (something about them changed).
    pub fn changed(&self, ids: &[i64]) {
        for id in ids {
            self.items.invalidate(id);
        }
        self.pages.invalidate_all();
    }
}
