//! node-oidc-provider (pinned in `interop/oidc-provider`) as the external authorization server:
//! the guard finds its keys by discovery of its issuer and checks the JWT access tokens it
//! issues with resource indicators (RFC 8707) for a client_credentials client.
//!
//! What the provider's tokens look like (9.13.3): header `{"alg": "ES256", "typ": "at+jwt",
//! "kid": …}`, claims `jti`, `sub`, `iat`, `exp`, `scope`, `client_id`, `iss`, `aud` (the
//! resource), and for client credentials `sub` equal to `client_id` (RFC 9068 2.2). That is
//! RFC 9068 exactly: the strict default profile takes them, and reads a client-credentials
//! token as a machine's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_guard::remote::JwksVerifier;
use mcp_guard::{AuthContext, McpGuardLayer};
use oauth_core::{ResourceUri, ScopeSet};
use serde_json::Value;

const MCP: &str = "https://mcp.example.com/mcp";
const OTHER: &str = "https://reports.example.com/mcp";
const CLIENT: &str = "mcp-test-client";
const SECRET: &str = "interop-client-secret-0123456789";

/// The provider, killed on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider() -> Provider {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/oidc-provider");
    assert!(
        dir.join("node_modules/oidc-provider/package.json").exists(),
        "interop/oidc-provider/node_modules is missing: run `bash interop/oidc-provider/install.sh` \
         (or `bash interop/install.sh`)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .current_dir(&dir)
        .env("OIDC_RESOURCES", format!("{MCP},{OTHER}"))
        .env("OIDC_CLIENT_ID", CLIENT)
        .env("OIDC_CLIENT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node interop/oidc-provider/provider.mjs (is node installed?)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    let issuer = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) if line.starts_with("http://127.0.0.1:") => line,
        other => {
            let _ = child.kill();
            panic!("provider.mjs did not print its issuer: {other:?}");
        }
    };
    Provider { child, issuer }
}

/// A client_credentials token for `resource`, asked of the provider's token endpoint (found in
/// its metadata).
async fn token_for(http: &reqwest::Client, issuer: &str, resource: &str) -> String {
    let metadata = http.get(format!("{issuer}/.well-known/oauth-authorization-server")).send().await.unwrap();
    let metadata: Value = serde_json::from_str(&metadata.text().await.unwrap()).unwrap();
    let endpoint = metadata["token_endpoint"].as_str().unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("resource", resource)
        .append_pair("scope", "mcp:tools")
        .finish();
    let resp = http
        .post(endpoint)
        .header("authorization", format!("Basic {}", STANDARD.encode(format!("{CLIENT}:{SECRET}"))))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "the token endpoint answered {status}: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

fn decoded(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The guard in front of a stand-in MCP handler that answers with the caller it was handed.
fn guarded(verifier: JwksVerifier, resource: &ResourceUri, machines: bool) -> axum::Router {
    let handler = |axum::Extension(ctx): axum::Extension<AuthContext>| async move {
        axum::Json(serde_json::json!({
            "subject": ctx.subject.as_str(),
            "client_id": ctx.client_id.as_str(),
            "scopes": ctx.scopes.to_string(),
            "machine": ctx.is_machine(),
            "issuer": &*ctx.issuer,
        }))
    };
    axum::Router::new().route("/mcp", axum::routing::any(handler)).layer(
        McpGuardLayer::new(Arc::new(verifier), resource)
            .with_required_scopes(ScopeSet::parse("mcp:tools").unwrap())
            .with_machine_clients(machines),
    )
}

async fn call(app: axum::Router, token: &str) -> (StatusCode, String, String) {
    let req = Request::post("/mcp").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let status = resp.status();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, challenge, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_checks_node_oidc_provider_tokens_found_by_discovery() {
    let provider = start_provider();
    let issuer = provider.issuer.as_str();
    let resource = ResourceUri::parse(MCP).unwrap();
    let http = reqwest::Client::new();
    let token = token_for(&http, issuer, MCP).await;

    // The token as the provider issues it: RFC 9068's header and claims.
    let parts: Vec<&str> = token.split('.').collect();
    let (header, claims) = (decoded(parts[0]), decoded(parts[1]));
    assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("ES256")), "{header}");
    assert!(header["kid"].is_string(), "{header}");
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some(issuer), Some(MCP)), "{claims}");
    assert_eq!((claims["client_id"].as_str(), claims["sub"].as_str()), (Some(CLIENT), Some(CLIENT)), "{claims}");
    assert_eq!(claims["scope"], "mcp:tools", "{claims}");
    for claim in ["jti", "iat", "exp"] {
        assert!(!claims[claim].is_null(), "no {claim}: {claims}");
    }

    // The strict default profile, keys found through the issuer's metadata.
    let verifier = JwksVerifier::discover(issuer, &resource).await.unwrap();
    let (status, _, body) = call(guarded(verifier.clone(), &resource, true), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let caller: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(caller["client_id"], CLIENT, "{caller}");
    assert_eq!(caller["scopes"], "mcp:tools", "{caller}");
    assert_eq!(caller["issuer"], issuer, "{caller}");
    // `sub` is the client (RFC 9068 2.2): a machine's token, never a person called like it.
    assert_eq!((caller["machine"].as_bool(), caller["subject"].as_str()), (Some(true), Some("client:mcp-test-client")));

    // Where only people are served, that token is refused as a machine's.
    let (status, challenge, _) = call(guarded(verifier.clone(), &resource, false), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("machine"), "{challenge}");

    // A token the same provider issued for another resource is not for this one, and the
    // challenge says which audience it has and which one this resource is.
    let elsewhere = token_for(&http, issuer, OTHER).await;
    let (status, challenge, _) = call(guarded(verifier, &resource, true), &elsewhere).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains(OTHER) && challenge.contains(MCP), "the audience is named: {challenge}");
}
