//! What the SQLite and PostgreSQL test files share: fresh databases, a raw view of the tables,
//! and scenarios that go beyond the conformance kit (restart, migrations, raw secret scan).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oauth_core::Grant;
use oauth_core::NewClient;
use oauth_core::testing::{
    self, REDIRECT, RESOURCE, authorize_code, code_request, refresh_request, register_public_client,
};
use oauth_core::{AuthorizationServer, Stores, UnixTime};
use oauth_core::{GrantId, RedirectUri};
use oauth_core::{RefreshToken, SecretHash};
use oauth_store_sql::{Backend, SqlStore};
use sqlx::AssertSqlSafe;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test, in this process or another, is using.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// SQLite: a fresh file per test, so that WAL and several connections are real.

/// The URL of a new, empty SQLite database file (created on connect).
#[cfg(feature = "sqlite")]
pub fn sqlite_url() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oauth-store-sql");
    static PRUNE: Once = Once::new();
    PRUNE.call_once(|| prune(&dir));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}?mode=rwc", dir.join(format!("{}.db", unique("kit"))).display())
}

/// Removes the databases of earlier runs (those older than an hour), so that they do not pile up.
#[cfg(feature = "sqlite")]
fn prune(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(3600)));
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Stores on a new SQLite database file.
#[cfg(feature = "sqlite")]
pub async fn sqlite_stores() -> Stores {
    SqlStore::connect(&sqlite_url()).await.expect("SQLite store").into_stores()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh schema per test in the database MCP_OAUTH_TEST_POSTGRES_URL names.

pub const POSTGRES_URL_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_URL";
/// The base PostgreSQL URL. Panics, saying how to set it, when it is missing: these tests need
/// PostgreSQL and never pass without it.
pub fn postgres_base_url() -> String {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{POSTGRES_URL_VAR} is not set, so the PostgreSQL store tests cannot run. Point it at a \
             throwaway database, e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test \
             (each test creates its own schema there; `bash .ci/run` sets it up by itself)."
        ),
    }
}

/// The URL of a new, empty schema in the database at `base`.
#[cfg(feature = "postgres")]
pub async fn postgres_url(base: &str) -> String {
    use sqlx::Connection as _;

    let schema = unique("oauth_test");
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap_or_else(|e| {
        panic!("{POSTGRES_URL_VAR} is set but PostgreSQL cannot be reached: {e}. Start the server or fix the URL.")
    });
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options%5Bsearch_path%5D={schema}")
}

/// Stores on a new, empty schema.
#[cfg(feature = "postgres")]
pub async fn postgres_stores(base: String) -> Stores {
    let url = postgres_url(&base).await;
    SqlStore::connect(&url).await.expect("PostgreSQL store").into_stores()
}

// ---------------------------------------------------------------------------------------------
// A raw view of the tables, without the store.

/// Direct access to the database behind a store URL.
pub enum Raw {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub async fn open(url: &str) -> Self {
        match Backend::from_url(url) {
            #[cfg(feature = "sqlite")]
            Some(Backend::Sqlite) => Self::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap()),
            #[cfg(feature = "postgres")]
            Some(Backend::Postgres) => Self::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
            other => unreachable!("no raw access to {other:?}"),
        }
    }

    /// `(version, success)` of every applied migration.
    pub async fn migrations(&self) -> Vec<(i64, bool)> {
        const SQL: &str = "SELECT version, success FROM _sqlx_migrations ORDER BY version";
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        }
    }

    /// Rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await.unwrap(),
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await.unwrap(),
        }
    }

    /// Runs one statement, as an operator's own SQL would.
    pub async fn execute(&self, sql: &str) {
        let sql = sql.to_owned();
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => drop(sqlx::query(AssertSqlSafe(sql)).execute(p).await.unwrap()),
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => drop(sqlx::query(AssertSqlSafe(sql)).execute(p).await.unwrap()),
        }
    }

    /// Every non-null value of every column of every table, as bytes, keyed by `table.column`.
    pub async fn dump(&self) -> HashMap<String, Vec<Vec<u8>>> {
        let mut out = HashMap::new();
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => {
                let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(p)
                    .await
                    .unwrap();
                for table in tables {
                    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(p)
                        .await
                        .unwrap();
                    for column in columns {
                        let sql = format!(r#"SELECT CAST("{column}" AS BLOB) FROM "{table}""#);
                        let values: Vec<Option<Vec<u8>>> =
                            sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(p).await.unwrap();
                        out.insert(format!("{table}.{column}"), values.into_iter().flatten().collect());
                    }
                }
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => {
                let columns: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema()",
                )
                .fetch_all(p)
                .await
                .unwrap();
                for (table, column, data_type) in columns {
                    let values: Vec<Vec<u8>> = if data_type == "bytea" {
                        let sql = format!(r#"SELECT "{column}" FROM "{table}""#);
                        let v: Vec<Option<Vec<u8>>> =
                            sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(p).await.unwrap();
                        v.into_iter().flatten().collect()
                    } else {
                        let sql = format!(r#"SELECT "{column}"::text FROM "{table}""#);
                        let v: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(p).await.unwrap();
                        v.into_iter().flatten().map(String::into_bytes).collect()
                    };
                    out.insert(format!("{table}.{column}"), values);
                }
            }
        }
        out
    }

    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => p.close().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => p.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// Migrating an empty database works, and migrating it again changes nothing.
pub async fn migrations_are_idempotent(url: &str) {
    let first = SqlStore::connect(url).await.expect("migrating an empty database");
    first.close().await;
    let raw = Raw::open(url).await;
    let applied = raw.migrations().await;
    assert!(!applied.is_empty() && applied.iter().all(|(_, ok)| *ok), "{applied:?}");
    assert_eq!(raw.count("clients").await, 0);

    let second = SqlStore::connect(url).await.expect("migrating again");
    second.migrate().await.expect("and once more");
    assert_eq!(raw.migrations().await, applied, "nothing was applied twice");

    // The schema works after all that.
    let stores = second.clone().into_stores();
    assert!(stores.clients.list_clients().await.unwrap().is_empty());
    // Replicas meet on PostgreSQL, so their limits are shared there by default; a SQLite file
    // is one machine's.
    assert_eq!(stores.limits.shared_by_processes(), url.starts_with("postgres"), "{url}");
    second.close().await;
    raw.close().await;
}

/// Tokens issued before a restart verify after it, and refresh tokens rotate.
pub async fn tokens_survive_a_restart(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    let server = start_server(store.clone()).await;
    let client = register_public_client(&server).await;
    let (code, verifier) = authorize_code(&server, &client).await;
    let tokens = server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let refresh = tokens.refresh_token.as_ref().expect("a refresh token").secret().to_owned();
    drop(server);
    store.close().await;
    drop(store);

    let store = SqlStore::connect(url).await.unwrap();
    let server = start_server(store.clone()).await;
    let claims = server.verify_access_token(&tokens.access_token).expect("the old access token verifies");
    assert_eq!(claims.client_id.as_str(), client.as_str());
    let rotated = server.token(refresh_request(&client, &refresh), None).await.expect("the old refresh token rotates");
    assert_ne!(rotated.refresh_token.as_ref().unwrap().secret(), refresh);
    assert!(server.verify_access_token(&rotated.access_token).is_ok());
    store.close().await;
}

/// After a full flow, no clear secret is anywhere in the tables: not the client secret, the
/// code, its verifier, a refresh token or an access token.
pub async fn no_clear_secret_in_any_table(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    let server = start_server(store.clone()).await;
    let confidential = server
        .create_client(NewClient::new("confidential", vec![RedirectUri::parse(REDIRECT).unwrap()]).confidential())
        .await
        .unwrap();
    let client = register_public_client(&server).await;
    let (code, verifier) = authorize_code(&server, &client).await;
    let first = server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let first_refresh = first.refresh_token.as_ref().unwrap().secret().to_owned();
    let second = server.token(refresh_request(&client, &first_refresh), None).await.unwrap();
    let second_refresh = second.refresh_token.as_ref().unwrap().secret().to_owned();
    // A replay of the code, so that the failure paths write their events too.
    assert!(server.token(code_request(&client, &code, &verifier), None).await.is_err());
    let user = oauth_core::AuthenticatedUser::new(oauth_core::UserId::parse("u1").unwrap(), "alice");
    let (session, _) = server.start_session(&user, std::time::Duration::from_secs(3600), None).await.unwrap();

    let secrets = [
        ("sign-in session token", session.secret().to_owned()),
        ("client secret", confidential.secret.as_ref().unwrap().secret().to_owned()),
        ("code", code.clone()),
        ("code verifier", verifier.secret().to_owned()),
        ("first refresh token", first_refresh.clone()),
        ("second refresh token", second_refresh),
        ("first access token", first.access_token.clone()),
        ("second access token", second.access_token.clone()),
    ];
    let raw = Raw::open(url).await;
    let dump = raw.dump().await;
    for table in [
        "clients",
        "authorization_codes",
        "grants",
        "refresh_tokens",
        "flow_events",
        "signing_keys",
        "sign_in_sessions",
    ] {
        assert!(dump.keys().any(|k| k.starts_with(&format!("{table}."))), "the scan covers {table}");
    }
    for (column, values) in &dump {
        for value in values {
            for (what, secret) in &secrets {
                assert!(!contains(value, secret.as_bytes()), "the clear {what} is stored in {column}");
            }
        }
    }
    // The scan sees what is there: the hashes are.
    let stored = |hash: SecretHash, column: &str| dump[column].iter().any(|v| contains(v, hash.to_hex().as_bytes()));
    assert!(stored(SecretHash::of(first_refresh.as_bytes()), "refresh_tokens.hash"));
    assert!(stored(SecretHash::of(code.as_bytes()), "authorization_codes.hash"));
    assert!(stored(session.hash(), "sign_in_sessions.hash"));
    raw.close().await;
    store.close().await;
}

/// Sweeping a grant deletes its refresh tokens too, every generation of them.
pub async fn swept_grants_leave_no_refresh_tokens(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    let stores = store.clone().into_stores();
    let t = UnixTime::from_secs;
    let mut grant: Grant = serde_json::from_value(serde_json::json!({
        "id": GrantId::generate(), "client_id": "c", "user": "u", "scopes": "mcp:tools",
        "resource": RESOURCE, "auth_time": 0, "created_at": 0, "generation": 0, "has_refresh_token": true,
        "rotated_at": null, "refresh_expires_at": 1000, "revoked_at": null,
    }))
    .unwrap();
    stores.grants.create_grant(&grant, Some(&RefreshToken::generate().hash())).await.unwrap();
    assert!(
        stores
            .grants
            .rotate_refresh_token(&grant.id, 0, &RefreshToken::generate().hash(), t(1), t(1000))
            .await
            .unwrap()
    );
    grant.id = GrantId::generate();
    stores.grants.create_grant(&grant, Some(&RefreshToken::generate().hash())).await.unwrap();
    let raw = Raw::open(url).await;
    assert_eq!(raw.count("refresh_tokens").await, 3);
    assert!(stores.grants.revoke_grant(&grant.id, t(5)).await.unwrap());
    assert_eq!(stores.grants.sweep_grants(t(6)).await.unwrap(), 1);
    assert_eq!(raw.count("refresh_tokens").await, 2, "the swept grant's token is gone");
    assert_eq!(stores.grants.sweep_grants(t(2000)).await.unwrap(), 1);
    assert_eq!((raw.count("grants").await, raw.count("refresh_tokens").await), (0, 0), "both generations are gone");
    raw.close().await;
    store.close().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn start_server(store: SqlStore) -> AuthorizationServer {
    AuthorizationServer::new(testing::config(), store.into_stores()).await.unwrap()
}

/// Two processes on one database (two stores, two pools): what one revokes, by the store or by
/// hand in SQL, is in the other's feed; on PostgreSQL the other's wait is woken by it.
pub async fn revocations_reach_another_process(url: &str) {
    let (a, b) = (SqlStore::connect(url).await.unwrap(), SqlStore::connect(url).await.unwrap());
    let (sa, sb) = (a.clone().into_stores(), b.clone().into_stores());
    let grant = |id: &str| -> Grant {
        serde_json::from_value(serde_json::json!({
            "id": id, "client_id": "c", "user": "u", "scopes": "mcp:tools",
            "resource": RESOURCE, "auth_time": 0, "created_at": 0, "generation": 0, "has_refresh_token": false,
            "rotated_at": null, "refresh_expires_at": null, "revoked_at": null,
        }))
        .unwrap()
    };
    for id in ["gr_one", "gr_two"] {
        sa.grants.create_grant(&grant(id), None).await.unwrap();
    }
    // The first wait opens the LISTEN connection (where there is one) and times out.
    sb.grants.wait_for_revocations(Duration::from_millis(20)).await;
    let waiter = {
        let sb = sb.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            sb.grants.wait_for_revocations(Duration::from_secs(30)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sa.grants.revoke_grant(&GrantId::parse("gr_one").unwrap(), UnixTime::from_secs(5)).await.unwrap());
    if a.backend() == Backend::Postgres {
        let waited = waiter.await.unwrap();
        assert!(waited < Duration::from_secs(10), "the NOTIFY did not wake the other process: waited {waited:?}");
    } else {
        waiter.abort();
    }
    // A revocation written by hand goes through the same trigger.
    let raw = Raw::open(url).await;
    raw.execute("UPDATE grants SET revoked_at = 6 WHERE id = 'gr_two'").await;
    let feed = sb.grants.revocations_since(0, 100).await.unwrap();
    let seen: Vec<(&str, i64)> = feed.iter().map(|r| (r.grant.as_str(), r.at.as_secs())).collect();
    assert_eq!(seen, [("gr_one", 5), ("gr_two", 6)]);
    raw.close().await;
    a.close().await;
    b.close().await;
}

/// The schema ends a grant's upstream tokens, whatever SQL touches the grant: a revocation by
/// hand deletes them (the trigger), and so does deleting the grant's row (the foreign key).
pub async fn upstream_tokens_end_with_their_grant_in_sql(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    let stores = store.clone().into_stores();
    let grant = |id: &str| -> Grant {
        serde_json::from_value(serde_json::json!({
            "id": id, "client_id": "c", "user": "u", "scopes": "mcp:tools",
            "resource": RESOURCE, "auth_time": 0, "created_at": 0, "generation": 0, "has_refresh_token": false,
            "rotated_at": null, "refresh_expires_at": null, "revoked_at": null,
        }))
        .unwrap()
    };
    for id in ["gr_by_hand", "gr_deleted", "gr_kept"] {
        stores.grants.create_grant(&grant(id), None).await.unwrap();
        let id = GrantId::parse(id).unwrap();
        assert!(stores.upstream.put_upstream_tokens(&id, b"sealed bytes", None, UnixTime::from_secs(1)).await.unwrap());
    }
    let raw = Raw::open(url).await;
    assert_eq!(raw.count("upstream_tokens").await, 3);
    raw.execute("UPDATE grants SET revoked_at = 6 WHERE id = 'gr_by_hand'").await;
    raw.execute("DELETE FROM grants WHERE id = 'gr_deleted'").await;
    assert_eq!(raw.count("upstream_tokens").await, 1, "only the live grant's record is left");
    assert!(stores.upstream.upstream_tokens(&GrantId::parse("gr_kept").unwrap()).await.unwrap().is_some());
    // A record for a grant that does not exist cannot be written even by hand.
    let orphan = match &raw {
        #[cfg(feature = "sqlite")]
        Raw::Sqlite(p) => sqlx::query(
            "INSERT INTO upstream_tokens (grant_id, sealed, version, updated_at) VALUES ('gr_none', x'01', 1, 0)",
        )
        .execute(p)
        .await
        .is_err(),
        #[cfg(feature = "postgres")]
        Raw::Postgres(p) => sqlx::query(
            "INSERT INTO upstream_tokens (grant_id, sealed, version, updated_at) VALUES ('gr_none', '\\x01', 1, 0)",
        )
        .execute(p)
        .await
        .is_err(),
    };
    assert!(orphan, "the foreign key refuses a record without its grant");
    raw.close().await;
    store.close().await;
}
