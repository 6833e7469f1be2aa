//! Grants, refresh tokens and consents on SQL: rotation is a compare-and-swap `UPDATE` on
//! (grant, generation) with the new token's row inserted in the same transaction. Revocation is
//! one `UPDATE`; the schema's triggers add the feed entry and delete the grant's upstream
//! tokens in the same statement (migrations 0006 and 0009), whichever statement revokes.

use std::time::Duration;

use async_trait::async_trait;
use oauth_core::SecretHash;
use oauth_core::UnixTime;
use oauth_core::{ClientId, GrantId, UserId};
use oauth_core::{Consent, ConsentStore, Grant, GrantStore, Revocation, StoreResult};

use crate::SqlStore;
use crate::error::{corrupt, db, out_of_range};
use crate::rows::{ConsentRow, GrantRow, RefreshTokenRow, grant_columns};
use crate::write::BeginWrite;

#[async_trait]
impl GrantStore for SqlStore {
    async fn create_grant(&self, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()> {
        const OP: &str = "create_grant";
        let generation = i64::try_from(grant.generation).map_err(|e| out_of_range(OP, e))?;
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            insert_grant!(tx, grant, refresh_token, generation).await?;
            tx.commit().await
        }
        .await)
        .map_err(db(OP))
    }

    async fn grant(&self, id: &GrantId) -> StoreResult<Option<Grant>> {
        const OP: &str = "grant";
        let row: Option<GrantRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!("SELECT ", grant_columns!(), " FROM grants WHERE id = $1"))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_grant(OP)).transpose()
    }

    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<(Grant, u64)>> {
        const OP: &str = "find_refresh_token";
        let row: Option<RefreshTokenRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.id, g.client_id, g.user_id, g.scopes, g.resource, g.auth_time, g.created_at, g.generation, \
                 g.has_refresh_token, g.rotated_at, g.refresh_expires_at, g.revoked_at, r.generation AS token_generation \
                 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.hash = $1",
            )
            .bind(hash.to_hex())
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_pair(OP)).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        id: &GrantId,
        expected_generation: u64,
        new_token: &SecretHash,
        now: UnixTime,
        refresh_expires_at: UnixTime,
    ) -> StoreResult<bool> {
        const OP: &str = "rotate_refresh_token";
        let expected = i64::try_from(expected_generation).map_err(|e| out_of_range(OP, e))?;
        let Some(next) = expected.checked_add(1) else {
            return Ok(false);
        };
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            // The compare-and-swap: of concurrent rotations from one generation, one matches.
            let swapped = sqlx::query(
                "UPDATE grants SET generation = generation + 1, rotated_at = $3, refresh_expires_at = $4 \
                 WHERE id = $1 AND generation = $2 AND revoked_at IS NULL",
            )
            .bind(id.as_str())
            .bind(expected)
            .bind(now.as_secs())
            .bind(refresh_expires_at.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !swapped {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query("INSERT INTO refresh_tokens (hash, grant_id, generation) VALUES ($1, $2, $3)")
                .bind(new_token.to_hex())
                .bind(id.as_str())
                .bind(next)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }
        .await)
        .map_err(db(OP))
    }

    async fn revoke_grant(&self, id: &GrantId, now: UnixTime) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.as_str())
                .bind(now.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("revoke_grant"))?;
        Ok(done > 0)
    }

    async fn revoke_client_grants(&self, client_id: &ClientId, now: UnixTime) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE grants SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL")
                .bind(client_id.as_str())
                .bind(now.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("revoke_client_grants"))
    }

    async fn client_grants(&self, client_id: &ClientId) -> StoreResult<Vec<Grant>> {
        const OP: &str = "client_grants";
        let rows: Vec<GrantRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                grant_columns!(),
                " FROM grants WHERE client_id = $1 ORDER BY created_at DESC, id DESC"
            ))
            .bind(client_id.as_str())
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_grant(OP)).collect()
    }

    async fn sweep_grants(&self, before: UnixTime) -> StoreResult<u64> {
        // Their refresh tokens and upstream tokens go with them: `ON DELETE CASCADE`, in the
        // same statement.
        let swept = with_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM grants WHERE revoked_at < $1 OR refresh_expires_at < $1 \
                 OR (NOT has_refresh_token AND created_at < $1)",
            )
            .bind(before.as_secs())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_grants"))?;
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM grant_revocations WHERE revoked_at < $1")
                .bind(before.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_grants"))?;
        Ok(swept)
    }

    async fn revocations_since(&self, after: u64, limit: usize) -> StoreResult<Vec<Revocation>> {
        const OP: &str = "revocations_since";
        let after = i64::try_from(after).map_err(|e| out_of_range(OP, e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT position, grant_id, revoked_at FROM grant_revocations \
                 WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter()
            .map(|(position, grant, at)| {
                let position = u64::try_from(position).map_err(|e| corrupt(OP, e))?;
                let grant = GrantId::parse(&grant).map_err(|e| corrupt(OP, e))?;
                Ok(Revocation::new(position, grant, UnixTime::from_secs(at)))
            })
            .collect()
    }

    async fn wait_for_revocations(&self, max: Duration) {
        match &self.pool {
            #[cfg(feature = "postgres")]
            crate::Pool::Postgres(pool) => self.listener.wait(pool, max).await,
            #[allow(unreachable_patterns)]
            _ => tokio::time::sleep(max).await,
        }
    }

    async fn user_grants(&self, user: &UserId, now: UnixTime, limit: usize) -> StoreResult<Vec<Grant>> {
        const OP: &str = "user_grants";
        // Served by the index `grants_user_id` (migration 0004).
        let rows: Vec<GrantRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                grant_columns!(),
                " FROM grants WHERE user_id = $1 AND revoked_at IS NULL \
                  AND (refresh_expires_at IS NULL OR refresh_expires_at > $2) \
                  ORDER BY created_at DESC, id DESC LIMIT $3"
            ))
            .bind(user.as_str())
            .bind(now.as_secs())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_grant(OP)).collect()
    }
}

#[async_trait]
impl ConsentStore for SqlStore {
    async fn consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<Option<Consent>> {
        const OP: &str = "consent";
        let row: Option<ConsentRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT user_id, client_id, scopes, granted_at FROM consents WHERE user_id = $1 AND client_id = $2",
            )
            .bind(user.as_str())
            .bind(client_id.as_str())
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_consent(OP)).transpose()
    }

    async fn put_consent(&self, consent: &Consent) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
            )
            .bind(consent.user.as_str())
            .bind(consent.client_id.as_str())
            .bind(consent.scopes.to_string())
            .bind(consent.granted_at.as_secs())
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db("put_consent"))?;
        Ok(())
    }

    async fn revoke_consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user.as_str())
                .bind(client_id.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("revoke_consent"))?;
        Ok(done > 0)
    }
}
