//! [`LimitStore`] on SQL: the rate-limit buckets and sign-in failures every replica shares.
//!
//! A token is taken in one upsert whose `SET` computes the refill from the row it replaces,
//! so that replicas racing for a bucket's last token are serialised by the row (PostgreSQL's
//! `ON CONFLICT DO UPDATE` locks it; SQLite has one writer). The same SQL runs on both: only
//! `CASE`, no `LEAST`/`MIN`.

use async_trait::async_trait;
use oauth_core::{BlockAfter, BucketRate, LimitStore, StoreResult, UnixTime};

use crate::SqlStore;
use crate::error::db;
use crate::write::BeginWrite as _;

/// The bucket's tokens at `$4` (ms): what it held, refilled at `$3` a second since `at_ms`
/// (never backwards), at most `$2`.
macro_rules! refilled {
    () => {
        "(CASE WHEN limit_buckets.tokens + (CASE WHEN $4 > limit_buckets.at_ms THEN $4 - limit_buckets.at_ms ELSE 0 END) * $3 / 1000.0 > $2 \
          THEN $2 \
          ELSE limit_buckets.tokens + (CASE WHEN $4 > limit_buckets.at_ms THEN $4 - limit_buckets.at_ms ELSE 0 END) * $3 / 1000.0 END)"
    };
}

const TAKE_TOKEN: &str = concat!(
    "INSERT INTO limit_buckets (key, tokens, at_ms, burst, per_second, taken) VALUES ($1, $2 - 1, $4, $2, $3, 1) ",
    "ON CONFLICT (key) DO UPDATE SET ",
    "taken = CASE WHEN ",
    refilled!(),
    " >= 1 THEN 1 ELSE 0 END, ",
    "tokens = CASE WHEN ",
    refilled!(),
    " >= 1 THEN ",
    refilled!(),
    " - 1 ELSE ",
    refilled!(),
    " END, ",
    "at_ms = CASE WHEN $4 > limit_buckets.at_ms THEN $4 ELSE limit_buckets.at_ms END, ",
    "burst = $2, per_second = $3 ",
    "RETURNING taken, tokens"
);

#[async_trait]
impl LimitStore for SqlStore {
    /// PostgreSQL is where several replicas meet; a SQLite file is one machine's.
    fn shared_by_processes(&self) -> bool {
        self.backend() == crate::Backend::Postgres
    }

    async fn take_token(&self, key: &str, rate: BucketRate, now_ms: i64) -> StoreResult<Option<std::time::Duration>> {
        let (taken, tokens): (i32, f64) = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let row = sqlx::query_as(TAKE_TOKEN)
                .bind(key)
                .bind(f64::from(rate.burst))
                .bind(rate.per_second)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        }
        .await)
        .map_err(db("take_token"))?;
        Ok((taken == 0).then(|| rate.wait(tokens)))
    }

    async fn record_failure(
        &self,
        key: &str,
        now: UnixTime,
        forget_after: std::time::Duration,
        block_after: &BlockAfter,
    ) -> StoreResult<Option<UnixTime>> {
        let forgotten = now.minus(forget_after).as_secs();
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let (count,): (i32,) = sqlx::query_as(
                "INSERT INTO limit_failures (key, failures, last_failure) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN limit_failures.last_failure < $3 THEN 1 ELSE limit_failures.failures + 1 END, \
                 last_failure = CASE WHEN $2 > limit_failures.last_failure THEN $2 ELSE limit_failures.last_failure END \
                 RETURNING failures",
            )
            .bind(key)
            .bind(now.as_secs())
            .bind(forgotten)
            .fetch_one(&mut *tx)
            .await?;
            let until = block_after(u32::try_from(count).unwrap_or(0)).map(|block| now.plus(block));
            if let Some(until) = until {
                sqlx::query(
                    "UPDATE limit_failures SET blocked_until = $2, reported = 0 \
                     WHERE key = $1 AND (blocked_until IS NULL OR blocked_until < $2)",
                )
                .bind(key)
                .bind(until.as_secs())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(until)
        }
        .await)
        .map_err(db("record_failure"))
    }

    async fn blocked(&self, key: &str, now: UnixTime) -> StoreResult<Option<(UnixTime, bool)>> {
        // A read first: an account that is not blocked (nearly every sign-in) costs no write.
        let row: Option<(i64, i32)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT blocked_until, reported FROM limit_failures WHERE key = $1 AND blocked_until > $2")
                .bind(key)
                .bind(now.as_secs())
                .fetch_optional(pool)
                .await
        })
        .map_err(db("blocked"))?;
        let Some((until, reported)) = row else { return Ok(None) };
        if reported != 0 {
            return Ok(Some((UnixTime::from_secs(until), false)));
        }
        // Whichever replica flips the flag reports the block.
        let flipped = with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query("UPDATE limit_failures SET reported = 1 WHERE key = $1 AND blocked_until = $2 AND reported = 0")
                .bind(key)
                .bind(until)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("blocked"))?;
        Ok(Some((UnixTime::from_secs(until), flipped > 0)))
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            sqlx::query("DELETE FROM limit_failures WHERE key = $1").bind(key).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(db("clear_failures"))
    }

    async fn first_use(&self, key: &str, until: UnixTime, now: UnixTime) -> StoreResult<bool> {
        // One statement: a new key is inserted; a mark past its time is taken over; a live mark
        // is left alone and nothing is affected.
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let n = sqlx::query(
                "INSERT INTO single_use (key, until) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE single_use.until <= $3",
            )
            .bind(key)
            .bind(until.as_secs())
            .bind(now.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n == 1)
        }
        .await)
        .map_err(db("first_use"))
    }

    async fn sweep_limits(&self, now_ms: i64, failures_before: UnixTime, max_rows: u64) -> StoreResult<u64> {
        let now = now_ms.div_euclid(1000);
        let cap = i64::try_from(max_rows).unwrap_or(i64::MAX);
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            let mut n = sqlx::query("DELETE FROM limit_buckets WHERE at_ms + (burst - tokens) * 1000.0 / per_second <= $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            n += sqlx::query("DELETE FROM single_use WHERE until <= $1").bind(now).execute(&mut *tx).await?.rows_affected();
            n += sqlx::query(
                "DELETE FROM limit_failures WHERE last_failure < $1 AND (blocked_until IS NULL OR blocked_until <= $2)",
            )
            .bind(failures_before.as_secs())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Past the cap, the least recently used go; of failures, only accounts not blocked
            // (a flood of new names must not lift a block).
            n += sqlx::query(
                "DELETE FROM limit_buckets WHERE at_ms <= \
                 (SELECT at_ms FROM limit_buckets ORDER BY at_ms DESC LIMIT 1 OFFSET $1)",
            )
            .bind(cap)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            n += sqlx::query(
                "DELETE FROM limit_failures WHERE (blocked_until IS NULL OR blocked_until <= $2) AND last_failure <= \
                 (SELECT last_failure FROM limit_failures ORDER BY last_failure DESC LIMIT 1 OFFSET $1)",
            )
            .bind(cap)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await)
        .map_err(db("sweep_limits"))
    }
}
