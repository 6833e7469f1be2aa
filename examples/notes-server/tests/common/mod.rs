//! Starts the real `notes-server` binary on a loopback port with a fresh database, for tests
//! that drive it with real MCP clients.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod browser;
pub mod flow;
pub mod oidc_provider;
pub mod postgres_cluster;
pub mod upstream;
// Each test file includes this module and uses part of it.
#[allow(unused_imports)]
pub use browser::{Browser, attribute};

/// The first user's credentials in every test server.
pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "interop-password-1";

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// `<base_url>/mcp`.
    pub mcp_url: String,
    dir: PathBuf,
    database_url: String,
}

impl Server {
    /// Starts the server on a fresh database in a new temporary directory.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// [`Self::start`] with extra environment variables (the server's options).
    pub fn start_with(name: &str, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("notes-server-{name}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir).unwrap();
        let database_url =
            env.iter().find(|(k, _)| *k == "DATABASE_URL").map_or_else(|| database_url(&dir), |(_, v)| (*v).to_owned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
            .env("NOTES_LISTEN", "127.0.0.1:0")
            .env_remove("NOTES_PUBLIC_URL")
            .env("DATABASE_URL", &database_url)
            .env("NOTES_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join("server.log")).unwrap()))
            .spawn()
            .expect("start notes-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut mcp_url = None;
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(url) = line.split("(paste into your client): ").nth(1) {
                mcp_url = Some(url.trim().to_owned());
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let mcp_url =
            mcp_url.unwrap_or_else(|| panic!("notes-server did not start; log: {}", dir.join("server.log").display()));
        let base_url = mcp_url.trim_end_matches("/mcp").to_owned();
        Self { child, base_url, mcp_url, dir, database_url }
    }

    /// One of several replicas behind one public URL: a server on the shared `database_url`,
    /// serving on `listen` (where the test reaches this replica), with `public_url` as its
    /// issuer and resource like every other replica.
    pub fn start_replica(name: &str, database_url: &str, listen: &str, public_url: &str) -> Self {
        Self::start_replica_with(name, database_url, listen, public_url, &[])
    }

    /// [`Self::start_replica`] with extra environment variables (the server's options).
    pub fn start_replica_with(
        name: &str,
        database_url: &str,
        listen: &str,
        public_url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let replica = [("DATABASE_URL", database_url), ("NOTES_LISTEN", listen), ("NOTES_PUBLIC_URL", public_url)];
        let env: Vec<(&str, &str)> = replica.into_iter().chain(env.iter().copied()).collect();
        let mut server = Self::start_with(name, &env);
        server.base_url = format!("http://{listen}");
        server.mcp_url = format!("{}/mcp", server.base_url);
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The database this server uses.
    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    /// The temporary directory of this server.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh SQLite file: the embedded default, with WAL and real concurrency.
fn database_url(dir: &Path) -> String {
    format!("sqlite://{}/oauth.db?mode=rwc", dir.display())
}

/// The variable naming the PostgreSQL database the multi-process tests share.
pub const POSTGRES_URL_VAR: &str = "MCP_OAUTH_TEST_POSTGRES_URL";

/// A new, empty schema of the database [`POSTGRES_URL_VAR`] names, as a URL the servers take.
/// Panics when the variable is unset or PostgreSQL is down: these tests never pass without it.
pub async fn fresh_database() -> String {
    use sqlx::Connection as _;
    let base = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set, so the replica tests cannot run: point it at a throwaway \
             database, e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test"
        )
    });
    let schema = format!("replicas_{}_{}", std::process::id(), nanos());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but PostgreSQL cannot be reached: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options%5Bsearch_path%5D={schema}")
}

/// A loopback address (`127.0.0.1:<port>`) free a moment ago, for a server to listen on.
pub fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

pub fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs an external client to completion and returns the JSON object on the last line of its
/// standard output. Panics, with the client's output and the server's log, if it fails.
pub fn run_client(server: &Server, cmd: Command, timeout: Duration) -> serde_json::Value {
    let (cmd, out) = run_client_to_end(server, cmd, timeout);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        out.status,
        server.log()
    );
    last_json(&stdout).unwrap_or_else(|e| panic!("{cmd:?}: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}"))
}

/// The JSON object on the last line of a client's standard output that starts with `{`.
pub fn last_json(stdout: &str) -> Result<serde_json::Value, String> {
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("printed no JSON result")?;
    serde_json::from_str(last).map_err(|e| format!("bad JSON: {e}: {last}"))
}

/// Runs an external client against `server` to completion, whatever its exit status, and
/// returns the command and its output. Panics, with the server's log, if it overruns `timeout`.
pub fn run_client_to_end(server: &Server, mut cmd: Command, timeout: Duration) -> (Command, std::process::Output) {
    cmd.env("MCP_URL", &server.mcp_url)
        .env("MCP_USERNAME", USERNAME)
        .env("MCP_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}\nserver log:\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (cmd, out)
}

/// The checks every SDK client's result must pass: it is the client and version expected, it
/// signed in as [`USERNAME`], listed the three tools, kept a note starting with `note_prefix`,
/// and refreshed with rotation. Returns the registered client id.
pub fn assert_client_result(out: &serde_json::Value, client: &str, sdk_version: &str, note_prefix: &str) -> String {
    assert_client_result_as(out, client, sdk_version, note_prefix, USERNAME)
}

/// [`assert_client_result`] for a client that signed in as `username`.
pub fn assert_client_result_as(
    out: &serde_json::Value,
    client: &str,
    sdk_version: &str,
    note_prefix: &str,
    username: &str,
) -> String {
    use serde_json::Value;
    assert_eq!(out["client"], client, "{out}");
    assert_eq!(out["sdk_version"], sdk_version, "{out}");
    assert_eq!(out["whoami"]["username"], username, "{out}");
    let client_id = out["client_id"].as_str().unwrap_or_default().to_owned();
    assert!(!client_id.is_empty(), "no client_id: {out}");
    assert_eq!(out["whoami"]["client_id"], client_id.as_str(), "{out}");
    let tools: Vec<&str> = out["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
    for tool in ["whoami", "add_note", "list_notes"] {
        assert!(tools.contains(&tool), "{tool} not listed: {out}");
    }
    let notes = out["notes"].as_array().expect("notes");
    assert!(notes.iter().filter_map(Value::as_str).any(|n| n.starts_with(note_prefix)), "the note is missing: {out}");
    assert_eq!(out["refreshed"], true, "{out}");
    assert_eq!(out["refresh_token_rotated"], true, "{out}");
    client_id
}

impl Browser {
    /// Signs in as [`USERNAME`] and approves the request at `auth_url`; returns the redirect
    /// location with the code.
    pub async fn sign_in_and_approve(&mut self, server: &Server, auth_url: &str) -> String {
        self.sign_in_and_approve_at(&server.base_url, auth_url).await
    }

    /// [`Self::sign_in_and_approve`] on the server at `base_url`.
    pub async fn sign_in_and_approve_at(&mut self, base_url: &str, auth_url: &str) -> String {
        self.sign_in_and_approve_as(base_url, auth_url, USERNAME, PASSWORD).await
    }
}

/// The example app in this process on a manual clock, served on a loopback socket, with the
/// first user created; returns its base URL, database URL, server and clock.
pub async fn app_on_a_manual_clock(
    name: &str,
) -> (String, String, std::sync::Arc<oauth_core::AuthorizationServer>, std::sync::Arc<oauth_core::ManualClock>) {
    use oauth_core::Clock as _;
    use std::sync::Arc;
    let dir = std::env::temp_dir().join(format!("notes-diag-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.display());
    // Start at the real time, so that `diagnose --since 1h` sees the events.
    let clock = Arc::new(oauth_core::ManualClock::new(oauth_core::SystemClock.now()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stores = mcp_auth::open_database(&db).await.unwrap();
    let app = notes_server::build_with_clock(&notes_server::Settings::new(&base), stores, clock.clone()).await.unwrap();
    let users = app.server.operator().stores().users.clone();
    oauth_core::create_user(users.as_ref(), USERNAME, PASSWORD, clock.now()).await.unwrap();
    let router = app.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, db, app.server, clock)
}

/// Runs `notes-server <args> --database-url <db>`, with `stdin` on standard input.
pub fn operator(db: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(args)
        .args(["--database-url", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key pair for a `private_key_jwt` client: the public JWK set the operator registers, and
/// the private key the client signs its assertions with.
pub struct ClientKeyPair {
    /// The public key as a JWK set (with a `kid`), as `clients add --jwks-file` reads it.
    pub jwks: String,
    /// The private key, PKCS#8 PEM.
    pub private_key_pem: String,
}

impl ClientKeyPair {
    /// A new ES256 (P-256) key pair.
    pub fn es256() -> Self {
        use base64::Engine as _;
        use oauth_core::{KeySet, SigningAlgorithm, StoredKey, UnixTime};
        let key = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
        let set = KeySet::load(std::slice::from_ref(&key), SigningAlgorithm::Es256).unwrap();
        let jwks = serde_json::to_string(&set.jwks()).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(&key.private_der);
        // RFC 7468 2: lines of 64 characters.
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let private_key_pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        Self { jwks, private_key_pem }
    }
}

/// Creates a machine client named `name` on `server`'s database that authenticates with
/// `private_key_jwt` against the public half of `keys` (`clients add --machine --jwks-file`),
/// checks that it got no secret, and returns its id.
pub fn add_signing_machine(server: &Server, name: &str, keys: &ClientKeyPair) -> String {
    let jwks_file = server.dir().join(format!("machine-jwks-{}.json", nanos()));
    std::fs::write(&jwks_file, &keys.jwks).unwrap();
    let args = ["clients", "add", "--name", name, "--machine", "--jwks-file", jwks_file.to_str().unwrap()];
    let printed = operator(&server.database_url(), &args, None);
    let _ = std::fs::remove_file(&jwks_file);
    assert!(printed.contains("token_endpoint_auth_method: private_key_jwt"), "not a private_key_jwt client: {printed}");
    assert!(!printed.contains("client_secret"), "no secret for a private_key_jwt client: {printed}");
    printed
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no client_id printed: {printed}"))
}

/// The last connection attempt of `client_id` in the past hour, as `diagnose --json` on `db`
/// reports it.
pub fn diagnose(db: &str, client_id: &str) -> serde_json::Value {
    diagnose_attempts(db, client_id).pop().expect("an attempt")
}

/// Every connection attempt of `client_id` in the past hour, oldest first, as `diagnose --json`
/// on `db` reports them.
pub fn diagnose_attempts(db: &str, client_id: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--json", "--since", "1h", "--client-id", client_id, "--database-url", db])
        .output()
        .expect("run notes-server diagnose");
    assert!(out.status.success(), "diagnose failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report[0]["client_id"], client_id, "{report}");
    report[0]["attempts"].as_array().expect("attempts").clone()
}
