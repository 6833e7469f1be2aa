//! The store conformance kit and the SQL-specific scenarios on SQLite, each test on a fresh
//! database file (WAL, several pooled connections), so that the races are real.

mod common;

oauth_core::store_conformance_tests!(common::sqlite_stores());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_on_an_empty_database_and_again() {
    common::migrations_are_idempotent(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart() {
    common::tokens_survive_a_restart(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_secret_in_any_table() {
    common::no_clear_secret_in_any_table(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swept_grants_leave_no_refresh_tokens() {
    common::swept_grants_leave_no_refresh_tokens(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_another_process() {
    common::revocations_reach_another_process(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tokens_end_with_their_grant_in_sql() {
    common::upstream_tokens_end_with_their_grant_in_sql(&common::sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_databases_work_on_one_connection() {
    let store = oauth_store_sql::SqlStore::connect("sqlite::memory:").await.unwrap();
    oauth_core::testing::code_redemption_race_has_one_winner(store.clone().into_stores()).await;
    oauth_core::testing::refresh_rotation_race_has_one_winner(store.into_stores()).await;
}

#[tokio::test]
async fn a_missing_file_is_not_created_without_mode_rwc() {
    let url = common::sqlite_url().replace("?mode=rwc", "");
    let e = oauth_store_sql::SqlStore::connect(&url).await.unwrap_err();
    assert!(matches!(e, oauth_store_sql::ConnectError::Connect(_)), "{e}");
    // Nor its directory.
    let in_new_dir = url.replace(".db", "/sub/oauth.db");
    assert!(oauth_store_sql::SqlStore::connect(&in_new_dir).await.is_err());
    let dir = std::path::PathBuf::from(in_new_dir.trim_start_matches("sqlite://")).parent().unwrap().to_owned();
    assert!(!dir.exists(), "{} was created without mode=rwc", dir.display());
}

#[tokio::test]
async fn with_mode_rwc_the_file_and_its_directory_are_created() {
    // An operator's first run: `sqlite://data/oauth.db?mode=rwc` where `data/` does not exist.
    let url = common::sqlite_url().replace(".db?mode=rwc", "/new/dir/oauth.db?mode=rwc");
    let store = oauth_store_sql::SqlStore::connect(&url).await.unwrap();
    let file = std::path::PathBuf::from(url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc"));
    assert!(file.is_file(), "{}", file.display());
    store.close().await;
}

#[tokio::test]
async fn the_unused_client_sweep_reads_an_index_not_the_table() {
    let url = common::sqlite_url();
    let store = oauth_store_sql::SqlStore::connect(&url).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    // The statement the store runs, as the planner sees it: rows of (id, parent, unused, detail).
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN DELETE FROM clients \
         WHERE origin <> 'pre_registered' AND COALESCE(last_used_at, created_at) < 0",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    assert!(plan.iter().any(|r| r.3.contains("USING INDEX clients_last_activity")), "{plan:?}");
    raw.close().await;
    store.close().await;
}
