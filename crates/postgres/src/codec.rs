//! Conversions between domain values and PostgreSQL columns, in one place so that every query
//! reads and writes them the same way, and so that a row that does not decode becomes
//! a corrupt [`StoreError`] instead of a panic.

use booking_core::StoreFailure;
use booking_core::ports::StoreError;
use booking_core::{
    BookingRequest, Hold, HoldId, Order, OrderId, Payment, PaymentId, RequestId, RequestOutcome,
    RequestStatus, SeatId, ShowId,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use booking_core::model::OutcomeColumns;
/// The message of a request that was never decided in time; the same for the worker's
/// decisions and the sweeper.
pub(crate) use booking_core::model::REQUEST_EXPIRED_MESSAGE as EXPIRED_MESSAGE;

/// The SQLSTATE of an error the server reported, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether the transaction lost a race with a concurrent one and was rolled back by the server
/// (`serialization_failure`, `deadlock_detected`): retrying from fresh state will do.
pub(crate) fn is_concurrency_failure(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("40001" | "40P01"))
}

/// Maps a driver error to the port's error, keeping it as the cause: bad data (and a schema that
/// does not match, which no retry fixes) is `Corrupt`; everything else (I/O, a server going away,
/// a pool timeout, a lost race, a cancelled statement) is `Unavailable`, worth retrying.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    let kind = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Class 22: data exception; 23: integrity constraint violation; 42: syntax error or
            // access rule violation (an unmigrated or foreign schema).
            if code.starts_with("22") || code.starts_with("23") || code.starts_with("42") {
                StoreFailure::Corrupt
            } else {
                StoreFailure::Unavailable
            }
        }
        sqlx::Error::RowNotFound => StoreFailure::Corrupt,
        e if booking_sql::errors::is_data_error(e) => StoreFailure::Corrupt,
        _ => StoreFailure::Unavailable,
    };
    let context = match sqlstate(&e) {
        Some(code) => format!("PostgreSQL (SQLSTATE {code})"),
        None => "PostgreSQL".to_owned(),
    };
    StoreError::new(kind, context).caused_by(e)
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(what.to_string())
}

/// `t` as it will read back from a `TIMESTAMPTZ` column: sqlx sends the microseconds since
/// 2000-01-01 truncated towards that epoch, and that is what the server stores.
pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let epoch = DateTime::from_timestamp(946_684_800, 0).expect("the PostgreSQL epoch");
    (t - epoch)
        .num_microseconds()
        .map_or(t, |us| epoch + chrono::Duration::microseconds(us))
}

pub(crate) use booking_sql::errors::parse_column as parse;

pub(crate) fn parse_seats(list: &[String], column: &str) -> Result<Vec<SeatId>, StoreError> {
    list.iter().map(|s| parse(s, column)).collect()
}

/// A seat list as one text (`"A1,A2"`), for binding lists of lists as one array per column:
/// PostgreSQL arrays are rectangular, so `TEXT[][]` cannot carry lists of different lengths.
/// Seat ids never contain a comma; `string_to_array(x, ',')` turns it back (`''` → `{}`).
pub(crate) fn joined_seats(seats: &[SeatId]) -> String {
    let mut out = String::with_capacity(seats.len() * 4);
    for (i, seat) in seats.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        use std::fmt::Write;
        let _ = write!(out, "{seat}");
    }
    out
}

/// A `booking_requests` row, as every request query selects it.
#[derive(Debug)]
pub(crate) struct RequestRow {
    pub seq: i64,
    pub request_id: Uuid,
    pub user_id: String,
    pub show_id: Uuid,
    pub seat_ids: Vec<String>,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub hold_id: Option<Uuid>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub result_message: Option<String>,
    pub unavailable: Option<Vec<String>>,
    pub alternatives: Option<Vec<String>>,
}

impl TryFrom<RequestRow> for BookingRequest {
    type Error = StoreError;

    fn try_from(row: RequestRow) -> Result<Self, StoreError> {
        let status: RequestStatus = parse(&row.status, "status")?;
        let seats = |list: Option<Vec<String>>, column| {
            list.map(|list| parse_seats(&list, column)).transpose()
        };
        let outcome = RequestOutcome::from_columns(
            status,
            OutcomeColumns {
                message: row.result_message,
                hold_id: row.hold_id.map(HoldId::from_uuid),
                hold_expires_at: row.hold_expires_at,
                unavailable: seats(row.unavailable, "unavailable")?,
                alternatives: seats(row.alternatives, "alternatives")?,
            },
        )?;
        Ok(BookingRequest {
            request_id: RequestId::from_uuid(row.request_id),
            user_id: parse(&row.user_id, "user_id")?,
            show_id: ShowId::from_uuid(row.show_id),
            seat_ids: parse_seats(&row.seat_ids, "seat_ids")?,
            status,
            seq: row.seq,
            idempotency_key: row
                .idempotency_key
                .map(|k| parse(&k, "idempotency_key"))
                .transpose()?,
            created_at: row.created_at,
            expires_at: row.expires_at,
            processed_at: row.processed_at,
            outcome,
        })
    }
}

/// A `holds` row, as every hold query selects it.
#[derive(Debug)]
pub(crate) struct HoldRow {
    pub hold_id: Uuid,
    pub request_id: Uuid,
    pub user_id: String,
    pub show_id: Uuid,
    pub seat_ids: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl TryFrom<HoldRow> for Hold {
    type Error = StoreError;

    fn try_from(row: HoldRow) -> Result<Self, StoreError> {
        Ok(Hold {
            hold_id: HoldId::from_uuid(row.hold_id),
            request_id: RequestId::from_uuid(row.request_id),
            user_id: parse(&row.user_id, "user_id")?,
            show_id: ShowId::from_uuid(row.show_id),
            seat_ids: parse_seats(&row.seat_ids, "seat_ids")?,
            status: parse(&row.status, "status")?,
            created_at: row.created_at,
            expires_at: row.expires_at,
            ended_at: row.ended_at,
        })
    }
}

/// An `orders` row, as every order query selects it.
#[derive(Debug)]
pub(crate) struct OrderRow {
    pub order_id: Uuid,
    pub hold_id: Uuid,
    pub user_id: String,
    pub show_id: Uuid,
    pub seat_ids: Vec<String>,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub seats_until: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ticket_code: Option<String>,
    pub reason: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;

    fn try_from(row: OrderRow) -> Result<Self, StoreError> {
        Ok(Order {
            order_id: OrderId::from_uuid(row.order_id),
            hold_id: HoldId::from_uuid(row.hold_id),
            user_id: parse(&row.user_id, "user_id")?,
            show_id: ShowId::from_uuid(row.show_id),
            seat_ids: parse_seats(&row.seat_ids, "seat_ids")?,
            status: parse(&row.status, "status")?,
            amount_cents: row.amount_cents,
            currency: row.currency,
            created_at: row.created_at,
            expires_at: row.expires_at,
            seats_until: row.seats_until,
            updated_at: row.updated_at,
            ticket_code: row.ticket_code,
            reason: row.reason,
        })
    }
}

/// A `payments` row, as every payment query selects it.
#[derive(Debug)]
pub(crate) struct PaymentRow {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub kind: String,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub token: Option<String>,
    pub provider_ref: Option<String>,
    pub refund_of: Option<Uuid>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;

    fn try_from(row: PaymentRow) -> Result<Self, StoreError> {
        Ok(Payment {
            payment_id: PaymentId::from_uuid(row.payment_id),
            order_id: OrderId::from_uuid(row.order_id),
            kind: parse(&row.kind, "kind")?,
            status: parse(&row.status, "status")?,
            amount_cents: row.amount_cents,
            currency: row.currency,
            token: row.token.map(|t| parse(&t, "token")).transpose()?,
            provider_ref: row.provider_ref,
            refund_of: row.refund_of.map(PaymentId::from_uuid),
            message: row.message,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Decodes every row, or reports the first that does not decode.
pub(crate) fn decode_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_matches_what_postgres_stores() {
        let t = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        assert_eq!(
            truncate_micros(t),
            DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap()
        );
        // Before 2000 the microsecond count is negative and truncates towards the epoch.
        let old = DateTime::from_timestamp(900_000_000, 999_999_999).unwrap();
        assert_eq!(
            truncate_micros(old),
            DateTime::from_timestamp(900_000_001, 0).unwrap()
        );
    }

    #[test]
    fn seat_lists_join_with_commas() {
        let seats: Vec<SeatId> = ["A1", "B12", "AA3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(joined_seats(&seats), "A1,B12,AA3");
        assert_eq!(joined_seats(&[]), "");
    }
}
