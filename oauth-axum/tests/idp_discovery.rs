//! An enterprise IdP's keys found from its metadata, served over real TLS on a loopback port:
//! OpenID discovery first, RFC 8414 second, and each way the metadata can be wrong named for
//! the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{certificates, document_server};
use oauth_axum::metadata_documents::HttpsDocumentFetcher;
use oauth_core::{IdpKeys, discover_idp_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idps_keys_are_found_from_its_metadata_or_the_reason_is_named() {
    let dir = std::env::temp_dir().join(format!("idp-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let (origin, _) = document_server(cert, key, |origin| {
        let doc = |issuer: &str, jwks: &str| {
            (vec![200], String::new(), serde_json::json!({ "issuer": issuer, "jwks_uri": jwks }).to_string())
        };
        HashMap::from([
            // Okta's shape: OpenID discovery under the issuer's path.
            (
                "/okta/.well-known/openid-configuration".to_owned(),
                doc(&format!("{origin}/okta"), "https://keys.example/okta"),
            ),
            // Only RFC 8414, path-inserted.
            (
                "/.well-known/oauth-authorization-server/as".to_owned(),
                doc(&format!("{origin}/as"), "https://keys.example/as"),
            ),
            ("/liar/.well-known/openid-configuration".to_owned(), doc("https://other.example", "https://k.example")),
            (
                "/plain/.well-known/openid-configuration".to_owned(),
                doc(&format!("{origin}/plain"), "http://keys.example/plain"),
            ),
        ])
    })
    .await;
    let fetcher = HttpsDocumentFetcher::new().with_only_root_certificate(&ca).dangerous_allow_private_addresses(true);

    let found = discover_idp_keys(&fetcher, &format!("{origin}/okta")).await.unwrap();
    assert_eq!(found, IdpKeys::Url("https://keys.example/okta".into()));
    let found = discover_idp_keys(&fetcher, &format!("{origin}/as")).await.unwrap();
    assert_eq!(found, IdpKeys::Url("https://keys.example/as".into()));

    for (issuer, why) in [
        ("/liar", "states issuer 'https://other.example'"),
        ("/plain", "is not an https URL"),
        ("/nothing", "no metadata for"),
    ] {
        let e = discover_idp_keys(&fetcher, &format!("{origin}{issuer}")).await.unwrap_err();
        assert!(e.contains(why), "{issuer}: {e}");
    }
    // The strict fetcher the server uses never reaches a loopback IdP.
    let strict = HttpsDocumentFetcher::new().with_only_root_certificate(&ca);
    let e = discover_idp_keys(&strict, &format!("{origin}/okta")).await.unwrap_err();
    assert!(e.contains("not a public address"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
