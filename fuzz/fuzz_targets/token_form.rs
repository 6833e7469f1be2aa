//! `POST /token`: the first line of the input is the `Authorization` header (empty for none),
//! the rest the form body. The form goes through `TokenRequest::from_pairs`, client
//! authentication through `ClientCredentials::from_request`, and the whole request through
//! `AuthorizationServer::token` for every grant type.
//!
//! A stranger knows no secret and holds no code, so the input may name the fixture's: a
//! `client_secret` of `@secret@` is the `chatgpt` client's secret and `@machine@` the `ci-bot`
//! machine client's; a `code` of `@code@` is a fresh code issued to `claude-code` (redirect
//! `http://localhost:54212/callback`, the RFC 7636 verifier, scope `mcp:tools`); a
//! `refresh_token` of `@refresh@` a fresh refresh token of such a code; the header
//! `@basic-chatgpt@` or `@basic-machine@` is HTTP Basic with that client's credentials.
//!
//! Invariants: parameter bounds; client authentication follows RFC 6749 2.3 (one method, ids
//! that agree); every error is a token-endpoint RFC code with a clean description; no token is
//! issued without a credential the fixture handed out; an issued token verifies and says whom
//! it was issued to, and a machine token names the client, never a person.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{CHALLENGE, Fixture, RESOURCE, check_error, split_lines};
use oauth_core::AuthorizationRequest;
use oauth_core::fuzzing::{MAX_PARAMS, MAX_VALUE_LEN, credentials, parse_basic};
use oauth_core::{ClientCredentials, TokenRequest};
use oauth_core::{Error, ErrorCode, UnixTime};
use oauth_core::{ScopeSet, UserId};

const TOKEN_ERRORS: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidClient,
    ErrorCode::InvalidGrant,
    ErrorCode::UnauthorizedClient,
    ErrorCode::UnsupportedGrantType,
    ErrorCode::InvalidScope,
    ErrorCode::InvalidTarget,
];

fuzz_target!(|data: &[u8]| {
    let [header, body] = split_lines(data, 2)[..] else { return };
    let Ok(header) = std::str::from_utf8(header) else { return };
    let raw: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let names = |name: &str, placeholder: &str| raw.iter().any(|(k, v)| k == name && v == placeholder);
    let (wants_code, wants_refresh) = (names("code", "@code@"), names("refresh_token", "@refresh@"));

    Fixture::with(|fx| {
        // A stranger knows no secret. The fuzzer can learn one from the harness's own check
        // that no event quotes it; an input that then spells it out, in any field, tests
        // nothing a stranger could send (an unsupported `grant_type` is quoted in its event).
        let spelled = |secret: &str| {
            !secret.is_empty()
                && (header.contains(secret) || raw.iter().any(|(k, v)| k.contains(secret) || v.contains(secret)))
        };
        if spelled(&fx.chatgpt_secret) || spelled(&fx.machine_secret) {
            return;
        }
        let (code, refresh) =
            if wants_code || wants_refresh { fresh_code(fx, wants_refresh) } else { Default::default() };
        let fill = |(k, v): &(String, String)| {
            let real = match (k.as_str(), v.as_str()) {
                ("client_secret", "@secret@") => fx.chatgpt_secret.clone(),
                ("client_secret", "@machine@") => fx.machine_secret.clone(),
                ("code", "@code@") => code.clone(),
                ("refresh_token", "@refresh@") => refresh.clone(),
                _ => v.clone(),
            };
            (k.clone(), real)
        };
        let pairs: Vec<(String, String)> = raw.iter().map(fill).collect();
        let authorization = match header {
            "" => None,
            "@basic-chatgpt@" => Some(basic("chatgpt", &fx.chatgpt_secret)),
            "@basic-machine@" => Some(basic("ci-bot", &fx.machine_secret)),
            other => Some(other.to_owned()),
        };
        let used_credential = header.starts_with("@basic-")
            || wants_code
            || wants_refresh
            || names("client_secret", "@secret@")
            || names("client_secret", "@machine@");

        let req = match TokenRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(r) => r,
            Err(e) => {
                check_error(&e, &[ErrorCode::InvalidRequest], &pairs);
                assert!(
                    pairs.len() > MAX_PARAMS || pairs.iter().any(|(_, v)| v.len() > MAX_VALUE_LEN) || repeats(&pairs),
                    "{e}"
                );
                return;
            }
        };
        assert!(pairs.len() <= MAX_PARAMS && pairs.iter().all(|(_, v)| v.len() <= MAX_VALUE_LEN));
        check_credentials(authorization.as_deref(), &req);

        let grant_type = req.grant_type.clone();
        let client_id = req.client_id.clone();
        match fx.rt.block_on(fx.server.token(req, authorization.as_deref())) {
            Ok(resp) => {
                assert!(used_credential, "a token without any credential: {pairs:?}, header {authorization:?}");
                let claims = fx.server.verify_access_token(&resp.access_token).expect("an issued token verifies");
                let supported = ScopeSet::parse("mcp:tools mcp:read").expect("scope literal");
                assert!(!resp.scope.is_empty() && resp.scope.is_subset(&supported));
                assert_eq!(claims.scope, resp.scope.to_string());
                assert!(claims.aud.contains(RESOURCE));
                let machine = grant_type.as_deref() == Some("client_credentials");
                assert_eq!(claims.machine, machine);
                if machine {
                    assert_eq!((claims.sub.as_str(), claims.client_id.as_str()), ("client:ci-bot", "ci-bot"));
                    assert!(resp.refresh_token.is_none());
                } else {
                    assert!(UserId::parse(&claims.sub).is_ok_and(|u| u.is_user()), "{}", claims.sub);
                    assert_eq!(claims.client_id, "claude-code");
                    assert!(client_id.as_deref().is_none_or(|c| c == "claude-code"));
                    assert!(resp.refresh_token.is_some());
                }
            }
            Err(Error::OAuth(e)) => check_error(&e, TOKEN_ERRORS, &pairs),
            Err(other) => panic!("an internal error on the memory store: {other:?} for {pairs:?}"),
        }
    });
});

/// RFC 6749 2.3: Basic or a body secret, not both; a body `client_id` beside Basic names the
/// same client; an empty secret is none.
fn check_credentials(authorization: Option<&str>, req: &TokenRequest) {
    let body_secret = req.client_secret.as_ref().map(|s| s.secret()).filter(|s| !s.is_empty());
    let basic = authorization.map(parse_basic);
    let result = ClientCredentials::from_request(authorization, req);
    match (basic, result) {
        (Some(Err(_)), Err(e)) => check_error(&e, &[ErrorCode::InvalidClient], &authorization),
        (Some(Err(e)), Ok(_)) => panic!("malformed Basic credentials accepted: {authorization:?}: {e}"),
        (Some(Ok(Some((id, secret)))), result) => {
            if body_secret.is_some() {
                let e = result.expect_err("Basic and a body secret together");
                check_error(&e, &[ErrorCode::InvalidRequest], &authorization);
            } else if req.client_id.as_deref().is_some_and(|b| b != id) {
                let e = result.expect_err("a body client_id that differs from Basic");
                check_error(&e, &[ErrorCode::InvalidClient], &authorization);
            } else {
                let c = result.expect("consistent Basic credentials");
                let want_secret = secret.as_deref().filter(|s| !s.is_empty());
                assert_eq!(credentials(&c), (Some(id.as_str()), want_secret, "client_secret_basic"));
            }
        }
        (_, result) => {
            let c = result.expect("credentials without Basic");
            let method = if body_secret.is_some() { "client_secret_post" } else { "none" };
            assert_eq!(credentials(&c), (req.client_id.as_deref(), body_secret, method));
        }
    }
}

/// Whether a parameter other than `resource` has two non-empty values.
fn repeats(pairs: &[(String, String)]) -> bool {
    let mut seen = std::collections::HashSet::new();
    pairs.iter().filter(|(k, v)| !v.is_empty() && k != "resource").any(|(k, _)| !seen.insert(k))
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A fresh code for `claude-code`, and with `refresh` a fresh refresh token from another one.
fn fresh_code(fx: &Fixture, refresh: bool) -> (String, String) {
    let code = issue_code(fx);
    if !refresh {
        return (code, String::new());
    }
    let exchange = TokenRequest::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", issue_code(fx).as_str()),
        ("redirect_uri", "http://localhost:54212/callback"),
        ("code_verifier", mcp_oauth_fuzz::VERIFIER),
        ("client_id", "claude-code"),
    ])
    .expect("exchange form");
    let resp = fx.rt.block_on(fx.server.token(exchange, None)).expect("the fixture's code exchanges");
    let rt = resp.refresh_token.expect("claude-code gets refresh tokens");
    (code, rt.secret().to_owned())
}

fn issue_code(fx: &Fixture) -> String {
    let req = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", "claude-code"),
        ("redirect_uri", "http://localhost:54212/callback"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ])
    .expect("authorize query");
    let prompt = fx.rt.block_on(fx.server.authorize(req)).expect("the fixture's request is valid");
    let user = UserId::parse("user-1").expect("user literal");
    let location = fx
        .rt
        .block_on(fx.server.approve(&prompt.pending.id, &user, UnixTime::from_secs(mcp_oauth_fuzz::NOW), false))
        .expect("approve");
    let url = url::Url::parse(&location).expect("location");
    url.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code")
}
