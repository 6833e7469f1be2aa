//! Two replicas of the example, as real processes, on one PostgreSQL behind one public URL:
//! what one of them revokes, or the operator revokes from the command line, the other refuses
//! within the documented bound; a code or refresh token used at one is known at the other.
//!
//! The database is a fresh schema of the one `MCP_OAUTH_TEST_POSTGRES_URL` names (`bash
//! .ci/run` sets it up); unset, the tests fail and say so: they never pass without PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use common::Server;
use common::flow::{
    Authorized, FormBody as _, UserTokens, attempt, authorize_url, authorized, code_in, redeem, refresh, sign_in_form,
    user_tokens, whoami,
};

/// The bound `docs/deploy.md` states for PostgreSQL: a revocation anywhere is refused
/// everywhere within it.
const BOUND: Duration = Duration::from_secs(2);
/// How long a test waits for a refusal before it fails; longer than the bound, so that a
/// refusal that comes late is reported with its time.
const PATIENCE: Duration = Duration::from_secs(15);

/// Replicas `a` and `b` on one fresh database; the public URL is `a`'s address (what a load
/// balancer in front of both would be), so tokens of either name the same issuer and resource.
struct Replicas {
    a: Server,
    b: Server,
    database_url: String,
}

async fn replicas(name: &str) -> Replicas {
    let database_url = common::fresh_database().await;
    let (at_a, at_b) = (common::free_address(), common::free_address());
    let public = format!("http://{at_a}");
    let a = Server::start_replica(&format!("{name}-a"), &database_url, &at_a, &public);
    let b = Server::start_replica(&format!("{name}-b"), &database_url, &at_b, &public);
    Replicas { a, b, database_url }
}

/// How long until `server` answers 401 to `access_token`; panics, with its log, when it still
/// accepts the token after [`PATIENCE`].
async fn refused_after(http: &reqwest::Client, server: &Server, access_token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let status = whoami(http, &server.mcp_url, access_token).await;
        if status == 401 {
            return started.elapsed();
        }
        assert_eq!(status, 200, "neither accepted nor refused");
        assert!(
            started.elapsed() < PATIENCE,
            "{} still accepts a revoked grant's token after {PATIENCE:?}; log:\n{}",
            server.base_url,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn within_bound(what: &str, waited: Duration) {
    println!("{what}: refused after {waited:?}");
    assert!(waited <= BOUND, "{what}: refused after {waited:?}, past the bound of {BOUND:?}");
}

async fn revoke_at(http: &reqwest::Client, server: &Server, t: &UserTokens) {
    let form = [("token", t.refresh_token.as_str()), ("client_id", &t.client_id), ("client_secret", &t.client_secret)];
    let resp = http.post(format!("{}/revoke", server.base_url)).form_body(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_at_one_replica_is_refused_by_the_other_within_the_bound() {
    let r = replicas("revoke").await;
    let http = reqwest::Client::new();
    let t = user_tokens(&r.a, &http, "replicated client").await;
    assert_eq!(whoami(&http, &r.b.mcp_url, &t.access_token).await, 200, "b accepts a token a issued");
    assert_eq!(whoami(&http, &r.a.mcp_url, &t.access_token).await, 200);
    revoke_at(&http, &r.a, &t).await;
    assert_eq!(whoami(&http, &r.a.mcp_url, &t.access_token).await, 401, "a refuses at once");
    within_bound("RFC 7009 at a, seen by b", refused_after(&http, &r.b, &t.access_token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_removed_from_the_command_line_is_refused_by_every_replica() {
    let r = replicas("cli").await;
    let http = reqwest::Client::new();
    let t = user_tokens(&r.a, &http, "removed client").await;
    for server in [&r.a, &r.b] {
        assert_eq!(whoami(&http, &server.mcp_url, &t.access_token).await, 200);
    }
    let out = common::operator(&r.database_url, &["clients", "remove", &t.client_id], None);
    assert!(out.contains("removed client"), "{out}");
    within_bound("clients remove, seen by a", refused_after(&http, &r.a, &t.access_token).await);
    within_bound("clients remove, seen by b", refused_after(&http, &r.b, &t.access_token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_replayed_at_the_other_replica_revokes_the_grant_on_both() {
    let r = replicas("replay").await;
    let http = reqwest::Client::new();
    let code = authorized(&r.a, &http, "replayed code").await;
    let (status, tokens) = redeem(&http, &r.a.base_url, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&http, &r.a.mcp_url, &access_token).await, 200);
    let (status, replay) = redeem(&http, &r.b.base_url, &code).await;
    assert_eq!((status.as_u16(), replay["error"].as_str()), (400, Some("invalid_grant")), "{replay}");
    within_bound("code replay at b, seen by b", refused_after(&http, &r.b, &access_token).await);
    within_bound("code replay at b, seen by a", refused_after(&http, &r.a, &access_token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_retried_at_the_other_replica_gets_the_same_successor() {
    let r = replicas("refresh").await;
    let http = reqwest::Client::new();
    let t = user_tokens(&r.a, &http, "retrying client").await;
    let (status, at_a) = refresh(&http, &r.a.base_url, &t, &t.refresh_token).await;
    assert_eq!(status, 200, "{at_a}");
    // The response was lost; the client retries, and the balancer sends it to b.
    let (status, at_b) = refresh(&http, &r.b.base_url, &t, &t.refresh_token).await;
    assert_eq!(status, 200, "a retry within the grace window is answered: {at_b}");
    assert_eq!(at_a["refresh_token"], at_b["refresh_token"], "both replicas answer the same successor");
    let next = at_b["access_token"].as_str().unwrap();
    assert_eq!(whoami(&http, &r.a.mcp_url, next).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_reused_at_the_other_replica_revokes_the_family_on_both() {
    let r = replicas("reuse").await;
    let http = reqwest::Client::new();
    let t = user_tokens(&r.a, &http, "reused refresh token").await;
    let (status, first) = refresh(&http, &r.a.base_url, &t, &t.refresh_token).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = refresh(&http, &r.b.base_url, &t, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{second}");
    let latest = second["access_token"].as_str().unwrap().to_owned();
    for server in [&r.a, &r.b] {
        assert_eq!(whoami(&http, &server.mcp_url, &latest).await, 200);
    }
    // The first token, two rotations old (no retry of a lost response): a stolen copy.
    let (status, reused) = refresh(&http, &r.b.base_url, &t, &t.refresh_token).await;
    assert_eq!((status.as_u16(), reused["error"].as_str()), (400, Some("invalid_grant")), "{reused}");
    within_bound("refresh reuse at b, seen by b", refused_after(&http, &r.b, &latest).await);
    within_bound("refresh reuse at b, seen by a", refused_after(&http, &r.a, &latest).await);
    let (status, after) = refresh(&http, &r.a.base_url, &t, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status.as_u16(), after["error"].as_str()), (400, Some("invalid_grant")), "the family is gone: {after}");
}

/// The `kid` of a JWT's header.
fn kid(jwt: &str) -> String {
    let header = URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

/// How long until `server`'s JWKS lists `kid`; panics after [`PATIENCE`].
async fn published_after(http: &reqwest::Client, server: &Server, kid: &str) -> Duration {
    let started = Instant::now();
    loop {
        let jwks: serde_json::Value =
            http.get(format!("{}/jwks.json", server.base_url)).send().await.unwrap().json().await.unwrap();
        if jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid) {
            return started.elapsed();
        }
        assert!(started.elapsed() < PATIENCE, "{} does not publish {kid} after {PATIENCE:?}", server.base_url);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_from_the_command_line_is_published_and_used_by_every_replica() {
    let r = replicas("keys").await;
    let http = reqwest::Client::new();
    let t = user_tokens(&r.a, &http, "key client").await;
    let before = kid(&t.access_token);
    let out = common::operator(&r.database_url, &["keys", "rotate"], None);
    let new = out.split_whitespace().nth(3).unwrap().to_owned();
    assert_ne!(new, before, "{out}");
    let listed = common::operator(&r.database_url, &["keys", "list"], None);
    assert!(listed.lines().next().unwrap().starts_with(&format!("{new}  ES256")), "{listed}");
    for (name, server) in [("a", &r.a), ("b", &r.b)] {
        let waited = published_after(&http, server, &new).await;
        println!("keys rotate: {name} publishes the new key after {waited:?}");
        assert!(waited <= BOUND, "{name} published the new key after {waited:?}, past {BOUND:?}");
    }
    // b signs with the new key (its sync ran before it published it), and a verifies that.
    let (status, fresh) = refresh(&http, &r.b.base_url, &t, &t.refresh_token).await;
    assert_eq!(status, 200, "{fresh}");
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_eq!(kid(fresh), new, "b signs with the rotated key");
    assert_eq!(whoami(&http, &r.a.mcp_url, fresh).await, 200);
    // The retired key still verifies what it signed, everywhere.
    for server in [&r.a, &r.b] {
        assert_eq!(whoami(&http, &server.mcp_url, &t.access_token).await, 200);
    }
}

/// Median and maximum of `times`, printed for the record.
fn summary(what: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!("{what}, {} times: median {median:?}, max {max:?}", times.len());
    max
}

/// Twenty grants of one client, revoked one by one at a, each timed until b refuses its token:
/// the figure `docs/deploy.md` states, measured as a client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_revocations_each_reach_the_other_replica_within_the_bound() {
    let r = replicas("twenty").await;
    let http = reqwest::Client::new();
    let first = authorized(&r.a, &http, "twenty grants").await;
    let (client_id, client_secret) = (first.client_id.clone(), first.client_secret.clone());
    let mut grants = Vec::new();
    let (status, tokens) = redeem(&http, &r.a.base_url, &first).await;
    assert_eq!(status, 200, "{tokens}");
    grants.push(UserTokens::of(first, &tokens));
    // The person stays signed in and the consent is remembered: each new authorization of
    // the same client is one redirect.
    let mut browser = common::Browser::new();
    while grants.len() < 20 {
        let verifier = oauth_core::CodeVerifier::generate();
        let url = authorize_url(&r.a.base_url, &client_id, &verifier);
        let location = if grants.len() == 1 {
            // Signing in is all it takes: the consent of the first grant is remembered.
            let (status, page, _) = browser.get(&url).await;
            assert_eq!(status, 200, "{page}");
            let action = format!("{}{}", r.a.base_url, common::attribute(&page, "action=\""));
            let form = [
                ("pending", common::attribute(&page, "name=\"pending\" value=\"")),
                ("csrf", common::attribute(&page, "name=\"csrf\" value=\"")),
                ("username", common::USERNAME.to_owned()),
                ("password", common::PASSWORD.to_owned()),
            ];
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, page, location) = browser.post_form(&action, &form).await;
            assert_eq!(status, 303, "{page}");
            location.unwrap()
        } else {
            let (status, page, location) = browser.get(&url).await;
            assert_eq!(status, 303, "{page}");
            location.unwrap()
        };
        let code = Authorized {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            code: code_in(&location),
            verifier,
        };
        let (status, tokens) = redeem(&http, &r.a.base_url, &code).await;
        assert_eq!(status, 200, "{tokens}");
        grants.push(UserTokens::of(code, &tokens));
    }
    let mut times = Vec::new();
    for t in &grants {
        assert_eq!(whoami(&http, &r.b.mcp_url, &t.access_token).await, 200);
        revoke_at(&http, &r.a, t).await;
        times.push(refused_after(&http, &r.b, &t.access_token).await);
    }
    let max = summary("RFC 7009 at a until b refuses", times);
    assert!(max <= BOUND, "a revocation took {max:?} to reach b, past {BOUND:?}");
}

/// Twenty rotations from the command line, each timed until b publishes the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_key_rotations_each_reach_the_other_replica_within_the_bound() {
    let r = replicas("rotations").await;
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..20 {
        let out = common::operator(&r.database_url, &["keys", "rotate"], None);
        let started = Instant::now();
        let new = out.split_whitespace().nth(3).unwrap().to_owned();
        published_after(&http, &r.b, &new).await;
        times.push(started.elapsed());
    }
    let max = summary("keys rotate until b publishes", times);
    assert!(max <= BOUND, "a rotation took {max:?} to reach b, past {BOUND:?}");
}

/// Password guesses for one account spread over both replicas, each from its own address:
/// the account's free failures are counted once for the pair, so the block comes as early as
/// with one replica, and holds at both. Per replica, each would allow its own five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_throttle_is_shared_by_the_replicas() {
    use std::net::{IpAddr, Ipv4Addr};
    let r = replicas("throttle").await;
    let form = sign_in_form(&r.a.base_url).await;
    let (mut answered, mut throttled_at) = (0, [0, 0]);
    for i in 0..24u8 {
        let (at, which) = if i % 2 == 0 { (&r.a, 0) } else { (&r.b, 1) };
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 7, 10 + i));
        let (status, retry, page) = attempt(ip, &at.base_url, &form, "wrong-guess").await;
        match status.as_u16() {
            200 => {
                assert!(page.contains("Wrong username or password"), "{page}");
                answered += 1;
            }
            429 => {
                assert!(page.contains("Too many failed sign-ins for this account"), "{page}");
                assert!(retry.is_some_and(|s| (1..=15 * 60).contains(&s)), "Retry-After: {retry:?}");
                throttled_at[which] += 1;
            }
            other => panic!("attempt {i} at {}: unexpected {other}: {page}", at.base_url),
        }
    }
    assert_eq!(answered, 5, "five free failures for the account across both replicas; throttled {throttled_at:?}");
    assert!(throttled_at[0] > 0 && throttled_at[1] > 0, "the block holds at both: {throttled_at:?}");
    // Even the right password is not checked while the block lasts, at either replica.
    for (i, at) in [&r.a, &r.b].into_iter().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 8, 1 + i as u8));
        let (status, _, page) = attempt(ip, &at.base_url, &form, common::PASSWORD).await;
        assert_eq!(status, 429, "{}: {page}", at.base_url);
    }
}
