//! The steps of an OAuth client over HTTP against a running server: registration, the token
//! endpoint, a person's tokens through the real sign-in and consent pages, and an MCP call.

use oauth_core::{CodeChallenge, CodeVerifier};
use serde_json::Value;

use super::Server;

/// A form body (reqwest's `form` feature is not built here).
pub trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }
}

pub async fn json(resp: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

pub async fn register(http: &reqwest::Client, base: &str, body: Value) -> (reqwest::StatusCode, Value) {
    json(http.post(format!("{base}/register")).json(&body).send().await.unwrap()).await
}

pub async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
    json(http.post(format!("{base}/token")).form_body(form).send().await.unwrap()).await
}

pub async fn whoami(http: &reqwest::Client, mcp_url: &str, access_token: &str) -> reqwest::StatusCode {
    http.post(mcp_url)
        .bearer_auth(access_token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
        .status()
}

/// A confidential client registered over DCR and a user's tokens for it, through the real
/// sign-in and consent pages.
pub struct UserTokens {
    pub client_id: String,
    pub client_secret: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// The redirect URI of the clients [`authorized`] registers.
pub const REDIRECT: &str = "https://app.example/cb";

/// A confidential client registered over DCR and the code a person's sign-in and consent
/// gave it, not yet redeemed.
pub struct Authorized {
    pub client_id: String,
    pub client_secret: String,
    pub code: String,
    pub verifier: CodeVerifier,
}

pub async fn authorized(server: &Server, http: &reqwest::Client, name: &str) -> Authorized {
    let (status, reg) = register(
        http,
        &server.base_url,
        serde_json::json!({
            "client_name": name, "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let client_secret = reg["client_secret"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::generate();
    let auth_url = authorize_url(&server.base_url, &client_id, &verifier);
    let location = super::Browser::new().sign_in_and_approve(server, &auth_url).await;
    Authorized { client_id, client_secret, code: code_in(&location), verifier }
}

/// The authorization request of `client_id` at `base`, redirecting to [`REDIRECT`].
pub fn authorize_url(base: &str, client_id: &str, verifier: &CodeVerifier) -> String {
    format!(
        "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=s",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        CodeChallenge::s256(verifier).as_str()
    )
}

/// The `code` of a redirect to the client.
pub fn code_in(location: &str) -> String {
    url::Url::parse(location).unwrap().query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).unwrap()
}

/// `a`'s code presented at the token endpoint of `base`.
pub async fn redeem(http: &reqwest::Client, base: &str, a: &Authorized) -> (reqwest::StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &a.code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", a.verifier.secret()),
        ("client_id", &a.client_id),
        ("client_secret", &a.client_secret),
    ];
    token(http, base, &form).await
}

/// A person's tokens for a new confidential client, through the real pages.
pub async fn user_tokens(server: &Server, http: &reqwest::Client, name: &str) -> UserTokens {
    let a = authorized(server, http, name).await;
    let (status, tokens) = redeem(http, &server.base_url, &a).await;
    assert_eq!(status, 200, "{tokens}");
    UserTokens::of(a, &tokens)
}

impl UserTokens {
    /// The tokens of a token response for `a`'s client.
    pub fn of(a: Authorized, tokens: &Value) -> Self {
        Self {
            client_id: a.client_id,
            client_secret: a.client_secret,
            access_token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// A refresh of `t`'s grant with `refresh_token`, authenticated as `t`'s client.
pub async fn refresh(
    http: &reqwest::Client,
    base: &str,
    t: &UserTokens,
    refresh_token: &str,
) -> (reqwest::StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
    ];
    token(http, base, &form).await
}

/// An HTTP client sending from `ip` (any loopback address: a test has as many sources as it
/// wants), following no redirects.
pub fn from(ip: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A sign-in form a public client's authorization request got: where it posts (a path), the
/// pending request, the CSRF token and the cookie.
pub struct SignInForm {
    pub path: String,
    pub pending: String,
    pub csrf: String,
    pub cookie: String,
}

/// Registers a public client at `base` and opens its sign-in page there.
pub async fn sign_in_form(base: &str) -> SignInForm {
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const LOOPBACK: &str = "http://127.0.0.1:9/callback";
    let http = from(std::net::Ipv4Addr::new(127, 0, 0, 2).into());
    let (status, reg) =
        register(&http, base, serde_json::json!({"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "none"}))
            .await;
    assert_eq!(status, 201, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap();
    let url = format!(
        "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=s",
        url::form_urlencoded::byte_serialize(LOOPBACK.as_bytes()).collect::<String>()
    );
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let page = resp.text().await.unwrap();
    SignInForm {
        path: super::attribute(&page, "action=\""),
        pending: super::attribute(&page, "name=\"pending\" value=\""),
        csrf: super::attribute(&page, "name=\"csrf\" value=\""),
        cookie,
    }
}

/// Posts `form` with the test user's name and `password` to `base`, from `ip`: the status,
/// `Retry-After` and the page.
pub async fn attempt(
    ip: std::net::IpAddr,
    base: &str,
    form: &SignInForm,
    password: &str,
) -> (reqwest::StatusCode, Option<u64>, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("pending", form.pending.as_str()),
            ("csrf", &form.csrf),
            ("username", super::USERNAME),
            ("password", password),
        ])
        .finish();
    let resp = from(ip)
        .post(format!("{base}{}", form.path))
        .header("cookie", &form.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (resp.status(), retry, resp.text().await.unwrap())
}

/// The MCP protocol version the calls below speak.
pub const MCP_PROTOCOL: &str = "2025-06-18";

/// What an MCP endpoint answered a JSON-RPC call.
#[derive(Debug)]
pub struct McpAnswer {
    pub status: reqwest::StatusCode,
    /// The session the server names, if any.
    pub session: Option<String>,
    pub body: String,
}

/// One JSON-RPC call on `session` (none: `initialize`), as a client sends it.
pub async fn mcp(http: &reqwest::Client, url: &str, token: &str, session: Option<&str>, body: Value) -> McpAnswer {
    let mut req = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s).header("mcp-protocol-version", MCP_PROTOCOL);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let session = resp.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    McpAnswer { status, session, body: resp.text().await.unwrap() }
}

/// A new MCP session at `url`, initialized: its id. Panics with the answer when the server
/// opens none.
pub async fn mcp_session(http: &reqwest::Client, url: &str, token: &str) -> String {
    let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":MCP_PROTOCOL,"capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let answer = mcp(http, url, token, None, init).await;
    let session =
        answer.session.unwrap_or_else(|| panic!("no MCP session at {url} ({}): {}", answer.status, answer.body));
    let note = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    mcp(http, url, token, Some(&session), note).await;
    session
}

/// `tools/call` of `tool`, without arguments, on `session`.
pub async fn call_tool(http: &reqwest::Client, url: &str, token: &str, session: &str, tool: &str) -> McpAnswer {
    let call = serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":tool,"arguments":{}}});
    mcp(http, url, token, Some(session), call).await
}
