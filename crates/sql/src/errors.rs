//! Reading sqlx errors the same way in every SQL store: what is a problem with the data (never
//! worth retrying), and which constraint refused a write. Only what a dialect adds (PostgreSQL's
//! SQLSTATE classes) stays in the adapter.

use booking_core::ports::{CatalogError, StoreError};
use booking_core::{MovieId, ShowId};

/// Whether the error is about the data itself: a column that does not decode into its type, a
/// value that cannot be encoded, a column the query expects and the row lacks. A retry returns
/// the same row, so the store reports it as corrupt.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::Encode(_)
    )
}

/// A column's text parsed into its domain type (an id, a status, a seat); text that does not
/// parse makes the row corrupt, naming the column.
pub fn parse_column<T>(text: &str, column: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::corrupt(format!("{column}: {e}")))
}

/// Whether the error is the violation of a UNIQUE or PRIMARY KEY constraint.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether the error is the violation of a FOREIGN KEY constraint.
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// The answer to a show's upsert: a show whose movie the store does not have is refused, whatever
/// the dialect calls the violation; other failures are mapped by `store_error`.
pub fn show_written<T>(
    written: Result<T, sqlx::Error>,
    show: ShowId,
    movie: MovieId,
    store_error: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), CatalogError> {
    match written {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => Err(CatalogError::MovieNotFound { show, movie }),
        Err(e) => Err(store_error(e).into()),
    }
}
