//! The store conformance kit and the SQL-specific scenarios on PostgreSQL, each test in a
//! fresh schema of the database that `MCP_OAUTH_TEST_POSTGRES_URL` names.
//!
//! Unset, the tests fail and say how to set it; set but unreachable, they fail. They never pass
//! without PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use oauth_core::testing::RESOURCE;
    use oauth_core::{Grant, GrantId};
    use oauth_store_sql::{SqlStore, SqlStoreOptions};
    use sqlx::Connection as _;

    use super::common;

    /// A fresh store in a new schema.
    macro_rules! fresh_stores {
        () => {{ common::postgres_stores(common::postgres_base_url()) }};
    }

    /// A new schema's URL.
    macro_rules! fresh_url {
        () => {{ common::postgres_url(&common::postgres_base_url()).await }};
    }

    oauth_core::store_conformance_tests!(fresh_stores!());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_run_on_an_empty_database_and_again() {
        common::migrations_are_idempotent(&fresh_url!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_survive_a_restart() {
        common::tokens_survive_a_restart(&fresh_url!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_clear_secret_in_any_table() {
        common::no_clear_secret_in_any_table(&fresh_url!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn swept_grants_leave_no_refresh_tokens() {
        common::swept_grants_leave_no_refresh_tokens(&fresh_url!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_reach_another_process() {
        common::revocations_reach_another_process(&fresh_url!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_tokens_end_with_their_grant_in_sql() {
        common::upstream_tokens_end_with_their_grant_in_sql(&fresh_url!()).await;
    }

    /// `(encrypted, plain)`: how many connections named `application_name` the server has of
    /// each, seen through a connection of the test's own (which is not named so).
    async fn connections_by_encryption(application_name: &str) -> (i64, i64) {
        let mut conn = sqlx::PgConnection::connect(&common::postgres_base_url()).await.unwrap();
        let mut counts = [0_i64; 2];
        for (count, ssl) in counts.iter_mut().zip([true, false]) {
            *count = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1 AND s.ssl = $2",
            )
            .bind(application_name)
            .bind(ssl)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
        (counts[0], counts[1])
    }

    /// A store on a fresh schema whose connections carry `sslmode` and a name of their own,
    /// kept open (one idle connection at least) so that the server lists them.
    async fn store_with_sslmode(sslmode: &str) -> (SqlStore, String) {
        let application_name = format!("oauth_ssl_{sslmode}_{}_{}", std::process::id(), nanos());
        let url = format!("{}&sslmode={sslmode}&application_name={application_name}", fresh_url!());
        let store = SqlStore::connect_with(&url, &SqlStoreOptions::default().with_min_connections(1))
            .await
            .unwrap_or_else(|e| panic!("sslmode={sslmode}: {e}"));
        (store, application_name)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sslmode_require_is_encrypted_and_disable_is_plain() {
        let (store, name) = store_with_sslmode("require").await;
        let (encrypted, plain) = connections_by_encryption(&name).await;
        assert!(encrypted > 0, "sslmode=require: no encrypted connection");
        assert_eq!(plain, 0, "sslmode=require: a connection in clear");
        store.close().await;

        let (store, name) = store_with_sslmode("disable").await;
        let (encrypted, plain) = connections_by_encryption(&name).await;
        assert!(plain > 0, "sslmode=disable: no connection in clear");
        assert_eq!(encrypted, 0, "sslmode=disable: an encrypted connection");
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_stuck_behind_a_lock_fails_within_the_statement_timeout() {
        let url = fresh_url!();
        let options = SqlStoreOptions::default().with_statement_timeout(Some(Duration::from_secs(1)));
        let store = SqlStore::connect_with(&url, &options).await.unwrap();
        let stores = store.clone().into_stores();
        let grant: Grant = serde_json::from_value(serde_json::json!({
            "id": GrantId::generate(), "client_id": "c", "user": "u", "scopes": "mcp:tools",
            "resource": RESOURCE, "auth_time": 0, "created_at": 0, "generation": 0, "has_refresh_token": false,
            "rotated_at": null, "refresh_expires_at": null, "revoked_at": null,
        }))
        .unwrap();

        // An operator's transaction (a migration by hand, say) holding the table.
        let mut locker = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE grants IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
        let started = Instant::now();
        let stuck = tokio::time::timeout(Duration::from_secs(20), stores.grants.create_grant(&grant, None)).await;
        let waited = started.elapsed();
        let outcome = stuck.unwrap_or_else(|_| panic!("the insert was still waiting after {waited:?}"));
        let error = outcome.expect_err("the insert succeeded behind an exclusive lock");
        println!("the insert behind the lock failed after {waited:?}: {error}");
        assert!(waited < Duration::from_secs(15), "the insert failed only after {waited:?}");

        sqlx::raw_sql("ROLLBACK").execute(&mut locker).await.unwrap();
        locker.close().await.unwrap();
        stores.grants.create_grant(&grant, None).await.expect("the insert once the lock is gone");
        assert!(stores.grants.grant(&grant.id).await.unwrap().is_some());
        store.close().await;
    }

    fn nanos() -> u32 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
    }
}

/// Without the `postgres` feature nothing above is compiled: say so when PostgreSQL tests were
/// expected, rather than pass without running them.
#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_feature_is_enabled_when_a_server_is_given() {
    assert!(
        std::env::var(common::POSTGRES_URL_VAR).is_err(),
        "{} is set, but the `postgres` feature is off: run `cargo test -p oauth-store-sql --all-features`",
        common::POSTGRES_URL_VAR
    );
}
