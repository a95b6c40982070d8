//! Test support for the actor tests: a real SQLite store in a temporary folder with a drop
//! to sell ([`TestShop`]), [`Recorder`], a holder that records its outcomes, and
//! [`FaultyStore`], which makes the writer's store calls fail,
//! stall or answer in doubt on command.

mod faulty;
mod recorder;

use std::sync::Arc;

use chrono::{Duration, Utc};
use hurry_persistence::{DropSpec, ItemRecord, NewItem, NewUser, Store};

pub use faulty::{CommitMode, FaultyStore, SettleMode};
pub use recorder::Recorder;

/// A fresh SQLite store with a seller and one open drop; removed when dropped.
pub struct TestShop {
    pub store: Arc<dyn Store>,
    pub item: ItemRecord,
    _folder: tempfile::TempDir,
}

impl TestShop {
    /// A store whose drop of `total_units` is open for an hour, at most `per_user_limit`
    /// units per buyer.
    pub async fn open(total_units: i64, per_user_limit: u32) -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", folder.path().join("hurry.db").display());
        let store = hurry_persistence::connect(&hurry_persistence::ConnectOptions::new(url, 4))
            .await
            .expect("a SQLite store");
        let seller = store
            .create_user(&user(
                store.allocate_ids("users", 1).await.expect("an id"),
                "seller",
                vec!["seller".into()],
            ))
            .await
            .expect("a seller");
        let opens_at = Utc::now() - Duration::minutes(1);
        let item = store
            .create_item(&NewItem {
                seller_id: seller.id,
                name: "Numbered sneaker".into(),
                description: "actor tests".into(),
                price: 189_000,
                stock: total_units,
                drop: Some(DropSpec {
                    opens_at,
                    closes_at: opens_at + Duration::hours(1),
                    per_user_limit,
                    total_units,
                }),
            })
            .await
            .expect("a drop");
        Self {
            store,
            item,
            _folder: folder,
        }
    }

    /// The ids of `count` new buyers.
    pub async fn buyers(&self, count: usize) -> Vec<i64> {
        let count32 = u32::try_from(count).expect("a test's count of buyers");
        let first = self
            .store
            .allocate_ids("users", count32)
            .await
            .expect("ids");
        let users: Vec<NewUser> = (first..)
            .take(count)
            .map(|id| user(id, &uuid::Uuid::new_v4().simple().to_string(), Vec::new()))
            .collect();
        self.store.create_customers(&users).await.expect("buyers")
    }

    /// Units of the drop in stored orders, whatever the engine believes.
    pub async fn units_sold(&self) -> i64 {
        self.store
            .drop_sales(self.item.id)
            .await
            .expect("the store answers")
            .total()
    }

    /// Whether order `id` is stored.
    pub async fn has_order(&self, id: i64) -> bool {
        self.store
            .order_by_id(id)
            .await
            .expect("the store answers")
            .is_some()
    }
}

fn user(id: i64, name: &str, extra_roles: Vec<String>) -> NewUser {
    let email = format!("{name}@example.com");
    NewUser {
        id,
        email: email.clone(),
        email_index: email,
        password_hash: "not-a-hash".into(),
        name: name.into(),
        phone: None,
        address: None,
        email_verified: true,
        extra_roles,
        verification: None,
    }
}
