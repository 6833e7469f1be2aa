//! Load test of the running example server (`notes-server`), on SQLite and on PostgreSQL:
//! authorization-code exchanges at the token endpoint, and guarded `/mcp` tool calls, each at
//! full speed and then at half that rate. Prints requests per second and p50/p99 latency.
//!
//! Traffic goes only to the server it starts on 127.0.0.1. Every phase is bounded in count and
//! in time, the server is stopped and the scratch databases are removed at the end.
//!
//! Codes are prepared in the server's own database beforehand (the sign-in and consent pages
//! are not what is measured). The token endpoint limits each client address to 120 requests
//! at once; the load comes from many loopback addresses (127.1.x.y), at most 100 requests
//! each, as many clients would send it.
//!
//! Usage: `loadtest [--codes N] [--calls N] [--seconds S] [--skip-postgres]`; the server
//! binary is looked for beside this one (`cargo build --release -p notes-server`), or at
//! `$NOTES_SERVER`; PostgreSQL at `$LOADTEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use oauth_benches::{NotesServer, per_second};
use oauth_core::AuthorizationRequest;
use oauth_core::CodeChallenge;
use oauth_core::CodeVerifier;
use oauth_core::RegistrationRequest;
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{ClientId, Issuer, ResourceUri, UserId};
use oauth_store_sql::SqlStore;
use sqlx::{AssertSqlSafe, Connection as _};

const REDIRECT: &str = "http://127.0.0.1:7777/callback";
/// Requests per client address, under the token endpoint's burst of 120.
const PER_ADDRESS: usize = 100;
/// Requests in flight at full speed.
const CONCURRENCY: usize = 16;

struct Args {
    codes: usize,
    calls: usize,
    seconds: u64,
    skip_postgres: bool,
}

fn main() {
    let mut args = Args { codes: 3000, calls: 20_000, seconds: 20, skip_postgres: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok()).expect("a number after the flag");
        match a.as_str() {
            "--codes" => args.codes = num() as usize,
            "--calls" => args.calls = num() as usize,
            "--seconds" => args.seconds = num(),
            "--skip-postgres" => args.skip_postgres = true,
            other => panic!("unknown argument {other}"),
        }
    }
    // One thread: the generator takes as little of the machine's two cores as it can.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut results = Vec::new();

    let dir = std::env::temp_dir().join(format!("oauth-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("load.db").display());
    results.push(("SQLite", rt.block_on(run_backend(&sqlite, &args))));

    if !args.skip_postgres {
        let admin = std::env::var("LOADTEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        match rt.block_on(ScratchDatabase::create(&admin)) {
            Ok(db) => {
                let r = rt.block_on(run_backend(&db.url, &args));
                rt.block_on(db.drop_it());
                results.push(("PostgreSQL", r));
            }
            Err(e) => eprintln!("PostgreSQL at {admin} is not usable ({e}); skipped"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!("notes-server over loopback HTTP/1.1, one run");
    println!(
        "{:<12} {:<40} {:>9} {:>12} {:>9} {:>9} {:>7}",
        "database", "phase", "requests", "rate", "p50 ms", "p99 ms", "errors"
    );
    for (db, phases) in &results {
        for p in phases {
            println!(
                "{db:<12} {:<40} {:>9} {:>12} {:>9.2} {:>9.2} {:>7}",
                p.name,
                p.done,
                per_second(p.rate),
                p.p50.as_secs_f64() * 1e3,
                p.p99.as_secs_f64() * 1e3,
                p.errors
            );
        }
    }
    println!();
    println!("targets:");
    for (db, phases) in &results {
        // The goal for one replica, on either database.
        let want = 2000.0;
        if let Some(full) = phases.iter().find(|p| p.name.starts_with("token: code exchange, full")) {
            let met = full.rate >= want && full.errors == 0;
            println!("  {db:<11} code exchanges/s {:>10.0}   target >= {want:<6} {}", full.rate, verdict(met));
        }
        let p50 = |prefix: &str| phases.iter().find(|p| p.name.starts_with(prefix)).map(|p| p.p50.as_secs_f64());
        if let (Some(before), Some(during)) =
            (p50("mcp: tools/call whoami, half rate"), p50("mcp: whoami, half rate, secret flood"))
        {
            let ratio = during / before;
            println!(
                "  {db:<11} /mcp p50 during a wrong-secret flood / before {ratio:>6.2}   target <= 2     {}",
                verdict(ratio <= 2.0)
            );
        }
        for p in phases.iter().filter(|p| p.name.contains("half")) {
            let ms = p.p99.as_secs_f64() * 1e3;
            println!(
                "  {db:<11} p99 ms, {:<28} {ms:>6.2}   target < 10     {}",
                p.name,
                verdict(ms < 10.0 && p.errors == 0)
            );
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// One phase's figures.
struct Phase {
    name: String,
    done: usize,
    errors: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Starts the server on `url`, runs every phase against it, stops it.
async fn run_backend(url: &str, args: &Args) -> Vec<Phase> {
    let server = NotesServer::start(url, "load-test-password-1");
    let base = format!("http://{}", server.addr);
    let seed = Seed::new(url, &base).await;
    let deadline = Duration::from_secs(args.seconds);
    let mut phases = Vec::new();

    // Token endpoint: full speed, then half that rate.
    let client = seed.client.as_str().to_owned();
    let exchange = move |c: &(String, CodeVerifier)| exchange_request(&client, c);
    let full = run(
        server.addr,
        "token: code exchange, full speed",
        seed.codes(args.codes).await,
        None,
        deadline,
        exchange.clone(),
    )
    .await;
    let half_rate = full.rate / 2.0;
    let n = ((half_rate * 4.0) as usize).clamp(100, args.codes);
    let codes = seed.codes(n).await;
    phases.push(full);
    phases.push(run(server.addr, "token: code exchange, half rate", codes, Some(half_rate), deadline, exchange).await);

    // Guarded MCP calls with one access token from a fresh code.
    if let Some(token) = seed.access_token(server.addr).await {
        // One session per worker, as one per client: a session's requests are handled in turn.
        let mut sessions = Vec::new();
        // At most the guard's bound per caller (16 by default): more would evict the oldest.
        for _ in 0..(CONCURRENCY * 2).min(16) {
            sessions.push(initialize(server.addr, &token).await);
        }
        let call = move |i: &usize| mcp_call(&token, sessions[*i % sessions.len()].as_deref(), *i);
        let calls: Vec<usize> = (0..args.calls).collect();
        let full = run(server.addr, "mcp: tools/call whoami, full speed", calls, None, deadline, call.clone()).await;
        let half_rate = full.rate / 2.0;
        let n = ((half_rate * 4.0) as usize).clamp(100, args.calls);
        phases.push(full);
        let calls: Vec<usize> = (0..n).collect();
        phases.push(
            run(server.addr, "mcp: tools/call whoami, half rate", calls, Some(half_rate), deadline, call.clone()).await,
        );

        // The same paced calls while 64 requests at a time present a wrong client secret: a
        // secret check must not take the workers (or the cores) from everything else.
        let victim = seed.confidential_client().await;
        let wrong = move |_: &usize| wrong_secret_request(&victim);
        let flood_for = Duration::from_secs_f64(n as f64 / half_rate) + Duration::from_millis(500);
        let calls: Vec<usize> = (0..n).collect();
        let (during, flood) = tokio::join!(
            run(server.addr, "mcp: whoami, half rate, secret flood", calls, Some(half_rate), deadline, call),
            run_with(
                server.addr,
                "token: wrong client secrets (401 expected)",
                (0..1_000_000).collect::<Vec<usize>>(),
                // 1 000 a second from 64 connections on rotating addresses: a distributed
                // flood well past every per-address limit, not one that simply takes the cores.
                Some(1000.0),
                flood_for.min(deadline),
                wrong,
                64,
            ),
        );
        phases.push(during);
        phases.push(flood);
    } else {
        eprintln!("no access token for the MCP phases; skipped");
    }
    drop(server);
    phases
}

/// Sends one request per job, `CONCURRENCY` at a time at full speed, or paced at `rate` a
/// second (latency then counts from when each request was due, so a slow server cannot hide
/// its queue). Stops after every job or `deadline`, whichever comes first.
async fn run<J: Send + Sync + 'static>(
    addr: SocketAddr,
    name: &str,
    jobs: Vec<J>,
    rate: Option<f64>,
    deadline: Duration,
    request: impl Fn(&J) -> Request<Full<Bytes>> + Clone + 'static,
) -> Phase {
    let workers = if rate.is_some() { CONCURRENCY * 2 } else { CONCURRENCY };
    run_with(addr, name, jobs, rate, deadline, request, workers).await
}

/// [`run`] with `workers` requests in flight.
async fn run_with<J: Send + Sync + 'static>(
    addr: SocketAddr,
    name: &str,
    jobs: Vec<J>,
    rate: Option<f64>,
    deadline: Duration,
    request: impl Fn(&J) -> Request<Full<Bytes>> + Clone + 'static,
    workers: usize,
) -> Phase {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    for _ in 0..workers {
        let (jobs, next, request) = (jobs.clone(), next.clone(), request.clone());
        tasks.push(local.spawn_local(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut conn: Option<(SendRequest<Full<Bytes>>, usize)> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if start.elapsed() >= deadline {
                    break;
                }
                let due = match rate {
                    Some(r) => {
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                if conn.as_ref().is_none_or(|(_, used)| *used >= PER_ADDRESS) {
                    conn = Some((connect(addr).await, 0));
                }
                let Some((sender, used)) = conn.as_mut() else { break };
                *used += 1;
                let ok = match sender.send_request(request(job)).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await;
                        if status != StatusCode::OK && errors < 3 {
                            eprintln!(
                                "{status}: {}",
                                body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).unwrap_or_default()
                            );
                        }
                        status == StatusCode::OK
                    }
                    Err(_) => {
                        conn = None;
                        false
                    }
                };
                latencies.push(due.elapsed());
                errors += usize::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    local
        .run_until(async {
            for t in tasks {
                let (l, e) = t.await.unwrap();
                latencies.extend(l);
                errors += e;
            }
        })
        .await;
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1))).copied();
    Phase {
        name: name.to_owned(),
        done: latencies.len(),
        errors,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(50).unwrap_or_default(),
        p99: pct(99).unwrap_or_default(),
    }
}

/// A new HTTP/1.1 connection to `addr` from the next loopback address.
async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let source = Ipv4Addr::new(127, 1, (n / 254 % 256) as u8, (n % 254 + 1) as u8);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let stream = socket.connect(addr).await.expect("the server accepts connections");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    sender
}

/// A PostgreSQL database made for one run and dropped after it.
struct ScratchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin: &str) -> Result<Self, sqlx::Error> {
        let name = format!("mcp_oauth_load_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        // The name is made of a fixed prefix and the process id: nothing from outside.
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut conn).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        let mut url = url::Url::parse(admin).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        url.set_path(&name);
        Ok(Self { admin: admin.to_owned(), name, url: url.to_string() })
    }

    async fn drop_it(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
                .execute(&mut conn)
                .await;
        }
    }
}

/// The server's database as the authorization server sees it, to prepare codes directly.
struct Seed {
    server: AuthorizationServer,
    client: ClientId,
    user: UserId,
    resource: String,
}

impl Seed {
    async fn new(url: &str, base: &str) -> Self {
        let stores = SqlStore::connect(url).await.expect("the server's database").into_stores();
        let resource = format!("{base}/mcp");
        let config = ServerConfig::new(Issuer::parse(base).unwrap(), ResourceUri::parse(&resource).unwrap());
        // Loads the signing key the running server made; codes are all this one writes.
        let server = AuthorizationServer::new(config, stores).await.unwrap();
        let reg = RegistrationRequest::from_json(
            format!(
                r#"{{"client_name":"load test","redirect_uris":["{REDIRECT}"],"token_endpoint_auth_method":"none"}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let client = ClientId::parse(&server.register(reg).await.unwrap().client_id).unwrap();
        let users = server.operator().stores().users.list_users().await.unwrap();
        let user = users.first().expect("the server made its admin user").id.clone();
        Self { server, client, user, resource }
    }

    /// `n` fresh codes, each with its PKCE verifier.
    async fn codes(&self, n: usize) -> Vec<(String, CodeVerifier)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let verifier = CodeVerifier::generate();
            let challenge = CodeChallenge::s256(&verifier);
            let req = AuthorizationRequest::from_pairs([
                ("response_type", "code"),
                ("client_id", self.client.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("state", "s"),
                ("resource", self.resource.as_str()),
            ])
            .unwrap();
            let prompt = self.server.authorize(req).await.unwrap();
            let location = self.server.approve(&prompt.pending.id, &self.user, self.server.now(), false).await.unwrap();
            let query: HashMap<String, String> =
                url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
            out.push((query["code"].clone(), verifier));
        }
        out
    }

    /// A confidential client, registered as Claude registers (`client_secret_post`).
    async fn confidential_client(&self) -> String {
        let reg = RegistrationRequest::from_json(
            format!(
                r#"{{"client_name":"confidential","redirect_uris":["{REDIRECT}"],"token_endpoint_auth_method":"client_secret_post"}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        self.server.register(reg).await.unwrap().client_id
    }

    /// An access token from the running server, for a fresh code.
    async fn access_token(&self, addr: SocketAddr) -> Option<String> {
        let code = self.codes(1).await.pop()?;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut sender = connect(addr).await;
                let resp = sender.send_request(exchange_request(self.client.as_str(), &code)).await.ok()?;
                let body = resp.into_body().collect().await.ok()?.to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                v["access_token"].as_str().map(str::to_owned)
            })
            .await
    }
}

/// The token request that redeems `code`.
fn exchange_request(client: &str, (code, verifier): &(String, CodeVerifier)) -> Request<Full<Bytes>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("code_verifier", verifier.secret())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("client_id", client)
        .finish();
    Request::post("/token")
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A refresh request by `client` with a wrong secret: answered 401 `invalid_client`.
fn wrong_secret_request(client: &str) -> Request<Full<Bytes>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", "not-a-token")
        .append_pair("client_id", client)
        .append_pair("client_secret", "wrong-secret-wrong-secret-wrong-secret-xx")
        .finish();
    Request::post("/token")
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn mcp_request(token: &str, session: Option<&str>, body: String) -> Request<Full<Bytes>> {
    let mut r = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn mcp_call(token: &str, session: Option<&str>, id: usize) -> Request<Full<Bytes>> {
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"whoami","arguments":{{}}}}}}"#);
    mcp_request(token, session, body)
}

/// Opens an MCP session (`initialize`, then `notifications/initialized`); its id, if the
/// server keeps sessions.
async fn initialize(addr: SocketAddr, token: &str) -> Option<String> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut sender = connect(addr).await;
            let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"loadtest","version":"1"}}}"#;
            let resp = sender.send_request(mcp_request(token, None, init.to_owned())).await.ok()?;
            let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let _ = resp.into_body().collect().await;
            let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
            if let Ok(r) = sender.send_request(mcp_request(token, session.as_deref(), note)).await {
                let _ = r.into_body().collect().await;
            }
            session
        })
        .await
}
