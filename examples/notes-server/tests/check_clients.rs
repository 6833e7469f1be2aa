//! `check --clients` against the running example: every known client's discovery,
//! registration and authorization request, replayed with that client's own shapes, reaches the
//! sign-in page on the default configuration; the registrations it makes are named and can be
//! removed from the command line; a configuration that locks a client out names the client,
//! the step and the policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn check(server: &common::Server, clients: &str) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["check", "--public-url", &server.base_url, "--clients", clients, "--json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out, report)
}

fn clients(report: &Value) -> &Vec<Value> {
    report["clients"].as_array().unwrap()
}

fn client<'a>(report: &'a Value, name: &str) -> &'a Value {
    clients(report).iter().find(|c| c["client"] == name).unwrap_or_else(|| panic!("no {name}: {report}"))
}

/// `client: step [variant]: status error: error_description` for every failed step.
fn failures(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in clients(report) {
        for s in c["steps"].as_array().unwrap().iter().filter(|s| s["ok"] == false) {
            let a = &s["answer"];
            out.push(format!(
                "{}: {} [{}]: {} {} {}: {}",
                c["client"].as_str().unwrap(),
                s["step"].as_str().unwrap(),
                s["variant"].as_str().unwrap_or("-"),
                s["detail"].as_str().unwrap(),
                a["status"],
                a["error"].as_str().unwrap_or("-"),
                a["error_description"].as_str().unwrap_or("-"),
            ));
        }
    }
    out
}

#[test]
fn every_known_client_reaches_the_sign_in_page() {
    let server = common::Server::start("check-clients");
    let (out, report) = check(&server, "all");
    let failed = failures(&report);
    assert!(
        failed.is_empty(),
        "clients that would not connect:\n{}\n\nserver log:\n{}",
        failed.join("\n"),
        server.log()
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(clients(&report).len(), mcp_auth::clients::PROFILES.len());
    for c in clients(&report) {
        assert_eq!(c["verdict"], "pass", "{c}");
        let name = c["client"].as_str().unwrap();
        let profile = mcp_auth::clients::profile(name).unwrap();
        let reached: Vec<&Value> = c["steps"].as_array().unwrap().iter().filter(|s| s["step"] == "authorize").collect();
        assert_eq!(reached.len(), profile.authorize.len(), "every authorization request of {name} was replayed: {c}");
        assert!(reached.iter().all(|s| s["detail"].as_str().unwrap().contains("sign-in page")), "{c}");
    }
}

#[test]
fn the_registrations_are_named_and_can_be_removed() {
    let server = common::Server::start("check-clients-cleanup");
    let db = server.database_url();
    let (out, report) = check(&server, "cursor,gemini,goose");
    assert!(out.status.success(), "{}", failures(&report).join("\n"));

    let listed = common::operator(&db, &["clients", "list"], None);
    for name in ["cursor", "gemini", "goose"] {
        assert!(listed.contains(&format!("mcp-auth check ({name})")), "{listed}");
        let c = client(&report, name);
        let registrations = c["registrations"].as_array().unwrap();
        assert_eq!(registrations.len(), 1, "{c}");
        let id = registrations[0]["client_id"].as_str().unwrap();
        // This server offers no RFC 7592 management: the report says how to remove it.
        assert_eq!(registrations[0]["removed"], false, "{c}");
        let how = registrations[0]["detail"].as_str().unwrap();
        assert!(how.contains(&format!("mcp-auth clients remove {id}")), "{how}");
        assert!(common::operator(&db, &["clients", "remove", id], None).contains("removed client"));
    }
    assert!(!common::operator(&db, &["clients", "list"], None).contains("mcp-auth check"));

    // Goose prefers its metadata document, which the server would fetch from goose's site: the
    // report says what the server advertises for it and that the document was not fetched.
    let goose = client(&report, "goose");
    let document = goose["steps"].as_array().unwrap().iter().find(|s| s["step"] == "metadata-document").unwrap();
    assert_eq!(document["ok"], true, "{goose}");
    assert!(document["detail"].as_str().unwrap().contains("client_id_metadata_document_supported"), "{document}");
    let not_replayed: Vec<&str> =
        goose["not_replayed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(
        not_replayed.iter().any(|n| n.contains("https://goose-docs.ai/oauth/client-metadata.json")),
        "{not_replayed:?}"
    );
}

#[test]
fn a_deployment_that_locks_a_client_out_names_it_and_the_policy() {
    // Without the cursor:// scheme and without metadata documents.
    let server = common::Server::start_with(
        "check-clients-strict",
        &[("NOTES_REDIRECT_SCHEMES", "vscode"), ("NOTES_METADATA_DOCUMENTS", "false")],
    );
    let (out, report) = check(&server, "cursor,goose");
    assert!(!out.status.success(), "a locked-out client fails the check");
    let cursor = client(&report, "cursor");
    assert_eq!(cursor["failed_step"], "register: redirect_uris", "{cursor}");
    let step = cursor["steps"].as_array().unwrap().iter().find(|s| s["ok"] == false).unwrap();
    assert_eq!(step["answer"]["error"], "invalid_redirect_uri", "{step}");
    assert!(step["answer"]["error_description"].as_str().unwrap().contains("cursor"), "{step}");
    assert!(step["fix"].as_str().unwrap().contains("--redirect-scheme"), "{step}");

    let goose = client(&report, "goose");
    assert_eq!(goose["verdict"], "pass", "{goose}");
    let document = goose["steps"].as_array().unwrap().iter().find(|s| s["step"] == "metadata-document").unwrap();
    assert!(document["detail"].as_str().unwrap().contains("does not advertise"), "{document}");
}
