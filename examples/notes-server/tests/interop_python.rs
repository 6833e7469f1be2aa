//! The official MCP Python SDK client (`mcp` 2.3.0, pinned in `interop/python`) against the
//! real notes-server binary: discovery, dynamic registration, sign-in and consent, the code
//! exchange, tool calls, and a refresh with rotation, all driven by the SDK's own OAuth client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn python_sdk_connects_calls_tools_and_refreshes() {
    let root = common::repo_root();
    let python = root.join("interop/python/.venv/bin/python");
    assert!(python.exists(), "{} is missing: run `bash interop/install.sh` or `bash .ci/run` first", python.display());
    let server = common::Server::start("py");
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("interop/python/flow.py")).current_dir(&root);
    let out = common::run_client(&server, cmd, Duration::from_secs(120));

    let client_id = common::assert_client_result(&out, "python-sdk", "2.3.0", "interop note from the Python SDK");
    let client_id = client_id.as_str();
    let ms = out["ms_401_to_first_tool_call"].as_u64().expect("ms_401_to_first_tool_call");

    // The server's own account of the same connection, from its flow events.
    let log = strip_ansi(&server.log());
    let flow: Vec<&str> = log.lines().filter(|l| l.contains("oauth::flow") && l.contains(client_id)).collect();
    let event = |needle: &str| flow.iter().find(|l| l.contains(needle)).copied();
    assert!(
        event("registration: 'MCP Python SDK interop' registered").is_some_and(|l| l.contains("auth method none")),
        "no registration event for {client_id}:\n{log}"
    );
    let exchange = event("code_exchange: code ").unwrap_or_else(|| panic!("no code exchange for {client_id}:\n{log}"));
    let grant = exchange
        .split("exchanged; grant ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no grant id in: {exchange}"));
    assert!(
        event(&format!("refresh: grant {grant} rotated to generation 1")).is_some(),
        "no refresh rotation of grant {grant}:\n{log}"
    );
    assert!(event("resource_access: first call with this token").is_some(), "no resource access:\n{log}");
    let failures: Vec<&&str> = flow.iter().filter(|l| l.contains(" failed: ")).collect();
    assert!(failures.is_empty(), "flow failures for {client_id}: {failures:#?}");

    println!(
        "python-sdk 2.3.0 (protocol {}): 401 to first tool call in {ms} ms",
        out["protocol_version"].as_str().unwrap_or("?")
    );
}

/// The log without terminal colour codes (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
