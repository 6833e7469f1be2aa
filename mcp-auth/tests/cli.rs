//! `mcp-auth` as an operator runs it: a process on the server's database, SQLite and
//! PostgreSQL. The PostgreSQL half uses the database `MCP_OAUTH_TEST_POSTGRES_URL` names (a
//! fresh schema per test); unset, it fails and says how to set it: it never passes without
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oauth_core::Clock as _;
use oauth_core::testing::{authorize_code, code_request, config, register_public_client};
use oauth_core::{AuthorizationServer, ManualClock, SystemClock};
use serde_json::Value;

fn mcp_auth(db: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-auth"))
        .args(args)
        .args(["--database-url", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a command that must succeed; returns its standard output.
fn ok(db: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = mcp_auth(db, args, stdin);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its standard error.
fn fails(db: &str, args: &[&str]) -> String {
    let out = mcp_auth(db, args, None);
    assert!(!out.status.success(), "{args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(db: &str, args: &[&str]) -> Value {
    serde_json::from_str(&ok(db, args, None)).unwrap()
}

fn line_value(out: &str, prefix: &str) -> String {
    let line = out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix} in {out}"));
    line.split_whitespace().next().unwrap().to_owned()
}

/// Every operator command, on the database at `db`.
async fn operator_commands(db: &str) {
    // Users.
    assert!(ok(db, &["users", "add", "alice"], Some("a long password\n")).contains("added user 'alice'"));
    let again = mcp_auth(db, &["users", "add", "alice"], Some("a long password\n"));
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(fails(db, &["users", "add", "bob"]).contains("at least 8"), "an empty password is refused");
    assert!(ok(db, &["users", "list"], None).contains(" alice "));
    assert!(ok(db, &["users", "passwd", "alice"], Some("another long password\n")).contains("changed"));
    assert!(ok(db, &["users", "remove", "alice"], None).contains("removed user 'alice'"));
    assert!(fails(db, &["users", "remove", "alice"]).contains("no user named 'alice'"));

    // A client pre-registered for Claude's "Advanced settings".
    let out = ok(
        db,
        &[
            "clients",
            "add",
            "--name",
            "Claude",
            "--redirect-uri",
            "https://claude.ai/api/mcp/auth_callback",
            "--confidential",
        ],
        None,
    );
    let id = line_value(&out, "client_id: ");
    let secret = line_value(&out, "client_secret: ");
    assert!(secret.len() >= 43, "a 256-bit secret: {secret}");
    let shown = json(db, &["clients", "show", &id, "--json"]);
    assert_eq!(shown["client_id"], id.as_str());
    assert_eq!(shown["has_secret"], true);
    assert_eq!(shown["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(shown["redirect_uris"], serde_json::json!(["https://claude.ai/api/mcp/auth_callback"]));
    assert_eq!((shown["trusted"].as_bool(), shown["active"].as_bool()), (Some(false), Some(true)));
    assert!(!serde_json::to_string(&shown).unwrap().contains(&secret), "the secret is never shown again");
    assert!(ok(db, &["clients", "show", &id], None).contains("0 issued, 0 exchanged"));

    // Update, deactivate, rotate, remove.
    ok(
        db,
        &[
            "clients",
            "update",
            &id,
            "--redirect-uris",
            "https://claude.ai/api/mcp/auth_callback,https://claude.com/api/mcp/auth_callback",
            "--trusted",
        ],
        None,
    );
    let shown = json(db, &["clients", "show", &id, "--json"]);
    assert_eq!(shown["redirect_uris"].as_array().unwrap().len(), 2);
    assert_eq!(shown["trusted"], true);
    assert!(fails(db, &["clients", "update", &id, "--redirect-uris", "http://evil.example/cb"]).contains("plain http"));
    ok(db, &["clients", "update", &id, "--inactive"], None);
    assert_eq!(json(db, &["clients", "show", &id, "--json"])["active"], false);
    assert!(ok(db, &["clients", "list"], None).lines().any(|l| l.contains(&id) && l.contains("INACTIVE")));
    let rotated = line_value(&ok(db, &["clients", "rotate-secret", &id], None), "client_secret: ");
    assert_ne!(rotated, secret);
    let listed = json(db, &["clients", "list", "--json"]);
    assert!(listed.as_array().unwrap().iter().any(|c| c["client_id"] == id.as_str()));
    assert!(ok(db, &["clients", "remove", &id], None).contains("removed client"));
    assert!(fails(db, &["clients", "show", &id]).contains("there is no client"));
    assert!(fails(db, &["clients", "remove", &id]).contains("there is no client"));

    // diagnose: a code exchanged twice, provoked through the server on the same database.
    let stores = mcp_auth::open_database(db).await.unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = AuthorizationServer::with_clock(config(), stores, clock.clone()).await.unwrap();
    let client = register_public_client(&server).await;
    let (code, verifier) = authorize_code(&server, &client).await;
    server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    assert!(server.token(code_request(&client, &code, &verifier), None).await.is_err());
    let report = json(db, &["diagnose", "--json", "--since", "1h", "--client-id", client.as_str()]);
    let attempt = &report[0]["attempts"][0];
    assert_eq!(
        (attempt["verdict"].as_str(), attempt["step"].as_str(), attempt["reason"].as_str()),
        (Some("failed"), Some("code_exchange"), Some("code_reused")),
        "{report}"
    );
    let text = ok(db, &["diagnose", "--since", "1h"], None);
    assert!(text.contains("FAILED at code_exchange: code_reused") && text.contains("fix: "), "{text}");

    // A client that connected is left out of the overview, and shown with --all.
    let good = register_public_client(&server).await;
    let (code, verifier) = authorize_code(&server, &good).await;
    server.token(code_request(&good, &code, &verifier), None).await.unwrap();
    clock.advance(Duration::from_secs(1));
    // The guard records the first accepted MCP call; here the event is recorded directly.
    let alice = oauth_core::UserId::parse("user-1").unwrap();
    server.record_access(oauth_core::AccessEvent::first_call(clock.now(), &good, &alice, "initialize")).await;
    assert!(!ok(db, &["diagnose"], None).contains(good.as_str()));
    assert!(ok(db, &["diagnose", "--all"], None).contains(good.as_str()));
    assert!(fails(db, &["diagnose", "--since", "soon"]).contains("not an age"));

    // `clients list --unused`: self-registered clients idle past the age, which the sweep
    // would collect; never the operator's own.
    let long_ago = Arc::new(ManualClock::new(SystemClock.now().minus(Duration::from_secs(40 * 86_400))));
    let past =
        AuthorizationServer::with_clock(config(), mcp_auth::open_database(db).await.unwrap(), long_ago).await.unwrap();
    let idle = register_public_client(&past).await;
    let used_since = register_public_client(&past).await;
    past.operator().stores().clients.touch_client(&used_since, SystemClock.now()).await.unwrap();
    ok(db, &["clients", "add", "--name", "operator's", "--redirect-uri", "https://app.example/cb"], None);
    let unused = |args: &[&str]| -> Vec<String> {
        let listed = json(db, &[&["clients", "list", "--json", "--unused"], args].concat());
        listed.as_array().unwrap().iter().map(|c| c["client_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(unused(&[]), vec![idle.to_string()], "only the client unused for 30 days");
    assert!(unused(&["--older-than", "50d"]).is_empty());
    assert!(ok(db, &["clients", "list", "--unused"], None).contains(idle.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_on_sqlite() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mcp-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The directory does not exist yet: the command creates it, as an operator's first run does.
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.join("data").display());
    operator_commands(&db).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_on_postgres() {
    use sqlx::Connection as _;
    const URL_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_URL";
    let base = match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set, so the PostgreSQL command-line test cannot run: point it at a throwaway \
             database (postgres://postgres@127.0.0.1:5432/test; `bash .ci/run` sets it up)"
        ),
    };
    let schema = format!("mcp_auth_cli_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR} is set but PostgreSQL cannot be reached: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    operator_commands(&format!("{base}{sep}options%5Bsearch_path%5D={schema}")).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_key_encryption_key_is_managed_with_the_same_key() {
    use oauth_core::ClientCredentials;
    use oauth_core::FlowStep;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mcp-auth-kek-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.join("data").display());
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let kek = oauth_core::KeyEncryption::parse(key).unwrap();
    // The server seals its keys and secrets, the pepper of client-secret hashes among them.
    let server =
        AuthorizationServer::new(config().with_key_encryption(kek), mcp_auth::open_database(&db).await.unwrap())
            .await
            .unwrap();
    let add = ["clients", "add", "--name", "nightly", "--redirect-uri", "https://app.example/cb", "--confidential"];

    // Without the key the command cannot read the pepper: it fails, says what to give, and
    // writes no client whose secret the server could not check.
    let refused = fails(&db, &add);
    assert!(refused.contains("key-encryption key"), "{refused}");
    assert!(json(&db, &["clients", "list", "--json"]).as_array().unwrap().is_empty());
    // The key on the command line is refused: every user of the machine could read it.
    let on_argv = fails(&db, &["--key-encryption-key", key, "clients", "list"]);
    assert!(on_argv.contains("MCP_AUTH_KEY_ENCRYPTION_KEY"), "{on_argv}");
    // Another key is no better than none.
    let other = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let with = |k: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth"))
            .args(add)
            .args(["--database-url", &db])
            .env("MCP_AUTH_KEY_ENCRYPTION_KEY", k)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (succeeded, _, stderr) = with(other);
    assert!(!succeeded && stderr.contains("key-encryption key"), "{stderr}");

    // With the server's key (from the environment, or a file) the client is created, and the
    // server accepts its secret.
    let (succeeded, stdout, stderr) = with(key);
    assert!(succeeded, "{stderr}");
    let (id, secret) = (line_value(&stdout, "client_id: "), line_value(&stdout, "client_secret: "));
    let creds = ClientCredentials::new(None, Some(&id), Some(&secret)).unwrap();
    server.authenticate_client(&creds, FlowStep::CodeExchange).await.expect("the server accepts the new secret");
    let key_file = dir.join("kek");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let key_file = key_file.to_str().unwrap();
    let rotated = ok(&db, &["--key-encryption-key-file", key_file, "clients", "rotate-secret", &id], None);
    let secret = line_value(&rotated, "client_secret: ");
    let creds = ClientCredentials::new(None, Some(&id), Some(&secret)).unwrap();
    server.authenticate_client(&creds, FlowStep::CodeExchange).await.expect("the rotated secret works");
    let _ = std::fs::remove_dir_all(&dir);
}
