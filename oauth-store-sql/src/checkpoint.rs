//! SQLite checkpoints off the request path.
//!
//! In WAL mode a commit appends to the write-ahead log; now and then the log's pages are
//! copied back into the database file and the file is synced (a checkpoint). Left to SQLite,
//! the commit that crosses `wal_autocheckpoint` pages runs the checkpoint itself, fsync
//! included, while it holds the write lock: that one token request, and every writer queued
//! behind it, waits for the disk. Here the automatic threshold is raised far out of the way
//! and a task of the store checkpoints every [`EVERY`] in `PASSIVE` mode, which never waits
//! for readers or writers, so commits go on while it syncs. The raised threshold still bounds
//! the log if the task cannot run.

use std::time::Duration;

/// How often the store checkpoints.
pub(crate) const EVERY: Duration = Duration::from_millis(500);

/// Pages in the log past which a commit checkpoints by itself (SQLite's default is 1 000, 4 MB
/// with 4 KiB pages): only reached if the task falls behind.
pub(crate) const AUTO_PAGES: &str = "16384";

/// Aborts the checkpoint task when the last clone of the store is dropped.
#[derive(Debug)]
pub(crate) struct Checkpoints(tokio::task::JoinHandle<()>);

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts checkpointing `pool` every [`EVERY`] until the returned guard is dropped or the pool
/// is closed.
pub(crate) fn spawn(pool: sqlx::SqlitePool) -> Checkpoints {
    Checkpoints(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!(error = %e, "a background checkpoint failed; the next one retries");
            }
        }
    }))
}
