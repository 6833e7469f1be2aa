//! The `oauth-core` storage traits on SQL.
//!
//! Every atomic step of the contract is atomic in the database, never behind a Rust lock:
//! redeeming a code is one conditional `UPDATE … RETURNING` (in the code exchange, in one
//! transaction with the grant it makes), taking a pending request one
//! `DELETE … RETURNING`, rotating a refresh token a compare-and-swap `UPDATE` on (grant,
//! generation) with the new token's row inserted in the same transaction, revoking one `UPDATE`.
//! SQLite write transactions start with `BEGIN IMMEDIATE`, so that they queue on the busy
//! timeout instead of failing when a read lock cannot be upgraded.

use async_trait::async_trait;
use oauth_core::ClientId;
use oauth_core::SecretHash;
use oauth_core::UnixTime;
use oauth_core::{
    AuthorizationCodeRecord, AuthorizationStore, ClientStore, CodeRedemption, GrantForCode, PendingAuthorization,
    StoreError, StoreResult,
};
use oauth_core::{Client, ClientOrigin};

use crate::SqlStore;
use crate::error::{db, out_of_range};
use crate::rows::{ClientRow, CodeStateRow, from_json, origin_name, to_json};
use crate::write::BeginWrite;

#[async_trait]
impl ClientStore for SqlStore {
    async fn create_client(&self, client: &Client) -> StoreResult<()> {
        const OP: &str = "create_client";
        let data = to_json(OP, client)?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO clients (id, origin, created_at, last_used_at, data) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client.id.as_str())
            .bind(origin_name(client.origin))
            .bind(client.created_at.as_secs())
            .bind(client.last_used_at.map(UnixTime::as_secs))
            .bind(&data)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db(OP))?;
        Ok(())
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<Client>> {
        const OP: &str = "client";
        let row: Option<ClientRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT data, last_used_at FROM clients WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_client(OP)).transpose()
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        const OP: &str = "update_client";
        let data = to_json(OP, client)?;
        let done = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE clients SET origin = $2, created_at = $3, last_used_at = $4, data = $5 WHERE id = $1",
            )
            .bind(client.id.as_str())
            .bind(origin_name(client.origin))
            .bind(client.created_at.as_secs())
            .bind(client.last_used_at.map(UnixTime::as_secs))
            .bind(&data)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db(OP))?;
        Ok(done > 0)
    }

    async fn delete_client(&self, id: &ClientId) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_client"))?;
        Ok(done > 0)
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        const OP: &str = "list_clients";
        let rows: Vec<ClientRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT data, last_used_at FROM clients ORDER BY created_at, seq").fetch_all(pool).await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_client(OP)).collect()
    }

    async fn touch_client(&self, id: &ClientId, at: UnixTime) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE clients SET last_used_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(at.as_secs())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(db("touch_client"))?;
        Ok(())
    }

    async fn delete_unused_dynamic_clients(&self, before: UnixTime) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM clients WHERE origin <> $1 AND COALESCE(last_used_at, created_at) < $2")
                .bind(origin_name(ClientOrigin::PreRegistered))
                .bind(before.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_unused_dynamic_clients"))
    }
}

impl SqlStore {
    /// Why a code this call did not spend is refused, by the rule every store shares.
    /// PostgreSQL's code exchange in one round trip, where SQLite needs a transaction of
    /// five: the code's record is read first (a record never changes once written, so reading
    /// it outside the write is safe), `issue` decides on it, then one statement spends the code
    /// and, only if it did, inserts the grant and its refresh token (data-modifying `WITH`
    /// clauses run together, atomically, as one statement). Of racing exchanges exactly one
    /// spends the code; the others' grants are never inserted, as they select from the
    /// spending update's (empty) result, and they answer as a replay would.
    #[cfg(feature = "postgres")]
    async fn exchange_code_in_one_statement(
        &self,
        pool: &sqlx::PgPool,
        hash: &SecretHash,
        now: UnixTime,
        issue: &GrantForCode<'_>,
    ) -> StoreResult<CodeRedemption> {
        const OP: &str = "exchange_code";
        let hex = hash.to_hex();
        let data: Option<String> = sqlx::query_scalar(
            "SELECT data FROM authorization_codes WHERE hash = $1 AND redeemed_at IS NULL AND expires_at > $2",
        )
        .bind(&hex)
        .bind(now.as_secs())
        .fetch_optional(pool)
        .await
        .map_err(db(OP))?;
        let Some(data) = data else { return self.why_not_redeemed(OP, &hex, now).await };
        let record: AuthorizationCodeRecord = from_json(OP, &data)?;
        const SPEND: &str = "UPDATE authorization_codes SET redeemed_at = $2 \
                             WHERE hash = $1 AND redeemed_at IS NULL AND expires_at > $2 RETURNING hash";
        let spent: i64 = match issue(&record) {
            None => sqlx::query(SPEND)
                .bind(&hex)
                .bind(now.as_secs())
                .execute(pool)
                .await
                .map(|r| i64::try_from(r.rows_affected()).unwrap_or(i64::MAX))
                .map_err(db(OP))?,
            Some(new) => {
                let grant = &new.grant;
                let generation = i64::try_from(grant.generation).map_err(|e| out_of_range(OP, e))?;
                let exchange = sqlx::query_scalar(concat!(
                    "WITH spent AS (",
                    "UPDATE authorization_codes SET redeemed_at = $2 ",
                    "WHERE hash = $1 AND redeemed_at IS NULL AND expires_at > $2 RETURNING hash",
                    "), granted AS (INSERT INTO grants (",
                    crate::rows::grant_columns!(),
                    ") SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM spent RETURNING id",
                    "), refresh AS (INSERT INTO refresh_tokens (hash, grant_id, generation) ",
                    "SELECT $15, id, $10 FROM granted WHERE $15::text IS NOT NULL RETURNING 1",
                    ") SELECT count(*) FROM spent"
                ))
                .bind(&hex)
                .bind(now.as_secs());
                bind_grant!(exchange, grant, generation)
                    .bind(new.refresh_token.as_ref().map(SecretHash::to_hex))
                    .fetch_one(pool)
                    .await
                    .map_err(db(OP))?
            }
        };
        if spent == 1 {
            return Ok(CodeRedemption::Redeemed(record));
        }
        self.why_not_redeemed(OP, &hex, now).await
    }

    async fn why_not_redeemed(&self, op: &'static str, hex: &str, now: UnixTime) -> StoreResult<CodeRedemption> {
        let state: Option<CodeStateRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT redeemed_at, data FROM authorization_codes WHERE hash = $1")
                .bind(hex)
                .fetch_optional(pool)
                .await
        })
        .map_err(db(op))?;
        Ok(match state {
            None => CodeRedemption::NotFound,
            Some(s) => CodeRedemption::refused(from_json(op, &s.data)?, s.redeemed_at.is_some(), now),
        })
    }
}

#[async_trait]
impl AuthorizationStore for SqlStore {
    async fn put_pending(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        const OP: &str = "put_pending";
        let data = to_json(OP, pending)?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO pending_authorizations (id, expires_at, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data",
            )
            .bind(&pending.id)
            .bind(pending.expires_at.as_secs())
            .bind(&data)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db(OP))?;
        Ok(())
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        const OP: &str = "pending";
        let data: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT data FROM pending_authorizations WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(now.as_secs())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        data.map(|d| from_json(OP, &d)).transpose()
    }

    async fn take_pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        const OP: &str = "take_pending";
        // One statement: of any number of concurrent takes, exactly one deletes the row.
        let data: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("DELETE FROM pending_authorizations WHERE id = $1 AND expires_at > $2 RETURNING data")
                .bind(id)
                .bind(now.as_secs())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        data.map(|d| from_json(OP, &d)).transpose()
    }

    async fn put_code(&self, code: &AuthorizationCodeRecord) -> StoreResult<()> {
        const OP: &str = "put_code";
        let data = to_json(OP, code)?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO authorization_codes (hash, client_id, expires_at, redeemed_at, data) \
                 VALUES ($1, $2, $3, NULL, $4)",
            )
            .bind(code.hash.to_hex())
            .bind(code.client_id.as_str())
            .bind(code.expires_at.as_secs())
            .bind(&data)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db(OP))?;
        Ok(())
    }

    async fn exchange_code(
        &self,
        hash: &SecretHash,
        now: UnixTime,
        issue: &GrantForCode<'_>,
    ) -> StoreResult<CodeRedemption> {
        const OP: &str = "exchange_code";
        #[cfg(feature = "postgres")]
        if let crate::Pool::Postgres(pool) = &self.pool {
            return self.exchange_code_in_one_statement(pool, hash, now, issue).await;
        }
        let hex = hash.to_hex();
        // One write transaction: the conditional update that spends the code, then the grant
        // made of it. Any failure before the commit rolls both back.
        let redeemed: Option<AuthorizationCodeRecord> = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await.map_err(db(OP))?;
            let data: Option<String> = sqlx::query_scalar(
                "UPDATE authorization_codes SET redeemed_at = $2 \
                 WHERE hash = $1 AND redeemed_at IS NULL AND expires_at > $2 RETURNING data",
            )
            .bind(&hex)
            .bind(now.as_secs())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
            let Some(data) = data else {
                tx.rollback().await.map_err(db(OP))?;
                return Ok(None);
            };
            let record: AuthorizationCodeRecord = from_json(OP, &data)?;
            if let Some(new) = issue(&record) {
                let generation = i64::try_from(new.grant.generation).map_err(|e| out_of_range(OP, e))?;
                insert_grant!(tx, &new.grant, new.refresh_token.as_ref(), generation).await.map_err(db(OP))?;
            }
            tx.commit().await.map_err(db(OP))?;
            Ok::<_, StoreError>(Some(record))
        }
        .await)?;
        if let Some(record) = redeemed {
            return Ok(CodeRedemption::Redeemed(record));
        }
        self.why_not_redeemed(OP, &hex, now).await
    }

    async fn sweep_authorizations(&self, now: UnixTime, codes_before: UnixTime) -> StoreResult<u64> {
        const OP: &str = "sweep_authorizations";
        let pending = with_pool!(self, pool => {
            sqlx::query("DELETE FROM pending_authorizations WHERE expires_at <= $1")
                .bind(now.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db(OP))?;
        let codes = with_pool!(self, pool => {
            sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                .bind(codes_before.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db(OP))?;
        Ok(pending + codes)
    }
}
