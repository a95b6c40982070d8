//! Records that cross the storage boundary. Money is integer won; ids are `i64`.

mod events;
mod payments;

pub use events::*;
pub use payments::*;

use chrono::{DateTime, SubsecRound, Utc};

/// Now, to the microsecond: the precision both stores keep (PostgreSQL's `timestamptz`, the
/// text sqlx writes to SQLite), so a time written and read back compares equal to itself.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A user to create. Personal fields arrive encrypted; the store keeps them as given.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// From [`crate::Store::allocate_ids`] (`"users"`): the sealed fields are bound to it.
    pub id: i64,
    pub email: String,
    /// Blind index of the email: what lookups and the uniqueness check use.
    pub email_index: String,
    pub password_hash: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub email_verified: bool,
    /// Roles besides `customer`, which every user has.
    pub extra_roles: Vec<String>,
    /// A verification code to store with the user (and a `user.verification_requested`
    /// event), in the same transaction.
    pub verification: Option<NewEmailCode>,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub email_verified: bool,
    /// Sorted role names, always including `customer`.
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The sale window and limits of a limited item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSpec {
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// Most units one user may hold from this drop.
    pub per_user_limit: u32,
    /// Units the drop sells in all.
    pub total_units: i64,
}

/// An item to create.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub seller_id: i64,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub stock: i64,
    pub drop: Option<DropSpec>,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub id: i64,
    pub seller_id: i64,
    pub name: String,
    pub description: String,
    pub price: i64,
    /// General items: units on hand. Limited items: the drop's total units.
    pub stock: i64,
    pub drop: Option<DropSpec>,
    pub created_at: DateTime<Utc>,
}

impl NewItem {
    /// The record this item reads back as, once stored under `id` at `created_at`.
    pub fn to_record(&self, id: i64, created_at: DateTime<Utc>) -> ItemRecord {
        ItemRecord {
            id,
            seller_id: self.seller_id,
            name: self.name.clone(),
            description: self.description.clone(),
            price: self.price,
            stock: self.stock,
            drop: self.drop.clone(),
            created_at,
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub item_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

/// The idempotency key a new order was created under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyEntry {
    pub key: String,
    /// Hash of the request that used the key; a different request with the same key is refused.
    pub request_hash: String,
}

/// An order to write (ids are assigned by the caller from [`crate::Store::allocate_ids`]).
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub amount: i64,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<OrderLine>,
    pub idempotency: Option<IdempotencyEntry>,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub amount: i64,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<OrderLine>,
}

impl NewOrder {
    /// The record this order reads back as once committed.
    pub fn to_record(&self) -> OrderRecord {
        OrderRecord {
            id: self.id,
            user_id: self.user_id,
            status: self.status.clone(),
            amount: self.amount,
            payment_due_at: self.payment_due_at,
            created_at: self.created_at,
            lines: self.lines.clone(),
        }
    }
}

/// A stored idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub status_code: u16,
    pub order_id: Option<i64>,
}

/// Units of one drop held by live orders, per user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropSales {
    /// `(user_id, units)` for every user holding units of the item.
    pub per_user: Vec<(i64, i64)>,
}

impl DropSales {
    /// Units held by all users together.
    pub fn total(&self) -> i64 {
        self.per_user.iter().map(|(_, units)| units).sum()
    }
}

/// A page of rows and the number of rows in all pages.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: u64,
}

/// Order statuses that release their units back to the drop (the others hold them).
pub const RELEASING_STATUSES: [&str; 4] = ["payment_failed", "expired", "cancelled", "returned"];

/// A refresh token to store (only its hash is kept).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub user_id: i64,
    /// Every token rotated from one login shares a family.
    pub family_id: String,
    pub expires_at: DateTime<Utc>,
}

/// The refresh token that replaces a rotated one, in its family and for its user.
#[derive(Debug, Clone)]
pub struct RefreshSuccessor {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// The token was live and is now used; its successor is stored in the same family.
    Rotated { user_id: i64, family_id: String },
    /// The token had been used already: its whole family is now revoked.
    Reused { user_id: i64, family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Changes to a user's profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
}

/// A column that holds sealed personal data, and the row key its values are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    UserEmail,
    UserName,
    UserPhone,
    UserAddress,
    EmailCode,
}

impl SealedColumn {
    /// Every sealed column.
    pub const ALL: [SealedColumn; 5] = [
        SealedColumn::UserEmail,
        SealedColumn::UserName,
        SealedColumn::UserPhone,
        SealedColumn::UserAddress,
        SealedColumn::EmailCode,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Self::EmailCode => "email_codes",
            _ => "users",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Self::UserEmail => "email",
            Self::UserName => "name",
            Self::UserPhone => "phone",
            Self::UserAddress => "address",
            Self::EmailCode => "code",
        }
    }

    /// The column naming the row (a user's id for both tables).
    pub fn key(self) -> &'static str {
        match self {
            Self::EmailCode => "user_id",
            _ => "id",
        }
    }

    /// Rows whose values are still read: a deleted user's shredded fields never are.
    pub(crate) fn live_rows(self) -> &'static str {
        match self {
            Self::EmailCode => "TRUE",
            _ => "deleted_at IS NULL",
        }
    }
}

/// A new email verification code (sealed by the caller).
#[derive(Debug, Clone)]
pub struct NewEmailCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// A user's current email verification code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailCodeRecord {
    pub user_id: i64,
    /// As sealed by the caller.
    pub code: String,
    /// Grows with every new code of the user.
    pub generation: i64,
    pub expires_at: DateTime<Utc>,
    pub attempts: u32,
    pub consumed: bool,
}

/// What asking to check a code got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeAttempt {
    /// One attempt is used up; compare against `code`.
    Granted { code: String, generation: i64 },
    /// Every attempt of the live code is used up.
    Locked,
    /// No code to check: none, expired or already used.
    Unavailable,
}

/// What asking for a new code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRenewal {
    /// A new code replaced the old one and a `user.verification_requested` event was written.
    Issued { generation: i64 },
    /// The previous code is too recent.
    TooSoon,
    /// Unknown, deleted or already verified user.
    NotNeeded,
}

/// Changes to an item; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ItemChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
}

/// What a seller's stock adjustment of a general item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockAdjustment {
    /// The item afterwards.
    Adjusted(ItemRecord),
    /// The stock would go below zero (what is on hand is all that is not sold).
    Insufficient,
    /// No such live item of this seller.
    NotFound,
    /// A limited item: its units are adjusted through its drop's actor.
    IsDrop,
}

/// A general order to place: the store reads prices and takes the stock, all or nothing.
#[derive(Debug, Clone)]
pub struct NewGeneralOrder {
    pub id: i64,
    pub user_id: i64,
    /// `(item_id, quantity)`, item ids distinct.
    pub lines: Vec<(i64, i64)>,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub idempotency: Option<IdempotencyEntry>,
    /// Remove the ordered items from the user's cart in the same transaction.
    pub from_cart: bool,
}

/// What placing a general order did. Only `Placed` changed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Placed(OrderRecord),
    UnknownItem(i64),
    /// A limited item: sold through its drop, not in a general order.
    DropItem(i64),
    InsufficientStock(i64),
    /// The order's amount does not fit an `i64` of won (nothing was taken).
    AmountTooLarge,
    /// The user had stored the order's idempotency key before (nothing was taken): its first
    /// answer is in the store.
    Repeat,
}

/// A line of a user's cart, with the item's current name and price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub item_id: i64,
    pub name: String,
    pub price: i64,
    pub quantity: i64,
}
