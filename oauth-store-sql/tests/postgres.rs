//! The store conformance kit and the SQL-specific scenarios on PostgreSQL, each test in a
//! fresh schema of the database that `MCP_OAUTH_TEST_POSTGRES_URL` names.
//!
//! Unset, the tests fail and say how to set it; set but unreachable, they fail. They never pass
//! without PostgreSQL.

mod common;

#[cfg(feature = "postgres")]
mod postgres {
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
