//! The upstream-token vault across replicas, as real processes: two notes-servers on one
//! PostgreSQL behind one public URL, both signing people in at node-oidc-provider (pinned in
//! `interop/oidc-provider`) with the same client and vault key. When the provider's access
//! token is due at both replicas at the same moment, the provider sees one refresh and every
//! caller gets the person's profile with its result; when the provider has ended the person's
//! grant, the one refresh that learns it ends ours at both, and `diagnose` says why.
//!
//! The database is a fresh schema of the one `MCP_OAUTH_TEST_POSTGRES_URL` names; unset, or
//! PostgreSQL down, the tests fail and say so, as they do when the provider is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Server;
use common::flow::{McpAnswer, call_tool, mcp_session, token};
use common::oidc_provider::Provider;
use common::upstream::{Client, register_client, tokens_through_upstream};

const CLIENT: &str = "notes-upstream";
const SECRET: &str = "upstream-client-secret-0123456789";
const VAULT_KEY: &str = "5a9d0c3e7b1f2a4c6e8d0b2f4a6c8e0d1b3f5a7c9e1d3b5f7a9c1e3d5b7f9a1c";
/// How long before expiry the vault refreshes a provider's access token (`REFRESH_AHEAD` in
/// `oauth-core/src/upstream.rs`).
const REFRESH_AHEAD: u64 = 60;
/// How long each of the provider's access tokens stays fresh here: a refresh is due that long
/// after it was issued, and the token a refresh brings is again fresh, so exactly one refresh
/// is right for callers that all need it at once.
const FRESH_FOR: u64 = 2;
/// The concurrent calls at each replica, each in its own MCP session.
const CALLS: usize = 4;

/// Replicas `a` and `b` of one public URL (`a`'s address) on one fresh database, and the
/// provider both sign people in at.
struct Deployment {
    idp: Provider,
    a: Server,
    b: Server,
    database_url: String,
}

async fn deployment(name: &str) -> Deployment {
    let database_url = common::fresh_database().await;
    let (at_a, at_b) = (common::free_address(), common::free_address());
    let public = format!("http://{at_a}");
    let ttl = (REFRESH_AHEAD + FRESH_FOR).to_string();
    let idp = common::oidc_provider::start(&[
        ("OIDC_RESOURCES", &format!("{public}/mcp")),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_REDIRECT_URIS", &format!("{public}/authorize/upstream/oidc/callback")),
        ("OIDC_NO_DEFAULT_RESOURCE", "1"),
        ("OIDC_ACCESS_TOKEN_TTL", &ttl),
        ("OIDC_TEST_CONTROLS", "1"),
    ]);
    let env = [
        ("NOTES_UPSTREAM", idp.issuer.as_str()),
        ("NOTES_UPSTREAM_CLIENT_ID", CLIENT),
        ("NOTES_UPSTREAM_CLIENT_SECRET", SECRET),
        ("NOTES_VAULT_KEY", VAULT_KEY),
    ];
    let a = Server::start_replica_with(&format!("{name}-a"), &database_url, &at_a, &public, &env);
    let b = Server::start_replica_with(&format!("{name}-b"), &database_url, &at_b, &public, &env);
    Deployment { idp, a, b, database_url }
}

/// `jane` signs in at the provider through replica `a`: our client and its token response.
async fn jane_signs_in(d: &Deployment, http: &reqwest::Client) -> (Client, serde_json::Value) {
    let client = register_client(http, &d.a, "Notes app").await;
    let tokens = tokens_through_upstream(http, &d.a, &d.idp.issuer, &client, "jane").await;
    assert_eq!(d.idp.grants("authorization_code"), 1, "{}", d.idp.log());
    let log = d.idp.log();
    let code_grant = log.lines().find(|l| l.starts_with("grant.success grant_type=authorization_code ")).unwrap();
    assert!(code_grant.contains("refresh_token"), "the provider issued us a refresh token: {log}");
    assert_eq!(d.idp.grants("refresh_token"), 0, "{}", d.idp.log());
    (client, tokens)
}

/// Every row of every table of the deployment's schema, as text: what a copy of the database
/// holds.
async fn database_dump(database_url: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(tables.len() > 5, "the schema's tables: {tables:?}");
    let mut dump = String::new();
    for (table,) in tables {
        let query = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let (rows,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(query)).fetch_one(&mut conn).await.unwrap();
        dump.push_str(&rows);
    }
    dump
}

/// Waits until the provider's access token of a sign-in that just finished is due for a
/// refresh: past [`FRESH_FOR`], with a second to spare for the vault's whole-second clock.
async fn until_the_upstream_token_is_due() {
    tokio::time::sleep(Duration::from_secs(FRESH_FOR + 1)).await;
}

/// [`CALLS`] sessions at each replica, opened first; then `upstream_profile` in all of them
/// at once. The answers, each with the replica's name.
async fn upstream_profile_everywhere(d: &Deployment, http: &reqwest::Client, access: &str) -> Vec<(char, McpAnswer)> {
    let mut sessions = Vec::new();
    for (name, server) in [('a', &d.a), ('b', &d.b)] {
        for _ in 0..CALLS {
            sessions.push((name, server.mcp_url.clone(), mcp_session(http, &server.mcp_url, access).await));
        }
    }
    until_the_upstream_token_is_due().await;
    let mut calls = tokio::task::JoinSet::new();
    for (name, url, session) in sessions {
        let (http, access) = (http.clone(), access.to_owned());
        calls.spawn(async move { (name, call_tool(&http, &url, &access, &session, "upstream_profile").await) });
    }
    calls.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_that_need_the_upstream_refresh_at_once_refresh_once() {
    let d = deployment("upstream-refresh").await;
    let http = reqwest::Client::new();
    let (_, tokens) = jane_signs_in(&d, &http).await;
    let access = tokens["access_token"].as_str().unwrap();

    let answers = upstream_profile_everywhere(&d, &http, access).await;
    assert_eq!(answers.len(), 2 * CALLS);
    for (name, answer) in &answers {
        assert_eq!(answer.status, 200, "at {name}: {}", answer.body);
        assert!(
            answer.body.contains("jane@example.com") && answer.body.contains(r#"\"provider\":\"oidc\""#),
            "at {name}, the person's profile: {}\nlog of a:\n{}\nlog of b:\n{}",
            answer.body,
            d.a.log(),
            d.b.log()
        );
    }
    assert_eq!(
        d.idp.grants("refresh_token"),
        1,
        "the provider saw one refresh for {} callers at two replicas:\n{}",
        answers.len(),
        d.idp.log()
    );
    // The provider's tokens, the first pair and the refreshed one, are nowhere in the database
    // in the clear: the vault rows are sealed, and nothing else keeps them.
    let issued = d.idp.issued_tokens();
    assert!(issued.len() >= 3, "the provider's tokens: {}", d.idp.log());
    let dump = database_dump(&d.database_url).await;
    assert!(dump.contains("jane"), "the dump holds the schema's rows: {}", dump.len());
    for t in &issued {
        assert!(!dump.contains(t.as_str()), "a token of the provider's is readable in the database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_invalid_grant_ends_the_grant_at_both_replicas() {
    let d = deployment("upstream-ended").await;
    let http = reqwest::Client::new();
    let (client, tokens) = jane_signs_in(&d, &http).await;
    let access = tokens["access_token"].as_str().unwrap();
    // Jane removes the app's access at the provider: its refresh token is refused from now on.
    assert_eq!(d.idp.end_grants("jane").await, 1, "{}", d.idp.log());

    let answers = upstream_profile_everywhere(&d, &http, access).await;
    for (name, answer) in &answers {
        assert!(!answer.body.contains("jane@example.com"), "at {name}, no profile: {}", answer.body);
        let refused = answer.status == 401 || (answer.status == 200 && answer.body.contains(r#""error""#));
        assert!(refused, "at {name}, a refusal ({}): {}", answer.status, answer.body);
    }
    // Every call that reached the tool is told to sign in again: the one whose refresh was
    // refused, and those that waited for it and found the grant ended. None is told it never
    // signed in upstream. The others were refused by the guard: the grant is revoked.
    let reached: Vec<_> = answers.iter().filter(|(_, a)| a.status == 200).collect();
    assert!(!reached.is_empty(), "the first caller's call reaches the tool: {answers:?}");
    for (name, a) in &reached {
        assert!(a.body.contains("ended this server's access: sign in again"), "at {name}: {}", a.body);
    }
    assert_eq!(
        d.idp.refusals("refresh_token", "invalid_grant"),
        1,
        "one refresh learnt it; the other callers did not try the dead token:\n{}",
        d.idp.log()
    );
    assert_eq!(d.idp.grants("refresh_token"), 0, "{}", d.idp.log());

    // Our grant has ended with the provider's: its refresh token is refused at the other replica.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
    ];
    let (status, refused) = token(&http, &d.b.base_url, &form).await;
    assert_eq!((status.as_u16(), refused["error"].as_str()), (400, Some("invalid_grant")), "{refused}");

    // And the operator sees why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--json", "--since", "1h", "--all", "--database-url", &d.database_url])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("upstream_grant_ended"), "diagnose names the reason: {report}");
}
