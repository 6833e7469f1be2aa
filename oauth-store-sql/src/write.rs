//! Write transactions that queue instead of failing or sleeping.
//!
//! SQLite has one writer at a time. Left to itself, a connection that finds the write lock
//! taken sleeps in SQLite's busy handler (1, 2, 5, 10, … up to 100 ms a try) and wakes to try
//! again, so that under load most of a write's time is spent asleep while the lock sits free.
//! Within one process the store therefore hands out write turns itself, first come first
//! served, and a transaction begins (`BEGIN IMMEDIATE`) only when it is its turn; the busy
//! handler is left for the other processes on the same file. PostgreSQL's row locks need none
//! of this.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The turns of this process's writers (SQLite): one at a time, for at most `wait` in line.
#[derive(Debug)]
pub(crate) struct WriteTurns {
    lock: Arc<Mutex<()>>,
    wait: Duration,
    /// SQLite: the one connection write transactions run on. Always the same connection (and
    /// the same worker thread of sqlx's) rather than whichever reader is free: its pages stay
    /// warm and a write never waits for a reader's connection.
    #[cfg(feature = "sqlite")]
    writer: Option<sqlx::SqlitePool>,
}

impl WriteTurns {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            lock: Arc::default(),
            wait,
            #[cfg(feature = "sqlite")]
            writer: None,
        }
    }

    /// Write transactions run on `writer`, a pool of one connection to the same database.
    #[cfg(feature = "sqlite")]
    pub(crate) fn with_writer(mut self, writer: sqlx::SqlitePool) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Closes the writer's connection, if there is one.
    #[cfg(feature = "sqlite")]
    pub(crate) async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
    }

    /// Waits for this writer's turn; after `wait`, fails as a pool that has no connection to
    /// give would, so that a stuck writer turns into `server_error` rather than a hang.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    async fn take(&self) -> Result<OwnedMutexGuard<()>, sqlx::Error> {
        tokio::time::timeout(self.wait, self.lock.clone().lock_owned()).await.map_err(|_| sqlx::Error::PoolTimedOut)
    }
}

/// An open write transaction, holding its turn (SQLite) until it commits or is dropped.
pub(crate) struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: sqlx::Database> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// Starts a transaction that will write.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;

    fn begin_write(&self, turns: &WriteTurns) -> impl Future<Output = Result<WriteTx<Self::Db>, sqlx::Error>> + Send;
}

#[cfg(feature = "sqlite")]
impl BeginWrite for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;

    /// The process's write turn, then `BEGIN IMMEDIATE`, which takes the write lock up front
    /// (waiting on the busy timeout for other processes). A deferred `BEGIN` would take a read
    /// lock first, and upgrading it fails at once with "database is locked" when another
    /// writer committed in between.
    async fn begin_write(&self, turns: &WriteTurns) -> Result<WriteTx<sqlx::Sqlite>, sqlx::Error> {
        let turn = turns.take().await?;
        let tx = turns.writer.as_ref().unwrap_or(self).begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: Some(turn) })
    }
}

#[cfg(feature = "postgres")]
impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;

    /// PostgreSQL's row locks and re-checked `WHERE` clauses make a plain `BEGIN` enough.
    async fn begin_write(&self, _: &WriteTurns) -> Result<WriteTx<sqlx::Postgres>, sqlx::Error> {
        Ok(WriteTx { tx: self.begin().await?, _turn: None })
    }
}
