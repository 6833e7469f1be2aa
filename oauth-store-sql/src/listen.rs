//! PostgreSQL `LISTEN` for the revocation feed: one connection per store, opened at the first
//! wait and opened again after a failure; while it is down, waits simply time out and the
//! follower polls.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep_until, timeout_at};

/// The channel the revocation trigger notifies (migration 0006).
const CHANNEL: &str = "oauth_grant_revocations";

#[derive(Default)]
pub(crate) struct Listener {
    connection: Mutex<Option<PgListener>>,
}

impl Listener {
    /// Returns at the next notification on [`CHANNEL`], or after `max`.
    pub(crate) async fn wait(&self, pool: &PgPool, max: Duration) {
        let deadline = Instant::now() + max;
        let Ok(mut connection) = timeout_at(deadline, self.connection.lock()).await else { return };
        if connection.is_none() {
            match listen(pool).await {
                Ok(l) => *connection = Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "store: cannot LISTEN for revocations; polling instead");
                    drop(connection);
                    sleep_until(deadline).await;
                    return;
                }
            }
        }
        let Some(listener) = connection.as_mut() else { return };
        match timeout_at(deadline, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(sqlx::Error::PoolClosed)) => *connection = None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store: the revocation LISTEN connection failed; opening it again");
                *connection = None;
                drop(connection);
                sleep_until(deadline).await;
            }
        }
    }

    /// Gives the listening connection back to the pool, which is closing.
    pub(crate) async fn release(&self) {
        *self.connection.lock().await = None;
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
