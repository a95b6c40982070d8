//! JSON shapes of API answers.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use hurry_persistence::{ItemRecord, OrderRecord};
use serde::Serialize;

/// An item as the API shows it (owning its text, or borrowing it from a cached record).
#[derive(Debug, Serialize)]
pub struct ItemView<'a> {
    pub id: i64,
    pub seller_id: i64,
    pub name: Cow<'a, str>,
    pub description: Cow<'a, str>,
    pub price: i64,
    pub stock_available: i64,
    pub drop: Option<DropView>,
    pub created_at: DateTime<Utc>,
}

/// The drop of a limited item.
#[derive(Debug, Serialize)]
pub struct DropView {
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub per_user_limit: u32,
    pub total_units: i64,
}

impl ItemView<'static> {
    /// The view of `item` with `stock_available` units on sale.
    pub fn new(item: ItemRecord, stock_available: i64) -> Self {
        Self {
            id: item.id,
            seller_id: item.seller_id,
            name: Cow::Owned(item.name),
            description: Cow::Owned(item.description),
            price: item.price,
            stock_available,
            drop: item.drop.map(|drop| DropView {
                opens_at: drop.opens_at,
                closes_at: drop.closes_at,
                per_user_limit: drop.per_user_limit,
                total_units: drop.total_units,
            }),
            created_at: item.created_at,
        }
    }
}

impl<'a> ItemView<'a> {
    /// The view of a borrowed `item` (no copy of its text).
    pub fn borrowed(item: &'a ItemRecord, stock_available: i64) -> Self {
        Self {
            id: item.id,
            seller_id: item.seller_id,
            name: Cow::Borrowed(&item.name),
            description: Cow::Borrowed(&item.description),
            price: item.price,
            stock_available,
            drop: item.drop.as_ref().map(|drop| DropView {
                opens_at: drop.opens_at,
                closes_at: drop.closes_at,
                per_user_limit: drop.per_user_limit,
                total_units: drop.total_units,
            }),
            created_at: item.created_at,
        }
    }
}

/// An order as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub lines: Vec<LineView>,
    pub amount: i64,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One order line.
#[derive(Debug, Serialize)]
pub struct LineView {
    pub item_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

impl From<OrderRecord> for OrderView {
    fn from(order: OrderRecord) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            lines: order
                .lines
                .into_iter()
                .map(|line| LineView {
                    item_id: line.item_id,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    amount: line.amount,
                })
                .collect(),
            amount: order.amount,
            payment_due_at: order.payment_due_at,
            created_at: order.created_at,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Serialize)]
pub struct PageView<T: Serialize> {
    #[serde(flatten)]
    pub rows: PageRows<T>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

/// The rows of a page under their collection name.
#[derive(Debug, Serialize)]
pub enum PageRows<T: Serialize> {
    #[serde(rename = "items")]
    Items(Vec<T>),
    #[serde(rename = "orders")]
    Orders(Vec<T>),
    #[serde(rename = "dead_letters")]
    DeadLetters(Vec<T>),
}

/// A dead-lettered event, for admins.
#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub consumer: String,
    pub event: hurry_persistence::Event,
    pub error: String,
    pub deliveries: u32,
    pub failed_at: chrono::DateTime<chrono::Utc>,
    pub replayed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<hurry_persistence::DeadLetterRecord> for DeadLetterView {
    fn from(letter: hurry_persistence::DeadLetterRecord) -> Self {
        Self {
            id: letter.id,
            consumer: letter.consumer,
            event: letter.event,
            error: letter.error,
            deliveries: letter.deliveries,
            failed_at: letter.failed_at,
            replayed_at: letter.replayed_at,
        }
    }
}

/// A payment as the API shows it.
#[derive(Debug, Serialize)]
pub struct PaymentView {
    pub payment_id: i64,
    pub order_id: i64,
    pub pg_order_id: String,
    pub provider: String,
    pub amount: i64,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    pub refunded_amount: i64,
}

impl From<hurry_persistence::PaymentRecord> for PaymentView {
    fn from(payment: hurry_persistence::PaymentRecord) -> Self {
        Self {
            payment_id: payment.id,
            order_id: payment.order_id,
            pg_order_id: payment.pg_order_id,
            provider: payment.provider,
            amount: payment.amount,
            status: payment.status,
            payment_key: payment.payment_key,
            approved_at: payment.approved_at,
            refunded_amount: payment.refunded_amount,
        }
    }
}

/// A refund as admins see it.
#[derive(Debug, Serialize)]
pub struct RefundView {
    pub refund_id: i64,
    pub payment_id: i64,
    pub order_id: i64,
    pub provider: String,
    pub amount: i64,
    pub reason: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

impl From<hurry_persistence::RefundRecord> for RefundView {
    fn from(refund: hurry_persistence::RefundRecord) -> Self {
        Self {
            refund_id: refund.id,
            payment_id: refund.payment_id,
            order_id: refund.order_id,
            provider: refund.provider,
            amount: refund.amount,
            reason: refund.reason,
            status: refund.status,
            attempts: refund.attempts,
            last_error: refund.last_error,
        }
    }
}
