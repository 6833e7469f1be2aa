//! PostgreSQL restarted under two replicas in mid-traffic: while it is down every request that
//! needs it is answered `server_error` (never a hang, never a half-done grant or rotation), a
//! code presented during the outage is still good afterwards, and both replicas recover by
//! themselves, revocation feed included, when the database is back.
//!
//! The database is a scratch cluster of its own on a free port (see `common::postgres_cluster`),
//! so that stopping it disturbs nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use common::flow::{FormBody as _, UserTokens, authorized, user_tokens, whoami};
use common::postgres_cluster::ScratchCluster;
use sqlx::Connection as _;
use tokio::sync::Mutex;

/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// How long the replicas may take to serve again once it is back.
const RECOVERY: Duration = Duration::from_secs(15);

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// What one request got: a status and the OAuth `error`, if any; or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Answered(u16, Option<String>),
    NoAnswer(String),
}

async fn post_token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> (Outcome, serde_json::Value) {
    let sent = http.post(format!("{base}/token")).form_body(form).timeout(Duration::from_secs(30)).send().await;
    match sent {
        Err(e) => (Outcome::NoAnswer(e.to_string()), serde_json::Value::Null),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
            (Outcome::Answered(status, body["error"].as_str().map(str::to_owned)), body)
        }
    }
}

/// One client refreshing its grant over and over, at replica `a` and `b` in turn, keeping the
/// newest refresh token it was given.
struct Chain {
    tokens: UserTokens,
    current: String,
}

#[derive(Default)]
struct Tally {
    /// Outcomes by phase ("before", "down", "after").
    seen: BTreeMap<(&'static str, Outcome), usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_traffic_answers_server_error_half_writes_nothing_and_recovers() {
    let cluster = ScratchCluster::start("restart");
    let database_url = cluster.url("127.0.0.1", "sslmode=disable");
    let (at_a, at_b) = (free_address(), free_address());
    let public = format!("http://{at_a}");
    let a = Server::start_replica("restart-a", &database_url, &at_a, &public);
    let b = Server::start_replica("restart-b", &database_url, &at_b, &public);
    let bases = [a.base_url.clone(), b.base_url.clone()];
    let http = reqwest::Client::new();

    let mut chains = Vec::new();
    for i in 0..4 {
        let tokens = user_tokens(&a, &http, &format!("chain {i}")).await;
        chains.push(Arc::new(Mutex::new(Chain { current: tokens.refresh_token.clone(), tokens })));
    }
    // A code that will be presented while the database is down.
    let pending_code = authorized(&a, &http, "code during the outage").await;

    for base in &bases {
        assert_eq!(probe(&http, base, "/readyz").await, 200, "{base} is ready");
    }

    let phase = Arc::new(std::sync::Mutex::new("before"));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = Vec::new();
    for chain in &chains {
        let (chain, http, bases, phase, tally, stop) =
            (chain.clone(), http.clone(), bases.clone(), phase.clone(), tally.clone(), stop.clone());
        traffic.push(tokio::spawn(async move {
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let base = &bases[turn % 2];
                turn += 1;
                let mut c = chain.lock().await;
                let current = c.current.clone();
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", current.as_str()),
                    ("client_id", c.tokens.client_id.as_str()),
                    ("client_secret", c.tokens.client_secret.as_str()),
                ];
                let (outcome, body) = post_token(&http, base, &form).await;
                if outcome == Outcome::Answered(200, None) {
                    c.current = body["refresh_token"].as_str().unwrap().to_owned();
                    c.tokens.access_token = body["access_token"].as_str().unwrap().to_owned();
                }
                drop(c);
                let now = *phase.lock().unwrap();
                *tally.lock().unwrap().seen.entry((now, outcome)).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    *phase.lock().unwrap() = "down";
    let stopped_at = Instant::now();
    cluster.stop();
    // While it is down: the code is refused as a server failure, in bounded time, and tokens
    // already issued still open /mcp (the guard checks them without the database).
    let started = Instant::now();
    let (outcome, body) = redeem_outcome(&http, &b.base_url, &pending_code).await;
    let waited = started.elapsed();
    println!("code exchange while PostgreSQL is down: {outcome:?} after {waited:?}");
    assert!(
        matches!(&outcome, Outcome::Answered(500 | 503, Some(e)) if e == "server_error" || e == "temporarily_unavailable"),
        "a code exchange without a database is a server error, not {outcome:?}: {body}"
    );
    assert!(waited < Duration::from_secs(15), "the refusal took {waited:?}");
    let issued = chains[0].lock().await.tokens.access_token.clone();
    let guard_status = whoami(&http, &a.mcp_url, &issued).await;
    println!("/mcp with a token issued before the outage, while PostgreSQL is down: {guard_status}");
    // A balancer sees which replicas can serve token requests: alive, but not ready.
    let started = Instant::now();
    assert_eq!(probe(&http, &a.base_url, "/readyz").await, 503, "not ready without a database");
    let waited = started.elapsed();
    println!("/readyz while PostgreSQL is down: 503 after {waited:?}");
    assert!(waited < Duration::from_secs(4), "the readiness probe took {waited:?}");
    assert_eq!(probe(&http, &a.base_url, "/healthz").await, 200, "alive without a database");
    let remaining = OUTAGE.saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(remaining).await;

    cluster.start_again();
    *phase.lock().unwrap() = "after";
    let back = Instant::now();
    // Both replicas serve again by themselves: a registration (a write) succeeds at each.
    for base in &bases {
        loop {
            let reg = serde_json::json!({
                "client_name": "after the restart", "redirect_uris": ["https://app.example/cb"],
                "token_endpoint_auth_method": "client_secret_post",
            });
            let resp = http.post(format!("{base}/register")).json(&reg).send().await;
            if resp.as_ref().is_ok_and(|r| r.status() == 201) {
                break;
            }
            assert!(back.elapsed() < RECOVERY, "{base} does not serve again {RECOVERY:?} after PostgreSQL is back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("{base} serves writes again {:?} after PostgreSQL is back", back.elapsed());
        assert_eq!(probe(&http, base, "/readyz").await, 200, "{base} is ready again");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in traffic {
        t.await.unwrap();
    }

    let tally = std::mem::take(&mut tally.lock().unwrap().seen);
    println!("refreshes by phase and outcome: {tally:#?}");
    for ((phase, outcome), n) in &tally {
        match (*phase, outcome) {
            (_, Outcome::Answered(200, None)) => {}
            // In flight when the database went, or sent while it was down: a server error.
            ("down" | "after", Outcome::Answered(500 | 503, Some(e)))
                if e == "server_error" || e == "temporarily_unavailable" => {}
            _ => panic!("{n} refreshes {phase} the restart got {outcome:?}; every outcome: {tally:#?}"),
        }
    }
    let ok = |p: &str| tally.get(&(p, Outcome::Answered(200, None))).copied().unwrap_or(0);
    assert!(ok("before") > 0 && ok("after") > 0, "traffic flowed before and after: {tally:#?}");

    // Nothing half-written: every chain goes on from the token it last got...
    for chain in &chains {
        let c = chain.lock().await;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", c.current.as_str()),
            ("client_id", c.tokens.client_id.as_str()),
            ("client_secret", c.tokens.client_secret.as_str()),
        ];
        let (outcome, body) = post_token(&http, &b.base_url, &form).await;
        assert_eq!(outcome, Outcome::Answered(200, None), "a chain broke across the restart: {body}");
    }
    // ...the code presented during the outage was not spent by the failed exchange...
    let (outcome, body) = redeem_outcome(&http, &a.base_url, &pending_code).await;
    assert_eq!(outcome, Outcome::Answered(200, None), "the code is still good after the outage: {body}");
    // ...and every grant's current generation has its refresh token.
    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM grants g WHERE g.has_refresh_token AND NOT EXISTS \
         (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id AND r.generation = g.generation)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "a grant whose current refresh token is missing");
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.generation > g.generation",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(ahead, 0, "a refresh token ahead of its grant");
    db.close().await.unwrap();

    // The revocation feed came back too: a grant revoked at a is refused by b.
    let t = user_tokens(&a, &http, "revoked after the restart").await;
    assert_eq!(whoami(&http, &b.mcp_url, &t.access_token).await, 200);
    let form = [("token", t.refresh_token.as_str()), ("client_id", &t.client_id), ("client_secret", &t.client_secret)];
    let resp = http.post(format!("{}/revoke", a.base_url)).form_body(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let revoked = Instant::now();
    while whoami(&http, &b.mcp_url, &t.access_token).await != 401 {
        assert!(revoked.elapsed() < Duration::from_secs(5), "b still accepts a revoked token after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("after the restart, a revocation at a is refused by b after {:?}", revoked.elapsed());
}

async fn redeem_outcome(
    http: &reqwest::Client,
    base: &str,
    a: &common::flow::Authorized,
) -> (Outcome, serde_json::Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", a.code.as_str()),
        ("redirect_uri", common::flow::REDIRECT),
        ("code_verifier", a.verifier.secret()),
        ("client_id", a.client_id.as_str()),
        ("client_secret", a.client_secret.as_str()),
    ];
    post_token(http, base, &form).await
}

/// The status of `GET {base}{path}`.
async fn probe(http: &reqwest::Client, base: &str, path: &str) -> u16 {
    http.get(format!("{base}{path}")).send().await.unwrap().status().as_u16()
}
