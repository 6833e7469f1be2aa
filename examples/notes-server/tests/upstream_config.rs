//! `--upstream`: each provider name maps to its preset, and a provider the server cannot use
//! stops it at startup with the reason, before anyone is sent there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use notes_server::upstream_provider;
use oauth_core::upstream::{UpstreamKind, UpstreamSecret};

#[test]
fn each_provider_name_maps_to_its_preset() {
    let p = |spec: &str| upstream_provider(spec, "client", UpstreamSecret::new("secret"), Some("https://api.example"));
    let issuer = |spec: &str| p(spec).unwrap().issuer().to_owned();
    assert_eq!(issuer("google"), "https://accounts.google.com");
    assert_eq!(p("github").unwrap().kind, UpstreamKind::GitHub);
    assert_eq!(issuer("entra:72f988bf"), "https://login.microsoftonline.com/72f988bf/v2.0");
    assert_eq!(issuer("entra:organizations"), "https://login.microsoftonline.com/{tenantid}/v2.0");
    assert_eq!(issuer("okta:https://acme.okta.com/oauth2/default"), "https://acme.okta.com/oauth2/default");
    let auth0 = p("auth0:acme.eu.auth0.com").unwrap();
    assert_eq!(auth0.issuer(), "https://acme.eu.auth0.com/");
    assert!(auth0.extra_params.contains(&("audience".into(), "https://api.example".into())));
    assert_eq!(issuer("keycloak:https://kc.example/realms/acme"), "https://kc.example/realms/acme");
    let any = p("https://id.example.com/tenant").unwrap();
    assert_eq!((any.id.as_str(), any.display_name.as_str()), ("oidc", "id.example.com"));
    assert!(!p("https://id.example.com").unwrap().extra_params.is_empty(), "an issuer URL asks for consent");
    assert!(p("keycloak:https://kc.example/realms/acme").unwrap().extra_params.is_empty(), "Keycloak's own preset");
    for bad in ["gogle", "entra:", "okta", "keycloak:https://kc.example", "http://plain.example.com", ""] {
        assert!(p(bad).unwrap_err().contains("use google, github"), "{bad}");
    }
}

#[test]
fn a_provider_the_server_cannot_use_stops_it_at_startup() {
    let dir = std::env::temp_dir().join(format!("notes-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
            .env("NOTES_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", format!("sqlite://{}/oauth.db?mode=rwc", dir.display()))
            .env("NOTES_ADMIN_PASSWORD", "upstream-test-password")
            .env_remove("NOTES_UPSTREAM_CLIENT_ID")
            .env_remove("NOTES_UPSTREAM_CLIENT_SECRET")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the server started: {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[("NOTES_UPSTREAM", "google")]);
    assert!(err.contains("NOTES_UPSTREAM_CLIENT_ID"), "{err}");
    // Nothing listens on port 9 of loopback: discovery fails, and says where.
    let unreachable = [
        ("NOTES_UPSTREAM", "http://127.0.0.1:9/idp"),
        ("NOTES_UPSTREAM_CLIENT_ID", "notes"),
        ("NOTES_UPSTREAM_CLIENT_SECRET", "s3cret-value"),
    ];
    let err = run(&unreachable);
    assert!(err.contains("upstream provider 'oidc'") && err.contains("openid-configuration"), "{err}");
    assert!(!err.contains("s3cret-value"), "the secret is never printed: {err}");
    // `--upstream-oidc <issuer>` is `--upstream`, on the command line.
    let by_alias = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["--upstream-oidc", "http://127.0.0.1:9/idp", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", format!("sqlite://{}/oauth.db?mode=rwc", dir.display()))
        .env("NOTES_ADMIN_PASSWORD", "upstream-test-password")
        .env("NOTES_UPSTREAM_CLIENT_ID", "notes")
        .env("NOTES_UPSTREAM_CLIENT_SECRET", "s3cret-value")
        .env_remove("NOTES_UPSTREAM")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&by_alias.stderr);
    assert!(!by_alias.status.success() && err.contains("upstream provider 'oidc'"), "{err}");
    let on_argv = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["--upstream", "google", "--upstream-client-id", "x", "--upstream-client-secret", "on-argv"])
        .output()
        .unwrap();
    assert!(!on_argv.status.success());
    assert!(String::from_utf8_lossy(&on_argv.stderr).contains("--upstream-client-secret-file"));
    let _ = std::fs::remove_dir_all(&dir);
}
