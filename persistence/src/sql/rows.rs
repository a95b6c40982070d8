//! Row decoding: the same column names on both backends.

use super::super::*;
use sqlx::Row;

pub(in super::super) fn user_from_row(row: &DbRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        address: row.try_get("address")?,
        email_verified: row.try_get("email_verified")?,
        roles: Vec::new(),
        created_at: row.try_get("created_at")?,
    })
}

pub(in super::super) fn item_from_row(row: &DbRow) -> Result<ItemRecord, StoreError> {
    let opens_at: Option<DateTime<Utc>> = row.try_get("opens_at")?;
    let drop = match opens_at {
        Some(opens_at) => Some(DropSpec {
            opens_at,
            closes_at: row.try_get("closes_at")?,
            per_user_limit: u32::try_from(row.try_get::<i32, _>("per_user_limit")?)
                .map_err(|_| StoreError::Corrupt("negative per_user_limit".into()))?,
            total_units: row.try_get("total_units")?,
        }),
        None => None,
    };
    Ok(ItemRecord {
        id: row.try_get("id")?,
        seller_id: row.try_get("seller_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: row.try_get("price")?,
        stock: row.try_get("stock")?,
        drop,
        created_at: row.try_get("created_at")?,
    })
}

pub(in super::super) fn order_from_row(row: &DbRow) -> Result<OrderRecord, StoreError> {
    Ok(OrderRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        amount: row.try_get("amount")?,
        payment_due_at: row.try_get("payment_due_at")?,
        created_at: row.try_get("created_at")?,
        lines: Vec::new(),
    })
}

pub(in super::super) fn line_from_row(row: &DbRow) -> Result<(i64, OrderLine), StoreError> {
    Ok((
        row.try_get("order_id")?,
        OrderLine {
            item_id: row.try_get("item_id")?,
            quantity: row.try_get("quantity")?,
            unit_price: row.try_get("unit_price")?,
            amount: row.try_get("amount")?,
        },
    ))
}

/// Attaches lines (ordered by order id, then line number) to their orders.
pub(in super::super) fn attach_lines(orders: &mut [OrderRecord], lines: Vec<(i64, OrderLine)>) {
    let index: std::collections::HashMap<i64, usize> = orders
        .iter()
        .enumerate()
        .map(|(position, order)| (order.id, position))
        .collect();
    for (order_id, line) in lines {
        if let Some(&position) = index.get(&order_id) {
            orders[position].lines.push(line);
        }
    }
}

/// An event from columns `event_id, event_type, version, aggregate_id, occurred_at,
/// payload` (payload as JSON text). `decode_uuid` is the backend's.
pub(in super::super) fn event_from_row(row: &DbRow) -> Result<Event, StoreError> {
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        event_id: decode_uuid(row, "event_id")?,
        event_type: row.try_get("event_type")?,
        version: row.try_get("version")?,
        aggregate_id: row.try_get("aggregate_id")?,
        occurred_at: row.try_get("occurred_at")?,
        payload: Payload::from_text(payload)
            .map_err(|err| StoreError::Corrupt(format!("event payload: {err}")))?,
    })
}

pub(in super::super) fn outbox_event_from_row(row: &DbRow) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        id: row.try_get("id")?,
        event: event_from_row(row)?,
        target: row.try_get("target")?,
    })
}

pub(in super::super) fn dead_letter_from_row(row: &DbRow) -> Result<DeadLetterRecord, StoreError> {
    Ok(DeadLetterRecord {
        id: row.try_get("id")?,
        consumer: row.try_get("consumer")?,
        event: event_from_row(row)?,
        error: row.try_get("error")?,
        deliveries: u32::try_from(row.try_get::<i32, _>("deliveries")?).unwrap_or(0),
        failed_at: row.try_get("failed_at")?,
        replayed_at: row.try_get("replayed_at")?,
    })
}

pub(in super::super) fn ledger_from_row(row: &DbRow) -> Result<LedgerRecord, StoreError> {
    Ok(LedgerRecord {
        id: row.try_get("id")?,
        event_id: decode_uuid(row, "event_id")?,
        order_id: row.try_get("order_id")?,
        item_id: row.try_get("item_id")?,
        seller_id: row.try_get("seller_id")?,
        kind: row.try_get("kind")?,
        quantity: row.try_get("quantity")?,
        amount: row.try_get("amount")?,
    })
}
