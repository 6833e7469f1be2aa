//! Federation end to end with a real client and a real browser: the official MCP TypeScript SDK
//! client (`interop/ts`, pinned) connects to the notes-server binary, which is configured with
//! node-oidc-provider (`interop/oidc-provider`, pinned) as its upstream identity provider. The
//! SDK sends the person to our sign-in page; in Debian's Chromium (`interop/browser`) they press
//! "Sign in with …", sign in on the provider's own pages, come back, and approve here. The SDK
//! gets our tokens and calls `upstream_profile`, which answers with the provider's identity for
//! the person, before and after the SDK refreshes a corrupted access token.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const CLIENT: &str = "notes-upstream";
const SECRET: &str = "upstream-client-secret-0123456789";
const VAULT_KEY: &str = "5a9d0c3e7b1f2a4c6e8d0b2f4a6c8e0d1b3f5a7c9e1d3b5f7a9c1e3d5b7f9a1c";
/// Who the person is at the provider; its development accounts have the email `<login>@example.com`.
const LOGIN: &str = "jane";

#[test]
fn typescript_sdk_signs_in_upstream_in_chromium_and_reads_the_upstream_identity() {
    let root = common::repo_root();
    for (dir, what) in [("interop/ts", "@modelcontextprotocol/sdk"), ("interop/browser", "playwright-core")] {
        assert!(
            root.join(dir).join("node_modules").join(what).exists(),
            "{dir}/node_modules/{what} is missing: run `bash interop/install.sh` or `bash .ci/run` first"
        );
    }
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );

    // The provider knows our callback before we start: a fixed port for the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = common::oidc_provider::start(&[
        ("OIDC_RESOURCES", &format!("{base}/mcp")),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_REDIRECT_URIS", &format!("{base}/authorize/upstream/oidc/callback")),
        ("OIDC_NO_DEFAULT_RESOURCE", "1"),
    ]);
    let server = common::Server::start_with(
        "upstream-ts",
        &[
            ("NOTES_LISTEN", &format!("127.0.0.1:{port}")),
            ("NOTES_UPSTREAM", &idp.issuer),
            ("NOTES_UPSTREAM_CLIENT_ID", CLIENT),
            ("NOTES_UPSTREAM_CLIENT_SECRET", SECRET),
            ("NOTES_VAULT_KEY", VAULT_KEY),
        ],
    );
    let shots = server.dir().join("screenshots");
    let email = format!("{LOGIN}@example.com");
    let mut cmd = Command::new("node");
    cmd.arg(root.join("interop/ts/flow.mjs"))
        .env("MCP_PERSON", "chromium-upstream")
        .env("MCP_UPSTREAM_LOGIN", LOGIN)
        .env("MCP_UPSTREAM_EMAIL", &email)
        .env("SCREENSHOT_DIR", &shots)
        .current_dir(&root);
    let out = common::run_client(&server, cmd, Duration::from_secs(300));

    // The person signed in upstream: a new local user named after the provider and subject,
    // with no password here, who then used the tools like any other.
    let username = format!("oidc:{LOGIN}");
    assert_eq!(out["person"], "chromium-upstream", "{out}");
    let client_id = common::assert_client_result_as(
        &out,
        "typescript-sdk",
        "1.32.2",
        "interop note from the TypeScript SDK",
        &username,
    );
    println!(
        "the upstream person '{LOGIN}' is the user '{}' here",
        out["whoami"]["username"].as_str().unwrap_or_default()
    );
    assert_eq!(out["whoami"]["caller"], "user", "{out}");
    assert!(out["tools"].as_array().expect("tools").iter().any(|t| t == "upstream_profile"), "{out}");

    // upstream_profile answered with the provider's identity, with our token only, before and
    // after the SDK's refresh.
    for when in ["profile", "after_refresh"] {
        let profile = &out["upstream"][when];
        assert_eq!(profile["provider"], "oidc", "{when}: {out}");
        assert_eq!(profile["userinfo"]["sub"], LOGIN, "{when}: {out}");
        assert_eq!(profile["userinfo"]["email"], email.as_str(), "{when}: {out}");
    }

    // The server saw the upstream sign-in for this client, and the refresh it then served.
    let log = server.log();
    let mentions = |needle: &str| log.lines().any(|l| l.contains(&client_id) && l.contains(needle));
    assert!(mentions(&format!("signed in at oidc as '{LOGIN}'")), "no upstream sign-in event:\n{log}");
    assert!(mentions("rotated to generation 1"), "no refresh rotation event:\n{log}");
    let attempts = common::diagnose_attempts(&server.database_url(), &client_id);
    let events: Vec<&Value> = attempts.iter().filter_map(|a| a["events"].as_array()).flatten().collect();
    assert!(
        events.iter().any(|e| e["step"] == "upstream_sign_in"
            && e["reason"].is_null()
            && e["detail"].as_str().is_some_and(|d| d.contains(&format!("user '{username}'")))),
        "diagnose has no successful upstream_sign_in for the client: {attempts:?}"
    );

    for shot in ["upstream-login.png", "upstream-consent.png"] {
        let len = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} missing or empty");
    }
    println!("screenshots in {}", shots.display());
}
