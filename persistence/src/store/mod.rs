//! The storage trait every backend implements.

mod payments;

pub use payments::{OrderLifeStore, PaymentStore, SettlementStore};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::comparison::DropOrderRow;
use crate::error::StoreError;
use crate::event_store::EventStore;
use crate::model::*;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything the engine and the API persist: the parts below, and the basics.
#[async_trait]
pub trait Store:
    UserStore
    + VerificationStore
    + CatalogStore
    + CartStore
    + OrderStore
    + PaymentStore
    + OrderLifeStore
    + SettlementStore
    + SessionStore
    + EventStore
    + Send
    + Sync
    + 'static
{
    /// The backend behind this store.
    fn backend(&self) -> Backend;

    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Returns the stored setting `key`, storing `init` first when there is none.
    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String, StoreError>;

    /// Stores setting `key`, replacing any earlier value.
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Reserves `count` consecutive ids of sequence `name`; returns the first.
    async fn allocate_ids(&self, name: &str, count: u32) -> Result<i64, StoreError>;

    /// Makes this store handle the only one that sells drops on this database, until
    /// [`Store::release_drops`] or the end of the process: `false` when another holds the
    /// claim. PostgreSQL: a session advisory lock on a connection of its own; once held, the
    /// batch writes an earlier holder left running (its process died) are terminated, so that
    /// none lands after the drops are recounted. SQLite: an exclusive lock on `PATH.lock`.
    async fn claim_drops(&self) -> Result<bool, StoreError>;

    /// Gives the claim of [`Store::claim_drops`] up (no-op when not held).
    async fn release_drops(&self);
}

/// Accounts and roles.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user with the `customer` role plus `extra_roles`; `Conflict` when the email
    /// index is taken.
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError>;

    /// Finds a live (not deleted) user by the blind index of their email.
    async fn user_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Finds a live user by id.
    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError>;

    /// Adds roles to a user; returns the user's roles afterwards, or `None` for an unknown user.
    async fn grant_roles(
        &self,
        user_id: i64,
        roles: &[String],
    ) -> Result<Option<Vec<String>>, StoreError>;

    /// Changes a user's profile; returns the user afterwards (`None` when unknown).
    async fn update_profile(
        &self,
        user_id: i64,
        change: &ProfileChange,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Replaces a user's password hash; the user's access tokens issued before
    /// `tokens_valid_after` are refused from then on (see [`SessionStore::tokens_valid_after`]).
    async fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Deletes a user: personal fields become `shredded`, the email index becomes
    /// `freed_index` (so the address can sign up again), every refresh family is revoked, the
    /// cart and the wishlist are emptied.
    /// Orders stay, for the sellers' books. `false` for an unknown or already deleted user.
    async fn delete_user(
        &self,
        user_id: i64,
        shredded: &str,
        freed_index: &str,
    ) -> Result<bool, StoreError>;

    /// Creates many customers at once (load-test provisioning), each with a `user.created`
    /// event, in one transaction; returns their ids. `Conflict` when an email index is taken.
    async fn create_customers(&self, users: &[NewUser]) -> Result<Vec<i64>, StoreError>;

    /// Ids of deleted users, whose tokens are refused.
    async fn deleted_user_ids(&self) -> Result<Vec<i64>, StoreError>;

    /// Up to `limit` sealed values of `column` in live rows keyed above `after`, in key order,
    /// skipping those that start with `skip_prefix` (already sealed the current way): what a
    /// re-seal pass walks.
    async fn sealed_values(
        &self,
        column: SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError>;

    /// Replaces the sealed value of `column` in row `key` if it is still `old`; `false` when it
    /// changed meanwhile (a profile edit: the new value is already sealed the current way).
    async fn replace_sealed(
        &self,
        column: SealedColumn,
        key: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
}

/// Email verification codes.
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// The user's current code.
    async fn email_code(&self, user_id: i64) -> Result<Option<EmailCodeRecord>, StoreError>;

    /// Replaces the user's code unless the current one was issued less than `min_interval`
    /// before `now`, and writes a `user.verification_requested` event; all in one transaction.
    async fn renew_email_code(
        &self,
        user_id: i64,
        code: &NewEmailCode,
        min_interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<CodeRenewal, StoreError>;

    /// Uses up one attempt of the user's live code (at most `max_attempts`, ever, per code)
    /// and hands the code over for comparison.
    async fn take_code_attempt(
        &self,
        user_id: i64,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<CodeAttempt, StoreError>;

    /// Marks code `generation` used and the user's email verified (with a
    /// `user.email_verified` event); `false` when that code was used or replaced meanwhile.
    async fn confirm_email(&self, user_id: i64, generation: i64) -> Result<bool, StoreError>;
}

/// Items and drops.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Creates an item (and its drop) in one transaction.
    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError>;

    /// Finds a live item by id.
    async fn item_by_id(&self, id: i64) -> Result<Option<ItemRecord>, StoreError>;

    /// Lists live items by id, `size` per page.
    async fn list_items(&self, page: u32, size: u32) -> Result<Page<ItemRecord>, StoreError>;

    /// Every live item with a drop that closes after `now`.
    async fn open_drops(&self, now: DateTime<Utc>) -> Result<Vec<ItemRecord>, StoreError>;

    /// Units of `item_id` held by orders that have not released them, per user.
    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError>;

    /// Changes a live item of `seller_id` (with an `item.updated` event); `None` when there is
    /// no such item of that seller.
    async fn update_item(
        &self,
        id: i64,
        seller_id: i64,
        change: &ItemChange,
    ) -> Result<Option<ItemRecord>, StoreError>;

    /// Deletes (hides) a live item of `seller_id` (with an `item.deleted` event); its orders
    /// stay. `false` when there is no such item of that seller.
    async fn delete_item(&self, id: i64, seller_id: i64) -> Result<bool, StoreError>;

    /// Adds `delta` (may be negative) to the stock on hand of a general item of `seller_id`
    /// (with an `item.stock_adjusted` event).
    async fn adjust_stock(
        &self,
        id: i64,
        seller_id: i64,
        delta: i64,
    ) -> Result<StockAdjustment, StoreError>;

    /// Adds `delta` to a drop's units (`drops.total_units` and `items.stock`), with an
    /// `item.stock_adjusted` event. The drop's actor checks the units first.
    async fn adjust_drop_units(&self, item_id: i64, delta: i64) -> Result<(), StoreError>;
}

/// Carts and wishlists.
#[async_trait]
pub trait CartStore: Send + Sync {
    /// The user's cart lines (live items only), oldest first.
    async fn cart(&self, user_id: i64) -> Result<Vec<CartLine>, StoreError>;

    /// Sets the quantity of a live item in the cart (0 removes it); `false` for an unknown item.
    async fn set_cart_item(
        &self,
        user_id: i64,
        item_id: i64,
        quantity: i64,
    ) -> Result<bool, StoreError>;

    /// Removes an item from the cart.
    async fn remove_cart_item(&self, user_id: i64, item_id: i64) -> Result<(), StoreError>;

    /// Empties the cart.
    async fn clear_cart(&self, user_id: i64) -> Result<(), StoreError>;

    /// The live items on the user's wishlist, oldest first.
    async fn wishlist(&self, user_id: i64) -> Result<Vec<ItemRecord>, StoreError>;

    /// Puts a live item on the wishlist (again is fine); `false` for an unknown item.
    async fn add_wishlist_item(&self, user_id: i64, item_id: i64) -> Result<bool, StoreError>;

    /// Takes an item off the wishlist.
    async fn remove_wishlist_item(&self, user_id: i64, item_id: i64) -> Result<(), StoreError>;
}

/// Orders, batched order writes and idempotency records.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Writes a batch of orders with their lines, idempotency keys and `order.created` outbox
    /// events in one transaction; answers the ids it wrote, in batch order. A keyed order whose
    /// key the user had stored before is left out (a repeat: its first answer is in the store),
    /// and the rest of the batch is written all the same. All or nothing otherwise; the store
    /// gives the batch at most its commit timeout ([`crate::ConnectOptions::commit_timeout`]).
    /// `InDoubt` when no answer came: [`OrderStore::settle_orders`] tells what landed.
    async fn commit_orders(&self, orders: &[NewOrder]) -> Result<Vec<i64>, StoreError>;

    /// Which of `ids` are stored, once no write of this store handle that ended `InDoubt` can
    /// still land: on PostgreSQL the backends of those writes are terminated first (a backend
    /// whose client is gone would otherwise go on and commit); on SQLite the answer waits for
    /// the one writer connection. Errors when the store cannot be reached (try again).
    async fn settle_orders(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError>;

    /// Finds an order with its lines.
    async fn order_by_id(&self, id: i64) -> Result<Option<OrderRecord>, StoreError>;

    /// A user's orders, newest first.
    async fn list_orders(
        &self,
        user_id: i64,
        page: u32,
        size: u32,
    ) -> Result<Page<OrderRecord>, StoreError>;

    /// Moves order `order_id` from status `from` to `to` and writes an `order.<to>` outbox
    /// event, in one transaction; `false` (and nothing written) when it was not in `from`.
    async fn transition_order(
        &self,
        order_id: i64,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError>;

    /// Places a general order in one transaction: reads the items' prices, takes the stock
    /// of every line or of none, writes the order with its lines, idempotency key and
    /// `order.created` event, and (when asked) removes the items from the cart.
    async fn place_order(&self, order: &NewGeneralOrder) -> Result<Placement, StoreError>;

    /// A user's orders in `status`, with their lines, oldest first.
    async fn orders_in_status(
        &self,
        user_id: i64,
        status: &str,
    ) -> Result<Vec<OrderRecord>, StoreError>;

    /// The stored result of an idempotency key of a user.
    async fn idempotency_record(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Every user with at least one stored idempotency key (keys are never deleted).
    async fn users_with_idempotency_keys(&self) -> Result<Vec<i64>, StoreError>;

    /// Every order with a line for `item_id`, whatever its status, by id (the load tests'
    /// audit of a drop).
    async fn drop_orders(&self, item_id: i64) -> Result<Vec<DropOrderRow>, StoreError>;
}

/// Refresh tokens and revoked access tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new refresh token.
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError>;

    /// Uses a refresh token at `now`: a live one is used and `successor` stored in its family,
    /// in one transaction (so a revocation of the family never misses the successor); a reused
    /// one revokes its family. Rotations and revocations of one user's sessions take turns.
    async fn use_refresh_token(
        &self,
        token_hash: &str,
        successor: &RefreshSuccessor,
        now: DateTime<Utc>,
    ) -> Result<RefreshUse, StoreError>;

    /// Revokes the family of `user_id`'s refresh token `token_hash` (logout); `false` when the
    /// token is not that user's.
    async fn revoke_family_of(&self, user_id: i64, token_hash: &str) -> Result<bool, StoreError>;

    /// Revokes every refresh family of a user except `keep_family`.
    async fn revoke_user_families(
        &self,
        user_id: i64,
        keep_family: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Refuses access token `jti` until `expires_at`.
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Users whose access tokens issued before an instant are refused, with that instant, when
    /// it is later than `since` (earlier ones only refuse tokens that have expired).
    async fn tokens_valid_after(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, DateTime<Utc>)>, StoreError>;

    /// Denied access tokens that have not expired at `now`.
    async fn denied_access_tokens(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}

/// The JSON payload of an `order.created` outbox event.
pub(crate) fn order_created_payload(order: &NewOrder) -> String {
    #[derive(serde::Serialize)]
    struct Line {
        item_id: i64,
        quantity: i64,
        unit_price: i64,
        amount: i64,
    }
    #[derive(serde::Serialize)]
    struct OrderCreated<'a> {
        order_id: i64,
        user_id: i64,
        status: &'a str,
        amount: i64,
        lines: Vec<Line>,
    }
    let payload = OrderCreated {
        order_id: order.id,
        user_id: order.user_id,
        status: &order.status,
        amount: order.amount,
        lines: order
            .lines
            .iter()
            .map(|line| Line {
                item_id: line.item_id,
                quantity: line.quantity,
                unit_price: line.unit_price,
                amount: line.amount,
            })
            .collect(),
    };
    serde_json::to_string(&payload).expect("a payload prints")
}

/// The JSON payload of an `item.created` outbox event.
pub(crate) fn item_created_payload(id: i64, item: &NewItem) -> serde_json::Value {
    serde_json::json!({
        "item_id": id,
        "seller_id": item.seller_id,
        "price": item.price,
        "stock": item.stock,
        "drop": item.drop.as_ref().map(|drop| serde_json::json!({
            "opens_at": drop.opens_at,
            "closes_at": drop.closes_at,
            "per_user_limit": drop.per_user_limit,
            "total_units": drop.total_units,
        })),
    })
}

/// The order `order` becomes with the locked items' `(price, stock, is_drop)`, or why not.
pub(crate) fn price_lines(
    order: &NewGeneralOrder,
    items: &std::collections::HashMap<i64, (i64, i64, bool)>,
) -> Result<NewOrder, Placement> {
    let mut lines = Vec::with_capacity(order.lines.len());
    for &(item_id, quantity) in &order.lines {
        let Some(&(price, stock, is_drop)) = items.get(&item_id) else {
            return Err(Placement::UnknownItem(item_id));
        };
        if is_drop {
            return Err(Placement::DropItem(item_id));
        }
        if stock < quantity {
            return Err(Placement::InsufficientStock(item_id));
        }
        let amount = price
            .checked_mul(quantity)
            .ok_or(Placement::AmountTooLarge)?;
        lines.push(OrderLine {
            item_id,
            quantity,
            unit_price: price,
            amount,
        });
    }
    let amount = lines
        .iter()
        .try_fold(0_i64, |sum, line| sum.checked_add(line.amount))
        .ok_or(Placement::AmountTooLarge)?;
    Ok(NewOrder {
        id: order.id,
        user_id: order.user_id,
        status: "pending_payment".to_owned(),
        amount,
        payment_due_at: order.payment_due_at,
        created_at: order.created_at,
        lines,
        idempotency: order.idempotency.clone(),
    })
}

/// Sorts role names and makes sure `customer` is among them.
pub(crate) fn normalise_roles(mut roles: Vec<String>) -> Vec<String> {
    if !roles.iter().any(|role| role == "customer") {
        roles.push("customer".to_owned());
    }
    roles.sort();
    roles.dedup();
    roles
}

/// Refuses items the schema cannot hold faithfully, before either backend writes anything.
pub(crate) fn check_new_item(item: &NewItem) -> Result<(), StoreError> {
    if let Some(drop) = &item.drop {
        if drop.closes_at <= drop.opens_at {
            return Err(StoreError::Invalid(
                "a drop must close after it opens".into(),
            ));
        }
        if i32::try_from(drop.per_user_limit).is_err() {
            return Err(StoreError::Invalid(
                "per_user_limit does not fit the schema".into(),
            ));
        }
    }
    Ok(())
}
