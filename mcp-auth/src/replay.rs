//! `mcp-auth check --clients`: each named client's connection replayed against a live
//! deployment with that client's shapes ([`crate::clients`]), from the unauthenticated MCP
//! request to the sign-in page. A client passes when the server answers its authorization
//! requests with the sign-in page (a 200 HTML page, or a redirect to a sign-in page) and never
//! sends it back with an error; a failure names the step, what the server answered and the fix.
//!
//! What cannot be replayed without a person signing in (the code exchange, the first MCP call,
//! the refresh) is listed as such in every report, and so is a metadata-document client's
//! document: the server fetches it from the client's site, which the check does not ask it to
//! do; it checks what the server advertises for that path and replays the registration the
//! client falls back to.
//!
//! Registrations made are named `mcp-auth check (<client>)` and deleted with RFC 7592 when the
//! server offers it; otherwise the report says how to remove them.

use std::hash::{BuildHasher as _, Hasher as _};

use oauth_core::{CodeChallenge, CodeVerifier, well_known_url};
use oauth_fetch::{Fetcher, HeaderMap, Method, Request};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::check::{auth_param, fetch, header};
use crate::clients::{
    AuthorizationServerAt, Authorize, Dcr, Grants, MetadataDocument, Profile, RegisteredScope, ResourceCheck,
    ResourceChoice, ResourceMetadataAt, ScopeChoice, codex_callback_id,
};

/// What a browser sends for a top-level navigation.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// One client's replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientReport {
    /// The client's name, as `--clients` takes it.
    pub client: &'static str,
    /// The product.
    pub product: &'static str,
    /// The outcome.
    pub verdict: Verdict,
    /// The first step that failed, such as `authorize: redirect_uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Every step, in the client's order.
    pub steps: Vec<Step>,
    /// The registrations the replay made, and whether they were removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<Registration>,
    /// What this client does that the replay did not exercise, and why.
    pub not_replayed: Vec<String>,
}

/// The outcome of one client's replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Verdict {
    /// Every replayed request reached the sign-in page.
    Pass,
    /// A step failed: the client would not connect.
    Fail,
    /// Nothing failed, but the authorization could not be replayed (a metadata-document
    /// client on a server without dynamic registration).
    Partial,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Partial => "PARTIAL",
        }
    }
}

/// One step of a client's replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Step {
    /// The step, such as `discovery: resource-metadata` or `authorize: scope`.
    pub step: String,
    /// Whether the client gets past it.
    pub ok: bool,
    /// Which of the client's authorization requests, for `authorize` steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'static str>,
    /// What was seen.
    pub detail: String,
    /// The request sent, when it matters (`GET <url>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// What the server answered, for a failed step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// What to change, for a failed step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What the server answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Answer {
    /// The HTTP status; none when nothing came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The OAuth `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The OAuth `error_description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// Where a redirect pointed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A client the replay registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Registration {
    /// The issued client id.
    pub client_id: String,
    /// Whether the replay deleted it again (RFC 7592).
    pub removed: bool,
    /// How it was removed, or how to remove it.
    pub detail: String,
}

impl ClientReport {
    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut out = match &self.failed_step {
            Some(step) => format!("{} ({}): FAIL at {}: {step}\n", self.client, self.product, self.client),
            None => format!("{} ({}): {}\n", self.client, self.product, self.verdict.as_str()),
        };
        for s in &self.steps {
            let variant = s.variant.map(|v| format!(" [{v}]")).unwrap_or_default();
            if s.ok {
                out.push_str(&format!("  ok    {}{variant}: {}\n", s.step, s.detail));
                continue;
            }
            out.push_str(&format!("  FAIL  {}: {}{variant}: {}\n", self.client, s.step, s.detail));
            if let Some(request) = &s.request {
                out.push_str(&format!("        request: {request}\n"));
            }
            if let Some(a) = &s.answer {
                out.push_str(&format!("        answered: {}\n", a.describe()));
            }
            if let Some(fix) = &s.fix {
                out.push_str(&format!("        fix: {fix}\n"));
            }
        }
        for n in &self.not_replayed {
            out.push_str(&format!("  not replayed: {n}\n"));
        }
        for r in &self.registrations {
            out.push_str(&format!("  registration {}: {}\n", r.client_id, r.detail));
        }
        out
    }
}

impl Answer {
    fn status(status: u16) -> Self {
        Self { status: Some(status), ..Self::default() }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.status {
            parts.push(s.to_string());
        }
        if let Some(e) = &self.error {
            parts.push(e.clone());
        }
        let mut out = parts.join(" ");
        if let Some(d) = &self.error_description {
            out.push_str(&format!(": {d}"));
        }
        if let Some(l) = &self.location {
            out.push_str(&format!(" (Location: {l})"));
        }
        out
    }
}

/// Replays `profile` against the MCP endpoint at `mcp_url`.
pub async fn replay(http: &Fetcher, mcp_url: &str, profile: &'static Profile) -> ClientReport {
    let port = random_port(0);
    let mut r = Replay {
        http,
        mcp_url,
        profile,
        port,
        new_port: random_port(port),
        steps: Vec::new(),
        not_replayed: Vec::new(),
        created: Vec::new(),
        partial: false,
    };
    r.run().await;
    let registrations = r.cleanup().await;
    r.not_replayed.push(format!(
        "the sign-in, consent, code exchange, first MCP call and refresh: they need a person signed in (at refresh, {}: {})",
        profile.product, profile.refresh
    ));
    let failed_step = r.steps.iter().find(|s| !s.ok).map(|s| s.step.clone());
    let verdict = match (&failed_step, r.partial) {
        (Some(_), _) => Verdict::Fail,
        (None, true) => Verdict::Partial,
        (None, false) => Verdict::Pass,
    };
    ClientReport {
        client: profile.name,
        product: profile.product,
        verdict,
        failed_step,
        steps: r.steps,
        registrations,
        not_replayed: r.not_replayed,
    }
}

/// The state of one replay.
struct Replay<'a> {
    http: &'a Fetcher,
    mcp_url: &'a str,
    profile: &'static Profile,
    /// The loopback port the client registers with (`{port}`).
    port: u16,
    /// Another ephemeral port (`{new_port}`).
    new_port: u16,
    steps: Vec<Step>,
    not_replayed: Vec<String>,
    created: Vec<Created>,
    partial: bool,
}

/// What discovery found.
struct Discovered {
    /// The 401's `scope`.
    challenge_scope: Option<String>,
    /// The protected-resource metadata.
    resource_metadata: Value,
    /// Its `resource`.
    resource: String,
    /// The authorization server's metadata.
    metadata: Value,
}

/// A registration made by the replay.
struct Created {
    client_id: String,
    /// `registration_client_uri` and `registration_access_token` (RFC 7592), when given.
    management: Option<(String, String)>,
}

/// A JSON document fetched, or why not.
type Document = Result<(Value, HeaderMap), String>;

impl Replay<'_> {
    async fn run(&mut self) {
        let Some(d) = self.discover().await else { return };
        let Some(client_id) = self.register(&d).await else { return };
        for a in self.profile.authorize {
            self.authorize(&d, &client_id, a).await;
        }
        if let Some(origin) = self.profile.browser_origin
            && let Some(token) = d.metadata.get("token_endpoint").and_then(Value::as_str)
        {
            let token = token.to_owned();
            self.preflight("cors: token", &token, origin, "content-type").await;
        }
    }

    // ---- discovery ------------------------------------------------------------------------

    async fn discover(&mut self) -> Option<Discovered> {
        let origin = self.profile.browser_origin;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"mcp-auth check ({})","version":"1"}}}}}}"#,
            self.profile.name
        );
        let mut req = Request::new(Method::POST, self.mcp_url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let request = format!("POST {}", self.mcp_url);
        let r = match fetch(self.http, req).await {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    "discovery: challenge",
                    format!("{} could not be reached: {e}", self.mcp_url),
                    Some(request),
                    None,
                    "check the URL, DNS, TLS and that the server runs",
                );
                return None;
            }
        };
        if r.status != 401 {
            self.fail(
                "discovery: challenge",
                format!("an MCP request without a token answered {}, not 401", r.status),
                Some(request),
                Some(Answer::status(r.status)),
                "put the guard in front of the MCP endpoint: clients start the OAuth flow only on a 401",
            );
            return None;
        }
        let www = header(&r.headers, "www-authenticate").to_owned();
        let pointer = auth_param(&www, "resource_metadata");
        let challenge_scope = auth_param(&www, "scope").filter(|s| !s.trim().is_empty());
        self.ok("discovery: challenge", format!("401 with WWW-Authenticate: {www}"));
        if let Some(o) = origin {
            let exposed = header(&r.headers, "access-control-expose-headers").to_ascii_lowercase();
            if !cors_allows(&r.headers, o) {
                self.fail(
                    "cors: mcp",
                    format!("the 401 carries no Access-Control-Allow-Origin for {o}: the browser hides it"),
                    None,
                    Some(Answer::status(r.status)),
                    "answer CORS on the MCP endpoint (mcp_guard::mcp_cors_layer outside the guard)",
                );
            } else if !exposed.split(',').any(|h| matches!(h.trim(), "www-authenticate" | "*")) {
                self.fail(
                    "cors: mcp",
                    format!("WWW-Authenticate is not exposed to {o} (Access-Control-Expose-Headers: '{exposed}')"),
                    None,
                    Some(Answer::status(r.status)),
                    "expose WWW-Authenticate through CORS on the MCP endpoint (mcp_guard::mcp_cors_layer)",
                );
            }
            let mcp = self.mcp_url.to_owned();
            self.preflight("cors: mcp", &mcp, o, "authorization, content-type, mcp-protocol-version").await;
        }

        let candidates = resource_metadata_urls(self.profile.discovery.resource_metadata, self.mcp_url, pointer);
        let (used, resource_metadata) = self.first_document("discovery: resource-metadata", &candidates).await?;
        let resource = resource_metadata.get("resource").and_then(Value::as_str).unwrap_or_default().to_owned();
        match resource_refusal(self.profile.discovery.resource_check, &resource, self.mcp_url) {
            Some(why) => {
                self.fail(
                    "discovery: resource",
                    format!("{why} ({used}); {} refuses metadata for another resource", self.profile.product),
                    Some(format!("GET {used}")),
                    None,
                    format!(
                        "make the protected-resource metadata's resource exactly the MCP URL clients are given ('{}')",
                        self.mcp_url
                    ),
                );
                return None;
            }
            None => self.ok("discovery: resource", format!("resource '{resource}' from {used}")),
        }
        let Some(issuer) = resource_metadata
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            self.fail(
                "discovery: authorization-server",
                format!("{used} lists no authorization_servers"),
                Some(format!("GET {used}")),
                None,
                "list the authorization server's issuer in authorization_servers",
            );
            return None;
        };

        let candidates = authorization_server_urls(self.profile.discovery.authorization_server, &issuer);
        let (used, metadata) = self.first_document("discovery: as-metadata", &candidates).await?;
        let has = |field: &str, value: &str| {
            metadata.get(field).and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v.as_str() == Some(value)))
        };
        if !has("code_challenge_methods_supported", "S256") {
            self.fail(
                "discovery: pkce",
                format!("{used} does not list S256 in code_challenge_methods_supported: MCP clients refuse the server"),
                Some(format!("GET {used}")),
                None,
                "advertise code_challenge_methods_supported: [\"S256\"] and require PKCE with S256",
            );
            return None;
        }
        if metadata.get("authorization_endpoint").and_then(Value::as_str).is_none() {
            self.fail(
                "discovery: as-metadata",
                format!("{used} names no authorization_endpoint"),
                Some(format!("GET {used}")),
                None,
                "advertise authorization_endpoint",
            );
            return None;
        }
        self.ok("discovery: as-metadata", format!("issuer {issuer}, metadata from {used}, S256 supported"));
        Some(Discovered { challenge_scope, resource_metadata, resource, metadata })
    }

    /// The first of `urls` that answers a JSON object; a failure of `step` when none does.
    async fn first_document(&mut self, step: &'static str, urls: &[String]) -> Option<(String, Value)> {
        let mut tried = Vec::new();
        for url in urls {
            match self.document(url).await {
                Ok((doc, headers)) => {
                    if let Some(o) = self.profile.browser_origin
                        && !cors_allows(&headers, o)
                    {
                        self.fail(
                            "cors: metadata",
                            format!("{url} carries no Access-Control-Allow-Origin for {o}: the browser cannot read it"),
                            Some(format!("GET {url}")),
                            None,
                            "answer CORS on the discovery documents (oauth-axum does; a proxy in front must not strip it)",
                        );
                        return None;
                    }
                    return Some((url.clone(), doc));
                }
                Err(why) => tried.push(format!("{url} {why}")),
            }
        }
        let first = urls.first().cloned().unwrap_or_default();
        self.fail(
            step,
            format!("{} tries {} and none is a JSON document: {}", self.profile.product, urls.len(), tried.join("; ")),
            Some(format!("GET {first}")),
            None,
            format!("serve the document at {first}, the first URL this client tries"),
        );
        None
    }

    async fn document(&self, url: &str) -> Document {
        let mut req = Request::get_json(url);
        if let Some(o) = self.profile.browser_origin {
            req = req.header("origin", o);
        }
        let r = fetch(self.http, req).await.map_err(|e| format!("could not be fetched ({e})"))?;
        if r.status != 200 {
            let location = header(&r.headers, "location");
            return Err(if location.is_empty() {
                format!("answered {}", r.status)
            } else {
                format!("answered {} to {location} (not followed)", r.status)
            });
        }
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) if v.is_object() => Ok((v, r.headers)),
            _ => Err("answered 200 without a JSON object".into()),
        }
    }

    // ---- registration ---------------------------------------------------------------------

    /// Identifies the client as it would: its metadata document when the server offers one
    /// (checked, not fetched), and its dynamic registration. Returns the client id the
    /// authorization requests use.
    async fn register(&mut self, d: &Discovered) -> Option<String> {
        let uses_document = match self.profile.metadata_document {
            Some(doc) => self.metadata_document(d, doc),
            None => false,
        };
        let Some(dcr) = self.profile.registration else {
            self.partial = true;
            self.not_replayed
                .push("the authorization: this client identifies itself only with its metadata document".into());
            return None;
        };
        let Some(endpoint) = d.metadata.get("registration_endpoint").and_then(Value::as_str).map(str::to_owned) else {
            if uses_document {
                self.partial = true;
                self.not_replayed.push(
                    "the authorization: the server offers no dynamic registration, and the client's own metadata document cannot be used from here"
                        .into(),
                );
            } else {
                self.fail(
                    "register",
                    "the authorization server advertises no registration_endpoint, and this client has no other way to identify itself here",
                    None,
                    None,
                    format!(
                        "turn on dynamic client registration, or pre-register the client: mcp-auth clients add --name '{}' --redirect-uri <its callback>",
                        self.profile.product
                    ),
                );
            }
            return None;
        };
        if let Some(o) = self.profile.browser_origin
            && !self.preflight("cors: register", &endpoint, o, "content-type").await
        {
            return None;
        }
        let body = self.registration_body(d, &dcr);
        let mut req = Request::new(Method::POST, endpoint.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_string());
        if let Some(o) = self.profile.browser_origin {
            req = req.header("origin", o);
        }
        let request = format!("POST {endpoint} {body}");
        let r = match fetch(self.http, req).await {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    "register",
                    format!("{endpoint} could not be reached: {e}"),
                    Some(request),
                    None,
                    "make the registration endpoint reachable",
                );
                return None;
            }
        };
        let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if !matches!(r.status, 200 | 201) {
            let answer = oauth_answer(r.status, &json);
            let (step, fix) = registration_failure(r.status, &answer, &dcr);
            self.fail(step, "the registration was refused", Some(request), Some(answer), fix);
            return None;
        }
        let Some(client_id) = json.get("client_id").and_then(Value::as_str).map(str::to_owned) else {
            self.fail(
                "register: response",
                format!("{} answered {} without a client_id", endpoint, r.status),
                Some(request),
                Some(Answer::status(r.status)),
                "answer 201 with the registered client's metadata and its client_id (RFC 7591 3.2.1)",
            );
            return None;
        };
        let management = match (
            json.get("registration_client_uri").and_then(Value::as_str),
            json.get("registration_access_token").and_then(Value::as_str),
        ) {
            (Some(uri), Some(token)) => Some((uri.to_owned(), token.to_owned())),
            _ => None,
        };
        self.created.push(Created { client_id: client_id.clone(), management });
        if let Some(o) = self.profile.browser_origin
            && !cors_allows(&r.headers, o)
        {
            self.fail(
                "cors: register",
                format!("the registration response carries no Access-Control-Allow-Origin for {o}"),
                Some(request),
                Some(Answer::status(r.status)),
                "answer CORS on the registration endpoint",
            );
            return None;
        }
        let granted = json.get("token_endpoint_auth_method").and_then(Value::as_str);
        if let Some(asked) = dcr.token_endpoint_auth_method {
            let secret = json.get("client_secret").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            let wrong = granted.is_some_and(|g| g != asked) || (asked.starts_with("client_secret") && !secret);
            if wrong {
                self.fail(
                    "register: token_endpoint_auth_method",
                    format!(
                        "asked for {asked}, granted {}{}",
                        granted.unwrap_or("(not stated)"),
                        if secret { "" } else { " without a client_secret" }
                    ),
                    Some(request),
                    Some(Answer::status(r.status)),
                    format!(
                        "grant {asked} as asked ({} authenticates at the token endpoint that way)",
                        self.profile.product
                    ),
                );
                return None;
            }
        }
        if json.get("redirect_uris").and_then(Value::as_array).is_none() {
            self.fail(
                "register: response",
                "the registration response does not echo redirect_uris",
                Some(request),
                Some(Answer::status(r.status)),
                "answer with the full registered metadata, redirect_uris included (RFC 7591 3.2.1); the TypeScript SDK refuses a response without them",
            );
            return None;
        }
        self.ok(
            "register",
            format!(
                "{} {client_id}, token_endpoint_auth_method {}, redirect URIs {}",
                r.status,
                granted.unwrap_or("(not stated)"),
                json["redirect_uris"]
            ),
        );
        Some(client_id)
    }

    /// The metadata-document path: whether the client would take it, and whether the server
    /// offers what the document declares. The document itself is not fetched.
    fn metadata_document(&mut self, d: &Discovered, doc: MetadataDocument) -> bool {
        let supported = d.metadata.get("client_id_metadata_document_supported").and_then(Value::as_bool) == Some(true);
        // RFC 8414 2: absent means client_secret_basic only.
        let methods: Vec<&str> = d
            .metadata
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_else(|| vec!["client_secret_basic"]);
        let where_ = doc.url.map(|u| format!(" ({u})")).unwrap_or_default();
        if !supported {
            self.ok(
                "metadata-document",
                "the server does not advertise client_id_metadata_document_supported: the client registers dynamically",
            );
            return false;
        }
        if doc.only_with_none && !methods.contains(&"none") {
            self.ok(
                "metadata-document",
                format!(
                    "metadata documents are advertised, but 'none' is not among token_endpoint_auth_methods_supported ({}): the client registers dynamically",
                    methods.join(", ")
                ),
            );
            return false;
        }
        let declared: Vec<&str> =
            std::iter::once(doc.auth_method).chain(doc.fallback_auth_methods.iter().copied()).collect();
        let Some(usable) = declared.iter().find(|m| methods.contains(m)) else {
            self.fail(
                "metadata-document: token_endpoint_auth_methods_supported",
                format!(
                    "the document{where_} declares {} but the server offers only {}: it would refuse the document",
                    declared.join(", falling back to "),
                    methods.join(", ")
                ),
                None,
                None,
                "offer what the document declares: 'none' for public clients, or turn private_key_jwt on (ServerConfig::with_private_key_jwt; NOTES_PRIVATE_KEY_JWT in the example)",
            );
            return true;
        };
        self.ok(
            "metadata-document",
            format!(
                "the server advertises client_id_metadata_document_supported and offers {usable} (the document declares {}): {} sends its document URL{where_} as client_id",
                declared.join(", falling back to "),
                self.profile.product
            ),
        );
        self.not_replayed.push(format!(
            "the metadata-document path: the server fetches {}'s document{where_} from the client's site, which this check does not ask it to do; replayed instead: the dynamic registration the client uses where documents are not offered",
            self.profile.product
        ));
        true
    }

    fn registration_body(&self, d: &Discovered, dcr: &Dcr) -> Value {
        let mut body = Map::new();
        body.insert("client_name".into(), format!("mcp-auth check ({})", self.profile.name).into());
        body.insert(
            "redirect_uris".into(),
            Value::Array(dcr.redirect_uris.iter().map(|u| Value::from(self.fill(u))).collect()),
        );
        let grants: Vec<&str> = match dcr.grant_types {
            Grants::Fixed(list) => list.to_vec(),
            Grants::SupportedOf(list) => match d.metadata.get("grant_types_supported").and_then(Value::as_array) {
                Some(supported) => {
                    list.iter().copied().filter(|g| supported.iter().any(|s| s.as_str() == Some(g))).collect()
                }
                None => list.to_vec(),
            },
        };
        body.insert("grant_types".into(), grants.into());
        if let Some(types) = dcr.response_types {
            body.insert("response_types".into(), types.to_vec().into());
        }
        if let Some(method) = dcr.token_endpoint_auth_method {
            body.insert("token_endpoint_auth_method".into(), method.into());
        }
        if let Some(app) = dcr.application_type {
            body.insert("application_type".into(), app.into());
        }
        if let Some(uri) = dcr.client_uri {
            body.insert("client_uri".into(), uri.into());
        }
        let scope = match dcr.scope {
            RegisteredScope::Omitted => None,
            RegisteredScope::Discovered => self.scope(d, ScopeChoice::Discovered, false),
            RegisteredScope::AuthorizationServer => {
                Some(self.scope(d, ScopeChoice::AuthorizationServer, false).unwrap_or_default())
            }
        };
        if let Some(scope) = scope {
            body.insert("scope".into(), scope.into());
        }
        Value::Object(body)
    }

    // ---- authorization --------------------------------------------------------------------

    async fn authorize(&mut self, d: &Discovered, client_id: &str, a: &'static Authorize) {
        let endpoint = d.metadata.get("authorization_endpoint").and_then(Value::as_str).unwrap_or_default().to_owned();
        let redirect_uri = self.fill(a.redirect_uri);
        let verifier = CodeVerifier::generate();
        let challenge = CodeChallenge::s256(&verifier);
        let state = CodeVerifier::generate();
        let mut params: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", client_id.to_owned()),
            ("redirect_uri", redirect_uri.clone()),
        ];
        if let Some(scope) = self.scope(d, a.scope, a.offline_access) {
            params.push(("scope", scope));
        }
        params.push(("state", state.secret().to_owned()));
        params.push(("code_challenge", challenge.as_str().to_owned()));
        params.push(("code_challenge_method", "S256".into()));
        if let Some(resource) = self.resource(d, a.resource) {
            params.push(("resource", resource));
        }
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let url = format!("{endpoint}{}{query}", if endpoint.contains('?') { '&' } else { '?' });
        let request = format!("GET {url}");
        let r = match fetch(self.http, Request::new(Method::GET, url.as_str()).header("accept", BROWSER_ACCEPT)).await {
            Ok(r) => r,
            Err(e) => {
                self.fail_variant(
                    a,
                    "authorize",
                    format!("{endpoint} could not be reached: {e}"),
                    request,
                    Answer::default(),
                    "make the authorization endpoint reachable from the user's browser".into(),
                );
                return;
            }
        };
        let content_type = header(&r.headers, "content-type").to_ascii_lowercase();
        match r.status {
            200 if content_type.starts_with("text/html") => {
                let title = page_title(&r.body).map(|t| format!(" '{t}'")).unwrap_or_default();
                self.ok_variant(a, format!("200 HTML sign-in page{title} for redirect_uri {redirect_uri}"));
            }
            200 => self.fail_variant(
                a,
                "authorize: sign-in page",
                format!("200 with content-type '{content_type}', not an HTML page"),
                request,
                Answer::status(200),
                "answer an authorization request with the sign-in page".into(),
            ),
            300..=399 => {
                let location = resolve(&endpoint, header(&r.headers, "location"));
                self.redirected(a, &endpoint, &redirect_uri, &location, r.status, request);
            }
            status => {
                let mut answer = oauth_answer(status, &serde_json::from_slice(&r.body).unwrap_or(Value::Null));
                if answer.error.is_none() {
                    // A page for the user: the same request, asking for JSON, says which error.
                    let again = Request::new(Method::GET, url.as_str()).header("accept", "application/json");
                    if let Ok(j) = fetch(self.http, again).await
                        && let Ok(v) = serde_json::from_slice::<Value>(&j.body)
                        && v.get("error").is_some()
                    {
                        answer = oauth_answer(status, &v);
                    } else {
                        answer.error_description = page_title(&r.body);
                    }
                }
                let (step, fix) = authorize_failure(status, &answer, &redirect_uri);
                let detail = "refused with a page to the user, not a redirect".to_owned();
                self.fail_variant(a, step, detail, request, answer, fix);
            }
        }
    }

    /// A 3xx from the authorization endpoint: back to the client (with an error, or with a
    /// code nobody approved), or on to a sign-in page.
    fn redirected(
        &mut self,
        a: &'static Authorize,
        endpoint: &str,
        redirect_uri: &str,
        location: &str,
        status: u16,
        request: String,
    ) {
        let pairs: Vec<(String, String)> = url::Url::parse(location)
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default();
        let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let to_client = same_target(location, redirect_uri)
            || (param("error").is_some() && origin_of(location) != origin_of(endpoint));
        if !to_client {
            let detail = if origin_of(location) == origin_of(endpoint) {
                format!("{status} to its sign-in page {location}")
            } else {
                format!("{status} to a sign-in page at {} (an upstream identity provider)", origin_of(location))
            };
            self.ok_variant(a, detail);
            return;
        }
        let answer = Answer {
            status: Some(status),
            error: param("error"),
            error_description: param("error_description"),
            location: Some(location.to_owned()),
        };
        if answer.error.is_some() {
            let (step, fix) = authorize_failure(status, &answer, redirect_uri);
            let detail = "redirected back to the client with an error".to_owned();
            self.fail_variant(a, step, detail, request, answer, fix);
        } else if param("code").is_some() {
            self.fail_variant(
                a,
                "authorize: sign-in",
                "redirected back to the client with a code, before anyone signed in".into(),
                request,
                answer,
                "issue a code only after a person signs in (and consents, unless the operator trusts the client)"
                    .into(),
            );
        } else {
            self.fail_variant(
                a,
                "authorize",
                "redirected back to the client with neither a code nor an error".into(),
                request,
                answer,
                "show the sign-in page".into(),
            );
        }
    }

    // ---- parameters -----------------------------------------------------------------------

    fn fill(&self, template: &str) -> String {
        template
            .replace("{port}", &self.port.to_string())
            .replace("{new_port}", &self.new_port.to_string())
            .replace("{callback_id}", &codex_callback_id(self.mcp_url))
    }

    fn scope(&self, d: &Discovered, choice: ScopeChoice, offline_access: bool) -> Option<String> {
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let mut scopes = match choice {
            ScopeChoice::Discovered => match &d.challenge_scope {
                Some(s) => words(s),
                None => strings(&d.resource_metadata, "scopes_supported"),
            },
            ScopeChoice::AuthorizationServer => strings(&d.metadata, "scopes_supported"),
            ScopeChoice::Fixed(s) => words(s),
            ScopeChoice::Omitted => return None,
        };
        if offline_access
            && !scopes.is_empty()
            && !scopes.iter().any(|s| s == "offline_access")
            && strings(&d.metadata, "scopes_supported").iter().any(|s| s == "offline_access")
        {
            scopes.push("offline_access".into());
        }
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }

    fn resource(&self, d: &Discovered, choice: ResourceChoice) -> Option<String> {
        match choice {
            ResourceChoice::Metadata => Some(d.resource.clone()),
            ResourceChoice::ServerUrl => Some(without_query(self.mcp_url)),
            ResourceChoice::TrailingSlash => Some(format!("{}/", d.resource.trim_end_matches('/'))),
            ResourceChoice::BareOrigin => Some(origin_of(self.mcp_url)),
            ResourceChoice::Omitted => None,
        }
    }

    // ---- CORS -----------------------------------------------------------------------------

    /// A browser's preflight of a POST to `url`; a failure of `step` when it is not allowed.
    async fn preflight(&mut self, step: &'static str, url: &str, origin: &str, headers: &str) -> bool {
        let req = Request::new(Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers);
        let request = format!("OPTIONS {url} (Origin: {origin}, Access-Control-Request-Headers: {headers})");
        let fix = "answer CORS preflights on the endpoint before any authentication (oauth-axum's CORS; mcp_guard::mcp_cors_layer outside the guard)";
        match fetch(self.http, req).await {
            Ok(r) if (200..300).contains(&r.status) && cors_allows(&r.headers, origin) => {
                self.ok(step, format!("preflight from {origin} to {url} answered {}", r.status));
                true
            }
            Ok(r) => {
                self.fail(
                    step,
                    format!("the preflight from {origin} answered {} without allowing it", r.status),
                    Some(request),
                    Some(Answer::status(r.status)),
                    fix,
                );
                false
            }
            Err(e) => {
                self.fail(step, format!("the preflight failed: {e}"), Some(request), None, fix);
                false
            }
        }
    }

    // ---- cleanup --------------------------------------------------------------------------

    /// Deletes the registrations made, with RFC 7592 where the server offered it.
    async fn cleanup(&mut self) -> Vec<Registration> {
        let mut out = Vec::new();
        for c in std::mem::take(&mut self.created) {
            let by_hand = format!("remove it with `mcp-auth clients remove {}`", c.client_id);
            let (removed, detail) = match &c.management {
                Some((uri, token)) => {
                    let req =
                        Request::new(Method::DELETE, uri.as_str()).header("authorization", format!("Bearer {token}"));
                    match fetch(self.http, req).await {
                        Ok(r) if matches!(r.status, 200 | 204) => {
                            (true, format!("deleted with RFC 7592 (DELETE {uri} answered {})", r.status))
                        }
                        Ok(r) => (false, format!("DELETE {uri} (RFC 7592) answered {}; {by_hand}", r.status)),
                        Err(e) => (false, format!("DELETE {uri} (RFC 7592) failed: {e}; {by_hand}")),
                    }
                }
                None => (
                    false,
                    format!(
                        "the server offers no RFC 7592 management for it (no registration_access_token); {by_hand} (the server also sweeps unused dynamic registrations)"
                    ),
                ),
            };
            out.push(Registration { client_id: c.client_id, removed, detail });
        }
        out
    }

    // ---- findings -------------------------------------------------------------------------

    fn ok(&mut self, step: &str, detail: impl Into<String>) {
        self.steps.push(Step {
            step: step.to_owned(),
            ok: true,
            variant: None,
            detail: detail.into(),
            request: None,
            answer: None,
            fix: None,
        });
    }

    fn ok_variant(&mut self, a: &'static Authorize, detail: String) {
        self.steps.push(Step {
            step: "authorize".into(),
            ok: true,
            variant: Some(a.label),
            detail,
            request: None,
            answer: None,
            fix: None,
        });
    }

    fn fail(
        &mut self,
        step: &str,
        detail: impl Into<String>,
        request: Option<String>,
        answer: Option<Answer>,
        fix: impl Into<String>,
    ) {
        self.steps.push(Step {
            step: step.to_owned(),
            ok: false,
            variant: None,
            detail: detail.into(),
            request,
            answer,
            fix: Some(fix.into()),
        });
    }

    fn fail_variant(
        &mut self,
        a: &'static Authorize,
        step: &str,
        detail: String,
        request: String,
        answer: Answer,
        fix: String,
    ) {
        self.steps.push(Step {
            step: step.to_owned(),
            ok: false,
            variant: Some(a.label),
            detail,
            request: Some(request),
            answer: Some(answer),
            fix: Some(fix),
        });
    }
}

// ---- well-known URLs ------------------------------------------------------------------------

/// The protected-resource metadata URLs a client tries, in its order, each once.
fn resource_metadata_urls(order: &[ResourceMetadataAt], mcp_url: &str, pointer: Option<String>) -> Vec<String> {
    const DOC: &str = "oauth-protected-resource";
    let mut out: Vec<String> = Vec::new();
    for at in order {
        let url = match at {
            ResourceMetadataAt::Challenge => pointer.clone(),
            ResourceMetadataAt::PathInserted => Some(well_known_url(DOC, mcp_url)),
            ResourceMetadataAt::PathAppended => Some(appended(DOC, mcp_url)),
            ResourceMetadataAt::Root => Some(format!("{}/.well-known/{DOC}", origin_of(mcp_url))),
        };
        if let Some(url) = url.filter(|u| !u.is_empty())
            && !out.contains(&url)
        {
            out.push(url);
        }
    }
    out
}

/// The authorization-server metadata URLs a client tries for `issuer`, in its order, each once.
fn authorization_server_urls(order: &[AuthorizationServerAt], issuer: &str) -> Vec<String> {
    const OAUTH: &str = "oauth-authorization-server";
    const OPENID: &str = "openid-configuration";
    let mut out: Vec<String> = Vec::new();
    for at in order {
        let url = match at {
            AuthorizationServerAt::OAuthPathInserted => well_known_url(OAUTH, issuer),
            AuthorizationServerAt::OpenIdPathInserted => well_known_url(OPENID, issuer),
            AuthorizationServerAt::OpenIdPathAppended => appended(OPENID, issuer),
            AuthorizationServerAt::OAuthRoot => format!("{}/.well-known/{OAUTH}", origin_of(issuer)),
            AuthorizationServerAt::OpenIdRoot => format!("{}/.well-known/{OPENID}", origin_of(issuer)),
        };
        if !url.is_empty() && !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

/// `<identifier>/.well-known/<doc>`, the identifier's path kept.
fn appended(doc: &str, identifier: &str) -> String {
    match url::Url::parse(identifier) {
        Ok(_) => format!("{}/.well-known/{doc}", without_query(identifier).trim_end_matches('/')),
        Err(_) => String::new(),
    }
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

fn without_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// Why a client with `check` refuses the protected-resource metadata's `resource`, if it does.
fn resource_refusal(check: ResourceCheck, resource: &str, mcp_url: &str) -> Option<String> {
    if check == ResourceCheck::Unchecked {
        return None;
    }
    let (Ok(r), Ok(m)) = (url::Url::parse(resource), url::Url::parse(&without_query(mcp_url))) else {
        return Some(format!("the metadata's resource '{resource}' is not a URL"));
    };
    match check {
        ResourceCheck::Exact if r.as_str() != m.as_str() => {
            Some(format!("the metadata's resource '{resource}' is not the server URL '{mcp_url}'"))
        }
        ResourceCheck::SameOriginPrefix => {
            let slash = |p: &str| if p.ends_with('/') { p.to_owned() } else { format!("{p}/") };
            let allowed = r.origin() == m.origin() && slash(m.path()).starts_with(&slash(r.path()));
            (!allowed)
                .then(|| format!("the metadata's resource '{resource}' does not cover the server URL '{mcp_url}'"))
        }
        _ => None,
    }
}

// ---- answers --------------------------------------------------------------------------------

fn cors_allows(headers: &HeaderMap, origin: &str) -> bool {
    let allowed = header(headers, "access-control-allow-origin");
    allowed == "*" || allowed == origin
}

fn strings(doc: &Value, field: &str) -> Vec<String> {
    doc.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn oauth_answer(status: u16, json: &Value) -> Answer {
    let text = |f: &str| json.get(f).and_then(Value::as_str).map(|s| s.chars().take(512).collect());
    Answer { status: Some(status), error: text("error"), error_description: text("error_description"), location: None }
}

/// A page's `<title>`, for an answer that is a page.
fn page_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<title>")? + "<title>".len();
    let end = text[start..].find("</title>")? + start;
    Some(text[start..end].trim().chars().take(200).collect())
}

/// `location` made absolute against `base`.
fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base).and_then(|b| b.join(location)).map(|u| u.to_string()).unwrap_or_else(|_| location.to_owned())
}

/// Whether `location` goes to `redirect_uri` (the same URL before the query).
fn same_target(location: &str, redirect_uri: &str) -> bool {
    let base = |s: &str| s.split(['?', '#']).next().unwrap_or_default().to_owned();
    base(location) == base(redirect_uri)
        || match (url::Url::parse(location), url::Url::parse(redirect_uri)) {
            (Ok(l), Ok(r)) => {
                l.scheme() == r.scheme() && l.host_str() == r.host_str() && l.port() == r.port() && l.path() == r.path()
            }
            _ => false,
        }
}

/// The step and the fix for a refused registration.
fn registration_failure(status: u16, a: &Answer, dcr: &Dcr) -> (&'static str, String) {
    let description = a.error_description.as_deref().unwrap_or_default().to_ascii_lowercase();
    if status == 429 {
        return (
            "register: rate limit",
            "the server's registration rate limit refused the replay: run it again later, or fewer clients at once"
                .into(),
        );
    }
    match a.error.as_deref() {
        Some("invalid_redirect_uri") => {
            let fix = if description.contains("private-use") || description.contains("scheme") {
                "allow the client's private-use scheme in the redirect policy (the example's --redirect-scheme; RedirectPolicy::with_private_use_schemes); it then matches exactly".to_owned()
            } else if description.contains("loopback") || description.contains("127.0.0.1") || description.contains("localhost") {
                "accept loopback redirects for native clients on any port (RFC 8252 7.3); application_type 'native' allows them".to_owned()
            } else {
                format!("accept the redirect URIs this client registers: {}", dcr.redirect_uris.join(", "))
            };
            ("register: redirect_uris", fix)
        }
        Some("invalid_client_metadata") => (
            "register: client metadata",
            "accept the client's registration as it sends it (RFC 7591 3.2.2 lets the server replace or drop values it does not support instead of refusing them)".into(),
        ),
        _ if status == 404 || status == 405 => (
            "register",
            "serve dynamic client registration at the advertised registration_endpoint, or stop advertising it".into(),
        ),
        _ => ("register", "answer a registration with 201 and the registered metadata, or a JSON RFC 7591 error saying what to change".into()),
    }
}

/// The step and the fix for a refused authorization request.
fn authorize_failure(status: u16, a: &Answer, redirect_uri: &str) -> (&'static str, String) {
    if status == 429 {
        return (
            "authorize: rate limit",
            "the server's /authorize rate limit refused the replay: run it again later, or fewer clients at once"
                .into(),
        );
    }
    let description = a.error_description.as_deref().unwrap_or_default().to_ascii_lowercase();
    match a.error.as_deref() {
        Some("invalid_scope") => (
            "authorize: scope",
            "the scope policy: drop requested scopes the server does not know (RFC 6749 3.3 lets it grant less), and when none is known (Claude's scope=claudeai, VS Code's openid profile email) grant the default scopes instead of invalid_scope".into(),
        ),
        Some("invalid_target") => (
            "authorize: resource",
            "the resource policy: bind an omitted resource, one with a trailing slash and the bare origin to the canonical resource; refuse only a resource the server does not protect".into(),
        ),
        Some("unsupported_response_type") => ("authorize: response_type", "support response_type=code".into()),
        Some("unauthorized_client") => (
            "authorize: client",
            "let the client use the authorization_code grant it registered, and keep it active".into(),
        ),
        Some("invalid_client") => (
            "authorize: client_id",
            "the client just registered is unknown at the authorization endpoint: registration and authorization must share one client store".into(),
        ),
        _ if description.contains("code_challenge") || description.contains("pkce") => {
            ("authorize: pkce", "accept PKCE with code_challenge_method=S256".into())
        }
        _ if description.contains("redirect") || description.contains("return address") => {
            ("authorize: redirect_uri", redirect_fix(redirect_uri))
        }
        _ if description.contains("client") => (
            "authorize: client_id",
            "the client just registered is unknown at the authorization endpoint: registration and authorization must share one client store".into(),
        ),
        _ => ("authorize", "see the error_description; the request is what the client sends".into()),
    }
}

fn redirect_fix(redirect_uri: &str) -> String {
    let loopback = url::Url::parse(redirect_uri).is_ok_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    });
    if loopback {
        let mut fix = "the loopback redirect policy: match a registered loopback redirect on any port, with localhost, 127.0.0.1 and [::1] as one host (RFC 8252 7.3, 8.3)".to_owned();
        if redirect_uri.contains("/callback/") {
            fix.push_str(", and accept Codex's /callback/<id> suffix below a registered /callback path");
        }
        fix
    } else if redirect_uri.starts_with("https://") {
        "an https redirect matches exactly: the client must have registered this URI (check what the registration kept: mcp-auth clients show <id>)".into()
    } else {
        "allow the private-use scheme in the redirect policy (the example's --redirect-scheme; RedirectPolicy::with_private_use_schemes); it then matches exactly".into()
    }
}

/// A random ephemeral port (49152–65535) other than `not`.
fn random_port(not: u16) -> u16 {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        );
        // The modulus keeps the value below 16384, so the sum stays within u16.
        let port = 49152 + (h.finish() % 16384) as u16;
        if port != not {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_in_each_clients_order() {
        let typescript = [ResourceMetadataAt::Challenge, ResourceMetadataAt::PathInserted, ResourceMetadataAt::Root];
        assert_eq!(
            resource_metadata_urls(&typescript, "https://a.example/mcp", None),
            [
                "https://a.example/.well-known/oauth-protected-resource/mcp",
                "https://a.example/.well-known/oauth-protected-resource"
            ]
        );
        let pointer = Some("https://a.example/prm".to_owned());
        assert_eq!(resource_metadata_urls(&typescript, "https://a.example/mcp", pointer)[0], "https://a.example/prm");
        let rmcp = crate::clients::profile("codex").unwrap().discovery.resource_metadata;
        assert_eq!(
            resource_metadata_urls(rmcp, "https://a.example/v1/mcp", None),
            [
                "https://a.example/.well-known/oauth-protected-resource/v1/mcp",
                "https://a.example/v1/mcp/.well-known/oauth-protected-resource",
                "https://a.example/.well-known/oauth-protected-resource",
            ]
        );
        let gemini = crate::clients::profile("gemini").unwrap().discovery.authorization_server;
        assert_eq!(
            authorization_server_urls(gemini, "https://a.example/tenant"),
            [
                "https://a.example/.well-known/oauth-authorization-server/tenant",
                "https://a.example/.well-known/openid-configuration/tenant",
                "https://a.example/tenant/.well-known/openid-configuration",
                "https://a.example/.well-known/oauth-authorization-server",
                "https://a.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            authorization_server_urls(gemini, "https://a.example"),
            [
                "https://a.example/.well-known/oauth-authorization-server",
                "https://a.example/.well-known/openid-configuration"
            ],
            "an issuer without a path: each URL once"
        );
    }

    #[test]
    fn resource_checks() {
        let mcp = "https://a.example/mcp";
        for check in [ResourceCheck::Exact, ResourceCheck::SameOriginPrefix, ResourceCheck::Unchecked] {
            assert_eq!(resource_refusal(check, mcp, mcp), None);
        }
        assert!(resource_refusal(ResourceCheck::Exact, "https://a.example/mcp/", mcp).is_some());
        assert!(resource_refusal(ResourceCheck::Exact, "https://a.example", mcp).is_some());
        assert_eq!(resource_refusal(ResourceCheck::SameOriginPrefix, "https://a.example", mcp), None);
        assert_eq!(resource_refusal(ResourceCheck::SameOriginPrefix, "https://a.example/mcp/", mcp), None);
        assert!(resource_refusal(ResourceCheck::SameOriginPrefix, "https://a.example/other", mcp).is_some());
        assert!(resource_refusal(ResourceCheck::SameOriginPrefix, "https://b.example/mcp", mcp).is_some());
        assert!(resource_refusal(ResourceCheck::Exact, "", mcp).is_some());
        assert_eq!(resource_refusal(ResourceCheck::Unchecked, "", mcp), None);
    }

    #[test]
    fn a_redirect_to_the_client_is_recognised() {
        let cb = "http://127.0.0.1:5000/callback/abc";
        assert!(same_target("http://127.0.0.1:5000/callback/abc?error=invalid_scope", cb));
        assert!(!same_target("http://127.0.0.1:5000/callback?error=x", cb));
        assert!(same_target(
            "cursor://anysphere.cursor-mcp/oauth/callback?code=1",
            "cursor://anysphere.cursor-mcp/oauth/callback"
        ));
        assert_eq!(resolve("https://a.example/authorize", "/sign-in?x=1"), "https://a.example/sign-in?x=1");
    }

    #[test]
    fn failures_name_their_step_and_policy() {
        let answer = |error: &str, d: &str| Answer {
            status: Some(302),
            error: Some(error.into()),
            error_description: Some(d.into()),
            location: None,
        };
        let (step, fix) =
            authorize_failure(302, &answer("invalid_scope", "none of the requested scopes"), "https://claude.ai/cb");
        assert_eq!(step, "authorize: scope");
        assert!(fix.contains("default scopes"), "{fix}");
        let (step, fix) = authorize_failure(
            400,
            &answer("invalid_request", "the application sent a return address that is not registered for it"),
            "http://localhost:5000/callback/epMNJ6P1xGQ9",
        );
        assert_eq!(step, "authorize: redirect_uri");
        assert!(fix.contains("RFC 8252") && fix.contains("/callback/<id>"), "{fix}");
        assert_eq!(authorize_failure(302, &answer("invalid_target", "x"), "https://a/cb").0, "authorize: resource");
        assert_eq!(
            authorize_failure(302, &answer("invalid_request", "code_challenge is missing"), "https://a/cb").0,
            "authorize: pkce"
        );
        assert_eq!(authorize_failure(429, &Answer::status(429), "https://a/cb").0, "authorize: rate limit");
        let cursor = crate::clients::profile("cursor").unwrap().registration.unwrap();
        let (step, fix) = registration_failure(
            400,
            &answer(
                "invalid_redirect_uri",
                "'cursor://x' uses the private-use scheme 'cursor:', which this server does not allow",
            ),
            &cursor,
        );
        assert_eq!(step, "register: redirect_uris");
        assert!(fix.contains("--redirect-scheme"), "{fix}");
    }

    #[test]
    fn ports_are_ephemeral_and_distinct() {
        for _ in 0..100 {
            let a = random_port(0);
            assert!(a >= 49152);
            assert_ne!(random_port(a), a);
        }
    }

    #[test]
    fn page_titles_are_read() {
        assert_eq!(page_title(b"<html><title> Sign in </title>").as_deref(), Some("Sign in"));
        assert_eq!(page_title(b"no title"), None);
    }
}
