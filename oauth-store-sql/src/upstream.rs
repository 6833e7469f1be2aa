//! [`UpstreamStore`] on SQL: upstream sign-in links and the upstream-token vault.
//!
//! Each atomic step of the contract is one statement: a link is an upsert that leaves a row of
//! another user untouched; a record's compare-and-swap an `UPDATE` on (grant, version); a lease
//! an `UPDATE` whose `WHERE` admits only a free, expired or own lease. Racing replicas are
//! serialised by the row (PostgreSQL's row locks, re-checked `WHERE` clauses; SQLite's one
//! writer). The end of a record with its grant is the schema's (migration 0009): a trigger on
//! revocation and a cascading foreign key on the sweep.

use async_trait::async_trait;
use oauth_core::{GrantId, UnixTime, UserId};
use oauth_core::{SealedUpstream, StoreResult, UpstreamLink, UpstreamProviderId, UpstreamStore, UpstreamSubject};
use oauth_core::{check_lease_holder, check_sealed_upstream};

use crate::error::{corrupt, db, out_of_range};
use crate::write::BeginWrite as _;
use crate::{Backend, SqlStore};

/// Stores a record for a grant that exists and is not revoked: a new one at version 1, or over
/// the existing one at its version + 1, its lease kept. PostgreSQL share-locks the grant row
/// (`FOR SHARE`, from the `INSERT`'s `SELECT`): a revocation racing this waits for it, then its
/// trigger deletes what was written; a write racing a revocation waits for it, then sees the
/// grant revoked and writes nothing. SQLite's single writer orders them anyway.
macro_rules! put_tokens {
    ($lock:literal) => {
        concat!(
            "INSERT INTO upstream_tokens (grant_id, sealed, version, expires_at, updated_at) ",
            "SELECT id, $2, 1, $3, $4 FROM grants WHERE id = $1 AND revoked_at IS NULL",
            $lock,
            " ON CONFLICT (grant_id) DO UPDATE SET sealed = excluded.sealed, version = upstream_tokens.version + 1, ",
            "expires_at = excluded.expires_at, updated_at = excluded.updated_at"
        )
    };
}

impl SqlStore {
    fn put_tokens_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => put_tokens!(""),
            Backend::Postgres => put_tokens!(" FOR SHARE"),
        }
    }
}

#[async_trait]
impl UpstreamStore for SqlStore {
    async fn linked_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
    ) -> StoreResult<Option<UserId>> {
        const OP: &str = "linked_user";
        let user: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT user_id FROM upstream_links WHERE provider = $1 AND subject = $2")
                .bind(provider.as_str())
                .bind(subject.as_str())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        user.map(|u| UserId::parse(&u).map_err(|e| corrupt(OP, e))).transpose()
    }

    async fn link_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
        user: &UserId,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // One statement: a new identity is inserted; one already linked to this user is
        // "updated" to itself (a row counted, `linked_at` kept); one linked to another user is
        // left alone and nothing is counted.
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(
                "INSERT INTO upstream_links (provider, subject, user_id, linked_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (provider, subject) DO UPDATE SET user_id = upstream_links.user_id \
                 WHERE upstream_links.user_id = excluded.user_id",
            )
            .bind(provider.as_str())
            .bind(subject.as_str())
            .bind(user.as_str())
            .bind(now.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("link_user"))?;
        Ok(n == 1)
    }

    async fn links_of(&self, user: &UserId) -> StoreResult<Vec<UpstreamLink>> {
        const OP: &str = "links_of";
        let rows: Vec<(String, String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT provider, subject, linked_at FROM upstream_links WHERE user_id = $1",
            )
            .bind(user.as_str())
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        let mut links = rows
            .into_iter()
            .map(|(provider, subject, at)| {
                let provider = UpstreamProviderId::parse(&provider).map_err(|e| corrupt(OP, e))?;
                let subject = UpstreamSubject::parse(&subject).map_err(|e| corrupt(OP, e))?;
                Ok(UpstreamLink::new(provider, subject, UnixTime::from_secs(at)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // Ties in byte order, as every store orders them: PostgreSQL's `ORDER BY` on text
        // follows the database's collation, which need not be bytewise.
        links.sort_by(|a, b| (a.linked_at, &a.provider, &a.subject).cmp(&(b.linked_at, &b.provider, &b.subject)));
        Ok(links)
    }

    async fn unlink_user(&self, user: &UserId) -> StoreResult<u64> {
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query("DELETE FROM upstream_links WHERE user_id = $1")
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("unlink_user"))
    }

    async fn put_upstream_tokens(
        &self,
        grant: &GrantId,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_sealed_upstream(sealed)?;
        let sql = self.put_tokens_sql();
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(sql)
                .bind(grant.as_str())
                .bind(sealed)
                .bind(expires_at.map(UnixTime::as_secs))
                .bind(now.as_secs())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("put_upstream_tokens"))?;
        Ok(n == 1)
    }

    async fn upstream_tokens(&self, grant: &GrantId) -> StoreResult<Option<SealedUpstream>> {
        const OP: &str = "upstream_tokens";
        let row: Option<(Vec<u8>, i64, Option<i64>, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT sealed, version, expires_at, updated_at FROM upstream_tokens WHERE grant_id = $1")
                .bind(grant.as_str())
                .fetch_optional(pool)
                .await
        })
        .map_err(db(OP))?;
        row.map(|(sealed, version, expires_at, updated_at)| {
            let version = u64::try_from(version).map_err(|e| corrupt(OP, e))?;
            Ok(SealedUpstream::new(
                sealed,
                version,
                expires_at.map(UnixTime::from_secs),
                UnixTime::from_secs(updated_at),
            ))
        })
        .transpose()
    }

    async fn replace_upstream_tokens(
        &self,
        grant: &GrantId,
        expected_version: u64,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        const OP: &str = "replace_upstream_tokens";
        check_sealed_upstream(sealed)?;
        let expected = i64::try_from(expected_version).map_err(|e| out_of_range(OP, e))?;
        if expected == i64::MAX {
            return Ok(false);
        }
        // The compare-and-swap: of concurrent replacements from one version, one matches.
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(
                "UPDATE upstream_tokens SET sealed = $3, version = version + 1, expires_at = $4, updated_at = $5 \
                 WHERE grant_id = $1 AND version = $2",
            )
            .bind(grant.as_str())
            .bind(expected)
            .bind(sealed)
            .bind(expires_at.map(UnixTime::as_secs))
            .bind(now.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db(OP))?;
        Ok(n == 1)
    }

    async fn delete_upstream_tokens(&self, grant: &GrantId) -> StoreResult<bool> {
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query("DELETE FROM upstream_tokens WHERE grant_id = $1")
                .bind(grant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("delete_upstream_tokens"))?;
        Ok(n > 0)
    }

    async fn take_refresh_lease(
        &self,
        grant: &GrantId,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_lease_holder(holder)?;
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(
                "UPDATE upstream_tokens SET lease_holder = $2, lease_until = $3 \
                 WHERE grant_id = $1 AND (lease_holder IS NULL OR lease_holder = $2 OR lease_until <= $4)",
            )
            .bind(grant.as_str())
            .bind(holder)
            .bind(until.as_secs())
            .bind(now.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("take_refresh_lease"))?;
        Ok(n == 1)
    }

    async fn release_refresh_lease(&self, grant: &GrantId, holder: &str) -> StoreResult<bool> {
        check_lease_holder(holder)?;
        let n = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(
                "UPDATE upstream_tokens SET lease_holder = NULL, lease_until = NULL \
                 WHERE grant_id = $1 AND lease_holder = $2",
            )
            .bind(grant.as_str())
            .bind(holder)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("release_refresh_lease"))?;
        Ok(n == 1)
    }
}
