//! [`SessionStore`] on SQL: sign-in sessions under the SHA-256 hash of their token.
//!
//! Creating a session and trimming the user's oldest ones beyond the cap is one write
//! transaction, serialised per user (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped
//! advisory lock on the user id), so that racing sign-ins cannot leave more than the cap.

use std::future::Future;

use async_trait::async_trait;
use oauth_core::SecretHash;
use oauth_core::UnixTime;
use oauth_core::UserId;
use oauth_core::{SessionStore, SignInSession, StoreResult};

use crate::SqlStore;
use crate::error::{corrupt, db, out_of_range};
use crate::write::BeginWrite as _;

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: &SignInSession, max_per_user: usize) -> StoreResult<()> {
        const OP: &str = "create_session";
        let version = i64::try_from(session.credential_version).map_err(|e| out_of_range(OP, e))?;
        let keep = i64::try_from(max_per_user).map_err(|e| out_of_range(OP, e))?;
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            lock_user(pool, &mut tx, session.user.as_str()).await?;
            sqlx::query(
                "INSERT INTO sign_in_sessions (hash, user_id, name, credential_version, auth_time, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(session.hash.to_hex())
            .bind(session.user.as_str())
            .bind(&session.name)
            .bind(version)
            .bind(session.auth_time.as_secs())
            .bind(session.expires_at.as_secs())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM sign_in_sessions WHERE user_id = $1 AND seq NOT IN ( \
                     SELECT seq FROM sign_in_sessions WHERE user_id = $1 \
                     ORDER BY auth_time DESC, seq DESC LIMIT $2)",
            )
            .bind(session.user.as_str())
            .bind(keep)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await)
        .map_err(db(OP))
    }

    async fn session(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<Option<SignInSession>> {
        const OP: &str = "session";
        let row: Option<SessionRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT hash, user_id, name, credential_version, auth_time, expires_at FROM sign_in_sessions \
                 WHERE hash = $1 AND expires_at > $2",
            )
            .bind(hash.to_hex())
            .bind(now.as_secs())
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_session(OP)).transpose()
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM sign_in_sessions WHERE hash = $1")
                .bind(hash.to_hex())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_session"))?;
        Ok(done > 0)
    }

    async fn delete_user_sessions(&self, user: &UserId) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM sign_in_sessions WHERE user_id = $1")
                .bind(user.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_user_sessions"))
    }

    async fn sweep_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM sign_in_sessions WHERE expires_at <= $1")
                .bind(now.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_sessions"))
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    hash: String,
    user_id: String,
    name: String,
    credential_version: i64,
    auth_time: i64,
    expires_at: i64,
}

impl SessionRow {
    fn into_session(self, op: &'static str) -> StoreResult<SignInSession> {
        Ok(SignInSession::new(
            SecretHash::from_hex(&self.hash).ok_or_else(|| corrupt(op, "session hash is not 64 hex digits"))?,
            UserId::parse(&self.user_id).map_err(|e| corrupt(op, e))?,
            self.name,
            u64::try_from(self.credential_version).map_err(|e| corrupt(op, e))?,
            UnixTime::from_secs(self.auth_time),
            UnixTime::from_secs(self.expires_at),
        ))
    }
}

/// Holds, until the transaction ends, the lock that serialises one user's session writes.
fn lock_user<'a, P: UserLock>(
    _pool: &P,
    tx: &'a mut crate::write::WriteTx<P::Db>,
    user: &'a str,
) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a {
    P::lock_user(tx, user)
}

trait UserLock {
    type Db: sqlx::Database;

    fn lock_user<'a>(
        tx: &'a mut crate::write::WriteTx<Self::Db>,
        user: &'a str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}

#[cfg(feature = "sqlite")]
impl UserLock for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;

    /// Nothing to do: `BEGIN IMMEDIATE` already holds the database's single write lock.
    fn lock_user<'a>(
        _tx: &'a mut crate::write::WriteTx<sqlx::Sqlite>,
        _user: &'a str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a {
        std::future::ready(Ok(()))
    }
}

#[cfg(feature = "postgres")]
impl UserLock for sqlx::PgPool {
    type Db = sqlx::Postgres;

    /// A transaction-scoped advisory lock keyed by the user id: concurrent sign-ins of one user
    /// take turns, so each trims what the previous one inserted.
    async fn lock_user<'a>(
        tx: &'a mut crate::write::WriteTx<sqlx::Postgres>,
        user: &'a str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(user)
            .execute(&mut **tx)
            .await
            .map(|_| ())
    }
}
