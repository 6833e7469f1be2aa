//! FastMCP's client (`fastmcp` 4.1.6, pinned in `interop/fastmcp`) as a machine client against
//! the real notes-server binary: the operator registers only the public key of the client's
//! pair (`clients add --machine --jwks-file`), and FastMCP's `PrivateKeyJWTOAuthProvider` meets
//! the 401, discovers the metadata, signs an assertion with its own signer and gets a
//! `client_credentials` token; the tools see the machine. The same client holding a key the
//! operator never registered is refused, and `diagnose` says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const FLOW_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn fastmcp_machine_client_authenticates_with_private_key_jwt_and_a_foreign_key_is_refused() {
    let root = common::repo_root();
    let python = root.join("interop/fastmcp/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash interop/fastmcp/install.sh` (or `bash interop/install.sh`) first",
        python.display()
    );
    let server = common::Server::start_with("fastmcp-machine-jwt", &[("NOTES_MACHINE_CLIENTS", "true")]);
    let db = server.database_url();
    let keys = common::ClientKeyPair::es256();
    let client_id = common::add_signing_machine(&server, "fastmcp job", &keys);

    let (out, _) = flow(&server, &python, &client_id, &keys);
    let out = out.unwrap_or_else(|failure| panic!("FastMCP's flow failed:\n{failure}\nserver log:\n{}", server.log()));
    assert_eq!(out["client"], "fastmcp", "{out}");
    assert_eq!(out["fastmcp_version"], "4.1.6", "{out}");
    assert_eq!(out["provider_class"], "fastmcp.client.auth.client_credentials.PrivateKeyJWTOAuthProvider", "{out}");
    assert_eq!(out["client_id"], client_id.as_str(), "{out}");
    let tools: Vec<&str> = out["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"whoami"), "whoami not listed: {out}");
    // The tool call returned the machine, not a person.
    assert_eq!(out["whoami"]["caller"], "machine client", "{out}");
    assert_eq!(out["whoami"]["username"], client_id.as_str(), "{out}");
    assert_eq!(out["whoami"]["subject"], format!("client:{client_id}").as_str(), "{out}");
    assert_eq!(out["token"]["scope"], "mcp:tools", "{out}");

    // The token request as FastMCP sent it: an RFC 7523 assertion, no secret anywhere.
    let request = &out["token_request"];
    assert_eq!(request["grant_type"], "client_credentials", "{out}");
    assert_eq!(request["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "{out}");
    assert_eq!(request["authorization_header"], false, "{out}");
    assert_eq!(request["resource"], server.mcp_url.as_str(), "{out}");
    let header = &request["assertion"]["header"];
    let claims = &request["assertion"]["claims"];
    assert_eq!(header["alg"], "ES256", "{out}");
    assert_eq!((&claims["iss"], &claims["sub"]), (&Value::from(client_id.as_str()), &Value::from(client_id.as_str())));
    assert_eq!(claims["aud"], server.base_url.as_str(), "aud is the issuer: {out}");
    println!("FastMCP's client assertion: header {header}, claims {claims}");

    // The server's account: a machine token from a verified assertion, then the MCP call,
    // and nothing refused.
    let attempt = common::diagnose(&db, &client_id);
    assert_eq!(attempt["verdict"], "connected", "{attempt}");
    let events = attempt["events"].as_array().expect("events");
    let succeeded = |step: &str| events.iter().any(|e| e["step"] == step && e["reason"].is_null());
    assert!(succeeded("client_credentials") && succeeded("resource_access"), "{attempt}");
    assert!(
        events.iter().any(|e| e["step"] == "client_credentials"
            && e["detail"].as_str().is_some_and(|d| d.contains("authenticated with private_key_jwt"))),
        "the token event names the method: {attempt}"
    );
    assert!(events.iter().all(|e| e["reason"].is_null()), "a step failed: {attempt}");
    let shown = client_report(&db, &client_id);
    assert_eq!(shown["token_endpoint_auth_method"], "private_key_jwt", "{shown}");
    assert_eq!(shown["has_secret"], false, "{shown}");
    assert_eq!(shown["active_grants"], 1, "{shown}");

    // The same client signing with a key pair the operator never registered.
    let foreign = common::ClientKeyPair::es256();
    let (refused, stderr) = flow(&server, &python, &client_id, &foreign);
    assert!(refused.is_err(), "a foreign key got through: {refused:?}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("Token exchange failed (401)") && stderr.contains("invalid_client"),
        "FastMCP did not fail at the token endpoint with 401 invalid_client:\n{stderr}"
    );
    let attempt = common::diagnose(&db, &client_id);
    assert_eq!(attempt["verdict"], "failed", "{attempt}");
    assert_eq!(attempt["step"], "client_credentials", "{attempt}");
    assert_eq!(attempt["reason"], "client_assertion_invalid", "{attempt}");
    assert!(attempt["detail"].as_str().is_some_and(|d| d.contains("signature")), "{attempt}");
    assert_eq!(client_report(&db, &client_id)["active_grants"], 1, "the foreign key got a grant");
}

/// Runs `interop/fastmcp/flow.py` as `client_id` signing with `keys`' private key, handed over
/// in a file: its JSON result or its failure, and its standard error.
fn flow(
    server: &common::Server,
    python: &Path,
    client_id: &str,
    keys: &common::ClientKeyPair,
) -> (Result<Value, String>, String) {
    let key_file = private_key_file(server.dir(), keys);
    let root = common::repo_root();
    let mut cmd = Command::new(python);
    cmd.arg(root.join("interop/fastmcp/flow.py"))
        .current_dir(&root)
        .env("MCP_CLIENT_ID", client_id)
        .env("MCP_PRIVATE_KEY_FILE", &key_file)
        .env("MCP_SIGNING_ALG", "ES256");
    let (cmd, out) = common::run_client_to_end(server, cmd, FLOW_TIMEOUT);
    let _ = std::fs::remove_file(&key_file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return (Err(format!("{cmd:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status)), stderr);
    }
    let result = common::last_json(&stdout).map_err(|e| format!("{cmd:?}: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    (result, stderr)
}

/// The private key in a file only its owner reads, in the server's temporary directory.
fn private_key_file(dir: &Path, keys: &common::ClientKeyPair) -> PathBuf {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!("client-key-{}.pem", common::nanos()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
    file.write_all(keys.private_key_pem.as_bytes()).unwrap();
    path
}

/// `clients show --json` of `client_id`.
fn client_report(db: &str, client_id: &str) -> Value {
    let printed = common::operator(db, &["clients", "show", "--json", client_id], None);
    serde_json::from_str(&printed).unwrap_or_else(|e| panic!("clients show --json: {e}: {printed}"))
}
