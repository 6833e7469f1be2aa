//! The store conformance kit and the SQL-specific scenarios on PostgreSQL, each test in a
//! fresh schema of the database that `MCP_OAUTH_TEST_POSTGRES_URL` names.
//!
//! Unset, the tests fail and say how to set it, unless `MCP_OAUTH_SKIP_POSTGRES=1` asks to skip
//! them; set but unreachable, they fail.

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use super::common;

    /// A fresh store, or a return from the test when skipping was asked for.
    macro_rules! stores_or_skip {
        () => {{
            let Some(base) = common::postgres_base_url() else { return };
            common::postgres_stores(base)
        }};
    }

    /// A fresh schema's URL, or a return from the test when skipping was asked for.
    macro_rules! url_or_skip {
        () => {{
            let Some(base) = common::postgres_base_url() else { return };
            common::postgres_url(&base).await
        }};
    }

    oauth_core::store_conformance_tests!(stores_or_skip!());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_run_on_an_empty_database_and_again() {
        common::migrations_are_idempotent(&url_or_skip!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_survive_a_restart() {
        common::tokens_survive_a_restart(&url_or_skip!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_clear_secret_in_any_table() {
        common::no_clear_secret_in_any_table(&url_or_skip!()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn swept_grants_leave_no_refresh_tokens() {
        common::swept_grants_leave_no_refresh_tokens(&url_or_skip!()).await;
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
