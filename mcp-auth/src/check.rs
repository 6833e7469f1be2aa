//! `mcp-auth check`: a live deployment seen from outside, exactly as an MCP client discovers
//! it. Each step is a [`Finding`]; a failed one says what a client would do wrong and what to
//! change.
//!
//! The steps, in a client's order: an unauthenticated MCP request must get a 401 whose
//! `WWW-Authenticate` names the protected-resource metadata; that document's `resource` must
//! be the MCP URL and its first authorization server the issuer; the issuer's RFC 8414
//! metadata (path-inserted) must state that same issuer exactly, S256, the code flow and its
//! endpoints; the OpenID configuration, when served, must agree; the JWKS must hold a key;
//! browser clients need CORS on the MCP endpoint with `WWW-Authenticate` exposed.
//!
//! With a list of clients ([`check_with_clients`]), each one's connection is then replayed
//! with its own shapes, up to the sign-in page: see [`crate::replay`] and [`crate::clients`].
//!
//! Requests go through [`oauth_fetch`] configured for operator URLs, as the remote verifiers'
//! do: no proxy, no redirects followed (a redirect is a finding), 10 s per request including
//! DNS, 1 MiB per response; https, or plain http to loopback (a local deployment). Any address
//! may be checked: the deployment is the operator's.

use std::time::Duration;

use oauth_core::well_known_url;
use oauth_fetch::{FetchConfig, Fetcher, HeaderMap, Method, Request};
use serde::Serialize;
use serde_json::Value;

use crate::CliError;
use crate::clients::Profile;
use crate::replay::{ClientReport, Verdict};

/// Largest document read from the deployment.
const MAX_BODY: usize = 1 << 20;
/// Per-request time limit.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The origin the CORS checks present: the MCP Inspector's.
const BROWSER_ORIGIN: &str = "http://localhost:6274";

/// One step of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The step, such as `challenge` or `issuer`.
    pub step: &'static str,
    /// Whether a client gets past it.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// What to change, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every finding about one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The MCP endpoint checked.
    pub mcp_url: String,
    /// The findings, in a client's order.
    pub findings: Vec<Finding>,
    /// Each named client's replay (`--clients`), in the order asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientReport>,
}

impl CheckReport {
    /// Whether every step passed and no client's replay failed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.ok) && self.clients.iter().all(|c| c.verdict != Verdict::Fail)
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut out = format!("checking {} as a client discovers it\n", self.mcp_url);
        for f in &self.findings {
            out.push_str(&format!("  {} {:<18} {}\n", if f.ok { "ok     " } else { "PROBLEM" }, f.step, f.detail));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("          fix: {fix}\n"));
            }
        }
        let failed = self.findings.iter().filter(|f| !f.ok).count();
        if failed == 0 {
            out.push_str("every step passed: clients can discover, register and sign in\n");
        } else {
            out.push_str(&format!("{failed} problem(s): clients will fail at the first one\n"));
        }
        if self.clients.is_empty() {
            return out;
        }
        out.push_str(&format!(
            "\nreplaying {} client(s), each as it connects, up to the sign-in page\n",
            self.clients.len()
        ));
        for c in &self.clients {
            out.push_str(&c.render());
        }
        let count = |v: Verdict| self.clients.iter().filter(|c| c.verdict == v).count();
        let failing: Vec<String> =
            self.clients.iter().filter_map(|c| c.failed_step.as_ref().map(|s| format!("{}: {s}", c.client))).collect();
        out.push_str(&format!(
            "clients: {} pass, {} fail, {} partly replayed{}\n",
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Partial),
            if failing.is_empty() { String::new() } else { format!(" ({})", failing.join("; ")) }
        ));
        out
    }

    fn ok(&mut self, step: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding { step, ok: true, detail: detail.into(), fix: None });
    }

    fn problem(&mut self, step: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding { step, ok: false, detail: detail.into(), fix: Some(fix.into()) });
    }
}

/// The MCP URL for what the operator typed: an origin means `<origin>/mcp`.
pub fn mcp_url_of(public_url: &str) -> Result<String, CliError> {
    let url = url::Url::parse(public_url.trim()).map_err(|e| format!("'{public_url}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("'{public_url}' is not an http(s) URL").into());
    }
    let trimmed = public_url.trim().trim_end_matches('/');
    Ok(if url.path() == "/" { format!("{trimmed}/mcp") } else { trimmed.to_owned() })
}

/// Checks the deployment whose public URL is `public_url`.
pub async fn check(public_url: &str) -> Result<CheckReport, CliError> {
    check_with_clients(public_url, &[]).await
}

/// [`check`], then each of `clients` replayed as it connects ([`crate::replay`]), one after
/// the other.
pub async fn check_with_clients(public_url: &str, clients: &[&'static Profile]) -> Result<CheckReport, CliError> {
    let mcp_url = mcp_url_of(public_url)?;
    let http = Fetcher::new(
        FetchConfig::operator_urls()
            .with_timeout(TIMEOUT)
            .with_max_body(MAX_BODY)
            .with_user_agent(concat!("mcp-auth-check/", env!("CARGO_PKG_VERSION"))),
    );
    let mut report = CheckReport { mcp_url: mcp_url.clone(), findings: Vec::new(), clients: Vec::new() };
    discovery(&http, &mcp_url, &mut report).await;
    for profile in clients {
        report.clients.push(crate::replay::replay(&http, &mcp_url, profile).await);
    }
    Ok(report)
}

/// The generic client's steps.
async fn discovery(http: &Fetcher, mcp_url: &str, report: &mut CheckReport) {
    let Some(prm_url) = challenge(http, mcp_url, report).await else { return };
    preflight(http, mcp_url, report).await;
    let Some(issuer) = protected_resource(http, &prm_url, mcp_url, report).await else { return };
    let Some(metadata) = authorization_server(http, &issuer, report).await else { return };
    openid_configuration(http, &issuer, report).await;
    jwks(http, &metadata, report).await;
}

/// A response, its body read up to [`MAX_BODY`].
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

pub(crate) async fn fetch(http: &Fetcher, req: Request) -> Result<Fetched, String> {
    let resp = http.send(req).await.map_err(|e| e.to_string())?;
    Ok(Fetched { status: resp.status.as_u16(), headers: resp.headers, body: resp.body })
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// GETs a JSON document; a failure becomes a problem of `step`.
async fn json_document(http: &Fetcher, url: &str, step: &'static str, report: &mut CheckReport) -> Option<Value> {
    match fetch(http, Request::get_json(url)).await {
        Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                report.problem(step, format!("{url} is not a JSON object"), "serve the document as JSON");
                None
            }
        },
        Ok(r) if (300..400).contains(&r.status) => {
            report.problem(
                step,
                format!("{url} redirects ({}) to {}", r.status, header(&r.headers, "location")),
                "serve the document at this exact URL: clients do not all follow redirects for discovery",
            );
            None
        }
        Ok(r) => {
            report.problem(step, format!("{url} answered {}", r.status), "serve the document at this URL");
            None
        }
        Err(e) => {
            report.problem(step, format!("{url} could not be fetched: {e}"), "make it reachable from the clients");
            None
        }
    }
}

async fn challenge(http: &Fetcher, mcp_url: &str, report: &mut CheckReport) -> Option<String> {
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-auth-check","version":"1"}}}"#;
    let req = Request::new(Method::POST, mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("origin", BROWSER_ORIGIN)
        .body(initialize);
    let r = match fetch(http, req).await {
        Ok(r) => r,
        Err(e) => {
            report.problem(
                "challenge",
                format!("{mcp_url} could not be reached: {e}"),
                "check the URL, DNS, TLS and that the server runs",
            );
            return None;
        }
    };
    let fallback = well_known_url("oauth-protected-resource", mcp_url);
    if r.status != 401 {
        report.problem(
            "challenge",
            format!("an initialize request without a token answered {}, not 401", r.status),
            "put the guard in front of the MCP endpoint: clients start the OAuth flow only on a 401",
        );
        return None;
    }
    let www = header(&r.headers, "www-authenticate").to_owned();
    let Some(prm_url) = resource_metadata_param(&www) else {
        report.problem(
            "challenge",
            format!("401, but WWW-Authenticate '{www}' names no resource_metadata; clients fall back to {fallback}"),
            "answer 401 with WWW-Authenticate: Bearer resource_metadata=\"<protected-resource metadata URL>\"",
        );
        return Some(fallback);
    };
    report.ok("challenge", format!("401 with resource_metadata=\"{prm_url}\""));
    let exposed = header(&r.headers, "access-control-expose-headers").to_ascii_lowercase();
    if exposed.split(',').any(|h| h.trim() == "www-authenticate" || h.trim() == "*") {
        report.ok("cors-challenge", "WWW-Authenticate is exposed to browser clients");
    } else {
        report.problem(
            "cors-challenge",
            format!("a browser client at {BROWSER_ORIGIN} cannot read WWW-Authenticate (Access-Control-Expose-Headers: '{exposed}')"),
            "expose WWW-Authenticate through CORS on the MCP endpoint (mcp_guard::mcp_cors_layer)",
        );
    }
    Some(prm_url)
}

/// The `resource_metadata` parameter of a Bearer challenge.
fn resource_metadata_param(www: &str) -> Option<String> {
    auth_param(www, "resource_metadata")
}

/// The quoted parameter `name` of a challenge: `name="value"`, at the start or after a space
/// or a comma (so `scope` is not found inside `insufficient_scope`).
pub(crate) fn auth_param(www: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut from = 0;
    while let Some(at) = www[from..].find(&needle).map(|i| i + from) {
        let before = www[..at].chars().next_back();
        if before.is_none_or(|c| c == ' ' || c == ',') {
            let rest = &www[at + needle.len()..];
            return Some(rest[..rest.find('"')?].to_owned());
        }
        from = at + needle.len();
    }
    None
}

async fn preflight(http: &Fetcher, mcp_url: &str, report: &mut CheckReport) {
    let req = Request::new(Method::OPTIONS, mcp_url)
        .header("origin", BROWSER_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, mcp-protocol-version");
    match fetch(http, req).await {
        Ok(r) if (200..300).contains(&r.status) && !header(&r.headers, "access-control-allow-origin").is_empty() => {
            report.ok("cors-preflight", format!("OPTIONS answered {} with Access-Control-Allow-Origin", r.status));
        }
        Ok(r) => report.problem(
            "cors-preflight",
            format!("OPTIONS from {BROWSER_ORIGIN} answered {} without Access-Control-Allow-Origin", r.status),
            "answer CORS preflights before the token check (mcp_guard::mcp_cors_layer outside the guard)",
        ),
        Err(e) => report.problem("cors-preflight", format!("OPTIONS failed: {e}"), "answer CORS preflights"),
    }
}

async fn protected_resource(http: &Fetcher, prm_url: &str, mcp_url: &str, report: &mut CheckReport) -> Option<String> {
    let doc = json_document(http, prm_url, "resource-metadata", report).await?;
    let resource = doc.get("resource").and_then(Value::as_str).unwrap_or_default();
    if resource == mcp_url {
        report.ok("resource-metadata", format!("resource is {resource}"));
    } else if resource.trim_end_matches('/') == mcp_url.trim_end_matches('/') {
        report.problem(
            "resource-metadata",
            format!("resource is '{resource}' but the MCP URL is '{mcp_url}' (a trailing slash)"),
            "make the resource exactly the URL clients are given: tokens carry it as their audience",
        );
    } else {
        report.problem(
            "resource-metadata",
            format!("resource is '{resource}' but the MCP URL is '{mcp_url}'"),
            "the resource must be the MCP endpoint's URL: clients refuse metadata for another resource, and tokens for it fail the audience check",
        );
    }
    let servers: Vec<&str> = doc
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(issuer) = servers.first() else {
        report.problem(
            "authorization-server",
            "the protected-resource metadata lists no authorization_servers",
            "list the authorization server's issuer in authorization_servers",
        );
        return None;
    };
    report.ok("authorization-server", format!("authorization_servers[0] is {issuer}"));
    Some((*issuer).to_owned())
}

async fn authorization_server(http: &Fetcher, issuer: &str, report: &mut CheckReport) -> Option<Value> {
    let url = well_known_url("oauth-authorization-server", issuer);
    if url.is_empty() {
        report.problem("issuer", format!("'{issuer}' is not a URL"), "list the issuer URL in authorization_servers");
        return None;
    }
    let doc = json_document(http, &url, "as-metadata", report).await?;
    report.ok("as-metadata", format!("{url} is served"));
    let stated = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
    if stated == issuer {
        report.ok("issuer", format!("the metadata's issuer is exactly '{issuer}'"));
    } else {
        report.problem(
            "issuer",
            format!("the metadata says issuer '{stated}', the protected-resource metadata '{issuer}'"),
            "use one exact issuer string everywhere (no trailing slash): strict clients (the Python SDK, oauth4webapi) stop here",
        );
    }
    capabilities(&doc, report);
    Some(doc)
}

/// What the authorization server's metadata says it supports, against what MCP clients need.
fn capabilities(doc: &Value, report: &mut CheckReport) {
    let has = |field: &str, value: &str| {
        doc.get(field).and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v.as_str() == Some(value)))
    };
    if has("code_challenge_methods_supported", "S256") {
        report.ok("pkce", "S256 is supported");
    } else {
        report.problem(
            "pkce",
            "code_challenge_methods_supported lacks S256",
            "advertise S256: MCP clients refuse a server without it",
        );
    }
    if has("response_types_supported", "code") {
        report.ok("response-types", "the code flow is supported");
    } else {
        report.problem(
            "response-types",
            "response_types_supported lacks 'code'",
            "advertise response_types_supported: [\"code\"]",
        );
    }
    for field in ["authorization_endpoint", "token_endpoint"] {
        match doc.get(field).and_then(Value::as_str) {
            Some(e) if secure_or_loopback(e) => report.ok("endpoints", format!("{field} {e}")),
            Some(e) => report.problem(
                "endpoints",
                format!("{field} '{e}' is plain http outside loopback"),
                "serve every endpoint over https",
            ),
            None => report.problem("endpoints", format!("the metadata has no {field}"), format!("advertise {field}")),
        }
    }
    match doc.get("registration_endpoint").and_then(Value::as_str) {
        Some(e) => report.ok("registration", format!("dynamic registration at {e}")),
        None if doc.get("client_id_metadata_document_supported").and_then(Value::as_bool) == Some(true) => {
            report.ok("registration", "no dynamic registration; Client ID Metadata Documents are supported")
        }
        None => report.ok("registration", "no dynamic registration: every client needs a pre-registered client id"),
    }
    if doc.get("authorization_response_iss_parameter_supported").and_then(Value::as_bool) != Some(true) {
        report.problem(
            "iss-parameter",
            "authorization_response_iss_parameter_supported is not true",
            "send iss in every authorization response (RFC 9207) and advertise it",
        );
    }
}

async fn openid_configuration(http: &Fetcher, issuer: &str, report: &mut CheckReport) {
    let url = well_known_url("openid-configuration", issuer);
    let Ok(r) = fetch(http, Request::new(Method::GET, url.as_str())).await else { return };
    if r.status != 200 {
        report.ok("openid-config", format!("{url} answered {} (optional)", r.status));
        return;
    }
    let stated = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("issuer").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if stated == issuer {
        report.ok("openid-config", format!("{url} agrees on the issuer"));
    } else {
        report.problem(
            "openid-config",
            format!("{url} says issuer '{stated}', not '{issuer}'"),
            "serve the same issuer in both discovery documents: clients that try OpenID discovery first fail",
        );
    }
}

async fn jwks(http: &Fetcher, metadata: &Value, report: &mut CheckReport) {
    let Some(url) = metadata.get("jwks_uri").and_then(Value::as_str) else {
        report.ok("jwks", "no jwks_uri (only introspection can check tokens)");
        return;
    };
    let Some(doc) = json_document(http, url, "jwks", report).await else { return };
    let keys = doc.get("keys").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    if keys > 0 {
        report.ok("jwks", format!("{keys} key(s) at {url}"));
    } else {
        report.problem(
            "jwks",
            format!("{url} holds no key"),
            "publish the signing keys: resource servers cannot verify tokens",
        );
    }
}

fn secure_or_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            || (u.scheme() == "http"
                && match u.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_url_is_derived_from_an_origin() {
        assert_eq!(mcp_url_of("https://mcp.example.com").unwrap(), "https://mcp.example.com/mcp");
        assert_eq!(mcp_url_of("https://mcp.example.com/").unwrap(), "https://mcp.example.com/mcp");
        assert_eq!(mcp_url_of("https://x.example/api/mcp").unwrap(), "https://x.example/api/mcp");
        assert!(mcp_url_of("ftp://x.example").is_err());
        assert!(mcp_url_of("not a url").is_err());
    }

    #[test]
    fn the_challenge_parameter_is_read() {
        let www = r#"Bearer resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#;
        assert_eq!(
            resource_metadata_param(www).as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(resource_metadata_param("Bearer realm=\"x\""), None);
        assert_eq!(auth_param(www, "scope").as_deref(), Some("mcp:tools"));
        let insufficient = r#"Bearer error="insufficient_scope", scope="a b""#;
        assert_eq!(auth_param(insufficient, "scope").as_deref(), Some("a b"));
        assert_eq!(auth_param(r#"Bearer error_scope="x""#, "scope"), None);
    }

    #[test]
    fn plain_http_is_secure_only_on_loopback() {
        assert!(secure_or_loopback("https://a.example/token"));
        assert!(secure_or_loopback("http://127.0.0.1:8080/token"));
        assert!(secure_or_loopback("http://localhost/token"));
        assert!(secure_or_loopback("http://[::1]:9/token"));
        assert!(!secure_or_loopback("http://a.example/token"));
    }
}
