//! The operator's subcommands, run as processes on a fresh SQLite database, and `check`
//! against the running example.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

#[test]
fn users_and_clients_are_managed_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("notes-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.display());

    let added = common::operator(&db, &["users", "add", "bob"], Some("a long password\n"));
    assert!(added.contains("added user 'bob'"), "{added}");
    assert!(common::operator(&db, &["users", "list"], None).contains(" bob "));
    assert!(common::operator(&db, &["users", "passwd", "bob"], Some("another long one\n")).contains("changed"));

    // The "Advanced settings" case: a confidential client whose secret is shown once.
    let out = common::operator(
        &db,
        &[
            "clients",
            "add",
            "--name",
            "Claude",
            "--redirect-uri",
            "https://claude.ai/api/mcp/auth_callback",
            "--confidential",
        ],
        None,
    );
    let id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).expect(&out).to_owned();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(secret.len() >= 43);
    let list = common::operator(&db, &["clients", "list"], None);
    assert!(list.contains(&id) && list.contains("client_secret_post") && list.contains("PreRegistered"), "{list}");
    assert!(!list.contains(&secret), "the secret is never shown again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` against the running example: every step a client takes passes.
#[test]
fn check_passes_against_the_running_example() {
    let server = common::Server::start("check");
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["check", "--public-url", &server.base_url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("every step passed"), "{text}");
    for step in ["challenge", "cors-challenge", "cors-preflight", "resource-metadata", "issuer", "pkce", "jwks"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("ok") && l.contains(step)),
            "{step} not checked:\n{text}"
        );
    }
}
