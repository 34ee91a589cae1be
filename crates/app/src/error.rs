//! The errors of the application layer, and their one mapping to HTTP.
//!
//! Each layer has its own error:
//! - the ports report failures of the outside world (`StoreError`, `QueueError`, …, in the core);
//! - the use cases report [`BookingError`]: what went wrong in the caller's terms (no such show,
//!   too many seats, the hold is no longer active) or which dependency failed, with its cause;
//! - the HTTP boundary speaks [`ApiError`]: a status, a machine-readable code, a message and
//!   details, as the body `{"error":{"code":"HOLD_NOT_ACTIVE","message":"...","details":{...}}}`.
//!
//! `From<BookingError> for ApiError` below is the only place a domain error becomes a status.
//! The WebSocket paths use the same [`BookingError::code`] and message, so a client reads the
//! same code whichever way it asked. A dependency failure is logged here with its whole chain of
//! causes, once; its 5xx body never carries that text (it may name hosts, tables or SQL).

use crate::catalog::CatalogIssue;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::ports::{PaymentError, QueueError, StoreError};
use booking_core::{
    Chain, HoldStatus, OrderId, OrderStatus, PriceError, RequestId, RequestStatus, SeatId, ShowId,
};
use serde_json::{Value, json};

/// What a use case could not do, and why.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("No such show")]
    ShowNotFound,
    #[error("No such movie")]
    MovieNotFound,
    #[error("No such booking request")]
    RequestNotFound,
    /// No such hold, or not the caller's (indistinguishable on purpose).
    #[error("No such hold")]
    HoldNotFound,
    #[error("The hold is {0}, not HELD")]
    HoldNotActive(HoldStatus),
    /// The hold was already made into an order (its id in the details).
    #[error("The hold is CONVERTED: it was made into an order already")]
    HoldConverted { order_id: OrderId },
    /// No such order, or not the caller's.
    #[error("No such order")]
    OrderNotFound,
    #[error("The order's payment deadline has passed")]
    OrderExpired,
    #[error("The order is {0}, not PAYMENT_PENDING")]
    OrderNotPending(OrderStatus),
    #[error("The order is {0} and cannot be cancelled")]
    OrderNotCancellable(OrderStatus),
    #[error("A payment of this order is in progress; retry shortly")]
    PaymentInProgress,
    /// The provider refused the charge: the order is FAILED and its seats are free.
    #[error("The payment was declined: {reason}")]
    PaymentDeclined { order_id: OrderId, reason: String },
    #[error("paymentToken must be 1 to 255 visible ASCII characters")]
    InvalidPaymentToken,
    #[error("These seats cannot be sold together: {0}")]
    SeatsNotPriced(PriceError),
    #[error("cursor is not one this API handed out")]
    InvalidCursor,
    #[error("limit must be between 1 and {max}")]
    InvalidLimit { max: usize },
    #[error("seatIds must name at least one seat")]
    NoSeats,
    #[error("At most {max} seats per request")]
    TooManySeats { max: usize, requested: usize },
    /// A seat id that is not of the form "A12" (the raw text, cut short).
    #[error("Seat ids look like \"A12\" (row letters, seat number)")]
    InvalidSeatId(String),
    #[error("Seat {0} does not exist in this show")]
    SeatNotInLayout(SeatId),
    #[error("Seat {0} cannot be booked")]
    SeatBlocked(SeatId),
    #[error("Seat {0} is listed twice")]
    DuplicateSeat(SeatId),
    #[error("Idempotency-Key must be 1 to 128 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("A request with this Idempotency-Key is still being handled; retry shortly")]
    IdempotencyKeyInFlight,
    #[error("This Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("date must be YYYY-MM-DD")]
    InvalidDate,
    /// A catalog write was refused before anything was written: every value at fault.
    #[error("The catalog write was refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidCatalog(Vec<CatalogIssue>),
    /// Direct mode: the request was decided at once and its seats were not all free.
    #[error("{message}")]
    SeatsUnavailable {
        request_id: RequestId,
        unavailable: Vec<SeatId>,
        alternatives: Vec<SeatId>,
        message: String,
    },
    /// Direct mode: the request's deadline passed before it could be decided.
    #[error("The request expired before it could be processed")]
    RequestExpired { request_id: RequestId },
    /// No such request among the dead letters (never set aside, or redriven or discarded
    /// already).
    #[error("No such dead letter")]
    DeadLetterNotFound,
    #[error("reason must be at most 500 characters, without control characters")]
    InvalidReason,
    /// The show has taken hold requests: its seats, prices and movie are fixed.
    #[error("Show {0} is on sale: its seats, prices and movie can no longer change")]
    ShowOnSale(ShowId),
    /// The user already has this many undecided requests for the show.
    #[error("You already have {max} requests waiting for this show; wait for their results")]
    TooManyOpenRequests { max: u32 },
    /// The show was cancelled: it takes no hold request, order, payment or catalog change.
    #[error("Show {0} was cancelled")]
    ShowCancelled(ShowId),
    /// The show's waiting room is on and the caller shows no valid admission of their place
    /// (`reason`: MISSING, INVALID, EXPIRED, OTHER_USER, OTHER_SHOW, NOT_ADMITTED).
    #[error("This show's waiting room is on: join it and use the admission token it gives you")]
    AdmissionRequired { reason: &'static str },
    /// The show has no waiting room (none is on).
    #[error("This show has no waiting room")]
    WaitingRoomNotFound,
    /// The caller has no place in the show's waiting room.
    #[error("You have no place in this show's waiting room; join it first")]
    NotInWaitingRoom,
    /// An admin's waiting-room settings are out of bounds.
    #[error("{0}")]
    InvalidWaitingRoom(String),
    /// This deployment's processes share no admission key, so no room may be switched on.
    #[error(
        "Waiting rooms need an admission key every instance shares (ADMISSION_SECRET or ADMISSION_SECRET_ARN; AdmissionSecretArn in the template)"
    )]
    NoSharedAdmissionKey,
    /// A store failed (unavailable: worth retrying; corrupt: it is not).
    #[error("booking store failed")]
    Store(#[from] StoreError),
    /// The request is durable but could not be queued (the client retries with its key).
    #[error("request queue failed")]
    Queue(#[from] QueueError),
    /// The payment provider failed or did not answer in time: whatever it did is settled
    /// later; nothing is charged twice.
    #[error("payment provider failed")]
    PaymentUnavailable(#[source] PaymentError),
    /// The stores contradict each other (a hold whose show is gone): a defect, not bad input.
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
}

impl BookingError {
    /// The machine-readable code clients branch on, the same over HTTP and WebSocket.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ShowNotFound => "SHOW_NOT_FOUND",
            Self::MovieNotFound => "MOVIE_NOT_FOUND",
            Self::RequestNotFound => "REQUEST_NOT_FOUND",
            Self::HoldNotFound => "HOLD_NOT_FOUND",
            Self::HoldNotActive(_) | Self::HoldConverted { .. } => "HOLD_NOT_ACTIVE",
            Self::OrderNotFound => "ORDER_NOT_FOUND",
            Self::OrderExpired => "ORDER_EXPIRED",
            Self::OrderNotPending(_) => "ORDER_NOT_PENDING",
            Self::OrderNotCancellable(_) => "ORDER_NOT_CANCELLABLE",
            Self::PaymentInProgress => "PAYMENT_IN_PROGRESS",
            Self::PaymentDeclined { .. } => "PAYMENT_DECLINED",
            Self::InvalidPaymentToken => "INVALID_PAYMENT_TOKEN",
            Self::SeatsNotPriced(_) => "SEATS_NOT_PRICED",
            Self::InvalidCursor => "INVALID_CURSOR",
            Self::InvalidLimit { .. } => "INVALID_LIMIT",
            Self::PaymentUnavailable(_) => "PAYMENT_PROVIDER_UNAVAILABLE",
            Self::NoSeats => "NO_SEATS",
            Self::TooManySeats { .. } => "TOO_MANY_SEATS",
            Self::InvalidSeatId(_) => "INVALID_SEAT_ID",
            Self::SeatNotInLayout(_) => "SEAT_NOT_IN_LAYOUT",
            Self::SeatBlocked(_) => "SEAT_BLOCKED",
            Self::DuplicateSeat(_) => "DUPLICATE_SEATS",
            Self::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Self::InvalidDate => "INVALID_DATE",
            Self::InvalidCatalog(_) => "INVALID_CATALOG",
            Self::ShowOnSale(_) => "SHOW_ON_SALE",
            Self::ShowCancelled(_) => "SHOW_CANCELLED",
            Self::TooManyOpenRequests { .. } => "TOO_MANY_OPEN_REQUESTS",
            Self::DeadLetterNotFound => "DEAD_LETTER_NOT_FOUND",
            Self::SeatsUnavailable { .. } => "SEATS_UNAVAILABLE",
            Self::RequestExpired { .. } => "REQUEST_EXPIRED",
            Self::InvalidReason => "INVALID_REASON",
            Self::AdmissionRequired { .. } => "ADMISSION_REQUIRED",
            Self::WaitingRoomNotFound => "WAITING_ROOM_NOT_FOUND",
            Self::NotInWaitingRoom => "NOT_IN_WAITING_ROOM",
            Self::InvalidWaitingRoom(_) => "INVALID_WAITING_ROOM",
            Self::NoSharedAdmissionKey => "NO_SHARED_ADMISSION_KEY",
            Self::IdempotencyKeyInFlight => "IDEMPOTENCY_KEY_IN_FLIGHT",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::Store(e) if !e.is_unavailable() => "INTERNAL_ERROR",
            Self::Store(_) | Self::Queue(_) => "SERVICE_UNAVAILABLE",
            Self::Inconsistent(_) => "INTERNAL_ERROR",
        }
    }

    /// The message a client may see: a dependency failure is never described to it.
    pub fn public_message(&self) -> String {
        match self.code() {
            "SERVICE_UNAVAILABLE" => UNAVAILABLE_MESSAGE.to_owned(),
            "PAYMENT_PROVIDER_UNAVAILABLE" => PAYMENT_UNAVAILABLE_MESSAGE.to_owned(),
            "INTERNAL_ERROR" => INTERNAL_MESSAGE.to_owned(),
            _ => self.to_string(),
        }
    }

    /// Logs a failure of the system (not of the caller's input) with its chain of causes.
    pub fn log(&self) {
        match self {
            Self::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %Chain(self), "store unavailable")
            }
            Self::Store(_) | Self::Inconsistent(_) => {
                tracing::error!(error = %Chain(self), "stored data is invalid");
            }
            Self::Queue(_) => tracing::warn!(error = %Chain(self), "queue unavailable"),
            Self::PaymentUnavailable(_) => {
                tracing::warn!(error = %Chain(self), "payment provider unavailable")
            }
            _ => {}
        }
    }
}

const UNAVAILABLE_MESSAGE: &str = "A backing service is unavailable; retry shortly";
const INTERNAL_MESSAGE: &str = "Internal error";
const PAYMENT_UNAVAILABLE_MESSAGE: &str = "The payment provider did not answer; nothing was \
     charged twice: retry the same request (with the same Idempotency-Key) shortly";

/// An answer of the HTTP boundary: status, code, message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Sent as `Retry-After` (seconds): when trying again makes sense. (Small, so the error
    /// stays cheap to return.)
    pub retry_after: Option<u16>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            UNAVAILABLE_MESSAGE,
        )
    }
}

/// Marks an answer that an `Idempotency-Key` must not keep for replay: it says "not now" (a
/// payment of the order is in progress, too many open requests or too fast) or "not understood as sent" (a wrong content type, which
/// is not part of a request's fingerprint), so a retry with the same key may rightly be answered
/// differently. 5xx answers are never kept either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReplayable;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let not_replayable = matches!(
            self.code,
            "PAYMENT_IN_PROGRESS"
                | "UNSUPPORTED_MEDIA_TYPE"
                | "TOO_MANY_OPEN_REQUESTS"
                | "RATE_LIMITED"
                | "ADMISSION_REQUIRED"
        );
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        if not_replayable {
            response.extensions_mut().insert(NotReplayable);
        }
        response
    }
}

/// The one mapping of domain errors to HTTP.
impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        use BookingError::*;
        e.log();
        let status = match &e {
            ShowNotFound | MovieNotFound | RequestNotFound | HoldNotFound | OrderNotFound
            | DeadLetterNotFound | WaitingRoomNotFound | NotInWaitingRoom => StatusCode::NOT_FOUND,
            AdmissionRequired { .. } => StatusCode::FORBIDDEN,
            InvalidWaitingRoom(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HoldNotActive(_)
            | HoldConverted { .. }
            | OrderExpired
            | OrderNotPending(_)
            | OrderNotCancellable(_)
            | PaymentInProgress
            | ShowOnSale(_)
            | ShowCancelled(_)
            | SeatsUnavailable { .. }
            | RequestExpired { .. }
            | IdempotencyKeyInFlight => StatusCode::CONFLICT,
            InvalidCatalog(_) | InvalidReason => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            PaymentDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
            PaymentUnavailable(_) | NoSharedAdmissionKey => StatusCode::SERVICE_UNAVAILABLE,
            InvalidPaymentToken | SeatsNotPriced(_) => StatusCode::UNPROCESSABLE_ENTITY,
            InvalidCursor | InvalidLimit { .. } => StatusCode::BAD_REQUEST,
            TooManyOpenRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            NoSeats
            | TooManySeats { .. }
            | InvalidSeatId(_)
            | SeatNotInLayout(_)
            | SeatBlocked(_)
            | DuplicateSeat(_) => StatusCode::UNPROCESSABLE_ENTITY,
            InvalidIdempotencyKey | InvalidDate => StatusCode::BAD_REQUEST,
            Store(store) if store.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
            Store(_) | Inconsistent(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let details = match &e {
            HoldNotActive(status) => Some(json!({ "status": status })),
            HoldConverted { order_id } => Some(json!({
                "status": HoldStatus::Converted, "orderId": order_id
            })),
            OrderNotPending(status) | OrderNotCancellable(status) => {
                Some(json!({ "status": status }))
            }
            PaymentDeclined { order_id, reason } => Some(json!({
                "orderId": order_id, "status": OrderStatus::Failed, "reason": reason
            })),
            InvalidLimit { max } => Some(json!({ "max": max })),
            AdmissionRequired { reason } => Some(json!({ "reason": reason })),
            InvalidCatalog(issues) => Some(json!({ "issues": issues })),
            ShowOnSale(show) | ShowCancelled(show) => Some(json!({ "showId": show })),
            TooManyOpenRequests { max } => Some(json!({ "max": max })),
            SeatsUnavailable {
                request_id,
                unavailable,
                alternatives,
                ..
            } => Some(json!({
                "requestId": request_id, "status": RequestStatus::Failed,
                "unavailable": unavailable, "alternatives": alternatives
            })),
            RequestExpired { request_id } => Some(json!({
                "requestId": request_id, "status": RequestStatus::Expired
            })),
            TooManySeats { max, requested } => Some(json!({ "max": max, "requested": requested })),
            InvalidSeatId(raw) => Some(json!({ "seatId": raw })),
            SeatNotInLayout(seat) | SeatBlocked(seat) | DuplicateSeat(seat) => {
                Some(json!({ "seatId": seat }))
            }
            _ => None,
        };
        // Open requests are usually decided within a second or two.
        let retry_after = matches!(e, TooManyOpenRequests { .. }).then_some(2);
        Self {
            status,
            code: e.code(),
            message: e.public_message(),
            details,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_system_never_describe_themselves_to_the_client() {
        let down = ApiError::from(BookingError::Store(
            StoreError::unavailable("PostgreSQL at db.internal:5432").caused_by(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            ),
        ));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.code, "SERVICE_UNAVAILABLE");
        assert!(!down.message.contains("db.internal"));
        let corrupt = ApiError::from(BookingError::Store(StoreError::corrupt(
            "booking_requests.seat_ids",
        )));
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!corrupt.message.contains("seat_ids"));
        let queue = ApiError::from(BookingError::Queue(QueueError::unavailable("SQS send")));
        assert_eq!(
            (queue.status, queue.code),
            (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
        );
    }

    #[test]
    fn caller_errors_keep_their_code_message_and_details() {
        let e = ApiError::from(BookingError::TooManySeats {
            max: 10,
            requested: 11,
        });
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "TOO_MANY_SEATS");
        assert_eq!(e.message, "At most 10 seats per request");
        assert_eq!(e.details, Some(json!({ "max": 10, "requested": 11 })));
        let e = ApiError::from(BookingError::HoldNotActive(HoldStatus::Released));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "HOLD_NOT_ACTIVE")
        );
        assert_eq!(e.details, Some(json!({ "status": "RELEASED" })));
    }
}
