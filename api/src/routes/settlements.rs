//! `GET /seller/settlements?from=&to=`: the caller's settlement per day (gross, gateway fees,
//! net), `settled` once the daily job closed the day, `open` before.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::auth::Seller;
use crate::error::{ApiError, FieldError};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/seller/settlements", get(list))
}

/// Most days one listing covers.
const MAX_DAYS: i64 = 366;

#[derive(Deserialize)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct DayView {
    date: NaiveDate,
    gross: i64,
    fee: i64,
    net: i64,
    status: &'static str,
}

fn parse_day(field: &str, text: Option<&str>) -> Result<Option<NaiveDate>, FieldError> {
    text.map(|text| {
        text.parse::<NaiveDate>()
            .map_err(|_| FieldError::new(field, "must be a date, YYYY-MM-DD"))
    })
    .transpose()
}

async fn list(
    State(state): State<AppState>,
    seller: Seller,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let from = parse_day("from", query.from.as_deref());
    let to = parse_day("to", query.to.as_deref());
    let (from, to) = match (from, to) {
        (Ok(from), Ok(to)) => (from, to),
        (from, to) => {
            let details = [from.err(), to.err()].into_iter().flatten().collect();
            return Err(ApiError::validation(details));
        }
    };
    let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = from.unwrap_or(to - chrono::Duration::days(30));
    if from > to {
        return Err(ApiError::invalid_field("from", "must not be after to"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::invalid_field(
            "from",
            "the range is at most 366 days",
        ));
    }
    let days: Vec<DayView> = state
        .store
        .settlements(seller.user.id, from, to)
        .await?
        .into_iter()
        .map(|day| DayView {
            date: day.day,
            gross: day.gross,
            fee: day.fee,
            net: day.net,
            status: if day.settled { "settled" } else { "open" },
        })
        .collect();
    Ok(Json(serde_json::json!({ "settlements": days })))
}
