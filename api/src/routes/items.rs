//! The catalogue: create, list, read, change and delete items, and adjust their stock.
//! Reads go through the catalogue cache; every change here clears what it touched.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use hurry_engine::drop::DropError;
use hurry_engine::{NotServed, PurchaseError};
use hurry_persistence::{DropSpec, ItemChange, ItemRecord, NewItem, StockAdjustment};
use serde::Deserialize;

use crate::auth::Seller;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PageQuery};
use crate::state::AppState;
use crate::views::{ItemView, PageRows, PageView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", post(create_item).get(list_items))
        .route(
            "/items/{id}",
            get(get_item).patch(update_item).delete(delete_item),
        )
        .route("/items/{id}/stock", post(adjust_stock))
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
) -> Result<(StatusCode, Json<ItemView<'static>>), ApiError> {
    let item = validate_item(body, seller.user.id)?;
    let created = state.store.create_item(&item).await?;
    state.engine.serve_drop(&created).await.map_err(|err| {
        tracing::error!(error = %err, item_id = created.id, "cannot start the drop");
        ApiError::new(ErrorCode::Unavailable, "the drop could not be started")
    })?;
    state.catalog.changed(&[]);
    let stock = stock_available(&state, &created).await?;
    Ok((StatusCode::CREATED, Json(ItemView::new(created, stock))))
}

async fn list_items(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let (page, size) = query.validate()?;
    let listing = state.catalog.page(&state.store, page, size).await?;
    let mut items = Vec::with_capacity(listing.rows.len());
    for item in &listing.rows {
        let stock = stock_available(&state, item).await?;
        items.push(ItemView::borrowed(item, stock));
    }
    Ok(Json(PageView {
        rows: PageRows::Items(items),
        page,
        size,
        total: listing.total,
    })
    .into_response())
}

async fn get_item(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let item = state
        .catalog
        .item(&state.store, id)
        .await?
        .ok_or_else(|| item_not_found(id))?;
    let stock = stock_available(&state, &item).await?;
    Ok(Json(ItemView::borrowed(&item, stock)).into_response())
}

fn item_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("item {id} not found"))
}

#[derive(Deserialize)]
struct UpdateItemBody {
    name: Option<String>,
    description: Option<String>,
    price: Option<i64>,
}

/// The owner's change; another seller's item is 404, like an absent one.
async fn update_item(
    State(state): State<AppState>,
    seller: Seller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateItemBody>,
) -> Result<Json<ItemView<'static>>, ApiError> {
    let mut details = Vec::new();
    let name = body.name.map(|name| name.trim().to_owned());
    if name
        .as_ref()
        .is_some_and(|name| name.is_empty() || name.chars().count() > 200)
    {
        details.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|text| text.chars().count() > 10_000)
    {
        details.push(FieldError::new(
            "description",
            "must be at most 10000 characters",
        ));
    }
    if body
        .price
        .is_some_and(|price| !(0..=MAX_PRICE).contains(&price))
    {
        details.push(FieldError::new("price", "must be between 0 and 10^12 won"));
    }
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let change = ItemChange {
        name,
        description: body.description,
        price: body.price,
    };
    let updated = state.store.update_item(id, seller.user.id, &change).await?;
    state.catalog.changed(&[id]);
    let item = updated.ok_or_else(|| item_not_found(id))?;
    if let (Some(price), Some(_)) = (change.price, &item.drop) {
        // The drop's actor prices its orders.
        state.engine.reprice_drop(id, price);
    }
    let stock = stock_available(&state, &item).await?;
    Ok(Json(ItemView::new(item, stock)))
}

/// Hides the item; its orders stay.
async fn delete_item(
    State(state): State<AppState>,
    seller: Seller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let before = state.catalog.item(&state.store, id).await?;
    let deleted = state.store.delete_item(id, seller.user.id).await?;
    state.catalog.changed(&[id]);
    if let Some(spec) = before
        .and_then(|item| item.drop.clone())
        .filter(|_| deleted)
    {
        state.engine.close_drop(id, &spec);
    }
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(item_not_found(id))
    }
}

#[derive(Deserialize)]
struct StockBody {
    delta: i64,
}

fn insufficient_stock(id: i64) -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientStock,
        format!("item {id} has fewer unsold units than that"),
    )
}

/// Adds or removes units: general items in the store, drops through their actor (added
/// units are sellable when this answers). Never below what is sold or reserved.
async fn adjust_stock(
    State(state): State<AppState>,
    seller: Seller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<StockBody>,
) -> Result<Json<ItemView<'static>>, ApiError> {
    if body.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&body.delta) {
        return Err(ApiError::invalid_field(
            "delta",
            "must be a non-zero number of units, at most 10^9 either way",
        ));
    }
    let adjusted = state
        .store
        .adjust_stock(id, seller.user.id, body.delta)
        .await?;
    let item = match adjusted {
        StockAdjustment::Adjusted(item) => item,
        StockAdjustment::Insufficient => return Err(insufficient_stock(id)),
        StockAdjustment::NotFound => return Err(item_not_found(id)),
        StockAdjustment::IsDrop => {
            match state.engine.adjust_drop_units(id, body.delta).await {
                Ok(_) => {}
                Err(PurchaseError::Drop(DropError::InsufficientStock { .. })) => {
                    return Err(insufficient_stock(id))
                }
                Err(PurchaseError::NotServed(NotServed::UnknownItem | NotServed::NotADrop)) => {
                    return Err(item_not_found(id))
                }
                Err(err) => return Err(err.into()),
            }
            state
                .store
                .item_by_id(id)
                .await?
                .ok_or_else(|| item_not_found(id))?
        }
    };
    state.catalog.changed(&[id]);
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
