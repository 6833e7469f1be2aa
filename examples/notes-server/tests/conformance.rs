//! The official MCP conformance suite's `authorization` mode against the example's embedded
//! authorization server: RFC 8414 metadata, then the authorization-code grant with PKCE for a
//! pre-registered public client whose redirect is the suite's own loopback callback. The suite
//! prints the authorization URL and waits; the test plays the person on the real pages.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Pinned in interop/conformance/package.json; an upgrade shows up here as a diff.
const SUITE_VERSION: &str = "0.2.0-alpha.12";
/// The scenarios `conformance authorization` runs, in order.
const SCENARIOS: &[&str] = &["authorization-server-metadata-endpoint", "authorization-code-grant"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_conformance_suite_authorization_mode_passes() {
    let root = common::repo_root();
    let bin = root.join("interop/conformance/node_modules/.bin");
    assert!(
        bin.join("conformance").exists(),
        "the conformance suite is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start("conformance");

    // A pre-registered public client for the suite's callback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["clients", "add", "--name", "MCP conformance suite", "--redirect-uri", &callback, "--database-url"])
        .arg(server.database_url())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let client_id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).expect(&out).to_owned();

    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let version = Command::new(bin.join("conformance")).arg("--version").env("PATH", &path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), SUITE_VERSION);
    let mut suite = Command::new(bin.join("conformance"))
        .args([
            "authorization",
            "--url",
            &server.base_url,
            "--client-id",
            &client_id,
            "--resource",
            &server.mcp_url,
            "-p",
            &port.to_string(),
        ])
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = suite.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("http") && line.contains("/authorize?") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });

    let auth_url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the suite printed no authorization URL\n{}", server.log()));
    let location = common::Browser::new().sign_in_and_approve(&server, &auth_url).await;
    assert!(location.starts_with(&callback), "{location}");
    // Deliver the redirect to the suite's callback server, as the browser would.
    let delivered = reqwest::get(&location).await.unwrap();
    assert!(delivered.status().is_success());

    let status = tokio::task::spawn_blocking(move || suite.wait()).await.unwrap().unwrap();
    let output = reader.join().unwrap();
    for scenario in SCENARIOS {
        assert!(
            output.contains(&format!("{scenario}: 1 passed, 0 failed")),
            "{scenario} did not pass:\n{output}\n{}",
            server.log()
        );
    }
    assert!(output.contains(&format!("Total: {} passed, 0 failed", SCENARIOS.len())), "{output}");
    assert!(status.success(), "the suite exited with {status}:\n{output}");
}
