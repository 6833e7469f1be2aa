//! The named policies that decide what real clients may send.
//! Documented in the crate docs, "Redirect, resource and scope policy".

use crate::client::ApplicationType;
use crate::error::OAuthError;
use crate::types::{RedirectKind, RedirectUri, ResourceUri, ScopeSet};

/// Which redirect URIs a deployment accepts at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedirectPolicy {
    /// Private-use schemes (`cursor://…`) allowed; empty allows none.
    pub private_use_schemes: Vec<String>,
    /// Whether any private-use scheme is allowed (overrides the list).
    pub any_private_use_scheme: bool,
}

impl Default for RedirectPolicy {
    /// https anywhere, http to loopback only, no private-use schemes.
    fn default() -> Self {
        Self { private_use_schemes: Vec::new(), any_private_use_scheme: false }
    }
}

impl RedirectPolicy {
    /// Allows redirects with these private-use schemes (for example `cursor`). Default: none.
    ///
    /// Risk: any application on the user's machine can claim a private-use scheme; allow only
    /// the schemes of clients you expect.
    #[must_use]
    pub fn with_private_use_schemes<I, S>(mut self, schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.private_use_schemes = schemes.into_iter().map(|s| s.into().to_ascii_lowercase()).collect();
        self
    }

    /// Allows every private-use scheme. Default: off. Same risk as
    /// [`Self::with_private_use_schemes`], for every scheme.
    #[must_use]
    pub fn with_any_private_use_scheme(mut self, allow: bool) -> Self {
        self.any_private_use_scheme = allow;
        self
    }

    /// Checks one redirect URI for a client of the given application type; `Err` says why.
    pub fn check(&self, uri: &RedirectUri, app: Option<ApplicationType>) -> Result<(), RedirectRefusal> {
        let refused = |kind| Err(RedirectRefusal { uri: uri.to_string(), kind });
        match (uri.kind(), app) {
            (RedirectKind::Https, _) | (RedirectKind::Loopback, None | Some(ApplicationType::Native)) => Ok(()),
            (RedirectKind::PlainHttp, _) => refused(RefusalKind::PlainHttp),
            (RedirectKind::Loopback, Some(ApplicationType::Web)) => refused(RefusalKind::LoopbackForWeb),
            (RedirectKind::PrivateUse, Some(ApplicationType::Web)) => refused(RefusalKind::PrivateUseForWeb),
            (RedirectKind::PrivateUse, _) => {
                let scheme = uri.as_str().split(':').next().unwrap_or_default().to_ascii_lowercase();
                if self.any_private_use_scheme || self.private_use_schemes.contains(&scheme) {
                    Ok(())
                } else {
                    refused(RefusalKind::SchemeNotAllowed(scheme))
                }
            }
        }
    }
}

/// Why [`RedirectPolicy::check`] refused a redirect URI; its text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct RedirectRefusal {
    uri: String,
    kind: RefusalKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RefusalKind {
    PlainHttp,
    LoopbackForWeb,
    PrivateUseForWeb,
    SchemeNotAllowed(String),
}

impl RedirectRefusal {
    /// The URI refused.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The private-use scheme the server does not allow, when that is the reason: the
    /// operator can allow it.
    pub fn scheme_not_allowed(&self) -> Option<&str> {
        match &self.kind {
            RefusalKind::SchemeNotAllowed(scheme) => Some(scheme),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let uri = &self.uri;
        match &self.kind {
            RefusalKind::PlainHttp => format!(
                "'{uri}' uses plain http to a non-loopback host; use https, or http://127.0.0.1 for a native app"
            ),
            RefusalKind::LoopbackForWeb => format!(
                "'{uri}' is a loopback redirect, but application_type is 'web', which requires https; register with application_type 'native'"
            ),
            RefusalKind::PrivateUseForWeb => {
                format!("'{uri}' uses a private-use scheme, but application_type is 'web', which requires https")
            }
            RefusalKind::SchemeNotAllowed(scheme) => format!(
                "'{uri}' uses the private-use scheme '{scheme}:', which this server does not allow; the operator can allow it"
            ),
        }
    }
}

/// A client quirk that a policy tolerated. Logged and recorded when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Quirk {
    /// No `resource` parameter: the grant is bound to the canonical resource.
    ResourceOmitted,
    /// `resource` had a trailing slash the canonical resource lacks.
    ResourceTrailingSlash,
    /// `resource` was the bare origin of the canonical resource.
    ResourceBareOrigin,
    /// Scopes the server does not know were requested and dropped.
    UnknownScopesDropped,
}

impl Quirk {
    /// Stable name, for logs and flow events.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::ResourceOmitted => "resource_omitted",
            Self::ResourceTrailingSlash => "resource_trailing_slash",
            Self::ResourceBareOrigin => "resource_bare_origin",
            Self::UnknownScopesDropped => "unknown_scopes_dropped",
        }
    }
}

/// The outcome of [`resolve_resource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedResource {
    /// The resource the grant is bound to: always the canonical resource.
    pub resource: ResourceUri,
    /// The leniency applied, if any.
    pub quirk: Option<Quirk>,
}

/// Resolves the `resource` parameters of a request (RFC 8707) against the one canonical
/// resource this server protects.
///
/// Omitted, with a trailing slash, or the bare origin: normalised to the canonical resource
/// (clients have shipped each of these). Anything else is `invalid_target`. The token's `aud`
/// is therefore always the canonical resource, so the guard and the server never disagree.
pub(crate) fn resolve_resource(canonical: &ResourceUri, requested: &[String]) -> Result<ResolvedResource, OAuthError> {
    if requested.is_empty() {
        return Ok(ResolvedResource { resource: canonical.clone(), quirk: Some(Quirk::ResourceOmitted) });
    }
    let mut quirk = None;
    for value in requested {
        let parsed = ResourceUri::parse(value).map_err(|e| OAuthError::invalid_target(e.to_string()))?;
        let c = canonical.as_str();
        let v = parsed.as_str();
        if v == c {
            continue;
        }
        let origin = canonical.origin();
        if v.strip_suffix('/') == Some(c) {
            quirk = Some(Quirk::ResourceTrailingSlash);
        } else if v == origin || v.strip_suffix('/') == Some(origin.as_str()) {
            quirk = Some(Quirk::ResourceBareOrigin);
        } else {
            return Err(OAuthError::invalid_target(format!(
                "resource '{v}' is not served by this authorization server; it protects '{c}'"
            )));
        }
    }
    Ok(ResolvedResource { resource: canonical.clone(), quirk })
}

/// The OpenID Connect scope for refresh tokens, which clients ask for by habit. This server
/// issues refresh tokens to clients that registered the `refresh_token` grant, with or
/// without it, and never lists it in the protected-resource metadata.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Resolves a requested scope string against what the server supports and what the client
/// may request. Returns the granted scopes and the dropped unknown ones.
///
/// - Absent or empty: the server's default scopes (limited to the client's).
/// - Unknown scopes are dropped (RFC 6749 3.3 lets the server grant less) and reported; when
///   nothing known remains (Claude has sent `scope=claudeai`, VS Code `openid profile email`),
///   the request gets the defaults, as if it had named none. `offline_access` is one of them
///   unless the operator defines it: refresh tokens follow the client's registered grant
///   types, never this scope (MCP 2026-07-28).
/// - Known scopes the client did not register are `invalid_scope`.
pub(crate) fn resolve_scopes(
    requested: Option<&str>,
    supported: &ScopeSet,
    defaults: &ScopeSet,
    client_scope: Option<&ScopeSet>,
) -> Result<(ScopeSet, ScopeSet), OAuthError> {
    let requested = match requested {
        Some(s) => ScopeSet::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?,
        None => ScopeSet::new(),
    };
    let known = requested.intersection(supported);
    let unknown = requested.difference(supported);
    if known.is_empty() {
        let granted = match client_scope {
            Some(allowed) => defaults.intersection(allowed),
            None => defaults.clone(),
        };
        return Ok((granted, unknown));
    }
    if let Some(allowed) = client_scope {
        let extra = known.difference(allowed);
        if !extra.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "the client did not register scope(s) {extra}; registered: {allowed}"
            )));
        }
    }
    Ok((known, unknown))
}

/// A client's registered scope (registration or metadata document) without what this server
/// does not define, as at authorization: `None` when nothing known remains, so that the client
/// is not limited and gets the defaults. The second value is what was dropped, if anything.
pub(crate) fn registered_scope(scope: Option<ScopeSet>, supported: &ScopeSet) -> (Option<ScopeSet>, Option<ScopeSet>) {
    let Some(scope) = scope else {
        return (None, None);
    };
    let known = scope.intersection(supported);
    let unknown = scope.difference(supported);
    ((!known.is_empty()).then_some(known), (!unknown.is_empty()).then_some(unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon() -> ResourceUri {
        ResourceUri::parse("https://mcp.example.com/mcp").unwrap()
    }

    #[test]
    fn resource_policy_table() {
        let ok: &[(&[&str], Option<Quirk>)] = &[
            (&[], Some(Quirk::ResourceOmitted)),
            (&["https://mcp.example.com/mcp"], None),
            (&["https://mcp.example.com/mcp/"], Some(Quirk::ResourceTrailingSlash)),
            (&["https://mcp.example.com"], Some(Quirk::ResourceBareOrigin)),
            (&["https://mcp.example.com/"], Some(Quirk::ResourceBareOrigin)),
            (&["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"], Some(Quirk::ResourceTrailingSlash)),
        ];
        for (req, quirk) in ok {
            let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
            let r = resolve_resource(&canon(), &req).unwrap();
            assert_eq!(r.resource, canon());
            assert_eq!(r.quirk, *quirk, "{req:?}");
        }
        for bad in [
            "https://other.example.com/mcp",
            "https://mcp.example.com/other",
            "https://mcp.example.com/mcp#x",
            "not a uri",
            "http://mcp.example.com/mcp",
        ] {
            let e = resolve_resource(&canon(), &[bad.to_owned()]).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidTarget, "{bad}");
        }
        let e = resolve_resource(&canon(), &["https://mcp.example.com/mcp".into(), "https://evil.example/".into()])
            .unwrap_err();
        assert!(e.description().contains("evil"));
    }

    #[test]
    fn scope_policy() {
        let sup = ScopeSet::parse("mcp:read mcp:write").unwrap();
        let def = ScopeSet::parse("mcp:read").unwrap();
        let (g, d) = resolve_scopes(None, &sup, &def, None).unwrap();
        assert_eq!((g.to_string(), d.to_string()), ("mcp:read".into(), "".into()));
        let (g, d) = resolve_scopes(Some("mcp:write offline_access"), &sup, &def, None).unwrap();
        assert_eq!((g.to_string(), d.to_string()), ("mcp:write".into(), "offline_access".into()));
        // Nothing known: the defaults, and what was dropped is reported.
        for all_unknown in ["claudeai", "openid profile email", "offline_access"] {
            let (g, d) = resolve_scopes(Some(all_unknown), &sup, &def, None).unwrap();
            assert_eq!((g.to_string(), d), ("mcp:read".into(), ScopeSet::parse(all_unknown).unwrap()));
        }
        let narrow = ScopeSet::parse("mcp:write").unwrap();
        let (g, _) = resolve_scopes(Some("claudeai"), &sup, &def, Some(&narrow)).unwrap();
        assert!(g.is_empty(), "the defaults are still limited to the client's registered scope: {g}");
        let client = ScopeSet::parse("mcp:read").unwrap();
        assert!(resolve_scopes(Some("mcp:write"), &sup, &def, Some(&client)).is_err());
        assert!(resolve_scopes(Some("bad\"scope"), &sup, &def, None).is_err());
    }

    #[test]
    fn redirect_policy() {
        let p = RedirectPolicy::default();
        let cursor = RedirectUri::parse("cursor://anysphere.cursor-mcp/oauth/callback").unwrap();
        let lo = RedirectUri::parse("http://127.0.0.1:33418/").unwrap();
        assert!(p.check(&cursor, None).is_err());
        assert!(p.check(&lo, None).is_ok());
        assert!(p.check(&lo, Some(ApplicationType::Native)).is_ok());
        assert!(p.check(&lo, Some(ApplicationType::Web)).is_err());
        assert!(p.check(&RedirectUri::parse("http://example.com/cb").unwrap(), None).is_err());
        let p = p.with_private_use_schemes(["Cursor"]);
        assert!(p.check(&cursor, Some(ApplicationType::Native)).is_ok());
        assert!(p.check(&cursor, Some(ApplicationType::Web)).is_err());
        assert!(p.check(&RedirectUri::parse("vscode://x/cb").unwrap(), None).is_err());
        assert!(
            RedirectPolicy::default()
                .with_any_private_use_scheme(true)
                .check(&RedirectUri::parse("vscode://x/cb").unwrap(), None)
                .is_ok()
        );
    }
}
