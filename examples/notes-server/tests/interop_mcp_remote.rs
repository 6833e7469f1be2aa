//! mcp-remote (0.15.1, pinned in `interop/mcp-remote`), the stdio-to-HTTP bridge many desktop
//! MCP clients run, against the real notes-server binary. `interop/mcp-remote/bridge.mjs` is
//! both the desktop client on the bridge's stdio and the person at the browser the bridge
//! opens: sign-in and consent, then the bridge's loopback callback. It starts the bridge four
//! times against one temporary home: the first sign-in, a restart on the stored tokens, a
//! restart after the access token expired, and the bridge's dual-era mode; then, once the
//! operator removed its client, a fifth start must register again and sign in anew.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn mcp_remote_signs_in_through_the_browser_and_bridges_stdio() {
    let root = common::repo_root();
    assert!(
        root.join("interop/mcp-remote/node_modules/mcp-remote").exists(),
        "interop/mcp-remote/node_modules is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start("mcp-remote");
    let mut cmd = Command::new("node");
    cmd.arg(root.join("interop/mcp-remote/bridge.mjs"))
        .current_dir(&root)
        .env("NOTES_SERVER_BIN", env!("CARGO_BIN_EXE_notes-server"))
        .env("DATABASE_URL", server.database_url());
    let started = Instant::now();
    let out = common::run_client(&server, cmd, Duration::from_secs(180));

    assert_eq!(out["client"], "mcp-remote", "{out}");
    assert_eq!(out["bridge_version"], "0.15.1", "{out}");
    assert_eq!(out["issuer"], server.base_url.as_str(), "{out}");

    // The authorization request the bridge built, as the browser received it.
    let request = &out["authorization_request"];
    assert_eq!(request["response_type"], "code", "{out}");
    assert_eq!(request["code_challenge_method"], "S256", "{out}");
    assert_eq!(request["resource"], server.mcp_url.as_str(), "{out}");
    assert_eq!(request["scope"], "mcp:tools", "{out}");
    assert_eq!(request["has_state"], true, "{out}");
    let redirect = request["redirect_uri"].as_str().expect("redirect_uri");
    assert!(
        redirect.starts_with("http://localhost:") && redirect.ends_with("/oauth/callback"),
        "mcp-remote's redirect URI changed shape: {out}"
    );
    // RFC 9207: the callback carried the issuer, and the bridge (which checks it) accepted it.
    assert_eq!(out["callback_iss"], server.base_url.as_str(), "{out}");
    assert_eq!(out["callback_status"], 200, "{out}");
    // One sign-in for the first four runs; a second once the client was removed.
    assert_eq!(out["browser_visits_before_removal"], 1, "{out}");
    assert_eq!(out["browser_visits"], 2, "{out}");

    let client_id = out["client_id"].as_str().expect("client_id");
    for run in ["first", "restart", "expired", "protocol_auto"] {
        let r = &out[run];
        assert_eq!(r["whoami"]["username"], common::USERNAME, "{run}: {out}");
        assert_eq!(r["whoami"]["client_id"], client_id, "{run}: {out}");
        let tools: Vec<&str> = r["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
        for tool in ["whoami", "add_note", "list_notes"] {
            assert!(tools.contains(&tool), "{run}: {tool} not listed: {out}");
        }
    }
    // The expired run refreshed: a rotated refresh token and a new access token on disk.
    assert_eq!(out["refresh_token_rotated"], true, "{out}");
    assert_eq!(out["access_token_changed"], true, "{out}");
    // The dual-era run found the 2026-07-28 revision and used it.
    assert_eq!(out["protocol_auto"]["modernEra"], true, "{out}");

    // After the operator removed the client, the refresh's 401 invalid_client made mcp-remote
    // register a new client, and the person signed in with it.
    let after = &out["after_removal"];
    let new_client_id = after["clientId"].as_str().expect("the new client id");
    assert_ne!(new_client_id, client_id, "{out}");
    assert_eq!(after["whoami"]["client_id"], new_client_id, "{out}");
    assert_eq!(after["whoami"]["username"], common::USERNAME, "{out}");

    let log = server.log();
    let mentions = |needle: &str| log.lines().any(|l| l.contains(client_id) && l.contains(needle));
    assert!(mentions("'MCP CLI Proxy' registered with 1 redirect URI"), "no registration event:\n{log}");
    assert!(mentions("exchanged; grant"), "no code exchange event:\n{log}");
    assert!(mentions("rotated to generation 1"), "no refresh rotation event:\n{log}");
    assert!(
        log.lines().any(|l| l.contains(client_id) && l.contains("refresh failed") && l.contains("client_unknown")),
        "no refused refresh for the removed client:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(new_client_id) && l.contains("'MCP CLI Proxy' registered")),
        "no second registration:\n{log}"
    );
    println!(
        "mcp-remote {} on node {}: first tool call after {} ms, all five runs {} ms",
        out["bridge_version"].as_str().unwrap_or_default(),
        out["node_version"].as_str().unwrap_or_default(),
        out["ms_to_first_tool_call"],
        started.elapsed().as_millis()
    );
}
