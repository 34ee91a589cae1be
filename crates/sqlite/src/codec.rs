//! Conversions between domain values and SQLite columns, in one place so that every query reads
//! and writes them the same way, and so that a row that does not decode becomes
//! a corrupt [`StoreError`] instead of a panic.

use booking_core::StoreFailure;
use booking_core::ports::StoreError;
use booking_core::{
    BookingRequest, Hold, HoldId, RequestOutcome, RequestStatus, SeatId, SnapshotHold,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};
use std::str::FromStr;

use booking_core::model::OutcomeColumns;
/// The message of a request that was never decided in time; the same for the worker's
/// decisions and the sweeper.
pub(crate) use booking_core::model::REQUEST_EXPIRED_MESSAGE as EXPIRED_MESSAGE;

/// Maps a driver error to the port's error, keeping it as the cause: bad data is not worth
/// retrying, everything else (I/O, a busy lock, a closed pool) may be.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    let kind = match &e {
        sqlx::Error::Database(db) if db.kind() != sqlx::error::ErrorKind::Other => {
            StoreFailure::Corrupt
        }
        e if booking_sql::errors::is_data_error(e) => StoreFailure::Corrupt,
        _ => StoreFailure::Unavailable,
    };
    StoreError::new(kind, "SQLite").caused_by(e)
}

pub(crate) use booking_sql::errors::{is_foreign_key_violation, is_unique_violation};

/// Whether the error is the violation of any constraint (the statement was undone, nothing else).
pub(crate) fn is_constraint_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() != sqlx::error::ErrorKind::Other)
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(what.to_string())
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `t` as it will read back from the database.
pub(crate) fn truncate_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub(crate) fn from_millis(ms: i64, column: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| corrupt(format_args!("{column}: timestamp {ms} out of range")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(format_args!("cannot encode JSON: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format_args!("{column}: {e}")))
}

pub(crate) use booking_sql::errors::parse_column as parse;

/// One column of a row, with a decoding failure reported as corruption.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|e| corrupt(format_args!("{column}: {e}")))
}

pub(crate) fn get_parsed<T>(row: &SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    parse(&get::<String>(row, column)?, column)
}

pub(crate) fn get_time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    from_millis(get(row, column)?, column)
}

pub(crate) fn get_opt_time(
    row: &SqliteRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<i64>>(row, column)?
        .map(|ms| from_millis(ms, column))
        .transpose()
}

pub(crate) fn get_seats(row: &SqliteRow, column: &str) -> Result<Vec<SeatId>, StoreError> {
    from_json(&get::<String>(row, column)?, column)
}

fn get_opt_seats(row: &SqliteRow, column: &str) -> Result<Option<Vec<SeatId>>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|text| from_json(&text, column))
        .transpose()
}

/// The columns [`decode_request`] reads, for `SELECT` and `RETURNING` lists.
macro_rules! request_columns {
    () => {
        "seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, created_at, \
         expires_at, processed_at, hold_id, hold_expires_at, result_message, unavailable, \
         alternatives"
    };
}
pub(crate) use request_columns;

/// The columns [`decode_hold`] reads.
macro_rules! hold_columns {
    () => {
        "hold_id, request_id, user_id, show_id, seat_ids, status, created_at, expires_at, ended_at"
    };
}
pub(crate) use hold_columns;

pub(crate) fn decode_request(row: &SqliteRow) -> Result<BookingRequest, StoreError> {
    let status: RequestStatus = get_parsed(row, "status")?;
    let outcome = RequestOutcome::from_columns(
        status,
        OutcomeColumns {
            message: get(row, "result_message")?,
            hold_id: get::<Option<String>>(row, "hold_id")?
                .map(|s| parse::<HoldId>(&s, "hold_id"))
                .transpose()?,
            hold_expires_at: get_opt_time(row, "hold_expires_at")?,
            unavailable: get_opt_seats(row, "unavailable")?,
            alternatives: get_opt_seats(row, "alternatives")?,
        },
    )?;
    Ok(BookingRequest {
        request_id: get_parsed(row, "request_id")?,
        user_id: get_parsed(row, "user_id")?,
        show_id: get_parsed(row, "show_id")?,
        seat_ids: get_seats(row, "seat_ids")?,
        status,
        seq: get(row, "seq")?,
        idempotency_key: get::<Option<String>>(row, "idempotency_key")?
            .map(|k| parse(&k, "idempotency_key"))
            .transpose()?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
        processed_at: get_opt_time(row, "processed_at")?,
        outcome,
    })
}

pub(crate) fn decode_hold(row: &SqliteRow) -> Result<Hold, StoreError> {
    Ok(Hold {
        hold_id: get_parsed(row, "hold_id")?,
        request_id: get_parsed(row, "request_id")?,
        user_id: get_parsed(row, "user_id")?,
        show_id: get_parsed(row, "show_id")?,
        seat_ids: get_seats(row, "seat_ids")?,
        status: get_parsed(row, "status")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
        ended_at: get_opt_time(row, "ended_at")?,
    })
}

/// Holds read as one JSON array of `[hold_id, user_id, seat_ids, expires_at]` arrays (the
/// statement aggregates them, so that they cross from sqlx's connection thread in one row).
pub(crate) fn decode_snapshot_holds(json: &str) -> Result<Vec<SnapshotHold>, StoreError> {
    let rows: Vec<(String, String, Vec<SeatId>, i64)> = from_json(json, "holds")?;
    rows.into_iter()
        .map(|(hold_id, user_id, seat_ids, expires_at)| {
            Ok(SnapshotHold {
                hold_id: parse(&hold_id, "hold_id")?,
                user_id: parse(&user_id, "user_id")?,
                seat_ids,
                expires_at: from_millis(expires_at, "expires_at")?,
            })
        })
        .collect()
}
