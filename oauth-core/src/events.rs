//! Flow events.
//! Documented in the crate docs, "Flow events".

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::types::{ClientId, UserId};

pub(crate) use crate::escape::escape_detail;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The stable name, as stored and logged.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $s,)*
                }
            }

            /// Parses a stable name.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// A step of a connection attempt, in the order a client goes through them.
    FlowStep {
        /// Dynamic client registration.
        Registration => "registration",
        /// The authorization request was received and validated.
        AuthorizationRequest => "authorization_request",
        /// The user signed in.
        SignIn => "sign_in",
        /// The user answered the consent page (or consent was skipped).
        Consent => "consent",
        /// An authorization code was issued.
        CodeIssued => "code_issued",
        /// The code was exchanged at the token endpoint.
        CodeExchange => "code_exchange",
        /// A refresh token was used.
        Refresh => "refresh",
        /// A client-credentials token was requested.
        ClientCredentials => "client_credentials",
        /// An enterprise IdP's identity assertion (ID-JAG) was presented for a token.
        EnterpriseAssertion => "enterprise_assertion",
        /// The person signed in at an upstream identity provider and came back.
        UpstreamSignIn => "upstream_sign_in",
        /// A token was revoked.
        Revocation => "revocation",
        /// A token was introspected.
        Introspection => "introspection",
        /// A token was presented to the protected resource.
        ResourceAccess => "resource_access",
    }
}

wire_enum! {
    /// Why a step failed: stable codes an operator, a test or a dashboard can match on.
    Reason {
        /// The request was malformed (missing or repeated parameter).
        InvalidRequest => "invalid_request",
        /// The client id is not registered (or was deleted).
        ClientUnknown => "client_unknown",
        /// The client is deactivated.
        ClientInactive => "client_inactive",
        /// Client authentication failed (missing or wrong secret, wrong method).
        ClientAuthFailed => "client_auth_failed",
        /// A `private_key_jwt` client assertion was refused: its signature, key, algorithm,
        /// `iss`/`sub`, `aud`, `exp` or `jti` (the detail says which).
        ClientAssertionInvalid => "client_assertion_invalid",
        /// A client assertion was presented a second time (its `jti` was seen before).
        ClientAssertionReplayed => "client_assertion_replayed",
        /// A `private_key_jwt` client's keys could not be obtained (its `jwks_uri` failed,
        /// or holds no usable key).
        ClientKeysUnavailable => "client_keys_unavailable",
        /// An ID-JAG from an issuer that is not among the trusted enterprise IdPs.
        IdJagUntrustedIssuer => "id_jag_untrusted_issuer",
        /// An ID-JAG was refused: its type, signature, `aud`, `client_id`, `resource`,
        /// lifetime or claims (the detail says which).
        IdJagInvalid => "id_jag_invalid",
        /// An ID-JAG was presented a second time (its `jti` was seen before).
        IdJagReplayed => "id_jag_replayed",
        /// A valid ID-JAG names a person who has no account here.
        IdJagUserUnknown => "id_jag_user_unknown",
        /// An upstream sign-in came back to a browser that did not start it: no flow cookie,
        /// one that does not open, is expired or for another provider, or another `state`.
        UpstreamStateMismatch => "upstream_state_mismatch",
        /// The upstream provider refused: an `error` at the callback, or at its token endpoint.
        UpstreamRefused => "upstream_refused",
        /// The upstream provider could not be reached, or answered what is not its protocol.
        UpstreamUnreachable => "upstream_unreachable",
        /// The upstream `id_token` was refused: signature, `iss`, `aud`, `azp`, `exp` or `iat`
        /// (the detail says which).
        UpstreamIdTokenInvalid => "upstream_id_token_invalid",
        /// The upstream `id_token`'s `nonce` is not this flow's, or was used before.
        UpstreamNonceMismatch => "upstream_nonce_mismatch",
        /// The upstream provider signed in a person the allow-list does not admit.
        UpstreamUserRefused => "upstream_user_refused",
        /// A tool asked for the person's upstream token and there is none to give: no vault,
        /// nothing kept for the grant, or it expired with no refresh token.
        UpstreamTokenUnavailable => "upstream_token_unavailable",
        /// The upstream provider refused a refresh with `invalid_grant`: the grant here was
        /// revoked with it, so that the client signs in again.
        UpstreamGrantEnded => "upstream_grant_ended",
        /// The upstream provider refused to exchange the person's token (RFC 8693) for a
        /// token of another API, or does not offer the exchange.
        UpstreamExchangeRefused => "upstream_exchange_refused",
        /// The redirect URI is not registered for the client.
        RedirectUriNotRegistered => "redirect_uri_not_registered",
        /// The redirect URI at the token endpoint differs from the authorization request's.
        RedirectUriMismatch => "redirect_uri_mismatch",
        /// The response type is not `code`.
        UnsupportedResponseType => "unsupported_response_type",
        /// The grant type is unsupported or not registered for the client.
        UnsupportedGrantType => "unsupported_grant_type",
        /// The client may not use this grant.
        UnauthorizedClient => "unauthorized_client",
        /// No PKCE challenge, or not S256.
        PkceMissing => "pkce_missing",
        /// The code verifier does not match the challenge.
        PkceMismatch => "pkce_mismatch",
        /// The requested scope is invalid.
        InvalidScope => "invalid_scope",
        /// The requested resource is not this server's.
        ResourceMismatch => "resource_mismatch",
        /// The pending request expired or was already completed.
        PendingExpired => "pending_expired",
        /// The user denied consent.
        AccessDenied => "access_denied",
        /// Wrong username or password.
        BadCredentials => "bad_credentials",
        /// The code is unknown.
        CodeUnknown => "code_unknown",
        /// The code expired before it was exchanged.
        CodeExpired => "code_expired",
        /// The code was used before: the grant it issued is revoked.
        CodeReused => "code_reused",
        /// The code was issued to another client.
        CodeClientMismatch => "code_client_mismatch",
        /// The refresh token is unknown.
        RefreshUnknown => "refresh_unknown",
        /// The refresh token expired.
        RefreshExpired => "refresh_expired",
        /// A rotated refresh token was replayed after the grace window: the grant is revoked.
        RefreshReused => "refresh_reused",
        /// The grant was revoked.
        GrantRevoked => "grant_revoked",
        /// The registration metadata is invalid.
        InvalidClientMetadata => "invalid_client_metadata",
        /// A redirect URI in the registration is invalid.
        InvalidRedirectUri => "invalid_redirect_uri",
        /// No token was presented.
        TokenMissing => "token_missing",
        /// The token is not a well-formed JWT access token.
        TokenMalformed => "token_malformed",
        /// The token's signature does not verify or its key is unknown.
        TokenSignatureInvalid => "token_signature_invalid",
        /// The token expired.
        TokenExpired => "token_expired",
        /// The token's issuer is not the expected one.
        TokenIssuerMismatch => "token_issuer_mismatch",
        /// The token's audience is not this resource.
        TokenAudienceMismatch => "token_audience_mismatch",
        /// The token lacks a scope the operation needs.
        InsufficientScope => "insufficient_scope",
        /// An internal failure (storage, cryptography).
        Internal => "internal",
        /// A client asked about a token it may not introspect (another client's token, and it
        /// is not a resource server registered for introspection): answered inactive.
        IntrospectionNotEntitled => "introspection_not_entitled",
        /// A machine client's token (`client_credentials`) at a resource that accepts only
        /// users' tokens.
        MachineTokenRefused => "machine_token_refused",
        /// A request carried an MCP session (`Mcp-Session-Id`) created with a token of another
        /// subject or client.
        SessionNotYours => "session_not_yours",
        /// A request carried an MCP session the guard does not know: ended after being idle,
        /// evicted for a newer one, or created before a restart.
        SessionUnknown => "session_unknown",
        /// A sign-in session was refused: its user was removed.
        SessionUserRemoved => "session_user_removed",
        /// A sign-in session was refused: its user is disabled.
        SessionUserDisabled => "session_user_disabled",
        /// A sign-in session was refused: its user's password changed since it began.
        SessionCredentialsChanged => "session_credentials_changed",
        /// The person signed out ("Not you? Sign out" on the consent page).
        SignedOut => "signed_out",
        /// Too many wrong passwords for this account, from any address: sign-in is blocked for a while.
        SignInThrottled => "sign_in_throttled",
        /// Too many requests from one address (or registrations from everyone) for a limit.
        RateLimited => "rate_limited",
        /// Registration without the deployment's initial access token (RFC 7591 §3).
        InitialAccessTokenInvalid => "initial_access_token_invalid",
    }
}

/// One step of a connection attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlowEvent {
    /// When.
    pub at: UnixTime,
    /// Which step.
    pub step: FlowStep,
    /// The client, when known.
    pub client_id: Option<ClientId>,
    /// The user, when known.
    pub user: Option<UserId>,
    /// Why the step failed; `None` when it succeeded.
    pub reason: Option<Reason>,
    /// What happened, precisely, for the operator. Never a secret; control characters
    /// escaped (control characters written as `\u{…}`).
    pub detail: String,
}

impl FlowEvent {
    /// A successful step; `detail` has its control characters escaped.
    pub fn success(at: UnixTime, step: FlowStep, detail: impl Into<String>) -> Self {
        Self { at, step, client_id: None, user: None, reason: None, detail: escape_detail(detail.into()) }
    }

    /// A failed step; `detail` has its control characters escaped.
    pub fn failure(at: UnixTime, step: FlowStep, reason: Reason, detail: impl Into<String>) -> Self {
        Self { at, step, client_id: None, user: None, reason: Some(reason), detail: escape_detail(detail.into()) }
    }

    /// Sets the client.
    #[must_use]
    pub fn client(mut self, id: &ClientId) -> Self {
        self.client_id = Some(id.clone());
        self
    }

    /// Sets the user.
    #[must_use]
    pub fn user(mut self, id: &UserId) -> Self {
        self.user = Some(id.clone());
        self
    }

    /// Whether the step succeeded.
    pub fn succeeded(&self) -> bool {
        self.reason.is_none()
    }

    /// Writes the event to `tracing`: failures at `warn`, successes at `info`.
    pub fn trace(&self) {
        let client = self.client_id.as_ref().map(ClientId::as_str).unwrap_or("-");
        let user = self.user.as_ref().map(UserId::as_str).unwrap_or("-");
        match self.reason {
            Some(reason) => tracing::warn!(
                target: "oauth::flow",
                step = self.step.as_str(),
                client_id = client,
                user = user,
                reason = reason.as_str(),
                "{} failed: {}",
                self.step,
                self.detail
            ),
            None => tracing::info!(
                target: "oauth::flow",
                step = self.step.as_str(),
                client_id = client,
                user = user,
                "{}: {}",
                self.step,
                self.detail
            ),
        }
    }
}

/// Which failures a stranger can provoke at any rate are stored, and which only logged.
///
/// A refused token at the MCP endpoint, a wrong client secret at `/token`: anyone can send
/// those as fast as the network carries them, and storing each would turn a flood into as many
/// writes to the event store (and crowd out the events an operator needs). A budget stores the
/// first failure of each kind (step, reason and the client id it names) per interval, and at
/// most a fixed number in all per interval, whatever ids the requests make up; the rest are
/// still written to `tracing`. `diagnose` then shows every kind of failure a client hit, and
/// its most recent occurrence within one interval.
///
/// ```
/// use oauth_core::{EventBudget, FlowStep, Reason};
/// use oauth_core::UnixTime;
/// use std::time::Duration;
///
/// let budget = EventBudget::new(Duration::from_secs(10), 100);
/// let t = UnixTime::from_secs(1_000);
/// assert!(budget.admit(FlowStep::CodeExchange, Reason::ClientAuthFailed, "c1", t));
/// assert!(!budget.admit(FlowStep::CodeExchange, Reason::ClientAuthFailed, "c1", t));
/// assert!(budget.admit(FlowStep::CodeExchange, Reason::ClientAuthFailed, "c2", t));
/// assert!(budget.admit(FlowStep::CodeExchange, Reason::ClientAuthFailed, "c1", t.plus(Duration::from_secs(10))));
/// ```
#[derive(Debug)]
pub struct EventBudget {
    interval_secs: i64,
    per_interval: u32,
    state: std::sync::Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    last: std::collections::HashMap<(FlowStep, Reason, String), i64>,
    window_start: i64,
    stored_in_window: u32,
}

impl EventBudget {
    /// Kinds remembered at once; past it, kinds not seen within the interval are forgotten
    /// (which can only store more, never fewer, and still within the per-interval total).
    const CAPACITY: usize = 10_000;

    /// One stored failure per kind per `interval`, at most `per_interval` in all.
    pub fn new(interval: std::time::Duration, per_interval: u32) -> Self {
        let interval_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
        Self { interval_secs, per_interval, state: std::sync::Mutex::new(BudgetState::default()) }
    }

    /// Whether a failure of this kind at `at` is stored (and counted), or only logged.
    pub fn admit(&self, step: FlowStep, reason: Reason, client: &str, at: UnixTime) -> bool {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = at.as_secs();
        if now.saturating_sub(s.window_start) >= self.interval_secs {
            s.window_start = now;
            s.stored_in_window = 0;
        }
        if s.stored_in_window >= self.per_interval {
            return false;
        }
        // Client ids are at most 2048 bytes; a longer claim is cut rather than kept whole.
        let client = &client[..client.floor_char_boundary(2048)];
        let key = (step, reason, client.to_owned());
        if s.last.get(&key).is_some_and(|t| now.saturating_sub(*t) < self.interval_secs) {
            return false;
        }
        if s.last.len() >= Self::CAPACITY {
            let interval = self.interval_secs;
            s.last.retain(|_, t| now.saturating_sub(*t) < interval);
            if s.last.len() >= Self::CAPACITY {
                s.last.clear();
            }
        }
        s.last.insert(key, now);
        s.stored_in_window += 1;
        true
    }
}

impl Default for EventBudget {
    /// One per kind per 10 s, 100 per 10 s in all.
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(10), 100)
    }
}

/// Which events to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventQuery {
    /// Only this client's events.
    pub client_id: Option<ClientId>,
    /// Only events at or after this time.
    pub since: Option<UnixTime>,
    /// At most this many (the newest ones); 0 means the default of 1000.
    pub limit: usize,
}

impl EventQuery {
    /// Default result bound.
    pub const DEFAULT_LIMIT: usize = 1000;

    /// Every event (up to the default limit).
    pub fn all() -> Self {
        Self::default()
    }

    /// Only this client's events.
    #[must_use]
    pub fn for_client(mut self, id: &ClientId) -> Self {
        self.client_id = Some(id.clone());
        self
    }

    /// Only events at or after `t`.
    #[must_use]
    pub fn since(mut self, t: UnixTime) -> Self {
        self.since = Some(t);
        self
    }

    /// At most `n` events.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 { Self::DEFAULT_LIMIT } else { self.limit }
    }

    /// Whether an event matches (for backends that filter in memory).
    pub fn matches(&self, e: &FlowEvent) -> bool {
        self.client_id.as_ref().is_none_or(|c| e.client_id.as_ref() == Some(c)) && self.since.is_none_or(|t| e.at >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_roundtrip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for s in FlowStep::ALL {
            assert_eq!(FlowStep::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Reason::parse("nope"), None);
    }

    #[test]
    fn details_are_escaped_when_built() {
        let typed = "alice\u{1b}[2J\r\nok: signed in as 'root'\u{7f}\u{85}\u{202e}";
        let e = FlowEvent::failure(UnixTime::from_secs(0), FlowStep::SignIn, Reason::BadCredentials, typed);
        assert_eq!(e.detail, "alice\\u{1b}[2J\\u{d}\\u{a}ok: signed in as 'root'\\u{7f}\\u{85}\\u{202e}");
        assert!(!e.detail.chars().any(crate::escape::needs_escape));
        let s = FlowEvent::success(UnixTime::from_secs(0), FlowStep::SignIn, "tab\there");
        assert_eq!(s.detail, "tab\\u{9}here");
        let plain = "client 'Zoë' registered (ünïcode stays)";
        assert_eq!(escape_detail(plain.to_owned()), plain);
    }
}
