//! The issuer profiles against tokens shaped like each identity provider's documented default
//! access tokens, signed by a key whose JWKS is served on a loopback socket. Each preset
//! accepts its provider's token and reads the client, the subject and the scopes where the
//! provider puts them; the strict default refuses the same token; and no preset lets a wrong
//! issuer or a wrong audience through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_guard::remote::{IssuerProfile, JwksVerifier, RemoteError};
use mcp_guard::{AuthContext, Caller, Rejection, TokenVerifier};
use oauth_core::testing::sign_jwt;
use oauth_core::{AccessTokenClaims, KeySet, Reason, ResourceUri, SigningAlgorithm, StoredKey, UnixTime, mint};
use serde_json::{Value, json};

const MCP: &str = "https://mcp.example.com/mcp";
const OTHER: &str = "https://other.example.com/mcp";

const KEYCLOAK: &str = "https://sso.example.com/realms/notes";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const API_APP: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
const CLIENT_APP: &str = "0f4a2c11-7b1e-4a0c-9d5e-3c2b1a09f8e7";
const AUTH0: &str = "https://notes.eu.auth0.com/";
const OKTA: &str = "https://dev-123456.okta.com/oauth2/default";

/// An identity provider's signing key and where its JWKS is served.
struct Idp {
    keys: KeySet,
    jwks_uri: String,
}

async fn idp() -> Idp {
    let now = UnixTime::from_secs(now());
    let stored = StoredKey::generate(SigningAlgorithm::Rs256, now).unwrap();
    let keys = KeySet::load(std::slice::from_ref(&stored), SigningAlgorithm::Rs256).unwrap();
    let jwks = serde_json::to_value(keys.jwks()).unwrap();
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_uri = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { keys, jwks_uri }
}

impl Idp {
    async fn verifier(&self, issuer: &str, profile: IssuerProfile) -> JwksVerifier {
        self.try_verifier(issuer, profile).await.unwrap().without_cache()
    }

    async fn try_verifier(&self, issuer: &str, profile: IssuerProfile) -> Result<JwksVerifier, RemoteError> {
        JwksVerifier::new_with(issuer, &ResourceUri::parse(MCP).unwrap(), &self.jwks_uri, profile).await
    }

    fn token(&self, typ: Option<&str>, claims: &Value) -> String {
        sign_jwt(&self.keys, typ, true, claims)
    }

    /// Checks what every preset must do with `claims` (a user's token, header `typ`): the preset
    /// accepts it, the strict default refuses it, and with another `iss` or `aud` the preset
    /// refuses it too, naming the expected value. Returns the accepted caller.
    async fn check(&self, issuer: &str, profile: IssuerProfile, typ: Option<&str>, claims: Value) -> AuthContext {
        let preset = self.verifier(issuer, profile.clone()).await;
        let ctx =
            preset.verify(&self.token(typ, &claims)).await.unwrap_or_else(|r| panic!("{}: {r:?}", profile.name()));
        assert_eq!(&*ctx.issuer, claims["iss"].as_str().unwrap());

        let strict = self.verifier(issuer, IssuerProfile::rfc9068()).await;
        let refused = strict.verify(&self.token(typ, &claims)).await.unwrap_err();
        assert_eq!(refused.reason, Reason::TokenMalformed, "{}: {refused:?}", profile.name());

        let mut forged = claims.clone();
        forged["iss"] = json!("https://evil.example.com/");
        let refused = preset.verify(&self.token(typ, &forged)).await.unwrap_err();
        assert_eq!(refused.reason, Reason::TokenIssuerMismatch, "{}: {refused:?}", profile.name());
        assert!(refused.description.contains(issuer), "{refused:?}");

        let mut elsewhere = claims;
        elsewhere["aud"] = json!([OTHER, "account"]);
        let refused = preset.verify(&self.token(typ, &elsewhere)).await.unwrap_err();
        assert_eq!(refused.reason, Reason::TokenAudienceMismatch, "{}: {refused:?}", profile.name());
        assert!(refused.description.contains(MCP) && refused.description.contains(OTHER), "{refused:?}");
        ctx
    }
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn scopes(ctx: &AuthContext) -> String {
    ctx.scopes.to_string()
}

fn user(ctx: &AuthContext) -> &str {
    match ctx.caller() {
        Caller::User(u) => u.as_str(),
        Caller::Machine(c) => panic!("a person's token was read as machine client {c}'s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_default_tokens() {
    let idp = idp().await;
    let n = now();
    // Keycloak 26's access token for a user: header typ JWT, the client in azp, `scope`, roles,
    // and `aud` of `account` plus the API's client id (Audience Resolve).
    let token = json!({
        "exp": n + 300, "iat": n, "jti": "onrtac:8f0e2c3a-1b5d-4b8e-9a7c-0d2e4f6a8b1c", "iss": KEYCLOAK,
        "aud": ["notes-api", "account"], "sub": "5d3c9a7e-0b41-4c2f-8e6d-1a2b3c4d5e6f", "typ": "Bearer",
        "azp": "mcp-client", "sid": "2b1c", "scope": "openid profile email mcp:tools",
        "realm_access": {"roles": ["default-roles-notes", "offline_access", "notes-admin"]},
        "resource_access": {"notes-api": {"roles": ["writer"]}, "account": {"roles": ["manage-account"]}},
        "preferred_username": "alice", "email_verified": true,
    });
    let profile = IssuerProfile::keycloak().with_audience("notes-api");
    let ctx = idp.check(KEYCLOAK, profile.clone(), Some("JWT"), token.clone()).await;
    assert_eq!((user(&ctx), ctx.client_id.as_str()), ("5d3c9a7e-0b41-4c2f-8e6d-1a2b3c4d5e6f", "mcp-client"));
    assert_eq!(scopes(&ctx), "email mcp:tools openid profile", "roles are not scopes unless configured");
    assert!(ctx.token_id.starts_with("onrtac:"));

    // Roles become scopes only when configured.
    let with_roles = profile.clone().with_keycloak_realm_roles().with_keycloak_client_roles("notes-api");
    let ctx = idp.verifier(KEYCLOAK, with_roles).await.verify(&idp.token(Some("JWT"), &token)).await.unwrap();
    for role in ["notes-admin", "writer", "offline_access"] {
        assert!(ctx.has_scope(role), "{role}: {}", scopes(&ctx));
    }
    assert!(!ctx.has_scope("manage-account"), "another client's roles stay out");

    // Without the configured audience, `account` alone is no audience of this resource.
    let bare = idp.verifier(KEYCLOAK, IssuerProfile::keycloak()).await;
    let refused = bare.verify(&idp.token(Some("JWT"), &token)).await.unwrap_err();
    assert_eq!(refused.reason, Reason::TokenAudienceMismatch);

    // An ID token of the same realm for the same audience is not an access token.
    let mut id_token = token.clone();
    id_token["typ"] = json!("ID");
    let refused = idp.verifier(KEYCLOAK, profile.clone()).await.verify(&idp.token(Some("JWT"), &id_token)).await;
    assert_eq!(refused.unwrap_err().reason, Reason::TokenMalformed);

    // A service account's token (client credentials) is a machine's.
    let service = json!({
        "exp": n + 300, "iat": n, "jti": "trtcc:1c2d", "iss": KEYCLOAK, "aud": "notes-api",
        "sub": "9a8b7c6d-0000-4000-8000-000000000001", "typ": "Bearer", "azp": "nightly-export",
        "scope": "mcp:tools", "preferred_username": "service-account-nightly-export", "client_id": "nightly-export",
    });
    let ctx = idp.verifier(KEYCLOAK, profile).await.verify(&idp.token(Some("JWT"), &service)).await.unwrap();
    assert_eq!(ctx.caller(), Caller::Machine(&ctx.client_id));
    assert_eq!(ctx.subject.as_str(), "client:nightly-export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_v2_tokens() {
    let idp = idp().await;
    let n = now();
    let issuer = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    // A v2.0 token for a user: header typ JWT, aud the API's application id, the client in
    // azp, `scp` a space-separated string, `oid`, `uti`, no jti.
    let token = json!({
        "aud": API_APP, "iss": issuer, "iat": n, "nbf": n, "exp": n + 3600,
        "aio": "AXQAi/8IAAAA", "azp": CLIENT_APP, "azpacr": "0", "name": "Alice Example",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474", "preferred_username": "alice@contoso.example",
        "rh": "I", "scp": "mcp:tools", "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        "tid": TENANT, "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
    });
    let profile = IssuerProfile::entra().with_audience(API_APP).with_scope_prefix(format!("api://{API_APP}/"));
    let ctx = idp.check(&issuer, profile.clone(), Some("JWT"), token.clone()).await;
    assert_eq!((user(&ctx), ctx.client_id.as_str()), ("690222be-ff1a-4d56-abd1-7e4f7d38e474", CLIENT_APP));
    assert_eq!(scopes(&ctx), format!("api://{API_APP}/mcp:tools"));
    assert_eq!(&*ctx.token_id, "fqiBqXLPj0eQa82S-IYFAA");

    // An application's own token (client credentials): `roles`, no `scp`: a machine's, whose
    // roles are scopes only when configured.
    let app = json!({
        "aud": API_APP, "iss": issuer, "iat": n, "nbf": n, "exp": n + 3600, "azp": CLIENT_APP,
        "azpacr": "1", "idtyp": "app", "oid": "1d2c3b4a-0000-4000-8000-00000000aaaa", "roles": ["Notes.Read.All"],
        "sub": "1d2c3b4a-0000-4000-8000-00000000aaaa", "tid": TENANT, "uti": "x", "ver": "2.0",
    });
    let roles = profile.clone().with_roles_claim("roles");
    let ctx = idp.verifier(&issuer, roles).await.verify(&idp.token(Some("JWT"), &app)).await.unwrap();
    assert_eq!(ctx.caller(), Caller::Machine(&ctx.client_id));
    assert_eq!(scopes(&ctx), format!("api://{API_APP}/Notes.Read.All"));

    // v1.0 tokens (`appid`, sts.windows.net, aud `api://…`) only when configured.
    let v1 = json!({
        "aud": format!("api://{API_APP}"), "iss": format!("https://sts.windows.net/{TENANT}/"), "iat": n,
        "nbf": n, "exp": n + 3600, "appid": CLIENT_APP, "appidacr": "0", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "scp": "mcp:tools", "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA", "tid": TENANT, "ver": "1.0",
    });
    let refused = idp.verifier(&issuer, profile.clone()).await.verify(&idp.token(Some("JWT"), &v1)).await.unwrap_err();
    assert_eq!(refused.reason, Reason::TokenIssuerMismatch);
    let v1_profile = profile.clone().with_audience(format!("api://{API_APP}")).with_entra_v1_issuer(true);
    let ctx = idp.verifier(&issuer, v1_profile).await.verify(&idp.token(Some("JWT"), &v1)).await.unwrap();
    assert_eq!((user(&ctx), ctx.client_id.as_str()), ("690222be-ff1a-4d56-abd1-7e4f7d38e474", CLIENT_APP));

    // Configurations that cannot work are refused before any token: no application id as an
    // audience (v2.0 tokens never carry the resource URL), or a multi-tenant issuer.
    let err = idp.try_verifier(&issuer, IssuerProfile::entra()).await.unwrap_err();
    assert!(matches!(err, RemoteError::Config { .. }) && err.to_string().contains("application (client) id"), "{err}");
    let common = "https://login.microsoftonline.com/common/v2.0";
    let err = idp.try_verifier(common, IssuerProfile::entra().with_audience(API_APP)).await.unwrap_err();
    assert!(err.to_string().contains("single-tenant"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_tokens_in_both_token_profiles() {
    let idp = idp().await;
    let n = now();
    // The default token profile: header typ JWT, `azp`, `scope`, aud the API identifier and
    // the tenant's userinfo endpoint, no jti.
    let default = json!({
        "iss": AUTH0, "sub": "auth0|64f1c0ffee", "aud": ["urn:notes-api", "https://notes.eu.auth0.com/userinfo"],
        "iat": n, "exp": n + 86_400, "azp": "Zx9cMcpClient", "scope": "openid profile mcp:tools",
    });
    let profile = IssuerProfile::auth0().with_audience("urn:notes-api");
    let ctx = idp.check(AUTH0, profile.clone(), Some("JWT"), default).await;
    assert_eq!((user(&ctx), ctx.client_id.as_str()), ("auth0|64f1c0ffee", "Zx9cMcpClient"));
    assert_eq!(scopes(&ctx), "mcp:tools openid profile");
    assert!(ctx.token_id.starts_with("sha256:"), "no jti: an id derived from the token");

    // The RFC 9068 token profile: typ at+jwt, `client_id`, `jti`.
    let rfc9068 = json!({
        "iss": AUTH0, "sub": "auth0|64f1c0ffee", "aud": ["urn:notes-api", "https://notes.eu.auth0.com/userinfo"],
        "iat": n, "exp": n + 86_400, "client_id": "Zx9cMcpClient", "jti": "73WakrfVbNJBaAmhQtEeDv",
        "scope": "openid mcp:tools",
    });
    let verifier = idp.verifier(AUTH0, profile.clone()).await;
    let ctx = verifier.verify(&idp.token(Some("at+jwt"), &rfc9068)).await.unwrap();
    assert_eq!((ctx.client_id.as_str(), &*ctx.token_id), ("Zx9cMcpClient", "73WakrfVbNJBaAmhQtEeDv"));

    // Two client claims that disagree are refused.
    let mut both = rfc9068.clone();
    both["azp"] = json!("SomeoneElse");
    assert_eq!(verifier.verify(&idp.token(Some("at+jwt"), &both)).await.unwrap_err().reason, Reason::TokenMalformed);

    // A machine-to-machine application's token.
    let m2m = json!({
        "iss": AUTH0, "sub": "Zx9cExport@clients", "aud": "urn:notes-api", "iat": n, "exp": n + 86_400,
        "azp": "Zx9cExport", "scope": "mcp:tools", "gty": "client-credentials",
    });
    let ctx = verifier.verify(&idp.token(Some("JWT"), &m2m)).await.unwrap();
    assert_eq!(ctx.subject.as_str(), "client:Zx9cExport");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_custom_authorization_server_tokens() {
    let idp = idp().await;
    let n = now();
    // A custom authorization server's token: no typ, `cid`, `uid`, the login in `sub`, `scp`
    // as an array, `jti` starting with `AT.`.
    let token = json!({
        "ver": 1, "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE", "iss": OKTA, "aud": "api://default",
        "sub": "alice@example.com", "iat": n, "exp": n + 3600, "cid": "0oa4dr9kzkykPrLhq0g7",
        "uid": "00ujmkLgagxeRrAg20g3", "scp": ["openid", "mcp:tools"], "auth_time": n - 60,
    });
    let profile = IssuerProfile::okta().with_audience("api://default");
    let ctx = idp.check(OKTA, profile.clone(), None, token.clone()).await;
    assert_eq!((user(&ctx), ctx.client_id.as_str()), ("00ujmkLgagxeRrAg20g3", "0oa4dr9kzkykPrLhq0g7"));
    assert_eq!(scopes(&ctx), "mcp:tools openid");
    let ctx = idp.verifier(OKTA, profile.clone()).await.verify(&idp.token(Some("JWT"), &token)).await.unwrap();
    assert_eq!(user(&ctx), "00ujmkLgagxeRrAg20g3");

    // A service application's token (client credentials): `sub` is the client, no `uid`.
    let service = json!({
        "ver": 1, "jti": "AT.x", "iss": OKTA, "aud": "api://default", "sub": "0oa9export", "iat": n,
        "exp": n + 3600, "cid": "0oa9export", "scp": ["mcp:tools"],
    });
    let ctx = idp.verifier(OKTA, profile).await.verify(&idp.token(None, &service)).await.unwrap();
    assert_eq!(ctx.subject.as_str(), "client:0oa9export");

    // The org authorization server's tokens are Okta's own: its issuer is refused.
    let err = idp.try_verifier("https://dev-123456.okta.com", IssuerProfile::okta()).await.unwrap_err();
    assert!(err.to_string().contains("custom authorization server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rfc9068_profile_reads_the_same_with_or_without_additions() {
    // The strict profile takes the RFC 9068 fast path; with an audience added it takes the
    // profile's path. Both read this project's tokens, a person's and a machine's, the same way.
    let idp = idp().await;
    let issuer = "https://as.example.com";
    let strict = idp.verifier(issuer, IssuerProfile::rfc9068()).await;
    let extended = idp.verifier(issuer, IssuerProfile::rfc9068().with_audience("urn:also")).await;
    let now = UnixTime::from_secs(now());
    let person = AccessTokenClaims::new(issuer, "user-1", MCP, "client-1", "mcp:tools", now, Duration::from_secs(600));
    let mut machine =
        AccessTokenClaims::new(issuer, "client:bot", MCP, "bot", "mcp:tools", now, Duration::from_secs(600));
    machine.machine = true;
    // Another server's client-credentials token: RFC 9068 2.2 names the client in `sub`.
    let foreign = AccessTokenClaims::new(issuer, "bot", MCP, "bot", "mcp:tools", now, Duration::from_secs(600));
    for claims in [person, machine, foreign] {
        let token = mint(&claims, &idp.keys).unwrap();
        let (a, b): (Result<AuthContext, Rejection>, _) = (strict.verify(&token).await, extended.verify(&token).await);
        assert_eq!(a, b, "{claims:?}");
        let ctx = a.unwrap();
        assert_eq!(ctx.is_machine(), claims.client_id == "bot", "{claims:?}");
    }
    // What the strict path refuses, the extended one refuses: an `at+jwt` token without jti.
    let n = now.as_secs();
    let no_jti = json!({"iss": issuer, "sub": "u", "aud": MCP, "exp": n + 60, "iat": n, "client_id": "c"});
    let token = idp.token(Some("at+jwt"), &no_jti);
    assert_eq!(strict.verify(&token).await.unwrap_err().reason, Reason::TokenMalformed);
    assert_eq!(extended.verify(&token).await.unwrap_err().reason, Reason::TokenMalformed);
}
