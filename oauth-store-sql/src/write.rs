//! Write transactions that queue instead of failing: SQLite's start with `BEGIN IMMEDIATE`.

use std::future::Future;

/// Starts a transaction that will write.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;

    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

#[cfg(feature = "sqlite")]
impl BeginWrite for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;

    /// `BEGIN IMMEDIATE` takes the write lock up front, waiting on the busy timeout. A deferred
    /// `BEGIN` would take a read lock first, and upgrading it fails at once with
    /// "database is locked" when another writer committed in between.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

#[cfg(feature = "postgres")]
impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;

    /// PostgreSQL's row locks and re-checked `WHERE` clauses make a plain `BEGIN` enough.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}
