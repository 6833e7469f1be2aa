//! Scope policy: which scopes a request needs, from what the MCP server will execute.
//!
//! The target (each JSON-RPC method, with its tool, prompt, resource or task name) is read from
//! the body, for every protocol revision: the body is what rmcp dispatches on. The
//! `Mcp-Method`/`Mcp-Name` headers of MCP 2026-07-28 are never trusted on their own: rmcp
//! checks them against the body only for that revision, so a client of an older one could name
//! a harmless tool in the header and call another in the body. When present, they must agree
//! with the body, `Mcp-Name` decoded as rmcp decodes it (`=?base64?<standard base64>?=`), or the
//! request is refused with 400.
//!
//! ```text
//! Mcp-Method: tools/call
//! Mcp-Name: =?base64?ZGVsZXRlX2FsbA==?=       (decodes to "delete_all")
//! {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}
//! ```
//! needs the scopes of `delete_all`; the same headers with a body calling `notes_add` are
//! refused.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt as _;
use oauth_core::ScopeSet;
use serde::Deserialize;

use crate::MAX_INSPECTED_BODY;

/// The SEP-2243 sentinel around a base64 header value, as rmcp writes and reads it.
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";
/// Calls named in an event's detail; a batch may hold thousands.
const DESCRIBED_CALLS: usize = 8;
/// Characters of a client-supplied name shown in a detail.
const SHOWN_CHARS: usize = 100;

/// Scopes required for every request, per JSON-RPC method, and per tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopePolicy {
    /// Needed by every request.
    pub required: ScopeSet,
    /// Needed by a JSON-RPC method, in addition.
    pub per_method: HashMap<String, ScopeSet>,
    /// Needed by `tools/call` of a tool, in addition.
    pub per_tool: HashMap<String, ScopeSet>,
    /// Scope hierarchies: a token holding the key also holds these scopes, and what they
    /// imply in turn (`notes:admin` → `notes:write` → `notes:read`).
    pub implied: HashMap<String, ScopeSet>,
}

impl ScopePolicy {
    pub(crate) fn needs_target(&self) -> bool {
        !self.per_method.is_empty() || !self.per_tool.is_empty()
    }

    /// The scopes `granted` holds, with every scope they imply through [`Self::implied`]
    /// (followed to the end; a cycle adds nothing twice).
    pub fn holds(&self, granted: &ScopeSet) -> ScopeSet {
        if self.implied.is_empty() {
            return granted.clone();
        }
        let mut held: Vec<oauth_core::Scope> = granted.iter().cloned().collect();
        let mut next = 0;
        while let Some(scope) = held.get(next) {
            next += 1;
            let Some(implied) = self.implied.get(scope.as_str()) else { continue };
            let new: Vec<_> = implied.iter().filter(|s| !held.contains(s)).cloned().collect();
            held.extend(new);
        }
        ScopeSet::from_scopes(held)
    }

    /// Every scope the request's target needs.
    pub(crate) fn scopes_for(&self, target: &Target) -> ScopeSet {
        let mut all: Vec<oauth_core::Scope> = self.required.iter().cloned().collect();
        for (method, name) in &target.calls {
            if let Some(s) = self.per_method.get(method) {
                all.extend(s.iter().cloned());
            }
            if method == "tools/call"
                && let Some(s) = name.as_ref().and_then(|n| self.per_tool.get(n))
            {
                all.extend(s.iter().cloned());
            }
        }
        ScopeSet::from_scopes(all)
    }
}

/// What a request calls: JSON-RPC methods, each with its tool/prompt name, resource URI or
/// task id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) calls: Vec<(String, Option<String>)>,
}

impl Target {
    pub(crate) fn describe(&self) -> String {
        if self.calls.is_empty() {
            return "this request".into();
        }
        let mut out = self
            .calls
            .iter()
            .take(DESCRIBED_CALLS)
            .map(|(m, n)| match n {
                Some(n) => format!("{} '{}'", shown(m), shown(n)),
                None => shown(m),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if self.calls.len() > DESCRIBED_CALLS {
            out.push_str(&format!(" and {} more calls", self.calls.len() - DESCRIBED_CALLS));
        }
        out
    }
}

/// Why the target could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// The body is larger than [`MAX_INSPECTED_BODY`] or could not be read.
    TooLarge,
    /// The body is not JSON-RPC the guard can read (so it cannot tell what it calls).
    Malformed(String),
    /// An `Mcp-Method`/`Mcp-Name` header disagrees with the body, or is unreadable.
    HeaderMismatch(String),
}

impl TargetError {
    /// The `error_description` for the client.
    pub(crate) fn description(&self) -> String {
        match self {
            Self::TooLarge => format!("the request body is larger than {MAX_INSPECTED_BODY} bytes or unreadable"),
            Self::Malformed(d) | Self::HeaderMismatch(d) => d.clone(),
        }
    }
}

/// Finds the request's target when the policy needs it: from the JSON-RPC body of a POST, read
/// up to [`MAX_INSPECTED_BODY`] and put back, with the `Mcp-Method`/`Mcp-Name` headers checked
/// against it. Without a policy that needs it, the body is left unread.
pub(crate) async fn target<B>(req: Request<B>, needed: bool) -> Result<(Target, Request<B>), TargetError>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<tower::BoxError>,
{
    if !needed || req.method() != Method::POST {
        return Ok((Target::default(), req));
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_INSPECTED_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Err(TargetError::TooLarge),
    };
    let target = parse_jsonrpc(&bytes).map_err(TargetError::Malformed)?;
    check_headers(&parts.headers, &target).map_err(TargetError::HeaderMismatch)?;
    Ok((target, Request::from_parts(parts, B::from(bytes))))
}

/// One JSON-RPC message, as far as the policy reads it. Derived deserialization refuses a
/// repeated field, so a body with two `name`s (of which a server might take the other) is
/// malformed rather than read one way here and another way there.
#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<serde_json::Value>,
    uri: Option<serde_json::Value>,
    #[serde(rename = "taskId")]
    task_id: Option<serde_json::Value>,
}

/// The calls of a JSON-RPC message or batch; every call of a batch counts. Messages without a
/// method (responses to the server's requests) call nothing.
fn parse_jsonrpc(bytes: &[u8]) -> Result<Target, String> {
    let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = if batch {
        serde_json::from_slice::<Vec<Message>>(bytes)
    } else {
        serde_json::from_slice::<Message>(bytes).map(|m| vec![m])
    }
    .map_err(|e| format!("the request body is not a JSON-RPC message the server can check: {e}"))?;
    let calls = messages
        .into_iter()
        .filter_map(|m| {
            let method = m.method?;
            let name = name_of(&method, m.params.as_ref());
            Some((method, name))
        })
        .collect();
    Ok(Target { calls })
}

/// What names a call, as rmcp reads it for `Mcp-Name` (`mcp_headers::extract_name`): `name` for
/// tools and prompts, `uri` for resources, `taskId` for tasks; a value that is not a string
/// names nothing.
fn name_of(method: &str, params: Option<&Params>) -> Option<String> {
    let p = params?;
    let value = match method {
        "tools/call" | "prompts/get" => p.name.as_ref(),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => p.uri.as_ref(),
        "tasks/get" | "tasks/update" | "tasks/cancel" => p.task_id.as_ref(),
        _ => None,
    };
    value?.as_str().map(str::to_owned)
}

/// Whether calls of `method` carry a name that `Mcp-Name` repeats.
fn carries_name(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "tasks/get"
            | "tasks/update"
            | "tasks/cancel"
    )
}

/// Checks `Mcp-Method` and `Mcp-Name`, when present, against every call of the body.
/// `Mcp-Method` is compared as it is (rmcp never decodes it); `Mcp-Name` after decoding.
fn check_headers(headers: &HeaderMap, target: &Target) -> Result<(), String> {
    let method = single_header(headers, "mcp-method")?;
    let name = single_header(headers, "mcp-name")?;
    if method.is_none() && name.is_none() {
        return Ok(());
    }
    if target.calls.is_empty() {
        return Err("the Mcp-Method/Mcp-Name headers name a call, but the body calls no method".to_owned());
    }
    let name = name
        .map(|raw| {
            decode_header_value(raw).ok_or_else(|| "the Mcp-Name header is not valid =?base64?…?= text".to_owned())
        })
        .transpose()?;
    for (m, n) in &target.calls {
        if let Some(h) = method
            && h != m
        {
            return Err(format!(
                "the Mcp-Method header '{}' does not match the body's method '{}'",
                shown(h),
                shown(m)
            ));
        }
        if let Some(h) = &name
            && carries_name(m)
            && n.as_deref() != Some(h.as_str())
        {
            return Err(format!(
                "the Mcp-Name header '{}' does not match the body's {} '{}'",
                shown(h),
                shown(m),
                n.as_deref().map(shown).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// The one value of header `name`, if present; two values, or one that is not visible ASCII,
/// are refused (rmcp's `header_str` refuses them too).
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(format!("the request has more than one {name} header"));
    }
    v.to_str().map(Some).map_err(|_| format!("the {name} header has characters outside visible ASCII"))
}

/// A header value as rmcp decodes it (`mcp_headers::decode_header_value`): the text between
/// `=?base64?` and `?=` is standard base64 with canonical padding, decoded to UTF-8; any other
/// value is taken as it is. `None` when the wrapped text is not base64 of UTF-8.
pub(crate) fn decode_header_value(value: &str) -> Option<String> {
    use base64::Engine as _;
    match value.strip_prefix(BASE64_PREFIX).and_then(|inner| inner.strip_suffix(BASE64_SUFFIX)) {
        Some(inner) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(inner).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

/// A client-supplied string as shown in a detail: bounded, control characters dropped.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(SHOWN_CHARS).collect();
    if s.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn call(m: &str, n: Option<&str>) -> (String, Option<String>) {
        (m.to_owned(), n.map(str::to_owned))
    }

    #[test]
    fn jsonrpc_targets() {
        let t = parse_jsonrpc(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notes_add","arguments":{}}}"#,
        )
        .unwrap();
        assert_eq!(t.calls, vec![call("tools/call", Some("notes_add"))]);
        let t = parse_jsonrpc(br#" [{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"x://y"},"id":2},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"b"},"id":3}]"#).unwrap();
        assert_eq!(
            t.calls,
            vec![call("ping", None), call("resources/read", Some("x://y")), call("tools/call", Some("b"))]
        );
        // Names as rmcp reads them: the field depends on the method; non-strings name nothing.
        let t = parse_jsonrpc(br#"[{"method":"tasks/get","params":{"taskId":"t1","name":"n"}},{"method":"tools/list","params":{"name":"n"}},{"method":"tools/call","params":{"name":7}},{"id":1,"result":{}}]"#).unwrap();
        assert_eq!(t.calls, vec![call("tasks/get", Some("t1")), call("tools/list", None), call("tools/call", None)]);
        // Body names are never decoded (rmcp dispatches on them as they are).
        let t = parse_jsonrpc(br#"{"method":"tools/call","params":{"name":"=?base64?YQ==?="}}"#).unwrap();
        assert_eq!(t.calls, vec![call("tools/call", Some("=?base64?YQ==?="))]);
    }

    #[test]
    fn unreadable_bodies_are_refused() {
        for body in [
            &b"not json"[..],
            br#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            br#"{"method":"tools/call","method":"ping"}"#,
            br#"{"method":1}"#,
            br#"{"method":"tools/call","params":"x"}"#,
            b"",
        ] {
            assert!(parse_jsonrpc(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn header_values_decode_as_rmcp_decodes_them() {
        let table: &[(&str, Option<&str>)] = &[
            ("notes_add", Some("notes_add")),
            ("=?base64?bm90ZXNfYWRk?=", Some("notes_add")),
            ("=?base64??=", Some("")),
            ("=?base64?w6k=?=", Some("é")),
            // Canonical padding only, as base64's STANDARD engine (rmcp's) requires.
            ("=?base64?w6k?=", None),
            ("=?base64?!!!?=", None),
            // Not UTF-8.
            ("=?base64?/w==?=", None),
            // Only the exact sentinel is decoded; anything else is a plain name.
            ("=?BASE64?bm90ZXNfYWRk?=", Some("=?BASE64?bm90ZXNfYWRk?=")),
            ("=?base64?bm90ZXNfYWRk", Some("=?base64?bm90ZXNfYWRk")),
            ("bm90ZXNfYWRk", Some("bm90ZXNfYWRk")),
        ];
        for (raw, want) in table {
            assert_eq!(decode_header_value(raw).as_deref(), *want, "{raw}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let t = Target { calls: vec![call("tools/call", Some("delete_all"))] };
        let ok = |h: &[(&'static str, &str)]| check_headers(&headers(h), &t).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "delete_all")]));
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZGVsZXRlX2FsbA==?=")]));
        assert!(ok(&[("mcp-method", "tools/call")]));
        assert!(!ok(&[("mcp-method", "tools/call"), ("mcp-name", "whoami")]));
        assert!(!ok(&[("mcp-name", "whoami")]));
        assert!(!ok(&[("mcp-method", "ping")]));
        assert!(!ok(&[("mcp-method", "tools/list"), ("mcp-name", "delete_all")]));
        // Mcp-Method is compared as sent, never decoded.
        assert!(!ok(&[("mcp-method", "=?base64?dG9vbHMvY2FsbA==?=")]));
        assert!(!ok(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?not base64?=")]));
        assert!(!ok(&[("mcp-method", "tools/call"), ("mcp-method", "tools/call")]));
        assert!(!ok(&[("mcp-name", "delete_all"), ("mcp-name", "delete_all")]));
        // A name the body does not carry cannot be claimed, nor a call the body does not make.
        let t = Target { calls: vec![call("tools/call", None)] };
        assert!(check_headers(&headers(&[("mcp-name", "x")]), &t).is_err());
        assert!(check_headers(&headers(&[("mcp-method", "tools/call")]), &Target::default()).is_err());
        // Methods without names ignore Mcp-Name, as rmcp does.
        let t = Target { calls: vec![call("tools/list", None)] };
        assert!(check_headers(&headers(&[("mcp-method", "tools/list"), ("mcp-name", "x")]), &t).is_ok());
        // Every call of a batch must agree.
        let t = Target { calls: vec![call("tools/call", Some("a")), call("tools/call", Some("b"))] };
        assert!(check_headers(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "a")]), &t).is_err());
    }

    #[test]
    fn scopes_add_up() {
        let mut p = ScopePolicy { required: ScopeSet::parse("mcp:tools").unwrap(), ..Default::default() };
        p.per_tool.insert("notes_add".into(), ScopeSet::parse("notes:write").unwrap());
        p.per_method.insert("resources/read".into(), ScopeSet::parse("res:read").unwrap());
        let t = Target { calls: vec![call("tools/call", Some("notes_add"))] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools notes:write");
        let t = Target { calls: vec![call("tools/call", Some("whoami"))] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools");
        let t = Target { calls: vec![call("resources/read", None)] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools res:read");
        // Every call of a batch counts.
        let t = Target { calls: vec![call("tools/call", Some("whoami")), call("tools/call", Some("notes_add"))] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools notes:write");
    }

    #[test]
    fn implied_scopes_are_followed_to_the_end() {
        let mut p = ScopePolicy::default();
        let set = |s: &str| ScopeSet::parse(s).unwrap();
        assert_eq!(p.holds(&set("a")), set("a"), "no hierarchy: the token's scopes");
        p.implied.insert("notes:admin".into(), set("notes:write"));
        p.implied.insert("notes:write".into(), set("notes:read"));
        p.implied.insert("loop:a".into(), set("loop:b"));
        p.implied.insert("loop:b".into(), set("loop:a notes:read"));
        assert_eq!(p.holds(&set("notes:admin")), set("notes:admin notes:write notes:read"));
        assert_eq!(p.holds(&set("notes:write mcp:tools")), set("notes:write notes:read mcp:tools"));
        assert_eq!(p.holds(&set("notes:read")), set("notes:read"), "nothing flows upwards");
        assert_eq!(p.holds(&set("loop:a")), set("loop:a loop:b notes:read"), "a cycle ends");
    }

    #[test]
    fn descriptions_are_bounded() {
        let t = Target { calls: (0..20).map(|i| call("tools/call", Some(&"x".repeat(i * 20)))).collect() };
        let d = t.describe();
        assert!(d.ends_with("and 12 more calls"), "{d}");
        assert!(d.len() < 2000, "{}", d.len());
    }
}
