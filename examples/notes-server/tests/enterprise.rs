//! Enterprise-Managed Authorization as an operator sets it up: a client created with
//! `clients add --enterprise`, the IdP in the file `--enterprise-idps` reads, and the real
//! binary exchanging the IdP's identity assertion (signed by this test, playing the IdP) for
//! a token that opens the MCP endpoint; an assertion from an IdP not in the file is refused,
//! and `diagnose` says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Server, operator};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth_core::{Clock as _, KeySet, SigningAlgorithm, StoredKey, SystemClock, UnixTime};
use serde_json::{Value, json};

const IDP: &str = "https://idp.example.com/oauth2/default";

struct Idp {
    kid: String,
    key: EncodingKey,
    jwks: Value,
}

fn idp() -> Idp {
    let stored = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
    let jwks = KeySet::load(std::slice::from_ref(&stored), SigningAlgorithm::Es256).unwrap().jwks();
    Idp { kid: stored.kid.clone(), key: EncodingKey::from_ec_der(&stored.private_der), jwks: json!(jwks) }
}

/// An ID-JAG for `sub` at the server `base`, issued by `iss` to `client_id`.
fn id_jag(idp: &Idp, iss: &str, base: &str, client_id: &str, sub: &str) -> String {
    let now = SystemClock.now().as_secs();
    let claims = json!({
        "iss": iss, "sub": sub, "aud": base, "client_id": client_id, "resource": format!("{base}/mcp"),
        "scope": "mcp:tools", "iat": now, "exp": now + 300, "jti": format!("jti-{}", common::nanos()),
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(idp.kid.clone());
    jsonwebtoken::encode(&header, &claims, &idp.key).unwrap()
}

fn printed(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}: ")))
        .map(|v| v.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {field} printed: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_configured_idp_signs_people_in_through_the_binary() {
    // The operator creates the client first, then names it in the IdP file.
    let dir = std::env::temp_dir().join(format!("notes-ema-{}-{}", std::process::id(), common::nanos()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/oauth.db?mode=rwc", dir.display());
    let out = operator(&db, &["clients", "add", "--name", "Enterprise app", "--enterprise"], None);
    let (client_id, secret) = (printed(&out, "client_id"), printed(&out, "client_secret"));
    let idp = idp();
    let file = dir.join("idps.json");
    let config = json!([{ "issuer": IDP, "jwks": idp.jwks, "clients": [client_id], "link_by_email": false }]);
    std::fs::write(&file, config.to_string()).unwrap();
    let server = Server::start_with(
        "enterprise",
        &[("DATABASE_URL", db.as_str()), ("NOTES_ENTERPRISE_IDPS_FILE", file.to_str().unwrap())],
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let meta: Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grants = meta["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&oauth_core::JWT_BEARER_GRANT.into()), "the grant is advertised: {meta}");

    let exchange = |assertion: String| {
        let http = http.clone();
        let (url, id, secret) = (format!("{}/token", server.base_url), client_id.clone(), secret.clone());
        async move {
            let form = [
                ("grant_type", oauth_core::JWT_BEARER_GRANT),
                ("assertion", assertion.as_str()),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ];
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
            let resp = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // The first user of the server is `admin`: the IdP's `sub` names them.
    let (status, tokens) = exchange(id_jag(&idp, IDP, &server.base_url, &client_id, common::USERNAME)).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "the client asks its IdP again: {tokens}");
    let token = tokens["access_token"].as_str().unwrap();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ema","version":"1"}}});
    let resp = http
        .post(&server.mcp_url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the token opens /mcp");

    // The same assertion from an issuer the file does not name.
    let other = "https://elsewhere.example.com";
    let (status, refused) = exchange(id_jag(&idp, other, &server.base_url, &client_id, common::USERNAME)).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "{refused}");
    let attempt = common::diagnose(&server.database_url(), &client_id);
    let events = attempt["events"].as_array().unwrap();
    assert!(
        events.iter().any(
            |e| e["reason"] == "id_jag_untrusted_issuer" && e["detail"].as_str().is_some_and(|d| d.contains(other))
        ),
        "{attempt}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_idp_file_says_what_is_wrong() {
    use notes_server::enterprise_idps_from_json as read;
    let cases = [
        (r#"[{"issuer":"http://idp.example","clients":["a"]}]"#, "must be an https URL"),
        (r#"[{"issuer":"https://idp.example","clients":[]}]"#, "list the client ids"),
        (r#"[{"issuer":"https://idp.example","jwks_uri":"http://idp.example/k","clients":["a"]}]"#, "is not https"),
        (r#"[{"issuer":"https://idp.example","clients":["a"],"typo":1}]"#, "unknown field"),
        (r#"[{"issuer":"https://idp.example","jwks":{"keys":"x"},"clients":["a"]}]"#, "not a JWK set"),
    ];
    for (file, why) in cases {
        let e = read(file.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{file}: {e}");
    }
    let idps = read(br#"[{"issuer":"https://idp.example","clients":["a"],"link_by_email":true}]"#).unwrap();
    assert_eq!(idps[0].keys, oauth_core::IdpKeys::Discover, "no keys given: found from the IdP's metadata");
    assert!(idps[0].link_by_email);
    assert!(read(&vec![b' '; notes_server::MAX_IDP_FILE + 1]).unwrap_err().contains("larger than"));
}
