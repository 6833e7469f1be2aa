//! Users of the built-in sign-in on SQL.

use async_trait::async_trait;
use oauth_core::UserId;
use oauth_core::{StoreResult, User, UserStore};

use crate::SqlStore;
use crate::error::{db, out_of_range};
use crate::rows::UserRow;
use crate::write::BeginWrite as _;

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
        // The user's upstream links go in the same transaction: no upstream identity signs in
        // as a removed user, even one linked while the operator was removing it.
        let done = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            sqlx::query("DELETE FROM upstream_links WHERE user_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM users WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
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
