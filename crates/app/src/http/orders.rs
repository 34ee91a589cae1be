//! Orders: making one from a hold (`POST /orders`, 201), paying it (`confirm-payment`),
//! cancelling it, and reading one's own (`GET /orders/{id}`, `GET /me/orders`). Only the owner
//! sees or touches an order; anyone else's reads as not found.

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Limited, OrderWrites, PaymentWrites, Segment};
use super::idempotency::KeyUse;
use super::openapi::ErrorBody;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use booking_core::{
    HoldId, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentKind, PaymentStatus,
    PaymentToken, SeatId, ShowId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, create_order))
        .routes(route!(DESCRIBE, get_order))
        .routes(route!(DESCRIBE, confirm_payment))
        .routes(route!(DESCRIBE, cancel_order))
        .routes(route!(DESCRIBE, my_orders))
}

/// A charge or a refund of an order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Payment)]
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

/// An order of a hold's seats: paid by `expiresAt`, it is CONFIRMED with a ticket.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Order)]
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
    /// Once CONFIRMED: the code on the ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_code: Option<String>,
    /// Why it ended, or is ending (a decline, a late payment, a cancellation).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Its charges and refunds (on `GET /orders/{orderId}` only).
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

/// The hold to make into an order.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewOrder)]
struct CreateOrderBody {
    #[schema(value_type = HoldId)]
    hold_id: String,
}

/// The use of an `Idempotency-Key` a request runs under, if it carries one.
fn use_of(key_use: &Option<Extension<KeyUse>>) -> Option<&str> {
    key_use.as_ref().map(|Extension(KeyUse(id))| id.as_str())
}

/// Order a hold
///
/// Makes the caller's live hold into an order awaiting payment; the seats stay held until its
/// payment deadline.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    security(("bearerAuth" = [])),
    request_body = CreateOrderBody,
    responses(
        (status = 201, description = "The order, PAYMENT_PENDING", body = OrderView,
            headers(("Location" = String, description = "The order's URL"))),
        (status = 404, description = "HOLD_NOT_FOUND: no such hold, or not the caller's", body = ErrorBody),
        (status = 409, description = "HOLD_NOT_ACTIVE: the hold is RELEASED, EXPIRED or already CONVERTED (`details.orderId`); SHOW_CANCELLED", body = ErrorBody),
        (status = 422, description = "SEATS_NOT_PRICED: the seats cannot be sold together", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many orders", body = ErrorBody),
    ),
)]
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

/// Read an order
#[utoipa::path(
    get,
    path = "/api/v1/orders/{orderId}",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("orderId" = OrderId, Path)),
    responses(
        (status = 200, description = "The order with its payments", body = OrderView),
        (status = 404, description = "ORDER_NOT_FOUND: no such order, or not the caller's", body = ErrorBody),
    ),
)]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<OrderView>, ApiError> {
    let (order, payments) = state.orders.order(&caller.user_id, &id).await?;
    Ok(Json(OrderView::new(&order, Some(&payments))))
}

/// What the payment form handed over.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PaymentConfirmation)]
struct ConfirmBody {
    /// The provider's single-use token (the mock provider: `tok_visa`, `tok_decline`).
    #[schema(value_type = PaymentToken)]
    payment_token: String,
}

/// Pay an order
///
/// Charges the order's amount; once the provider agrees, the order is CONFIRMED with a ticket
/// code. Retry with the same `Idempotency-Key`: nothing is charged twice.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{orderId}/confirm-payment",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("orderId" = OrderId, Path)),
    request_body = ConfirmBody,
    responses(
        (status = 200, description = "The order, CONFIRMED with its ticket code", body = OrderView),
        (status = 402, description = "PAYMENT_DECLINED: the order is FAILED and its seats free (`details.reason`)", body = ErrorBody),
        (status = 404, description = "ORDER_NOT_FOUND: no such order, or not the caller's", body = ErrorBody),
        (status = 409, description = "ORDER_EXPIRED, ORDER_NOT_PENDING (`details.status`), PAYMENT_IN_PROGRESS, SHOW_CANCELLED", body = ErrorBody),
        (status = 422, description = "INVALID_PAYMENT_TOKEN: not 1 to 255 visible ASCII characters", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many payment attempts", body = ErrorBody),
    ),
)]
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
    if order.status == OrderStatus::Confirmed {
        // A purchase ends the buyer's shopping session: the next in line may come in now. The
        // order is paid whatever happens here; a failure only leaves the session to run out.
        if let Err(e) = state
            .waiting_rooms
            .bought(&caller.user_id, order.show_id)
            .await
        {
            tracing::warn!(error = %booking_core::Chain(&e), "could not end a shopping session after a purchase; it runs out by itself");
        }
    }
    Ok(Json(OrderView::new(&order, None)))
}

/// Cancel an order
///
/// Frees its seats; a paid order is refunded first.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{orderId}/cancel",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("orderId" = OrderId, Path)),
    responses(
        (status = 200, description = "The order, CANCELLED (or still cancelling while a refund is pending)", body = OrderView),
        (status = 404, description = "ORDER_NOT_FOUND: no such order, or not the caller's", body = ErrorBody),
        (status = 409, description = "ORDER_NOT_CANCELLABLE (`details.status`), PAYMENT_IN_PROGRESS", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many payment attempts", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Where the previous page ended (its `nextCursor`).
    #[param(min_length = 1)]
    cursor: Option<String>,
    /// Orders per page (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// A page of the caller's orders, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrdersPage)]
struct OrdersView {
    orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// List my orders
#[utoipa::path(
    get,
    path = "/api/v1/me/orders",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the caller's orders", body = OrdersView),
        (status = 400, description = "INVALID_CURSOR, INVALID_LIMIT (`details.max`), INVALID_QUERY", body = ErrorBody),
    ),
)]
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
