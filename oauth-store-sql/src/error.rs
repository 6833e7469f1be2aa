//! Mapping database failures onto [`StoreError`], logged where they are mapped.
//!
//! Nothing logged here can hold a secret: the store only ever binds hashes, and sqlx errors
//! carry the database's message, not the bound values.

use std::fmt::Display;

use oauth_core::StoreError;
use sqlx::error::ErrorKind;

/// Maps a failed query of operation `op`: a unique violation is a [`StoreError::Conflict`], an
/// undecodable column is [`StoreError::Corrupt`], anything else a backend failure.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.kind() == ErrorKind::UniqueViolation => {
            tracing::warn!(op, error = %e, "store: record already exists");
            StoreError::Conflict(format!("{op}: the record already exists"))
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => corrupt(op, e),
        _ => {
            tracing::error!(op, error = %e, "store: database failure");
            StoreError::backend(e)
        }
    }
}

/// A stored value that does not decode into its record.
pub(crate) fn corrupt(op: &'static str, e: impl Display) -> StoreError {
    tracing::error!(op, error = %e, "store: stored record does not decode");
    StoreError::Corrupt(format!("{op}: {e}"))
}

/// A value the schema cannot hold (a generation beyond `i64`).
pub(crate) fn out_of_range(op: &'static str, e: std::num::TryFromIntError) -> StoreError {
    tracing::error!(op, error = %e, "store: value out of range for the database");
    StoreError::backend(e)
}
