//! oauth4webapi (3.8.8, pinned in `interop/oauth4webapi`), a strict OAuth 2 client library,
//! against the real notes-server binary. It checks what lenient clients let slide: the 401
//! challenge's syntax, the protected-resource metadata's `resource`, the metadata's `issuer`
//! under both well-known names, `iss` and `state` in the authorization response (RFC 9207),
//! the token responses, and the access token's RFC 9068 shape; then it refreshes and revokes.

#![allow(clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn oauth4webapi_discovers_authorizes_refreshes_and_revokes() {
    flow("none");
}

/// The same flow with the library's `PrivateKeyJwt`: the client registers its RS256 key inline
/// and signs a new client assertion (`aud` the issuer, `jti` random) for every request.
#[test]
fn oauth4webapi_authenticates_with_private_key_jwt() {
    let log = flow("private_key_jwt");
    assert!(log.contains("auth method private_key_jwt"), "the registration event names the method:\n{log}");
}

/// Runs the flow with `CLIENT_AUTH=auth`, checks what every run must show, and returns the
/// server's log.
fn flow(auth: &str) -> String {
    let root = common::repo_root();
    assert!(
        root.join("interop/oauth4webapi/node_modules/oauth4webapi").exists(),
        "interop/oauth4webapi/node_modules is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start(&format!("oauth4webapi-{auth}"));
    let mut cmd = Command::new("node");
    cmd.arg(root.join("interop/oauth4webapi/flow.mjs")).current_dir(&root).env("CLIENT_AUTH", auth);
    let started = Instant::now();
    let out = common::run_client(&server, cmd, Duration::from_secs(120));

    assert_eq!(out["client"], "oauth4webapi", "{out}");
    assert_eq!(out["library_version"], "3.8.8", "{out}");
    let issuer = server.base_url.as_str();
    assert_eq!(out["issuer"], issuer, "{out}");
    assert_eq!(out["resource"], server.mcp_url.as_str(), "{out}");

    // The challenge to a bad token, as the library parsed it (RFC 6750 3, RFC 9728 5.1).
    let challenge = &out["challenge"];
    assert_eq!(challenge["error"], "invalid_token", "{out}");
    assert_eq!(
        challenge["resource_metadata"],
        format!("{issuer}/.well-known/oauth-protected-resource/mcp").as_str(),
        "{out}"
    );
    assert_eq!(challenge["scope"], "mcp:tools", "{out}");

    // The authorization response passed the library's RFC 9207 check with `iss` present.
    assert_eq!(out["iss_validated"], true, "{out}");
    assert_eq!(out["state_validated"], true, "{out}");

    let client_id = out["client_id"].as_str().expect("client_id");
    assert!(!client_id.is_empty(), "{out}");
    assert_eq!(out["token_endpoint_auth_method"], auth, "{out}");
    let token = &out["token"];
    assert_eq!(token["scope"], "mcp:tools", "{out}");
    assert!(token["expires_in"].as_u64().is_some_and(|s| s > 0), "{out}");
    // RFC 9068 claims, as the library's resource-server check returned them.
    let claims = &token["claims"];
    assert_eq!(claims["iss"], issuer, "{out}");
    assert_eq!(claims["aud"], server.mcp_url.as_str(), "{out}");
    assert_eq!(claims["client_id"], client_id, "{out}");
    for claim in ["sub", "jti"] {
        assert!(claims[claim].as_str().is_some_and(|v| !v.is_empty()), "no {claim}: {out}");
    }

    assert_eq!(out["whoami"]["username"], common::USERNAME, "{out}");
    assert_eq!(out["whoami"]["client_id"], client_id, "{out}");
    assert_eq!(out["whoami"]["subject"], claims["sub"], "{out}");

    let refresh = &out["refresh"];
    assert_eq!(refresh["refresh_token_rotated"], true, "{out}");
    assert_eq!(refresh["access_token_changed"], true, "{out}");
    assert_eq!(refresh["claims"]["sub"], claims["sub"], "{out}");
    assert_ne!(refresh["claims"]["jti"], claims["jti"], "{out}");
    assert_eq!(refresh["whoami"]["username"], common::USERNAME, "{out}");

    // RFC 7009: the revoked refresh token is refused as RFC 6749 5.2 says.
    assert_eq!(out["after_revocation"]["status"], 400, "{out}");
    assert_eq!(out["after_revocation"]["error"], "invalid_grant", "{out}");

    let log = server.log();
    let mentions = |needle: &str| log.lines().any(|l| l.contains(client_id) && l.contains(needle));
    assert!(mentions("registered with 1 redirect URI"), "no registration event:\n{log}");
    assert!(mentions("exchanged; grant"), "no code exchange event:\n{log}");
    assert!(mentions("rotated to generation 1"), "no refresh rotation event:\n{log}");
    println!(
        "oauth4webapi {} on node {}: first tool call after {} ms, whole flow {} ms",
        out["library_version"].as_str().unwrap_or_default(),
        out["node_version"].as_str().unwrap_or_default(),
        out["ms_to_first_tool_call"],
        started.elapsed().as_millis()
    );
    log
}
