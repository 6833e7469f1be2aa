//! Client ID Metadata Documents: the input is the `client_id` URL, a newline, the response's
//! `Cache-Control` value, a newline, and the document. The URL goes through `ClientId::parse`
//! and `is_document_url`, the header through the fetcher's `max-age` reading, the document
//! through `client_from_document` under the default redirect policy.
//!
//! Invariants: a document client is public (no secret, method `none`), never a machine client
//! and never `client_credentials`, is exactly its own URL, and has only redirects the policy
//! allows; a document carrying `client_secret` or another `client_id` is refused; refusals
//! are clean `invalid_client_metadata` or `invalid_redirect_uri`; the cache lifetime stays
//! within its bounds whatever the header says.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_error, has_control, split_lines};
use oauth_core::ClientIdentity;
use oauth_core::RedirectPolicy;
use oauth_core::{ClientId, RedirectKind};
use oauth_core::{ClientOrigin, GrantType, TokenEndpointAuthMethod};
use oauth_core::{DEFAULT_CACHE, FetchedDocument, MAX_CACHE, MIN_CACHE, client_from_document, is_document_url};
use oauth_core::{ErrorCode, UnixTime};

fuzz_target!(|data: &[u8]| {
    let [url, cache_control, body] = split_lines(data, 3)[..] else { return };

    if let Ok(value) = std::str::from_utf8(cache_control) {
        let age = oauth_axum::fuzzing::max_age(value);
        let lower = value.to_ascii_lowercase();
        if lower.split(',').any(|d| matches!(d.trim(), "no-store" | "no-cache")) {
            assert_eq!(age, Some(Duration::ZERO), "{value:?}");
        }
        let kept = FetchedDocument::new(Vec::new(), age).cache_for();
        assert!((MIN_CACHE..=MAX_CACHE).contains(&kept), "{value:?} kept for {kept:?}");
        if age.is_none() {
            assert_eq!(kept, DEFAULT_CACHE);
        }
    }

    let Ok(url) = std::str::from_utf8(url) else { return };
    let Ok(id) = ClientId::parse(url) else { return };
    if !is_document_url(&id) {
        return;
    }
    let parsed = url::Url::parse(id.as_str()).expect("a document URL parses");
    assert!(parsed.scheme() == "https" && parsed.fragment().is_none() && parsed.username().is_empty());

    let policy = RedirectPolicy::default();
    let input = (url, String::from_utf8_lossy(body));
    match client_from_document(&id, body, &policy, false, UnixTime::from_secs(1)) {
        Ok((client, _)) => {
            assert_eq!(client.id, id);
            assert_eq!(client.origin, ClientOrigin::MetadataDocument);
            assert_eq!(client.auth_method, TokenEndpointAuthMethod::None);
            assert!(client.secret_hash.is_none() && client.is_public() && !client.is_machine_client());
            assert!(!client.trusted && !client.allows_grant(GrantType::ClientCredentials));
            for u in &client.redirect_uris {
                assert!(policy.check(u, client.application_type).is_ok(), "{u} for {input:?}");
                assert!(matches!(u.kind(), RedirectKind::Https | RedirectKind::Loopback));
            }
            let doc: serde_json::Value = serde_json::from_slice(body).expect("an accepted document is JSON");
            assert_eq!(doc.get("client_id").and_then(|v| v.as_str()), Some(id.as_str()));
            assert!(doc.get("client_secret").is_none(), "a document with a secret accepted: {input:?}");
            // The consent page says who published it: the URL's host, nothing the document says.
            let identity = ClientIdentity::of(&client);
            assert_eq!(identity.published_by(), parsed.host_str());
            assert!(!has_control(client.display_name()));
        }
        Err(e) => check_error(&e, &[ErrorCode::InvalidClientMetadata, ErrorCode::InvalidRedirectUri], &input),
    }
});
