//! Orders: making one from a hold (`POST /orders`, 201), paying it (`confirm-payment`),
//! cancelling it, and reading one's own (`GET /orders/{id}`, `GET /me/orders`). Only the owner
//! sees or touches an order; anyone else's reads as not found.

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Limited, OrderWrites, PaymentWrites, Segment};
use super::idempotency::KeyUse;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_core::{
    HoldId, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentKind, PaymentStatus, SeatId,
    ShowId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders", post(create_order))
        .route("/api/v1/orders/{order_id}", get(get_order))
        .route(
            "/api/v1/orders/{order_id}/confirm-payment",
            post(confirm_payment),
        )
        .route("/api/v1/orders/{order_id}/cancel", post(cancel_order))
        .route("/api/v1/me/orders", get(my_orders))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    payment_id: PaymentId,
    kind: PaymentKind,
    status: PaymentStatus,
    amount_cents: i64,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        // The token and the provider's references stay inside: they are for reconciliation.
        Self {
            payment_id: p.payment_id,
            kind: p.kind,
            status: p.status,
            amount_cents: p.amount_cents,
            currency: p.currency.clone(),
            message: p.message.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderView {
    order_id: OrderId,
    status: OrderStatus,
    hold_id: HoldId,
    show_id: ShowId,
    seat_ids: Vec<SeatId>,
    amount_cents: i64,
    currency: String,
    created_at: DateTime<Utc>,
    /// The payment deadline.
    expires_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payments: Option<Vec<PaymentView>>,
}

impl OrderView {
    fn new(o: &Order, payments: Option<&[Payment]>) -> Self {
        Self {
            order_id: o.order_id,
            status: o.status,
            hold_id: o.hold_id,
            show_id: o.show_id,
            seat_ids: o.seat_ids.clone(),
            amount_cents: o.amount_cents,
            currency: o.currency.clone(),
            created_at: o.created_at,
            expires_at: o.expires_at,
            updated_at: o.updated_at,
            ticket_code: o.ticket_code.clone(),
            reason: o.reason.clone(),
            payments: payments.map(|ps| ps.iter().map(PaymentView::from).collect()),
        }
    }
}

/// Where an order is read.
fn order_url(id: OrderId) -> String {
    format!("/api/v1/orders/{id}")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateOrderBody {
    hold_id: String,
}

/// The use of an `Idempotency-Key` a request runs under, if it carries one.
fn use_of(key_use: &Option<Extension<KeyUse>>) -> Option<&str> {
    key_use.as_ref().map(|Extension(KeyUse(id))| id.as_str())
}

async fn create_order(
    State(state): State<AppState>,
    Limited(caller, _): Limited<OrderWrites>,
    key_use: Option<Extension<KeyUse>>,
    ApiJson(body): ApiJson<CreateOrderBody>,
) -> Result<Response, ApiError> {
    let order = state
        .orders
        .create_order(&caller.user_id, &body.hold_id, use_of(&key_use))
        .await?;
    let location = HeaderValue::from_str(&order_url(order.order_id)).expect("URLs are ASCII");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrderView::new(&order, None)),
    )
        .into_response())
}

async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<OrderView>, ApiError> {
    let (order, payments) = state.orders.order(&caller.user_id, &id).await?;
    Ok(Json(OrderView::new(&order, Some(&payments))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody {
    payment_token: String,
}

async fn confirm_payment(
    State(state): State<AppState>,
    Limited(caller, _): Limited<PaymentWrites>,
    Segment(id): Segment,
    key_use: Option<Extension<KeyUse>>,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<OrderView>, ApiError> {
    let order = state
        .orders
        .confirm_payment(&caller.user_id, &id, &body.payment_token, use_of(&key_use))
        .await?;
    Ok(Json(OrderView::new(&order, None)))
}

async fn cancel_order(
    State(state): State<AppState>,
    Limited(caller, _): Limited<PaymentWrites>,
    Segment(id): Segment,
    key_use: Option<Extension<KeyUse>>,
) -> Result<Json<OrderView>, ApiError> {
    let order = state
        .orders
        .cancel(&caller.user_id, &id, use_of(&key_use))
        .await?;
    Ok(Json(OrderView::new(&order, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrdersView {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

async fn my_orders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<OrdersView>, ApiError> {
    let page = state
        .orders
        .orders_of(&caller.user_id, query.cursor.as_deref(), query.limit)
        .await?;
    Ok(Json(OrdersView {
        orders: page
            .orders
            .iter()
            .map(|o| OrderView::new(o, None))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
