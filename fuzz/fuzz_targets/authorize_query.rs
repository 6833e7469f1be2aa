//! `GET /authorize`: the query as the axum adapter hands it over (`form_urlencoded` pairs),
//! parsed by `AuthorizationRequest::from_pairs` and validated by `AuthorizationServer::authorize`
//! against the fixture's clients.
//!
//! Invariants: the parameter bounds and duplicate rule hold exactly (checked against a model);
//! every error is an RFC code with a clean description; a redirected error goes only to a URI
//! registered for the client, carries `error`, `state` and `iss`, and is a valid `Location`; an
//! accepted request has everything the code exchange relies on.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{Fixture, ISSUER, RESOURCE, check_error};
use oauth_core::ErrorCode;
use oauth_core::fuzzing::{MAX_PARAMS, MAX_VALUE_LEN};
use oauth_core::{AuthorizationRequest, AuthorizeError, MAX_STATE_LEN};
use oauth_core::{RedirectUri, ScopeSet};

fuzz_target!(|query: &[u8]| {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query).into_owned().collect();
    let parsed = AuthorizationRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let expected = model(&pairs);
    let req = match (parsed, expected) {
        (Ok(req), Some(model)) => {
            assert_eq!(req, model, "from_pairs differs from the model for {pairs:?}");
            req
        }
        (Err(e), None) => {
            check_error(&e, &[ErrorCode::InvalidRequest], &pairs);
            return;
        }
        (Ok(req), None) => panic!("accepted a query the bounds refuse: {pairs:?} as {req:?}"),
        (Err(e), Some(_)) => panic!("refused a query within the bounds: {pairs:?}: {e}"),
    };

    Fixture::with(|fx| {
        let outcome = fx.rt.block_on(fx.server.authorize(req.clone()));
        let client = req.client_id.as_deref().and_then(|id| fx.client(id));
        match outcome {
            Ok(prompt) => {
                let client = client.expect("accepted for a client the store has");
                let pending = &prompt.pending;
                assert!(client.active && prompt.client.id == client.id);
                assert_eq!(req.response_type.as_deref(), Some("code"));
                assert_eq!(req.code_challenge_method.as_deref(), Some("S256"));
                assert_eq!(Some(pending.code_challenge.as_str()), req.code_challenge.as_deref());
                assert!(req.response_mode.as_deref().is_none_or(|m| m == "query"));
                assert_eq!(pending.state, req.state);
                assert!(pending.state.as_ref().is_none_or(|s| s.len() <= MAX_STATE_LEN));
                assert!(client.registered_redirect(&pending.redirect_uri).is_some(), "unregistered redirect accepted");
                match req.redirect_uri.as_deref() {
                    Some(raw) => assert_eq!(pending.redirect_uri.as_str(), raw),
                    None => assert_eq!(client.redirect_uris.len(), 1),
                }
                let supported = ScopeSet::parse("mcp:tools mcp:read").expect("scope literal");
                assert!(!pending.scopes.is_empty() && pending.scopes.is_subset(&supported), "{}", pending.scopes);
                assert_eq!(pending.resource.as_str(), RESOURCE);
                // Nothing accumulates between inputs.
                let taken = fx
                    .rt
                    .block_on(fx.server.operator().stores().authorizations.take_pending(&pending.id, fx.server.now()));
                assert!(taken.expect("memory store").is_some());
            }
            Err(AuthorizeError::ShowToUser(e)) => {
                check_error(
                    &e,
                    &[ErrorCode::InvalidRequest, ErrorCode::InvalidClient, ErrorCode::UnauthorizedClient],
                    &req,
                );
            }
            Err(AuthorizeError::Redirect { location, error }) => {
                check_error(
                    &error,
                    &[
                        ErrorCode::InvalidRequest,
                        ErrorCode::UnauthorizedClient,
                        ErrorCode::UnsupportedResponseType,
                        ErrorCode::InvalidScope,
                        ErrorCode::InvalidTarget,
                    ],
                    &req,
                );
                let client = client.expect("redirected for a client the store has");
                let target = match req.redirect_uri.as_deref() {
                    Some(raw) => RedirectUri::parse(raw).expect("redirected to a redirect_uri that does not parse"),
                    None => {
                        assert_eq!(client.redirect_uris.len(), 1, "redirected without a redirect_uri");
                        client.redirect_uris[0].clone()
                    }
                };
                assert!(client.registered_redirect(&target).is_some(), "error redirected to an unregistered {target}");
                check_location(&location, &target, &error, req.state.as_deref());
            }
            Err(other) => panic!("an internal error on the memory store: {other:?} for {req:?}"),
        }
    });
});

/// What `from_pairs` must return: `None` when the query breaks a bound or repeats a
/// parameter (other than `resource`) with a value; empty values count as absent.
fn model(pairs: &[(String, String)]) -> Option<AuthorizationRequest> {
    if pairs.len() > MAX_PARAMS || pairs.iter().any(|(_, v)| v.len() > MAX_VALUE_LEN) {
        return None;
    }
    let mut single: HashMap<&str, String> = HashMap::new();
    let mut resource = Vec::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if k == "resource" {
            resource.push(v.clone());
        } else if single.insert(k, v.clone()).is_some() {
            return None;
        }
    }
    let mut req = AuthorizationRequest::default();
    req.response_type = single.remove("response_type");
    req.client_id = single.remove("client_id");
    req.redirect_uri = single.remove("redirect_uri");
    req.scope = single.remove("scope");
    req.state = single.remove("state");
    req.code_challenge = single.remove("code_challenge");
    req.code_challenge_method = single.remove("code_challenge_method");
    req.resource = resource;
    req.response_mode = single.remove("response_mode");
    Some(req)
}

/// A redirected error: the registered URI's own query first, then `error`,
/// `error_description`, `state` (when it was short enough to echo) and `iss`; a valid header.
fn check_location(location: &str, target: &RedirectUri, error: &oauth_core::OAuthError, state: Option<&str>) {
    assert!(http::HeaderValue::from_str(location).is_ok(), "Location {location:?} is not a valid header value");
    let got = url::Url::parse(location).expect("Location parses");
    let want = url::Url::parse(target.as_str()).expect("a RedirectUri parses");
    assert_eq!(
        (got.scheme(), got.host(), got.port(), got.path()),
        (want.scheme(), want.host(), want.port(), want.path()),
        "redirected to {location} for {target}"
    );
    let got_pairs: Vec<(String, String)> = got.query_pairs().into_owned().collect();
    let mut expected: Vec<(String, String)> = want.query_pairs().into_owned().collect();
    expected.push(("error".into(), error.code().as_str().into()));
    expected.push(("error_description".into(), error.description().into()));
    if let Some(s) = state.filter(|s| s.len() <= MAX_STATE_LEN) {
        expected.push(("state".into(), s.into()));
    }
    expected.push(("iss".into(), ISSUER.into()));
    assert_eq!(got_pairs, expected, "query of {location}");
}
