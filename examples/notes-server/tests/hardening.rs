//! The example server against what a stranger or a careless operator does: slow clients that
//! hold connections, control characters and passwords typed into stored events, secrets on the
//! command line, and a database that gives away the signing keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oauth_core::{EventQuery, FlowEvent, FlowStep};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A `notes-server` process on a fresh SQLite database, with `env` added; killed on drop.
struct Proc {
    child: Child,
    base: String,
    dir: PathBuf,
    stdout: Vec<String>,
}

impl Proc {
    fn start(name: &str, env: &[(&str, &str)], with_password: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("notes-hardening-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_notes-server"));
        cmd.env("NOTES_LISTEN", "127.0.0.1:0")
            .env_remove("NOTES_PUBLIC_URL")
            .env("DATABASE_URL", format!("sqlite://{}/oauth.db?mode=rwc", dir.display()))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join("server.log")).unwrap()));
        if with_password {
            cmd.env("NOTES_ADMIN_PASSWORD", common::PASSWORD);
        } else {
            cmd.env_remove("NOTES_ADMIN_PASSWORD");
        }
        let mut child = cmd.spawn().expect("start notes-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdout = Vec::new();
        let mut base = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            stdout.push(line.clone());
            if let Some(url) = line.split("(paste into your client): ").nth(1) {
                base = Some(url.trim().trim_end_matches("/mcp").to_owned());
            }
            if line.contains("sign in") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let base = base.unwrap_or_else(|| {
            panic!(
                "notes-server did not start: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            )
        });
        Self { child, base, dir, stdout }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}/oauth.db?mode=rwc", self.dir.display())
    }

    async fn events(&self) -> Vec<FlowEvent> {
        let stores = mcp_auth::open_database(&self.database_url()).await.unwrap();
        stores.events.events(&EventQuery::all()).await.unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A request line and half its headers, then nothing: a slow (or malicious) client.
async fn slow_client(addr: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */")
        .await
        .unwrap();
    tcp
}

/// Whether the server closed `tcp` within `within` (end of stream or reset).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or 400 before closing is fine; keep reading to the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_half_its_headers_is_closed_after_the_header_timeout() {
    let server = Proc::start("half-headers", &[("NOTES_HEADER_READ_TIMEOUT", "1")], true);
    let mut slow = slow_client(&server.addr()).await;
    // Before the fix the connection stayed open for as long as the client liked.
    assert!(closed_within(&mut slow, Duration::from_secs(20)).await, "a half-sent request head held its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let server = Proc::start("idle", &[("NOTES_HEADER_READ_TIMEOUT", "1")], true);
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // The response is complete; the connection then waits for a next request that never comes.
    assert!(closed_within(&mut tcp, Duration::from_secs(20)).await, "an idle keep-alive connection was held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_slow_ones_are_dropped() {
    let server = Proc::start("cap", &[("NOTES_HEADER_READ_TIMEOUT", "4"), ("NOTES_MAX_CONNECTIONS", "3")], true);
    let addr = server.addr();
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(slow_client(&addr).await);
    }
    let mut normal = TcpStream::connect(&addr).await.unwrap();
    normal
        .write_all(
            b"GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    // The three slow connections fill the cap: the fourth is not served while they are held.
    let early = tokio::time::timeout(Duration::from_millis(1500), normal.read(&mut buf)).await;
    assert!(early.is_err(), "a connection past the cap was served at once: {early:?}");
    // Once the header timeout drops them, the waiting connection is served normally.
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), normal.read_to_end(&mut response))
        .await
        .expect("the waiting connection was never served")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(1)).await, "slow connections are closed");
    }
    // And the server keeps answering.
    let again = reqwest::get(format!("{}/.well-known/oauth-protected-resource", server.base)).await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_a_client_sends_are_stored_escaped() {
    let server = Proc::start("escape", &[], true);
    let body = serde_json::json!({
        "client_name": "evil\u{1b}[2J\r\nsign_in: signed in as 'admin'",
        "redirect_uris": ["ftp://127.0.0.1/cb"],
    });
    let resp = reqwest::Client::new().post(format!("{}/register", server.base)).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // The row as stored: reading through the store would escape it again.
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(&server.database_url()).await.unwrap();
    let detail: String = sqlx::query_scalar("SELECT detail FROM flow_events WHERE step = 'registration'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(!detail.chars().any(char::is_control), "control characters stored as they came: {detail:?}");
    assert!(detail.contains("evil\\u{1b}[2J\\u{d}\\u{a}sign_in"), "{detail}");
}

#[tokio::test]
async fn control_characters_in_an_event_detail_are_escaped_in_the_memory_store() {
    let stores = oauth_store_memory::MemoryStore::new().into_stores();
    let server = oauth_core::AuthorizationServer::new(oauth_core::testing::config(), stores.clone()).await.unwrap();
    let event = FlowEvent::failure(
        server.now(),
        FlowStep::SignIn,
        oauth_core::Reason::BadCredentials,
        "typed \u{1b}]8;;http://evil\u{7}link\u{1b}]8;;\u{7}\n",
    );
    stores.events.record_event(&event).await.unwrap();
    let stored = stores.events.events(&EventQuery::all()).await.unwrap();
    assert_eq!(stored[0].detail, "typed \\u{1b}]8;;http://evil\\u{7}link\\u{1b}]8;;\\u{7}\\u{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sign_in_stores_a_username_only_when_it_names_a_user() {
    let server = Proc::start("sign-in", &[], true);
    let redirect = "http://127.0.0.1:9/cb";
    let reg =
        serde_json::json!({"client_name": "t", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"});
    let resp = reqwest::Client::new().post(format!("{}/register", server.base)).json(&reg).send().await.unwrap();
    let client_id = resp.json::<serde_json::Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let auth_url = format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        server.base,
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let typed_password = "correct horse battery staple";
    for username in [typed_password, common::USERNAME] {
        let mut browser = common::Browser::new();
        let (status, page, _) = browser.get(&auth_url).await;
        assert_eq!(status, 200, "{page}");
        let action = format!("{}{}", server.base, common::attribute(&page, "action=\""));
        let pending = common::attribute(&page, "name=\"pending\" value=\"");
        let csrf = common::attribute(&page, "name=\"csrf\" value=\"");
        let fields = [("pending", &*pending), ("csrf", &*csrf), ("username", username), ("password", "wrong")];
        let (status, page, _) = browser.post_form(&action, &fields).await;
        assert_eq!(status, 200, "{page}");
    }
    let events = server.events().await;
    let failed: Vec<&FlowEvent> = events.iter().filter(|e| e.step == FlowStep::SignIn && !e.succeeded()).collect();
    assert_eq!(failed.len(), 2, "{events:#?}");
    let all = format!("{events:?}");
    assert!(!all.contains(typed_password), "an unknown username (a password, often) was stored: {all}");
    assert!(failed[0].detail.contains("keyed hash"), "{}", failed[0].detail);
    assert!(failed[1].detail.contains("'admin'"), "a known user is named: {}", failed[1].detail);
    assert!(failed[1].user.is_some());
}

#[test]
fn secrets_on_the_command_line_are_refused() {
    let token = "an admin secret of more than thirty-two characters";
    for (args, env_var) in [
        (vec!["--admin-token", token], "NOTES_ADMIN_TOKEN"),
        (vec!["--admin-password", "hunter2-hunter2"], "NOTES_ADMIN_PASSWORD"),
        (vec!["--database-url", "postgres://app:hunter2@127.0.0.1:9/db"], "DATABASE_URL"),
        (vec!["--key-encryption-key", &"ab".repeat(32)], "NOTES_KEY_ENCRYPTION_KEY"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env("DATABASE_URL", "memory")
            .env_remove("NOTES_ADMIN_PASSWORD")
            .env_remove("NOTES_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("notes-server started with a secret on its command line: {args:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(env_var) && stderr.contains("ps"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2") && !stderr.contains(token), "the error repeats the secret: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_first_password_goes_to_a_file_only_its_owner_reads() {
    use std::os::unix::fs::PermissionsExt as _;
    let file = std::env::temp_dir().join(format!("notes-hardening-pw-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let server = Proc::start("first-password", &[("NOTES_INITIAL_PASSWORD_FILE", file.to_str().unwrap())], false);
    let mode = std::fs::metadata(&file).expect("the password file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20, "{password}");
    let printed = server.stdout.join("\n");
    assert!(!printed.contains(&password), "the password went to a non-terminal stdout: {printed}");
    assert!(printed.contains(file.to_str().unwrap()), "the path is printed: {printed}");
    let stores = mcp_auth::open_database(&server.database_url()).await.unwrap();
    let admin = stores.users.user_by_username("admin").await.unwrap().unwrap();
    assert!(oauth_core::verify_password(&password, &admin.password_hash));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_documented_commands_carry_no_secret_on_the_command_line() {
    let root = common::repo_root();
    for readme in ["README.md", "mcp-auth/README.md", "oauth-store-sql/README.md", "oauth-axum/README.md"] {
        let text = std::fs::read_to_string(root.join(readme)).unwrap();
        for line in text.lines() {
            for flag in ["--admin-token ", "--admin-token=", "--admin-password ", "--key-encryption-key "] {
                assert!(!line.contains(flag), "{readme}: a secret on the command line: {line}");
            }
            if line.contains("--database-url ") {
                let url = line.split("--database-url ").nth(1).unwrap().split_whitespace().next().unwrap_or("");
                assert!(!mcp_auth::database_url_has_password(url), "{readme}: {line}");
            }
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for documented in ["--admin-token-file", "NOTES_KEY_ENCRYPTION_KEY", "initial-admin-password"] {
        assert!(readme.contains(documented), "README.md does not document {documented}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_sealed_with_the_key_encryption_key() {
    use oauth_core::AuthorizationServer;
    use oauth_core::KeyEncryption;
    use oauth_core::testing;
    let dir = std::env::temp_dir().join(format!("notes-hardening-kek-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.display());
    let kek = KeyEncryption::parse(&"5a".repeat(32)).unwrap();
    let config = || testing::config().with_key_encryption(kek.clone());

    let server = AuthorizationServer::new(config(), mcp_auth::open_database(&db).await.unwrap()).await.unwrap();
    let (_, tokens) = testing::tokens_for_new_client(&server, "http://127.0.0.1:9/cb", "user-1").await;
    let clear = server.operator().stores().keys.list_keys().await.unwrap();
    drop(server);

    // What a reader of the database sees: no private key in clear.
    let raw = raw_keys(&db).await;
    assert_eq!(raw.len(), clear.len());
    for (raw, clear) in raw.iter().zip(&clear) {
        assert!(raw.starts_with(b"mcpkek1:"), "not sealed");
        assert!(!raw.windows(clear.private_der.len()).any(|w| w == clear.private_der.as_slice()), "clear DER stored");
    }

    // A restart with the same key verifies the tokens issued before.
    let again = AuthorizationServer::new(config(), mcp_auth::open_database(&db).await.unwrap()).await.unwrap();
    assert!(again.verify_access_token(&tokens.access_token).is_ok());
    drop(again);

    // Another key, or none: the server refuses to start, saying why.
    let wrong = testing::config().with_key_encryption(KeyEncryption::parse(&"a5".repeat(32)).unwrap());
    let err = AuthorizationServer::new(wrong, mcp_auth::open_database(&db).await.unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("key-encryption key"), "{err}");
    let err =
        AuthorizationServer::new(testing::config(), mcp_auth::open_database(&db).await.unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("encrypted at rest"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stored_in_clear_still_load_and_rotation_seals_the_next() {
    use oauth_core::AuthorizationServer;
    use oauth_core::KeyEncryption;
    use oauth_core::testing;
    let dir = std::env::temp_dir().join(format!("notes-hardening-legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.display());
    let before =
        AuthorizationServer::new(testing::config(), mcp_auth::open_database(&db).await.unwrap()).await.unwrap();
    let (_, tokens) = testing::tokens_for_new_client(&before, "http://127.0.0.1:9/cb", "user-1").await;
    drop(before);
    assert!(!raw_keys(&db).await[0].starts_with(b"mcpkek1:"));

    let kek = KeyEncryption::parse(&"5a".repeat(32)).unwrap();
    let after = AuthorizationServer::new(
        testing::config().with_key_encryption(kek),
        mcp_auth::open_database(&db).await.unwrap(),
    )
    .await
    .unwrap();
    assert!(after.verify_access_token(&tokens.access_token).is_ok(), "the clear key still verifies");
    after.rotate_signing_key().await.unwrap();
    let raw = raw_keys(&db).await;
    assert_eq!(raw.len(), 2);
    assert_eq!(raw.iter().filter(|k| k.starts_with(b"mcpkek1:")).count(), 1, "the new key is sealed");
    assert!(after.verify_access_token(&tokens.access_token).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The private keys as the database holds them, oldest first.
async fn raw_keys(db: &str) -> Vec<Vec<u8>> {
    let stores = oauth_store_sql::SqlStore::connect(db).await.unwrap().into_stores();
    stores.keys.list_keys().await.unwrap().into_iter().map(|k| k.private_der).collect()
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from `tcp`; `None` when the
/// connection closes first.
async fn read_response(tcp: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&raw[..end + 4 + length]).into_owned());
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// A client that sends its MCP request's body a moment after its headers, is refused with
/// the 401 challenge, and asks for the metadata on the same kept-alive connection, as the
/// SDKs' HTTP clients do: the connection must still be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_401_challenge_keeps_the_connection_for_the_discovery_that_follows() {
    let server = Proc::start("keepalive", &[], true);
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(body.as_bytes()).await.unwrap();
    let refused = read_response(&mut tcp).await.expect("the 401");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let discovery = b"GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    tcp.write_all(discovery).await.expect("the connection was closed after the 401");
    let next = read_response(&mut tcp).await.expect("the connection was closed under the client's next request");
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
}
