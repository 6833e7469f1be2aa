//! The `oauth-core` storage traits on SQL.
//!
//! Every atomic step of the contract is atomic in the database, never behind a Rust lock:
//! redeeming a code is one conditional `UPDATE … RETURNING`, taking a pending request one
//! `DELETE … RETURNING`, rotating a refresh token a compare-and-swap `UPDATE` on (grant,
//! generation) with the new token's row inserted in the same transaction, revoking one `UPDATE`.
//! SQLite write transactions start with `BEGIN IMMEDIATE`, so that they queue on the busy
//! timeout instead of failing when a read lock cannot be upgraded.

use std::future::Future;

use async_trait::async_trait;
use oauth_core::UnixTime;
use oauth_core::client::{Client, ClientOrigin};
use oauth_core::events::{EventQuery, FlowEvent};
use oauth_core::keys::StoredKey;
use oauth_core::secret::SecretHash;
use oauth_core::store::{
    AuthorizationCodeRecord, AuthorizationStore, ClientStore, CodeRedemption, Consent, ConsentStore, EventStore, Grant,
    GrantStore, KeyStore, PendingAuthorization, StoreResult, User, UserStore,
};
use oauth_core::types::{ClientId, GrantId, UserId};

use crate::SqlStore;
use crate::error::{db, out_of_range};
use crate::rows::{
    ClientRow, CodeStateRow, ConsentRow, EventRow, GrantRow, KeyRow, RefreshTokenRow, UserRow, from_json,
    grant_columns, origin_name, to_json,
};

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

    async fn redeem_code(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<CodeRedemption> {
        const OP: &str = "redeem_code";
        let hex = hash.to_hex();
        // The redemption itself: one conditional update, so exactly one caller wins.
        let redeemed: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE authorization_codes SET redeemed_at = $2 \
                 WHERE hash = $1 AND redeemed_at IS NULL AND expires_at > $2 RETURNING data",
            )
            .bind(&hex)
            .bind(now.as_secs())
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        if let Some(data) = redeemed {
            return Ok(CodeRedemption::Redeemed(from_json(OP, &data)?));
        }
        // Not redeemed now: say why, by the rule every store shares.
        let state: Option<CodeStateRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT redeemed_at, data FROM authorization_codes WHERE hash = $1")
                .bind(&hex)
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        Ok(match state {
            None => CodeRedemption::NotFound,
            Some(s) => CodeRedemption::refused(from_json(OP, &s.data)?, s.redeemed_at.is_some(), now),
        })
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

#[async_trait]
impl GrantStore for SqlStore {
    async fn create_grant(&self, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()> {
        const OP: &str = "create_grant";
        let generation = i64::try_from(grant.generation).map_err(|e| out_of_range(OP, e))?;
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(concat!(
                "INSERT INTO grants (",
                grant_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(grant.id.as_str())
            .bind(grant.client_id.as_str())
            .bind(grant.user.as_str())
            .bind(grant.scopes.to_string())
            .bind(grant.resource.as_str())
            .bind(grant.auth_time.as_secs())
            .bind(grant.created_at.as_secs())
            .bind(generation)
            .bind(grant.has_refresh_token)
            .bind(grant.rotated_at.map(UnixTime::as_secs))
            .bind(grant.refresh_expires_at.map(UnixTime::as_secs))
            .bind(grant.revoked_at.map(UnixTime::as_secs))
            .execute(&mut *tx)
            .await?;
            if let Some(hash) = refresh_token {
                sqlx::query("INSERT INTO refresh_tokens (hash, grant_id, generation) VALUES ($1, $2, $3)")
                    .bind(hash.to_hex())
                    .bind(grant.id.as_str())
                    .bind(generation)
                    .execute(&mut *tx)
                    .await?;
            }
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
            let mut tx = pool.begin_write().await?;
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
        // Their refresh tokens go with them: `ON DELETE CASCADE`, in the same statement.
        with_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM grants WHERE revoked_at < $1 OR refresh_expires_at < $1 \
                 OR (NOT has_refresh_token AND created_at < $1)",
            )
            .bind(before.as_secs())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_grants"))
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

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let version = i64::try_from(user.credential_version).map_err(|e| out_of_range("create_user", e))?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, created_at, disabled, credential_version) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user.id.as_str())
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.created_at.as_secs())
            .bind(user.disabled)
            .bind(version)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db("create_user"))?;
        Ok(())
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        const OP: &str = "user";
        let row: Option<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, username, password_hash, created_at, disabled, credential_version FROM users \
                 WHERE id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_user(OP)).transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        const OP: &str = "user_by_username";
        let row: Option<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, username, password_hash, created_at, disabled, credential_version FROM users \
                 WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
            .await
        })
        .map_err(db(OP))?;
        row.map(|r| r.into_user(OP)).transpose()
    }

    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let version = i64::try_from(user.credential_version).map_err(|e| out_of_range("update_user", e))?;
        let done = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE users SET username = $2, password_hash = $3, created_at = $4, disabled = $5, \
                 credential_version = $6 WHERE id = $1",
            )
            .bind(user.id.as_str())
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.created_at.as_secs())
            .bind(user.disabled)
            .bind(version)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db("update_user"))?;
        Ok(done > 0)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_user"))?;
        Ok(done > 0)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        const OP: &str = "list_users";
        let rows: Vec<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, username, password_hash, created_at, disabled, credential_version FROM users \
                 ORDER BY created_at, seq",
            )
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_user(OP)).collect()
    }
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        const OP: &str = "list_keys";
        let rows: Vec<KeyRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT kid, algorithm, private_der, created_at, retired_at FROM signing_keys ORDER BY seq")
                .fetch_all(pool)
                .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_key(OP)).collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_der, created_at, retired_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.kid)
            .bind(key.algorithm.as_str())
            .bind(key.private_der.as_slice())
            .bind(key.created_at.as_secs())
            .bind(key.retired_at.map(UnixTime::as_secs))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db("insert_key"))?;
        Ok(())
    }

    async fn retire_key(&self, kid: &str, at: UnixTime) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL")
                .bind(kid)
                .bind(at.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("retire_key"))?;
        Ok(done > 0)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let done = with_pool!(self, pool => {
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("delete_key"))?;
        Ok(done > 0)
    }

    async fn server_secret(&self, name: &str, candidate: &[u8], now: UnixTime) -> StoreResult<Vec<u8>> {
        // Insert-if-absent, then read: the first writer on any replica wins, and everyone reads
        // what it wrote.
        let value: Vec<u8> = with_pool!(self, pool => {
            async {
                sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(candidate)
                    .bind(now.as_secs())
                    .execute(pool)
                    .await?;
                sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(pool).await
            }
            .await
        })
        .map_err(db("server_secret"))?;
        Ok(value)
    }

    async fn replace_server_secret(&self, name: &str, value: &[u8], now: UnixTime) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
            )
            .bind(name)
            .bind(value)
            .bind(now.as_secs())
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db("replace_server_secret"))
    }
}

#[async_trait]
impl EventStore for SqlStore {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO flow_events (occurred_at, step, client_id, user_id, reason, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(event.at.as_secs())
            .bind(event.step.as_str())
            .bind(event.client_id.as_ref().map(ClientId::as_str))
            .bind(event.user.as_ref().map(UserId::as_str))
            .bind(event.reason.map(|r| r.as_str()))
            .bind(&event.detail)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db("record_event"))?;
        Ok(())
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        const OP: &str = "events";
        let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
        // The newest `limit` matching events, returned oldest first.
        let rows: Vec<EventRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT occurred_at, step, client_id, user_id, reason, detail FROM ( \
                     SELECT seq, occurred_at, step, client_id, user_id, reason, detail FROM flow_events \
                     WHERE ($1 IS NULL OR client_id = $1) AND ($2 IS NULL OR occurred_at >= $2) \
                     ORDER BY seq DESC LIMIT $3 \
                 ) AS newest ORDER BY seq",
            )
            .bind(query.client_id.as_ref().map(ClientId::as_str))
            .bind(query.since.map(UnixTime::as_secs))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_event(OP)).collect()
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM flow_events WHERE occurred_at < $1")
                .bind(before.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_events"))
    }
}

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
