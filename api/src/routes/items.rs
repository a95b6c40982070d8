//! The catalogue: create, list and read items.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use hurry_persistence::{DropSpec, ItemRecord, NewItem};
use serde::Deserialize;

use crate::auth::Seller;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PageQuery};
use crate::state::AppState;
use crate::views::{ItemView, PageRows, PageView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", post(create_item).get(list_items))
        .route("/items/{id}", get(get_item))
}

/// Largest price of a unit, in won.
const MAX_PRICE: i64 = 1_000_000_000_000;
/// Largest stock of an item.
const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Deserialize)]
struct CreateItemBody {
    name: String,
    #[serde(default)]
    description: String,
    price: i64,
    stock: i64,
    drop: Option<DropBody>,
}

#[derive(Deserialize)]
struct DropBody {
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    per_user_limit: i64,
}

fn validate_item(body: CreateItemBody, seller_id: i64) -> Result<NewItem, ApiError> {
    let mut details = Vec::new();
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        details.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    if body.description.chars().count() > 10_000 {
        details.push(FieldError::new(
            "description",
            "must be at most 10000 characters",
        ));
    }
    if !(0..=MAX_PRICE).contains(&body.price) {
        details.push(FieldError::new("price", "must be between 0 and 10^12 won"));
    }
    if !(0..=MAX_STOCK).contains(&body.stock) {
        details.push(FieldError::new("stock", "must be between 0 and 10^9"));
    }
    let drop = body.drop.map(|drop| {
        if drop.closes_at <= drop.opens_at {
            details.push(FieldError::new("drop.closes_at", "must be after opens_at"));
        }
        if drop.closes_at <= Utc::now() {
            details.push(FieldError::new("drop.closes_at", "must be in the future"));
        }
        if !(1..=10_000).contains(&drop.per_user_limit) {
            details.push(FieldError::new(
                "drop.per_user_limit",
                "must be between 1 and 10000",
            ));
        }
        if body.stock < 1 {
            details.push(FieldError::new("stock", "a drop needs at least one unit"));
        }
        DropSpec {
            opens_at: drop.opens_at,
            closes_at: drop.closes_at,
            per_user_limit: u32::try_from(drop.per_user_limit).unwrap_or(0),
            total_units: body.stock,
        }
    });
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    Ok(NewItem {
        seller_id,
        name,
        description: body.description,
        price: body.price,
        stock: body.stock,
        drop,
    })
}

async fn create_item(
    State(state): State<AppState>,
    seller: Seller,
    ApiJson(body): ApiJson<CreateItemBody>,
) -> Result<(StatusCode, Json<ItemView>), ApiError> {
    let item = validate_item(body, seller.user.id)?;
    let created = state.store.create_item(&item).await?;
    state.engine.serve_drop(&created).await.map_err(|err| {
        tracing::error!(error = %err, item_id = created.id, "cannot start the drop");
        ApiError::new("unavailable", "the drop could not be started")
    })?;
    let stock = stock_available(&state, &created).await?;
    Ok((StatusCode::CREATED, Json(ItemView::new(created, stock))))
}

async fn list_items(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageView<ItemView>>, ApiError> {
    let (page, size) = query.validate()?;
    let listing = state.store.list_items(page, size).await?;
    let mut items = Vec::with_capacity(listing.rows.len());
    for item in listing.rows {
        let stock = stock_available(&state, &item).await?;
        items.push(ItemView::new(item, stock));
    }
    Ok(Json(PageView {
        rows: PageRows::Items(items),
        page,
        size,
        total: listing.total,
    }))
}

async fn get_item(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ItemView>, ApiError> {
    let item = state
        .store
        .item_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("item {id} not found")))?;
    let stock = stock_available(&state, &item).await?;
    Ok(Json(ItemView::new(item, stock)))
}

/// Units on sale now: the drop's actor for a served drop, the store otherwise.
pub async fn stock_available(state: &AppState, item: &ItemRecord) -> Result<i64, ApiError> {
    let Some(drop) = &item.drop else {
        return Ok(item.stock);
    };
    if let Some(slot) = state.engine.drop_slot(item.id) {
        return Ok(slot.available.load(Ordering::Relaxed));
    }
    let sales = state.store.drop_sales(item.id).await?;
    Ok((drop.total_units - sales.total()).max(0))
}
