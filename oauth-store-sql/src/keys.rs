//! Signing keys and server secrets on SQL: the first secret stored wins, for every replica.

use async_trait::async_trait;
use oauth_core::StoredKey;
use oauth_core::UnixTime;
use oauth_core::{KeyStore, StoreResult};

use crate::SqlStore;
use crate::error::db;
use crate::rows::KeyRow;

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
