//! The official MCP TypeScript SDK client (`@modelcontextprotocol/sdk` 1.32.2, pinned in
//! `interop/ts`) against the real notes-server binary: discovery from the 401, dynamic
//! registration, PKCE authorization through the sign-in and consent pages, the code exchange,
//! tool calls as the signed-in user, and a refresh the SDK performs itself after a 401.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn typescript_sdk_connects_calls_tools_and_refreshes() {
    let root = common::repo_root();
    assert!(
        root.join("interop/ts/node_modules/@modelcontextprotocol/sdk").exists(),
        "interop/ts/node_modules is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start("ts");
    let mut cmd = Command::new("node");
    cmd.arg(root.join("interop/ts/flow.mjs")).current_dir(&root);
    let out = common::run_client(&server, cmd, Duration::from_secs(120));

    let client_id =
        common::assert_client_result(&out, "typescript-sdk", "1.32.2", "interop note from the TypeScript SDK");
    let client_id = client_id.as_str();

    // The server saw every step, for this client: registration, the exchange, the refused
    // corrupted token, and the rotation the SDK's refresh caused.
    let log = server.log();
    let mentions = |needle: &str| log.lines().any(|l| l.contains(client_id) && l.contains(needle));
    assert!(mentions("registered with 1 redirect URI"), "no registration event:\n{log}");
    assert!(mentions("exchanged; grant"), "no code exchange event:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("token refused") && l.contains("token_malformed")),
        "no refused-token event for the corrupted token:\n{log}"
    );
    assert!(mentions("rotated to generation 1"), "no refresh rotation event:\n{log}");
    let ms = out["ms_401_to_first_tool_call"].as_u64().expect("ms_401_to_first_tool_call");
    println!("TypeScript SDK {}: 401 to first tool call in {ms} ms", out["sdk_version"].as_str().unwrap_or_default());
}
