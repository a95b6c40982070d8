//! The cart and the wishlist of the signed-in user.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::items::stock_available;
use crate::state::AppState;
use crate::views::ItemView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cart", get(get_cart).delete(clear_cart))
        .route(
            "/cart/items/{item_id}",
            put(set_cart_item).delete(remove_cart_item),
        )
        .route("/wishlist", get(get_wishlist))
        .route(
            "/wishlist/items/{item_id}",
            put(add_wishlist_item).delete(remove_wishlist_item),
        )
}

#[derive(Serialize)]
struct CartLineView {
    item_id: i64,
    name: String,
    price: i64,
    quantity: i64,
}

#[derive(Serialize)]
struct CartView {
    lines: Vec<CartLineView>,
    /// What the lines cost at today's prices.
    amount: i64,
}

async fn cart_view(state: &AppState, user_id: i64) -> Result<CartView, ApiError> {
    let lines: Vec<CartLineView> = state
        .store
        .cart(user_id)
        .await?
        .into_iter()
        .map(|line| CartLineView {
            item_id: line.item_id,
            name: line.name,
            price: line.price,
            quantity: line.quantity,
        })
        .collect();
    let amount = lines
        .iter()
        .map(|line| line.price.saturating_mul(line.quantity))
        .fold(0_i64, i64::saturating_add);
    Ok(CartView { lines, amount })
}

async fn get_cart(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<CartView>, ApiError> {
    Ok(Json(cart_view(&state, user.id).await?))
}

#[derive(Deserialize)]
struct QuantityBody {
    quantity: i64,
}

/// Sets the quantity (0 removes the line); the item must exist.
async fn set_cart_item(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(item_id): ApiPath<i64>,
    ApiJson(body): ApiJson<QuantityBody>,
) -> Result<Json<CartView>, ApiError> {
    if !(0..=10_000).contains(&body.quantity) {
        return Err(ApiError::invalid_field(
            "quantity",
            "must be between 0 (remove) and 10000",
        ));
    }
    if !state
        .store
        .set_cart_item(user.id, item_id, body.quantity)
        .await?
    {
        return Err(ApiError::not_found(format!("item {item_id} not found")));
    }
    Ok(Json(cart_view(&state, user.id).await?))
}

async fn remove_cart_item(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(item_id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.remove_cart_item(user.id, item_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_cart(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    state.store.clear_cart(user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct WishlistView {
    items: Vec<ItemView<'static>>,
}

async fn get_wishlist(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<WishlistView>, ApiError> {
    let mut items = Vec::new();
    for item in state.store.wishlist(user.id).await? {
        let stock = stock_available(&state, &item).await?;
        items.push(ItemView::new(item, stock));
    }
    Ok(Json(WishlistView { items }))
}

/// Adding twice is fine; the item must exist.
async fn add_wishlist_item(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(item_id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if state.store.add_wishlist_item(user.id, item_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("item {item_id} not found")))
    }
}

async fn remove_wishlist_item(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(item_id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.remove_wishlist_item(user.id, item_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
