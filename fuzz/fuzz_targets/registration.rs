//! `POST /register` (RFC 7591): `RegistrationRequest::from_json` and `validate` under the
//! default redirect policy, then the client and the response built from it.
//!
//! Invariants: refusals are `invalid_client_metadata` or `invalid_redirect_uri` with a clean
//! description; an accepted registration never grants `client_credentials`, has only https or
//! (for a client that is not `web`) loopback redirects, keeps every bound (redirect URIs,
//! contacts, text lengths) and no control character in anything it stores; its response,
//! sent back as a registration, validates to the same client; a more lenient policy accepts
//! whatever the default accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_error, has_control};
use oauth_core::ErrorCode;
use oauth_core::RedirectPolicy;
use oauth_core::UnixTime;
use oauth_core::{ApplicationType, ClientOrigin, GrantType, TokenEndpointAuthMethod};
use oauth_core::{ClientId, MAX_SCOPES, MAX_URI_LEN, RedirectKind, RedirectUri};
use oauth_core::{
    MAX_CONTACTS, MAX_REDIRECT_URIS, MAX_TEXT_LEN, RegistrationRequest, RegistrationResponse, ValidatedRegistration,
};

fuzz_target!(|body: &[u8]| {
    let policy = RedirectPolicy::default();
    let req = match RegistrationRequest::from_json(body) {
        Ok(r) => r,
        Err(e) => return check_error(&e, &[ErrorCode::InvalidClientMetadata], &String::from_utf8_lossy(body)),
    };
    let v = match req.validate(&policy) {
        Ok(v) => v,
        Err(e) => {
            return check_error(&e, &[ErrorCode::InvalidClientMetadata, ErrorCode::InvalidRedirectUri], &req);
        }
    };
    check_accepted(&req, &v);
    let lenient = RedirectPolicy::default().with_any_private_use_scheme(true);
    assert!(req.validate(&lenient).is_ok(), "a lenient policy refused what the default accepts: {req:?}");

    let client = v.clone().into_client(ClientId::parse("mcp_fuzz").expect("id literal"), None, UnixTime::from_secs(1));
    assert!(!client.is_machine_client() && !client.allows_grant(GrantType::ClientCredentials));
    assert!(client.origin == ClientOrigin::Dynamic && !client.trusted);

    // The response, registered again, describes the same client.
    let json = serde_json::to_vec(&RegistrationResponse::new(&client, None)).expect("a response serialises");
    let again = RegistrationRequest::from_json(&json)
        .and_then(|r| r.validate(&policy))
        .unwrap_or_else(|e| panic!("the response of {req:?} does not register again: {e}"));
    let mut v = v;
    v.ignored_grant_types.clear();
    assert_eq!(again, v, "round trip of {}", String::from_utf8_lossy(&json));
});

fn check_accepted(req: &RegistrationRequest, v: &ValidatedRegistration) {
    let method = req.token_endpoint_auth_method.as_deref().map(TokenEndpointAuthMethod::parse);
    assert_eq!(Some(v.auth_method), method.unwrap_or(Some(TokenEndpointAuthMethod::ClientSecretBasic)));

    assert!(!v.grant_types.is_empty(), "no grant types: {req:?}");
    assert!(!v.grant_types.contains(&GrantType::ClientCredentials), "client_credentials granted: {req:?}");
    for (i, g) in v.grant_types.iter().enumerate() {
        assert!(!v.grant_types[..i].contains(g), "{g:?} twice");
    }
    if req.grant_types.as_ref().is_some_and(|g| g.iter().any(|g| g == "client_credentials")) {
        assert!(v.ignored_grant_types.iter().any(|g| g.starts_with("client_credentials")));
    }
    assert!(req.response_types.as_ref().is_none_or(|t| t.iter().all(|t| t == "code")));

    assert!(v.redirect_uris.len() <= MAX_REDIRECT_URIS);
    if v.grant_types.contains(&GrantType::AuthorizationCode) {
        assert!(!v.redirect_uris.is_empty(), "the code grant without a redirect URI: {req:?}");
    }
    for (i, u) in v.redirect_uris.iter().enumerate() {
        assert!(!v.redirect_uris[..i].contains(u), "{u} twice");
        match u.kind() {
            RedirectKind::Https => {}
            RedirectKind::Loopback => assert_ne!(v.application_type, Some(ApplicationType::Web), "{u} for a web app"),
            kind => panic!("{u} ({kind:?}) accepted under the default policy"),
        }
        assert_eq!(RedirectUri::parse(u.as_str()).as_ref(), Ok(u));
    }

    for (what, text) in
        [("client_name", &v.name), ("software_id", &v.software_id), ("software_version", &v.software_version)]
    {
        if let Some(t) = text {
            assert!(t.chars().count() <= MAX_TEXT_LEN && !t.trim().is_empty() && !has_control(t), "{what} {t:?}");
        }
    }
    for (what, uri) in [
        ("client_uri", &v.client_uri),
        ("logo_uri", &v.logo_uri),
        ("tos_uri", &v.tos_uri),
        ("policy_uri", &v.policy_uri),
    ] {
        if let Some(u) = uri {
            assert!(u.len() <= MAX_URI_LEN, "{what} of {} bytes", u.len());
            // Shown as a link on the consent and Connected apps pages: one exact URL.
            assert!(!u.chars().any(|c| c.is_whitespace() || c.is_control()), "{what} {u:?}");
            let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{what} {u:?}: {e}"));
            assert!(matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some(), "{what} {u:?}");
        }
    }
    assert!(v.contacts.len() <= MAX_CONTACTS);
    assert!(v.contacts.iter().all(|c| c.len() <= 320 && !has_control(c)), "{:?}", v.contacts);
    if let Some(s) = &v.scope {
        assert!(!s.is_empty() && s.len() <= MAX_SCOPES);
    }
}
