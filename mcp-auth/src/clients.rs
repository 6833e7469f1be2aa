//! What each known MCP client sends, as data: the table `mcp-auth check --clients` replays
//! against a live deployment. Every entry names where its behaviour comes from: the client's
//! published source where there is one, otherwise the trackers of servers that met it, or this
//! project's client research (DESIGN.md, "what real clients send").
//!
//! A profile has four parts, in the order a client goes through them: [`Discovery`] (which
//! well-known URLs, in which order, and how strictly the protected-resource metadata must name
//! the URL it was given), an optional [`MetadataDocument`] (Client ID Metadata Documents, used
//! when the server advertises them), its [`Dcr`] body (Dynamic Client Registration, the
//! fallback or the only path), and one or more [`Authorize`] requests (its redirect URI forms,
//! scope habits and `resource` quirks).
//!
//! ```
//! use mcp_auth::clients;
//!
//! let codex = clients::profile("codex").unwrap();
//! assert!(codex.authorize.iter().any(|a| a.redirect_uri.contains("/callback/{callback_id}")));
//! assert_eq!(clients::select(&["all".to_owned()]).unwrap().len(), clients::PROFILES.len());
//! assert!(clients::select(&["netscape".to_owned()]).is_err());
//! ```
//!
//! Redirect URIs are templates: `{port}` is the loopback port the client registered with (a
//! random ephemeral port, the same for every request of one replay), `{new_port}` another
//! ephemeral port (the client started a new listener), `{callback_id}` Codex's per-server
//! suffix ([`codex_callback_id`]).

use oauth_core::{CodeChallenge, CodeVerifier};

/// One MCP client's behaviour.
#[derive(Debug)]
#[non_exhaustive]
pub struct Profile {
    /// The name `--clients` takes: `claude`, `codex`, ….
    pub name: &'static str,
    /// The product.
    pub product: &'static str,
    /// How it discovers the authorization server.
    pub discovery: Discovery,
    /// The `Origin` of a browser client: its requests are cross-origin and need CORS.
    pub browser_origin: Option<&'static str>,
    /// Its Client ID Metadata Document, when it has one.
    pub metadata_document: Option<MetadataDocument>,
    /// Its Dynamic Client Registration body, when it registers dynamically.
    pub registration: Option<Dcr>,
    /// Its authorization requests: one per redirect form or habit worth replaying.
    pub authorize: &'static [Authorize],
    /// What it does at refresh time, which the check cannot replay (it needs a signed-in
    /// person): for the report and the documentation.
    pub refresh: &'static str,
    /// Where the behaviour comes from.
    pub sources: &'static [&'static str],
}

/// How a client finds the protected-resource and authorization-server metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovery {
    /// Where it looks for the protected-resource metadata, in order; the first JSON document
    /// wins.
    pub resource_metadata: &'static [ResourceMetadataAt],
    /// Where it looks for the authorization server's metadata, in order (duplicates, such as
    /// the path-inserted and the root URL of an issuer without a path, are tried once).
    pub authorization_server: &'static [AuthorizationServerAt],
    /// How the metadata's `resource` must relate to the MCP URL the client was given.
    pub resource_check: ResourceCheck,
}

/// A place a client looks for RFC 9728 protected-resource metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceMetadataAt {
    /// The `resource_metadata` parameter of the 401's `WWW-Authenticate`, when there is one.
    Challenge,
    /// `/.well-known/oauth-protected-resource/<mcp path>` (RFC 9728 3.1).
    PathInserted,
    /// `/<mcp path>/.well-known/oauth-protected-resource`.
    PathAppended,
    /// `/.well-known/oauth-protected-resource` at the MCP URL's origin.
    Root,
}

/// A place a client looks for the authorization server's metadata, from the issuer named by
/// the protected-resource metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationServerAt {
    /// RFC 8414 with the issuer's path inserted: `/.well-known/oauth-authorization-server/<path>`.
    OAuthPathInserted,
    /// OpenID configuration with the path inserted: `/.well-known/openid-configuration/<path>`.
    OpenIdPathInserted,
    /// OpenID configuration appended to the issuer: `<issuer>/.well-known/openid-configuration`.
    OpenIdPathAppended,
    /// RFC 8414 at the issuer's origin, ignoring its path.
    OAuthRoot,
    /// OpenID configuration at the issuer's origin, ignoring its path.
    OpenIdRoot,
}

/// How strictly a client compares the protected-resource metadata's `resource` with the URL it
/// was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceCheck {
    /// The same URL (after URL normalisation): anything else is refused.
    Exact,
    /// The same origin, and the MCP URL's path at or below the resource's path (the
    /// TypeScript SDK's `checkResourceAllowed`).
    SameOriginPrefix,
    /// Not known to be checked.
    Unchecked,
}

/// A client's Client ID Metadata Document: its `client_id` is the document's https URL, which
/// the authorization server fetches itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetadataDocument {
    /// The document's URL, where it is published.
    pub url: Option<&'static str>,
    /// The `token_endpoint_auth_method` the document declares.
    pub auth_method: &'static str,
    /// Other methods the document lists in `token_endpoint_auth_methods_supported`, which a
    /// server may fall back to.
    pub fallback_auth_methods: &'static [&'static str],
    /// The client uses its document only when the server also offers `none`; otherwise it
    /// registers dynamically.
    pub only_with_none: bool,
}

/// A Dynamic Client Registration (RFC 7591) body, as the client sends it. `client_name` is
/// always `mcp-auth check (<name>)`, so that the operator can tell these registrations apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dcr {
    /// `redirect_uris` (templates, see the module documentation).
    pub redirect_uris: &'static [&'static str],
    /// `token_endpoint_auth_method`; `None` leaves it out (RFC 7591: `client_secret_basic`).
    pub token_endpoint_auth_method: Option<&'static str>,
    /// `grant_types`.
    pub grant_types: Grants,
    /// `response_types`; `None` leaves it out.
    pub response_types: Option<&'static [&'static str]>,
    /// `application_type`; `None` leaves it out.
    pub application_type: Option<&'static str>,
    /// `scope`.
    pub scope: RegisteredScope,
    /// `client_uri`; `None` leaves it out.
    pub client_uri: Option<&'static str>,
}

/// The `grant_types` of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grants {
    /// This list, always.
    Fixed(&'static [&'static str]),
    /// This list, reduced to the server's `grant_types_supported` when it advertises them.
    SupportedOf(&'static [&'static str]),
}

/// The `scope` of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisteredScope {
    /// No `scope` member.
    Omitted,
    /// The scope the client will request ([`ScopeChoice::Discovered`]); no member when there
    /// is none.
    Discovered,
    /// The authorization server's `scopes_supported`, joined; an empty string when it lists
    /// none.
    AuthorizationServer,
}

/// One authorization request a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authorize {
    /// What this request exercises, for the report.
    pub label: &'static str,
    /// The `redirect_uri` (a template, see the module documentation).
    pub redirect_uri: &'static str,
    /// The `scope`.
    pub scope: ScopeChoice,
    /// Appends `offline_access` when the authorization server lists it in `scopes_supported`.
    pub offline_access: bool,
    /// The `resource` (RFC 8707).
    pub resource: ResourceChoice,
}

/// The `scope` of an authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeChoice {
    /// The 401's `scope`, else the protected-resource metadata's `scopes_supported`; none
    /// when neither names any (the MCP scope-selection order).
    Discovered,
    /// The authorization server's `scopes_supported`, joined; none when it lists none.
    AuthorizationServer,
    /// This string, whatever the server advertises.
    Fixed(&'static str),
    /// No `scope` parameter.
    Omitted,
}

/// The `resource` of an authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceChoice {
    /// The protected-resource metadata's `resource`, verbatim.
    Metadata,
    /// The MCP URL the client was given, without query or fragment.
    ServerUrl,
    /// The metadata's `resource` with a trailing slash.
    TrailingSlash,
    /// The origin of the MCP URL.
    BareOrigin,
    /// No `resource` parameter.
    Omitted,
}

/// The order of the MCP authorization specification (2025-06-18 and later), which the
/// TypeScript SDK (`@modelcontextprotocol/sdk`, `client/auth.ts`) follows: the 401's pointer,
/// then the path-inserted and the root protected-resource metadata; RFC 8414 before OpenID
/// configuration. Clients built on it check the resource with `checkResourceAllowed`.
const TYPESCRIPT_SDK: Discovery = Discovery {
    resource_metadata: &[ResourceMetadataAt::Challenge, ResourceMetadataAt::PathInserted, ResourceMetadataAt::Root],
    authorization_server: &[
        AuthorizationServerAt::OAuthPathInserted,
        AuthorizationServerAt::OpenIdPathInserted,
        AuthorizationServerAt::OpenIdPathAppended,
    ],
    resource_check: ResourceCheck::SameOriginPrefix,
};

/// The hosted clients (Claude, ChatGPT) do not publish their discovery code: the replay uses
/// the specification's order and does not assume a resource check.
const HOSTED: Discovery = Discovery { resource_check: ResourceCheck::Unchecked, ..TYPESCRIPT_SDK };

/// VS Code (`src/vs/base/common/oauth.ts`: `fetchResourceMetadata`,
/// `fetchAuthorizationServerMetadata`): the 401's pointer, else the path-inserted then the root
/// document; a `resource` that differs from the server URL after URL normalisation is refused.
const VSCODE: Discovery = Discovery { resource_check: ResourceCheck::Exact, ..TYPESCRIPT_SDK };

/// rmcp, the Rust SDK (`transport/auth.rs`: `well_known_paths`, `generate_discovery_urls`),
/// which Codex and Goose use: the 401's pointer, then path-inserted, path-appended and root
/// protected-resource metadata; RFC 8414 path-inserted, OpenID configuration inserted and
/// appended, then RFC 8414 at the root.
const RMCP: Discovery = Discovery {
    resource_metadata: &[
        ResourceMetadataAt::Challenge,
        ResourceMetadataAt::PathInserted,
        ResourceMetadataAt::PathAppended,
        ResourceMetadataAt::Root,
    ],
    authorization_server: &[
        AuthorizationServerAt::OAuthPathInserted,
        AuthorizationServerAt::OpenIdPathInserted,
        AuthorizationServerAt::OpenIdPathAppended,
        AuthorizationServerAt::OAuthRoot,
    ],
    resource_check: ResourceCheck::SameOriginPrefix,
};

/// Gemini CLI (`packages/core/src/mcp/oauth-utils.ts`: `discoverOAuthConfig`,
/// `discoverAuthorizationServerMetadata`): the 401's pointer, else path-inserted then root;
/// every path form of both documents, then both at the root; the `resource` must equal
/// `protocol//host/path` of the server URL exactly.
const GEMINI: Discovery = Discovery {
    resource_metadata: &[ResourceMetadataAt::Challenge, ResourceMetadataAt::PathInserted, ResourceMetadataAt::Root],
    authorization_server: &[
        AuthorizationServerAt::OAuthPathInserted,
        AuthorizationServerAt::OpenIdPathInserted,
        AuthorizationServerAt::OpenIdPathAppended,
        AuthorizationServerAt::OAuthRoot,
        AuthorizationServerAt::OpenIdRoot,
    ],
    resource_check: ResourceCheck::Exact,
};

const CODE_AND_REFRESH: Grants = Grants::Fixed(&["authorization_code", "refresh_token"]);
const CODE: Option<&[&str]> = Some(&["code"]);

/// Every known client, in the order `--clients all` replays them.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "claude",
        product: "Claude",
        discovery: HOSTED,
        browser_origin: None,
        metadata_document: Some(MetadataDocument {
            url: None,
            auth_method: "none",
            fallback_auth_methods: &[],
            only_with_none: true,
        }),
        registration: Some(Dcr {
            redirect_uris: &["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"],
            token_endpoint_auth_method: Some("client_secret_post"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::Omitted,
            client_uri: None,
        }),
        authorize: &[
            Authorize {
                label: "claude.ai callback, scope=claudeai",
                redirect_uri: "https://claude.ai/api/mcp/auth_callback",
                scope: ScopeChoice::Fixed("claudeai"),
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "claude.com callback",
                redirect_uri: "https://claude.com/api/mcp/auth_callback",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
        ],
        refresh: "refreshes from several egress addresses at once; never asks for offline_access; a 401 invalid_client at the token endpoint makes it register again",
        sources: &[
            "DESIGN.md, what real clients send: DCR with client_secret_post and no scope, both callbacks, a new registration per connection",
            "claude.com/docs/connectors/building/authentication: metadata documents only when none is offered",
            "scope=claudeai: seen in the wild (DESIGN.md, 2026 shapes)",
        ],
    },
    Profile {
        name: "chatgpt",
        product: "ChatGPT",
        discovery: HOSTED,
        browser_origin: None,
        metadata_document: Some(MetadataDocument {
            url: None,
            auth_method: "private_key_jwt",
            fallback_auth_methods: &["none"],
            only_with_none: false,
        }),
        registration: Some(Dcr {
            redirect_uris: &["https://chatgpt.com/connector_platform_oauth_redirect"],
            token_endpoint_auth_method: Some("client_secret_basic"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::Omitted,
            client_uri: None,
        }),
        authorize: &[
            Authorize {
                label: "resource as advertised",
                redirect_uri: "https://chatgpt.com/connector_platform_oauth_redirect",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "the bare origin as resource",
                redirect_uri: "https://chatgpt.com/connector_platform_oauth_redirect",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::BareOrigin,
            },
        ],
        refresh: "sends resource; needs it echoed in the grant",
        sources: &[
            "DESIGN.md, what real clients send: metadata document with private_key_jwt falling back to none, DCR, the connector callback, the bare origin as resource",
            "examples/notes-server/tests/clients.rs: DCR with client_secret_basic",
        ],
    },
    Profile {
        name: "claude-code",
        product: "Claude Code",
        discovery: TYPESCRIPT_SDK,
        browser_origin: None,
        metadata_document: Some(MetadataDocument {
            url: None,
            auth_method: "none",
            fallback_auth_methods: &[],
            only_with_none: false,
        }),
        registration: Some(Dcr {
            redirect_uris: &["http://localhost:{port}/callback"],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::Omitted,
            client_uri: None,
        }),
        authorize: &[
            Authorize {
                label: "localhost on another port, resource with a trailing slash",
                redirect_uri: "http://localhost:{new_port}/callback",
                scope: ScopeChoice::Discovered,
                offline_access: true,
                resource: ResourceChoice::TrailingSlash,
            },
            Authorize {
                label: "127.0.0.1 on another port, no resource",
                redirect_uri: "http://127.0.0.1:{new_port}/callback",
                scope: ScopeChoice::Discovered,
                offline_access: true,
                resource: ResourceChoice::Omitted,
            },
        ],
        refresh: "has sent resource with a trailing slash, and once none at all",
        sources: &[
            "DESIGN.md, what real clients send: metadata document when offered, else DCR; localhost callback on a random port; resource with a trailing slash or none; localhost and 127.0.0.1 swapped between releases",
            "offline_access when the server lists it: SEP-2207, as the SDKs implement it",
        ],
    },
    Profile {
        name: "cursor",
        product: "Cursor",
        discovery: Discovery { resource_check: ResourceCheck::Unchecked, ..TYPESCRIPT_SDK },
        browser_origin: None,
        metadata_document: None,
        registration: Some(Dcr {
            redirect_uris: &[
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "http://localhost:8787/callback",
            ],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::Omitted,
            client_uri: None,
        }),
        authorize: &[
            Authorize {
                label: "private-use cursor:// callback",
                redirect_uri: "cursor://anysphere.cursor-mcp/oauth/callback",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "hosted www.cursor.com callback",
                redirect_uri: "https://www.cursor.com/agents/mcp/oauth/callback",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
        ],
        refresh: "not published",
        sources: &[
            "erp-mafia/accounted#2225 and soflyy/agent-connector-for-wp#111: one registration with the cursor://, the www.cursor.com and a localhost:8787 callback, token_endpoint_auth_method none",
            "bytebase/bytebase#20510: the IDE and cursor-agent authorize with the www.cursor.com callback",
        ],
    },
    Profile {
        name: "vscode",
        product: "VS Code",
        discovery: VSCODE,
        browser_origin: None,
        metadata_document: None,
        registration: Some(Dcr {
            redirect_uris: &[
                "https://insiders.vscode.dev/redirect",
                "https://vscode.dev/redirect",
                "http://127.0.0.1/",
                "http://127.0.0.1:33418/",
            ],
            token_endpoint_auth_method: Some("none"),
            grant_types: Grants::SupportedOf(&[
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ]),
            response_types: CODE,
            application_type: Some("native"),
            scope: RegisteredScope::Discovered,
            client_uri: Some("https://code.visualstudio.com"),
        }),
        authorize: &[
            Authorize {
                label: "loopback on its default port 33418",
                redirect_uri: "http://127.0.0.1:33418/",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "loopback on another port (33418 taken), scope=openid profile email",
                redirect_uri: "http://127.0.0.1:{new_port}/",
                scope: ScopeChoice::Fixed("openid profile email"),
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "vscode.dev redirect relay",
                redirect_uri: "https://vscode.dev/redirect",
                scope: ScopeChoice::Discovered,
                offline_access: false,
                resource: ResourceChoice::Metadata,
            },
        ],
        refresh: "sends resource",
        sources: &[
            "microsoft/vscode src/vs/base/common/oauth.ts: fetchDynamicRegistration (the body, the four redirect URIs, DEFAULT_AUTH_FLOW_PORT 33418), the discovery order",
            "microsoft/vscode authMetadata: scopes from the 401, else the resource metadata's scopes_supported",
            "scope=openid profile email: seen in the wild (the habit the server's scope policy must serve)",
        ],
    },
    Profile {
        name: "inspector",
        product: "MCP Inspector",
        discovery: TYPESCRIPT_SDK,
        browser_origin: Some("http://localhost:6274"),
        metadata_document: None,
        registration: Some(Dcr {
            redirect_uris: &["http://localhost:6274/oauth/callback"],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::Discovered,
            client_uri: Some("https://github.com/modelcontextprotocol/inspector"),
        }),
        authorize: &[Authorize {
            label: "browser callback",
            redirect_uri: "http://localhost:6274/oauth/callback",
            scope: ScopeChoice::Discovered,
            offline_access: false,
            resource: ResourceChoice::Metadata,
        }],
        refresh: "sends resource; every call is cross-origin from http://localhost:6274",
        sources: &[
            "DESIGN.md, what real clients send: web callback http://localhost:6274/oauth/callback, CORS on metadata, registration, token and MCP",
            "modelcontextprotocol/inspector: the TypeScript SDK's client in the browser",
        ],
    },
    Profile {
        name: "codex",
        product: "Codex",
        discovery: RMCP,
        browser_origin: None,
        metadata_document: None,
        registration: Some(Dcr {
            redirect_uris: &["http://127.0.0.1:{port}/callback"],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: Some("native"),
            scope: RegisteredScope::Omitted,
            client_uri: None,
        }),
        authorize: &[
            Authorize {
                label: "127.0.0.1 on another port, /callback/<id>",
                redirect_uri: "http://127.0.0.1:{new_port}/callback/{callback_id}",
                scope: ScopeChoice::Discovered,
                offline_access: true,
                resource: ResourceChoice::Metadata,
            },
            Authorize {
                label: "localhost instead of the registered 127.0.0.1, /callback/<id>",
                redirect_uri: "http://localhost:{new_port}/callback/{callback_id}",
                scope: ScopeChoice::Discovered,
                offline_access: true,
                resource: ResourceChoice::Metadata,
            },
        ],
        refresh: "omits resource on refresh",
        sources: &[
            "openai/codex codex-rs/rmcp-client/src/perform_oauth_login.rs: client name Codex, a 127.0.0.1 listener on an ephemeral port, the /callback/<id> suffix (append_callback_id_to_redirect_uri)",
            "rmcp transport/auth.rs register_client: the body (none, both grants, application_type native)",
            "DESIGN.md, 2026 shapes: registers 127.0.0.1, authorizes with localhost, omits resource on refresh",
        ],
    },
    Profile {
        name: "gemini",
        product: "Gemini CLI",
        discovery: GEMINI,
        browser_origin: None,
        metadata_document: None,
        registration: Some(Dcr {
            redirect_uris: &["http://localhost:7777/oauth/callback"],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: None,
            scope: RegisteredScope::AuthorizationServer,
            client_uri: None,
        }),
        authorize: &[Authorize {
            label: "fixed loopback port 7777",
            redirect_uri: "http://localhost:7777/oauth/callback",
            scope: ScopeChoice::AuthorizationServer,
            offline_access: false,
            resource: ResourceChoice::ServerUrl,
        }],
        refresh: "sends resource (the server URL) and the scope again",
        sources: &[
            "google-gemini/gemini-cli packages/core/src/mcp/oauth-provider.ts: registerClient (the body, REDIRECT_PORT 7777), buildAuthorizationUrl (scope from the authorization server, resource from the server URL)",
        ],
    },
    Profile {
        name: "goose",
        product: "Goose",
        discovery: RMCP,
        browser_origin: None,
        metadata_document: Some(MetadataDocument {
            url: Some("https://goose-docs.ai/oauth/client-metadata.json"),
            auth_method: "none",
            fallback_auth_methods: &[],
            only_with_none: false,
        }),
        registration: Some(Dcr {
            redirect_uris: &["http://127.0.0.1:{port}/oauth_callback"],
            token_endpoint_auth_method: Some("none"),
            grant_types: CODE_AND_REFRESH,
            response_types: CODE,
            application_type: Some("native"),
            scope: RegisteredScope::Discovered,
            client_uri: None,
        }),
        authorize: &[Authorize {
            label: "127.0.0.1 on its listener's port",
            redirect_uri: "http://127.0.0.1:{port}/oauth_callback",
            scope: ScopeChoice::Discovered,
            offline_access: true,
            resource: ResourceChoice::Metadata,
        }],
        refresh: "sends resource",
        sources: &[
            "block/goose crates/goose/src/oauth/mod.rs: CLIENT_METADATA_URL, client name goose, a 127.0.0.1 listener on an ephemeral port, /oauth_callback",
            "rmcp transport/auth.rs: metadata document when advertised, else DCR (AuthorizationRequest)",
        ],
    },
];

/// The profile named `name`.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name.eq_ignore_ascii_case(name.trim()))
}

/// The profiles for a `--clients` list: names, or `all`. Each profile once, in the list's
/// order; an unknown name is an error that lists the known ones.
pub fn select(names: &[String]) -> Result<Vec<&'static Profile>, String> {
    let mut out: Vec<&'static Profile> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let found: Vec<&'static Profile> = if name.eq_ignore_ascii_case("all") {
            PROFILES.iter().collect()
        } else {
            vec![profile(name).ok_or_else(|| unknown(name))?]
        };
        for p in found {
            if !out.iter().any(|o| o.name == p.name) {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(unknown(""));
    }
    Ok(out)
}

/// Parses one `--clients` value: a known name or `all`.
pub fn parse_name(name: &str) -> Result<String, String> {
    select(&[name.to_owned()]).map(|_| name.trim().to_ascii_lowercase())
}

fn unknown(name: &str) -> String {
    let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
    format!("unknown client '{}'; known: {}, or all", name.chars().take(64).collect::<String>(), names.join(", "))
}

/// Codex's per-server callback suffix: the first 9 bytes of SHA-256 over the server URL
/// (without fragment), base64url: 12 characters. BASE64URL(SHA-256(url)) starts with exactly
/// those 12 characters (9 bytes are 12 whole base64 digits), and the S256 code challenge of a
/// value is that encoding, so it computes the hash here.
pub fn codex_callback_id(server_url: &str) -> String {
    let Ok(mut url) = url::Url::parse(server_url) else { return String::new() };
    url.set_fragment(None);
    let digest = CodeChallenge::s256(&CodeVerifier::new(url.to_string()));
    digest.as_str().chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_complete_and_cited() {
        for p in PROFILES {
            assert!(!p.sources.is_empty(), "{}: no source", p.name);
            assert!(!p.authorize.is_empty(), "{}: no authorization request", p.name);
            assert!(p.registration.is_some() || p.metadata_document.is_some(), "{}: no way to identify itself", p.name);
            assert_eq!(p.name, p.name.to_ascii_lowercase());
            assert!(p.discovery.resource_metadata.contains(&ResourceMetadataAt::Challenge), "{}", p.name);
            for a in p.authorize {
                for placeholder in template_placeholders(a.redirect_uri) {
                    assert!(["port", "new_port", "callback_id"].contains(&placeholder.as_str()), "{}", a.redirect_uri);
                }
            }
            if let Some(dcr) = &p.registration {
                for uri in dcr.redirect_uris {
                    assert!(
                        template_placeholders(uri).iter().all(|t| t == "port"),
                        "{}: a registration names only the port it listens on: {uri}",
                        p.name
                    );
                }
            }
        }
        let mut names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROFILES.len(), "names are unique");
    }

    #[test]
    fn the_shapes_the_servers_must_serve_are_in_the_table() {
        let claude = profile("claude").unwrap();
        let dcr = claude.registration.unwrap();
        assert_eq!(dcr.scope, RegisteredScope::Omitted, "Claude registers without scope");
        assert_eq!(dcr.token_endpoint_auth_method, Some("client_secret_post"));
        assert!(claude.authorize.iter().any(|a| a.scope == ScopeChoice::Fixed("claudeai")));
        let chatgpt = profile("chatgpt").unwrap().metadata_document.unwrap();
        assert_eq!((chatgpt.auth_method, chatgpt.fallback_auth_methods), ("private_key_jwt", &["none"][..]));
        let vscode = profile("vscode").unwrap();
        assert_eq!(vscode.registration.unwrap().application_type, Some("native"));
        assert!(vscode.authorize.iter().any(|a| a.scope == ScopeChoice::Fixed("openid profile email")));
        assert!(vscode.authorize.iter().any(|a| a.redirect_uri == "https://vscode.dev/redirect"));
        let cursor = profile("cursor").unwrap();
        assert!(cursor.registration.unwrap().redirect_uris.iter().any(|u| u.starts_with("cursor://")));
        assert_eq!(profile("inspector").unwrap().browser_origin, Some("http://localhost:6274"));
        let code = profile("claude-code").unwrap();
        assert!(code.authorize.iter().any(|a| a.resource == ResourceChoice::Omitted));
        assert!(code.authorize.iter().all(|a| a.offline_access));
        assert!(profile("goose").unwrap().metadata_document.unwrap().url.is_some());
    }

    #[test]
    fn client_lists_are_parsed() {
        let names = |list: &[&str]| -> Result<Vec<&str>, String> {
            let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            select(&list).map(|ps| ps.iter().map(|p| p.name).collect())
        };
        assert_eq!(names(&["codex", " Cursor "]).unwrap(), ["codex", "cursor"]);
        assert_eq!(names(&["all"]).unwrap().len(), 9);
        assert_eq!(names(&["codex", "all"]).unwrap()[0], "codex", "each once, in the list's order");
        assert_eq!(names(&["codex", "all"]).unwrap().len(), 9);
        let e = names(&["netscape"]).unwrap_err();
        assert!(e.contains("netscape") && e.contains("claude-code") && e.contains("all"), "{e}");
        assert!(names(&[]).is_err());
        assert_eq!(parse_name("VSCode").unwrap(), "vscode");
    }

    #[test]
    fn the_codex_callback_id_is_the_first_nine_bytes_of_sha256() {
        // echo -n https://mcp.example.com/mcp | sha256sum: 9 bytes, base64url.
        let id = codex_callback_id("https://mcp.example.com/mcp");
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(id, codex_callback_id("https://mcp.example.com/mcp#fragment"), "the fragment is not hashed");
        assert_eq!(id, EXPECTED_CODEX_ID);
    }

    /// base64url(sha256("https://mcp.example.com/mcp")[..9]), computed independently.
    const EXPECTED_CODEX_ID: &str = "epMNJ6P1xGQ9";

    fn template_placeholders(s: &str) -> Vec<String> {
        s.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned())).collect()
    }
}
