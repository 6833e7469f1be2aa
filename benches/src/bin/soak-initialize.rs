//! Soak test of the example server's MCP sessions: one valid token floods `initialize` (each
//! one opens an rmcp session) for a bounded time, and the server's resident memory is read
//! early and at the end. With sessions bounded per caller, the server's memory levels off; the
//! target is an end/early ratio of at most 1.5.
//!
//! Traffic goes only to the server it starts on 127.0.0.1 over a fresh SQLite file; the server
//! is stopped and the file removed at the end.
//!
//! Usage: `soak-initialize [--seconds S] [--early S] [--workers N]` (defaults 90, 15, 8); the
//! server binary is looked for beside this one (`cargo build --release -p notes-server`), or at
//! `$NOTES_SERVER`. Linux only (it reads `/proc/<pid>/status`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use oauth_benches::NotesServer;
use oauth_core::AuthorizationRequest;
use oauth_core::CodeChallenge;
use oauth_core::CodeVerifier;
use oauth_core::RegistrationRequest;
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{ClientId, Issuer, ResourceUri};
use oauth_store_sql::SqlStore;

const REDIRECT: &str = "http://127.0.0.1:7777/callback";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"soak","version":"1"}}}"#;

fn main() {
    let (mut seconds, mut early, mut workers) = (90u64, 15u64, 8usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok()).expect("a number after the flag");
        match a.as_str() {
            "--seconds" => seconds = num(),
            "--early" => early = num(),
            "--workers" => workers = num() as usize,
            other => panic!("unknown argument {other}"),
        }
    }
    let early = early.min(seconds);
    let dir = std::env::temp_dir().join(format!("oauth-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.join("soak.db").display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, soak(&db, Duration::from_secs(seconds), Duration::from_secs(early), workers));
    let _ = std::fs::remove_dir_all(&dir);
}

async fn soak(db: &str, length: Duration, early: Duration, workers: usize) {
    let server = NotesServer::start(db, "soak-test-password-1");
    let token = access_token(db, server.addr).await;
    let start = Instant::now();
    let (ok, failed) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(0usize)));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (token, ok, failed) = (token.clone(), ok.clone(), failed.clone());
        let addr = server.addr;
        tasks.push(tokio::task::spawn_local(async move {
            let mut sender = connect(addr).await;
            while start.elapsed() < length {
                let req = Request::post("/mcp")
                    .header("host", "127.0.0.1")
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(Full::new(Bytes::from_static(INITIALIZE.as_bytes())))
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let good = resp.status().is_success() && resp.headers().contains_key("mcp-session-id");
                        let _ = resp.into_body().collect().await;
                        if good { ok.set(ok.get() + 1) } else { failed.set(failed.get() + 1) }
                    }
                    Err(_) => {
                        failed.set(failed.get() + 1);
                        sender = connect(addr).await;
                    }
                }
            }
        }));
    }
    let idle = rss_kib(server.pid());
    tokio::time::sleep(early).await;
    let (at_early, opened_early) = (rss_kib(server.pid()), ok.get());
    for t in tasks {
        t.await.unwrap();
    }
    let at_end = rss_kib(server.pid());
    let ratio = at_end as f64 / at_early.max(1) as f64;
    let mib = |k: u64| k as f64 / 1024.0;
    println!("notes-server (release), {workers} workers flooding initialize with one token, one run");
    println!(
        "  sessions opened: {} in {:.0} s ({} by {} s), failures: {}",
        ok.get(),
        length.as_secs_f64(),
        opened_early,
        early.as_secs(),
        failed.get()
    );
    println!("  RSS before the flood: {:>8.1} MiB", mib(idle));
    println!("  RSS after {:>3} s:      {:>8.1} MiB", early.as_secs(), mib(at_early));
    println!("  RSS after {:>3} s:      {:>8.1} MiB", length.as_secs(), mib(at_end));
    println!("  ratio {:.2}   target <= 1.5   {}", ratio, if ratio <= 1.5 && ok.get() > 0 { "met" } else { "MISSED" });
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// An access token of the running server: a code prepared in its database (the sign-in pages
/// are not what is measured), exchanged at its token endpoint.
async fn access_token(db: &str, addr: SocketAddr) -> String {
    let base = format!("http://{addr}");
    let resource = format!("{base}/mcp");
    let stores = SqlStore::connect(db).await.expect("the server's database").into_stores();
    let config = ServerConfig::new(Issuer::parse(&base).unwrap(), ResourceUri::parse(&resource).unwrap());
    let server = AuthorizationServer::new(config, stores).await.unwrap();
    let reg = RegistrationRequest::from_json(
        format!(r#"{{"client_name":"soak","redirect_uris":["{REDIRECT}"],"token_endpoint_auth_method":"none"}}"#)
            .as_bytes(),
    )
    .unwrap();
    let client = ClientId::parse(&server.register(reg).await.unwrap().client_id).unwrap();
    let users = server.operator().stores().users.list_users().await.unwrap();
    let user = users.first().expect("the server made its admin user").id.clone();
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let req = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s"),
        ("resource", resource.as_str()),
    ])
    .unwrap();
    let prompt = server.authorize(req).await.unwrap();
    let location = server.approve(&prompt.pending.id, &user, server.now(), false).await.unwrap();
    let query: HashMap<String, String> = url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &query["code"])
        .append_pair("code_verifier", verifier.secret())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("client_id", client.as_str())
        .finish();
    let req = Request::post("/token")
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = connect(addr).await.send_request(req).await.expect("the token endpoint answers");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("a token response");
    v["access_token"].as_str().expect("an access token").to_owned()
}

/// A new HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("the server accepts connections");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    sender
}
