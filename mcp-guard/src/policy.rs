//! Scope policy: which scopes a request needs, from its JSON-RPC method and tool name.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use oauth_core::types::ScopeSet;

use crate::MAX_INSPECTED_BODY;

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
}

impl ScopePolicy {
    pub(crate) fn needs_target(&self) -> bool {
        !self.per_method.is_empty() || !self.per_tool.is_empty()
    }

    /// Every scope the request's target needs.
    pub(crate) fn scopes_for(&self, target: &Target) -> ScopeSet {
        let mut all: Vec<oauth_core::types::Scope> = self.required.iter().cloned().collect();
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

/// What a request calls: JSON-RPC methods, each with its tool/prompt name or resource URI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) calls: Vec<(String, Option<String>)>,
}

impl Target {
    pub(crate) fn describe(&self) -> String {
        if self.calls.is_empty() {
            return "this request".into();
        }
        self.calls
            .iter()
            .map(|(m, n)| match n {
                Some(n) => format!("{m} '{n}'"),
                None => m.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Finds the request's target: from `Mcp-Method`/`Mcp-Name` (MCP 2026-07-28), else, when the
/// policy needs it, from the JSON-RPC body, read up to [`MAX_INSPECTED_BODY`] and put back.
pub(crate) async fn target(req: Request<Body>, needed: bool) -> (Target, Result<Request<Body>, String>) {
    let from_headers = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        header("mcp-method").map(|method| (method, header("mcp-name")))
    };
    if let Some(call) = from_headers {
        return (Target { calls: vec![call] }, Ok(req));
    }
    if !needed || req.method() != Method::POST {
        return (Target::default(), Ok(req));
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_INSPECTED_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return (
                Target::default(),
                Err(format!("the request body is larger than {MAX_INSPECTED_BODY} bytes or unreadable")),
            );
        }
    };
    let target = parse_jsonrpc(&bytes);
    (target, Ok(Request::from_parts(parts, Body::from(bytes))))
}

fn parse_jsonrpc(bytes: &[u8]) -> Target {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Target::default();
    };
    let messages = match v {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let calls = messages
        .iter()
        .filter_map(|m| {
            let method = m.get("method")?.as_str()?.to_owned();
            let params = m.get("params");
            let name =
                params.and_then(|p| p.get("name").or_else(|| p.get("uri"))).and_then(|n| n.as_str()).map(str::to_owned);
            Some((method, name))
        })
        .collect();
    Target { calls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonrpc_targets() {
        let t = parse_jsonrpc(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notes_add","arguments":{}}}"#,
        );
        assert_eq!(t.calls, vec![("tools/call".to_owned(), Some("notes_add".to_owned()))]);
        let t = parse_jsonrpc(br#"[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"x://y"},"id":2}]"#);
        assert_eq!(t.calls.len(), 2);
        assert_eq!(t.calls[1].1.as_deref(), Some("x://y"));
        assert!(parse_jsonrpc(b"not json").calls.is_empty());
    }

    #[test]
    fn scopes_add_up() {
        let mut p = ScopePolicy { required: ScopeSet::parse("mcp:tools").unwrap(), ..Default::default() };
        p.per_tool.insert("notes_add".into(), ScopeSet::parse("notes:write").unwrap());
        p.per_method.insert("resources/read".into(), ScopeSet::parse("res:read").unwrap());
        let t = Target { calls: vec![("tools/call".into(), Some("notes_add".into()))] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools notes:write");
        let t = Target { calls: vec![("tools/call".into(), Some("whoami".into()))] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools");
        let t = Target { calls: vec![("resources/read".into(), None)] };
        assert_eq!(p.scopes_for(&t).to_string(), "mcp:tools res:read");
    }
}
