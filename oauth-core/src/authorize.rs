//! The authorization endpoint (RFC 6749 4.1.1, OAuth 2.1, MCP).
//! Documented in the crate docs, "Authorization requests and consent".

use crate::client::{Client, GrantType};
use crate::clock::UnixTime;
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::params::{Params, clip};
use crate::pkce::{CodeChallenge, CodeChallengeMethod};
use crate::policy::{Quirk, resolve_resource, resolve_scopes};
use crate::secret::AuthorizationCode;
use crate::server::AuthorizationServer;
use crate::store::{AuthorizationCodeRecord, Consent, PendingAuthorization};
use crate::types::{ClientId, GrantId, RedirectKind, RedirectUri, ScopeSet, UserId};

/// Longest `state` accepted.
pub const MAX_STATE_LEN: usize = 2048;

/// An authorization request's parameters, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// `response_type`.
    pub response_type: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `resource` (RFC 8707; may repeat).
    pub resource: Vec<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
}

impl AuthorizationRequest {
    /// Builds a request from query pairs: bounded, repeated parameters refused, empty values
    /// treated as absent. A malformed query is shown to the user (there is no trustworthy
    /// redirect URI yet).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut p = Params::collect(pairs, &["resource"])?;
        Ok(Self {
            response_type: p.take("response_type"),
            client_id: p.take("client_id"),
            redirect_uri: p.take("redirect_uri"),
            scope: p.take("scope"),
            state: p.take("state"),
            code_challenge: p.take("code_challenge"),
            code_challenge_method: p.take("code_challenge_method"),
            resource: p.take_all("resource"),
            response_mode: p.take("response_mode"),
        })
    }
}

/// Why an authorization request failed, and where the answer goes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// Show this to the user; never redirect (unknown client, unregistered redirect URI,
    /// expired request).
    #[error("{0}")]
    ShowToUser(OAuthError),
    /// Redirect the user agent to `location`, which carries the error, `state` and `iss`.
    #[error("{error} (redirecting to the client)")]
    Redirect {
        /// The client's redirect URI with the error parameters.
        location: String,
        /// The error.
        error: OAuthError,
    },
    /// An internal failure: show a generic error page.
    #[error(transparent)]
    Internal(#[from] Error),
}

/// A validated request awaiting sign-in and consent: what the consent page shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthorizationPrompt {
    /// The stored pending request (its `id` goes into the forms).
    pub pending: PendingAuthorization,
    /// The client asking.
    pub client: Client,
}

impl AuthorizationServer {
    /// Validates an authorization request and stores it as a pending authorization.
    pub async fn authorize(&self, req: AuthorizationRequest) -> Result<AuthorizationPrompt, AuthorizeError> {
        let now = self.now();
        let step = FlowStep::AuthorizationRequest;
        let show = |failure: Failure, client: Option<&ClientId>| {
            let event = failure.event(now, step, client);
            async move { self.show(event, failure.error).await }
        };

        // 1. The client and the redirect URI: failures are shown, never redirected.
        let client_id = match parse_client_id(req.client_id.as_deref()) {
            Ok(id) => id,
            Err(f) => return Err(show(f, None).await),
        };
        let client = match self.resolve_client(&client_id).await.map_err(AuthorizeError::Internal)? {
            Ok(c) => c,
            Err((reason, msg)) => {
                return Err(show(Failure::new(reason, OAuthError::invalid_client(msg)), Some(&client_id)).await);
            }
        };
        let (redirect_uri, explicit, redirect_note) =
            match check_client_and_redirect(&client, req.redirect_uri.as_deref()) {
                Ok(r) => r,
                Err(f) => return Err(show(f, Some(&client_id)).await),
            };

        // 2. Everything else is redirected to the client with `state` and `iss`.
        let state = req.state.clone().filter(|s| s.len() <= MAX_STATE_LEN);
        let checked = match check_request(&req, &client, self.config()) {
            Ok(mut c) => {
                c.notes.extend(redirect_note);
                c
            }
            Err(f) => {
                self.record(f.event(now, step, Some(&client.id))).await;
                let location = error_location(&redirect_uri, &f.error, state.as_deref(), self.config().issuer.as_str());
                return Err(AuthorizeError::Redirect { location, error: f.error });
            }
        };

        // 3. The one effect: the pending request, until the person signs in and decides.
        let pending = PendingAuthorization {
            id: crate::secret::random_id::<24>(),
            client_id: client.id.clone(),
            redirect_uri,
            redirect_uri_explicit: explicit,
            state,
            scopes: checked.scopes,
            resource: checked.resource,
            code_challenge: checked.code_challenge,
            created_at: now,
            expires_at: now.plus(self.config().pending_ttl),
            upstream: None,
        };
        self.stores().authorizations.put_pending(&pending).await.map_err(Error::from)?;
        let mut detail =
            format!("redirect_uri {}, scope '{}', resource {}", pending.redirect_uri, pending.scopes, pending.resource);
        if !checked.notes.is_empty() {
            detail.push_str(&format!("; policies applied: {}", checked.notes.join(", ")));
        }
        self.record(FlowEvent::success(now, step, detail).client(&client.id)).await;
        Ok(AuthorizationPrompt { pending, client })
    }

    /// The pending authorization `id`, with its client, if it exists and has not expired.
    pub async fn pending_authorization(&self, id: &str) -> Result<Option<AuthorizationPrompt>, Error> {
        if id.len() > 128 {
            return Ok(None);
        }
        let Some(pending) = self.stores().authorizations.pending(id, self.now()).await? else {
            return Ok(None);
        };
        Ok(self
            .stores()
            .clients
            .client(&pending.client_id)
            .await?
            .map(|client| AuthorizationPrompt { pending, client }))
    }

    /// Whether `user` must see the consent page for this request: see [`consent_decision`]
    /// for the rule. When a remembered consent is not replayed, a flow event says why.
    pub async fn consent_required(&self, prompt: &AuthorizationPrompt, user: &UserId) -> Result<bool, Error> {
        Ok(self.consent_decision(prompt, user).await?.ask())
    }

    /// [`consent_decision`] for this request and user, with the user's remembered consent
    /// from the store. When a remembered consent is not replayed, it records a flow event
    /// saying why the consent page is shown again.
    pub async fn consent_decision(
        &self,
        prompt: &AuthorizationPrompt,
        user: &UserId,
    ) -> Result<ConsentDecision, Error> {
        let remembered =
            if prompt.client.trusted { None } else { self.stores().consents.consent(user, &prompt.client.id).await? };
        let decision =
            consent_decision(&prompt.client, &prompt.pending.redirect_uri, remembered.as_ref(), &prompt.pending.scopes);
        if decision == ConsentDecision::AskAgain {
            self.record(
                FlowEvent::success(
                    self.now(),
                    FlowStep::Consent,
                    format!(
                        "remembered consent not replayed: public client whose code goes to {} ({:?} redirect); \
                         RFC 8252 8.6: another app on the device could pose as it; consent page shown again \
                         (an operator who vouches for the client can mark it trusted)",
                        prompt.pending.redirect_uri,
                        prompt.pending.redirect_uri.kind()
                    ),
                )
                .client(&prompt.client.id)
                .user(user),
            )
            .await;
        }
        Ok(decision)
    }

    /// Completes the pending authorization `pending_id` for `user`: issues a single-use code and
    /// returns the location to redirect the user agent to (with `code`, `state` and `iss`).
    /// With `remember`, the consent is recorded so that the next request skips the page.
    pub async fn approve(
        &self,
        pending_id: &str,
        user: &UserId,
        auth_time: UnixTime,
        remember: bool,
    ) -> Result<String, AuthorizeError> {
        let now = self.now();
        if !user.is_user() {
            // An authenticator that returned a machine client's subject for a person: refusing
            // here keeps users and clients from ever sharing a `sub`.
            tracing::error!(user = %user, "sign-in produced a user id in the machine-client namespace; refused");
            return Err(AuthorizeError::ShowToUser(OAuthError::access_denied(
                "this account cannot approve applications; ask the operator",
            )));
        }
        let pending = self.take_pending(pending_id).await?;
        let code = AuthorizationCode::generate();
        let record = AuthorizationCodeRecord {
            hash: code.hash(),
            grant_id: GrantId::generate(),
            client_id: pending.client_id.clone(),
            user: user.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            redirect_uri_explicit: pending.redirect_uri_explicit,
            code_challenge: pending.code_challenge.clone(),
            scopes: pending.scopes.clone(),
            resource: pending.resource.clone(),
            auth_time,
            issued_at: now,
            expires_at: now.plus(self.config().code_ttl),
            upstream: pending.upstream.clone(),
        };
        if remember {
            let consent = Consent::new(user.clone(), pending.client_id.clone(), pending.scopes.clone(), now);
            self.stores().consents.put_consent(&consent).await.map_err(Error::from)?;
        }
        self.stores().authorizations.put_code(&record).await.map_err(Error::from)?;
        self.record(
            FlowEvent::success(
                now,
                FlowStep::CodeIssued,
                format!(
                    "code {} for scope '{}' delivered to {}, expires in {} s",
                    record.hash.short(),
                    record.scopes,
                    record.redirect_uri,
                    self.config().code_ttl.as_secs()
                ),
            )
            .client(&record.client_id)
            .user(user),
        )
        .await;
        let mut params = vec![("code", code.secret())];
        if let Some(state) = pending.state.as_deref() {
            params.push(("state", state));
        }
        params.push(("iss", self.config().issuer.as_str()));
        Ok(location(&pending.redirect_uri, &params))
    }

    /// The user approved `prompt` on the consent page: records the consent, remembers it for
    /// the next request, and [approves](Self::approve).
    pub async fn consent_given(
        &self,
        prompt: &AuthorizationPrompt,
        user: &UserId,
        auth_time: UnixTime,
    ) -> Result<String, AuthorizeError> {
        let detail = format!("approved scope '{}'", prompt.pending.scopes);
        self.record(FlowEvent::success(self.now(), FlowStep::Consent, detail).client(&prompt.client.id).user(user))
            .await;
        self.approve(&prompt.pending.id, user, auth_time, true).await
    }

    /// `decision` says the consent page is not needed for `prompt`: records why, and
    /// [approves](Self::approve) without remembering anything new. A decision that asks is
    /// refused: the page must be shown.
    pub async fn consent_skipped(
        &self,
        prompt: &AuthorizationPrompt,
        user: &UserId,
        auth_time: UnixTime,
        decision: ConsentDecision,
    ) -> Result<String, AuthorizeError> {
        let why = match decision {
            ConsentDecision::SkipTrusted => "trusted client",
            ConsentDecision::SkipRemembered => "consent given before",
            ConsentDecision::Ask | ConsentDecision::AskAgain => {
                tracing::error!(?decision, "consent skipped although the decision asks; refused");
                return Err(AuthorizeError::ShowToUser(OAuthError::access_denied(
                    "this request needs the user's consent",
                )));
            }
        };
        let detail = format!("skipped: {why}");
        self.record(FlowEvent::success(self.now(), FlowStep::Consent, detail).client(&prompt.client.id).user(user))
            .await;
        self.approve(&prompt.pending.id, user, auth_time, false).await
    }

    /// Denies the pending authorization: the client receives `access_denied`.
    pub async fn deny(&self, pending_id: &str, user: Option<&UserId>) -> Result<String, AuthorizeError> {
        let pending = self.take_pending(pending_id).await?;
        let mut event =
            FlowEvent::failure(self.now(), FlowStep::Consent, Reason::AccessDenied, "the user denied the request")
                .client(&pending.client_id);
        if let Some(u) = user {
            event = event.user(u);
        }
        self.record(event).await;
        let error = OAuthError::access_denied("the user denied the request");
        Ok(error_location(&pending.redirect_uri, &error, pending.state.as_deref(), self.config().issuer.as_str()))
    }

    async fn take_pending(&self, pending_id: &str) -> Result<PendingAuthorization, AuthorizeError> {
        let found = if pending_id.len() > 128 {
            None
        } else {
            self.stores().authorizations.take_pending(pending_id, self.now()).await.map_err(Error::from)?
        };
        match found {
            Some(p) => Ok(p),
            None => Err(self
                .show(
                    FlowEvent::failure(
                        self.now(),
                        FlowStep::Consent,
                        Reason::PendingExpired,
                        "pending authorization expired or already completed",
                    ),
                    OAuthError::invalid_request(
                        "this sign-in request has expired or was already completed; start again from the client",
                    ),
                )
                .await),
        }
    }

    async fn show(&self, event: FlowEvent, error: OAuthError) -> AuthorizeError {
        self.record(event).await;
        AuthorizeError::ShowToUser(error)
    }
}

/// Whether the consent page is shown, and why: the outcome of [`consent_decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentDecision {
    /// Skip the page: the operator marked the client trusted.
    SkipTrusted,
    /// Skip the page: the user consented to these scopes for this client before, and the
    /// code goes somewhere only that client can receive it.
    SkipRemembered,
    /// Show the page: no consent to these scopes yet.
    Ask,
    /// Show the page again although the user consented before: the client is public and its
    /// code goes to a loopback or private-use redirect, which any program on the device can
    /// listen on or claim (RFC 8252 8.6), so the request may not come from that client.
    AskAgain,
}

impl ConsentDecision {
    /// Whether the consent page is shown.
    pub fn ask(self) -> bool {
        matches!(self, Self::Ask | Self::AskAgain)
    }
}

/// The consent rule, for a request of `client` delivering its code to `redirect_uri`, asking
/// for `scopes`, where `remembered` is the user's earlier consent to that client:
///
/// - a trusted client (marked so by the operator) never sees the page;
/// - with no remembered consent covering `scopes`, the page is shown;
/// - a remembered consent is replayed silently only when the redirect proves who gets the
///   code: an https redirect, or a confidential client (which must present its secret to use
///   the code). A public client whose code goes to a loopback port or a private-use scheme is
///   asked again, since another app on the device can pose as it (RFC 8252 8.6).
pub fn consent_decision(
    client: &Client,
    redirect_uri: &RedirectUri,
    remembered: Option<&Consent>,
    scopes: &ScopeSet,
) -> ConsentDecision {
    if client.trusted {
        return ConsentDecision::SkipTrusted;
    }
    if !remembered.is_some_and(|c| c.client_id == client.id && scopes.is_subset(&c.scopes)) {
        return ConsentDecision::Ask;
    }
    if client.is_public() && redirect_uri.kind() != RedirectKind::Https {
        return ConsentDecision::AskAgain;
    }
    ConsentDecision::SkipRemembered
}

/// `redirect_uri` with `params` appended to its query (existing query parameters are kept).
pub(crate) fn location(redirect_uri: &RedirectUri, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri.as_str()) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // A RedirectUri always parses; keep the registered string rather than panic.
        Err(_) => redirect_uri.as_str().to_owned(),
    }
}

/// What an authorization request asks for, once every check has passed.
#[derive(Debug)]
struct CheckedRequest {
    scopes: ScopeSet,
    resource: crate::types::ResourceUri,
    code_challenge: CodeChallenge,
    /// The named leniencies applied (an omitted resource, unknown scopes dropped).
    notes: Vec<String>,
}

/// The `client_id` parameter.
fn parse_client_id(raw: Option<&str>) -> Result<ClientId, Failure> {
    let raw = raw.ok_or_else(|| {
        Failure::new(Reason::InvalidRequest, OAuthError::invalid_request("client_id is missing"))
            .for_operator("no client_id")
    })?;
    ClientId::parse(raw).map_err(|e| Failure::new(Reason::InvalidRequest, OAuthError::invalid_request(e.to_string())))
}

/// The client may authorize, and where the code goes: the `redirect_uri` sent, which must be
/// registered, or the only one registered. Whether it was sent is the second value, the
/// loopback policy that matched it (for the flow event) the third.
fn check_client_and_redirect(
    client: &Client,
    raw: Option<&str>,
) -> Result<(RedirectUri, bool, Option<String>), Failure> {
    let client_id = &client.id;
    if !client.active {
        let msg = format!("client '{client_id}' is deactivated on this server");
        return Err(Failure::new(Reason::ClientInactive, OAuthError::unauthorized_client(msg)));
    }
    let Some(raw) = raw else {
        return match client.redirect_uris.as_slice() {
            [only] => Ok((only.clone(), false, None)),
            registered => {
                let msg = format!(
                    "redirect_uri is missing and client '{client_id}' has {} registered; the request must name one",
                    registered.len()
                );
                let detail = format!(
                    "redirect_uri is missing and client '{client_id}' has {} registered; send one of: {}",
                    registered.len(),
                    client.redirect_uri_list()
                );
                Err(Failure::new(Reason::InvalidRequest, OAuthError::invalid_request(msg)).for_operator(detail))
            }
        };
    };
    let presented = RedirectUri::parse(raw)
        .map_err(|e| Failure::new(Reason::RedirectUriNotRegistered, OAuthError::invalid_request(e.to_string())))?;
    let Some((registered, how)) = client.registered_redirect(&presented) else {
        // The registered URIs are for the operator (log, diagnose), not for whoever opened
        // this link: they would show an attacker where codes can be sent.
        let msg = format!(
            "the application sent a return address that is not registered for it ('{}'); the operator can see which ones are",
            clip(presented.as_str())
        );
        let detail = format!(
            "redirect_uri '{presented}' is not registered for client '{client_id}'; registered: {}",
            client.redirect_uri_list()
        );
        return Err(
            Failure::new(Reason::RedirectUriNotRegistered, OAuthError::invalid_request(msg)).for_operator(detail)
        );
    };
    let note = how.policy().map(|policy| format!("{policy} (sent {presented}, registered {registered})"));
    Ok((presented, true, note))
}

/// The request's parameters, checked in the order the RFCs name them; the first failure is
/// redirected to the client.
fn check_request(
    req: &AuthorizationRequest,
    client: &Client,
    cfg: &crate::ServerConfig,
) -> Result<CheckedRequest, Failure> {
    check_response(req, client)?;
    let code_challenge = check_pkce(req)?;
    let (scopes, dropped) =
        resolve_scopes(req.scope.as_deref(), &cfg.scopes_supported, &cfg.default_scopes, client.scope.as_ref())
            .map_err(|e| Failure::new(Reason::InvalidScope, e))?;
    let resource =
        resolve_resource(&cfg.resource, &req.resource).map_err(|e| Failure::new(Reason::ResourceMismatch, e))?;
    let mut notes = Vec::new();
    if let Some(q) = resource.quirk {
        notes.push(format!("{} (resource sent: {:?}, bound to {})", q.as_str(), req.resource, resource.resource));
    }
    if !dropped.is_empty() {
        notes.push(format!("{} ({dropped})", Quirk::UnknownScopesDropped.as_str()));
    }
    Ok(CheckedRequest { scopes, resource: resource.resource, code_challenge, notes })
}

/// `state`'s size, `response_type=code`, `response_mode=query`, and the client's grant.
fn check_response(req: &AuthorizationRequest, client: &Client) -> Result<(), Failure> {
    let invalid = |msg: String| Failure::new(Reason::InvalidRequest, OAuthError::invalid_request(msg));
    if req.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(invalid(format!("state is longer than {MAX_STATE_LEN} bytes")));
    }
    match req.response_type.as_deref() {
        Some("code") => {}
        None => return Err(invalid("response_type is missing; use 'code'".into())),
        Some(other) => {
            let msg = format!("response_type '{}' is not supported; use 'code'", clip(other));
            return Err(Failure::new(Reason::UnsupportedResponseType, OAuthError::unsupported_response_type(msg)));
        }
    }
    if let Some(mode) = req.response_mode.as_deref().filter(|m| *m != "query") {
        return Err(invalid(format!("response_mode '{}' is not supported; use 'query'", clip(mode))));
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        let e = OAuthError::unauthorized_client("this client did not register the authorization_code grant");
        return Err(Failure::new(Reason::UnauthorizedClient, e));
    }
    Ok(())
}

/// PKCE (RFC 7636): an S256 challenge is required.
fn check_pkce(req: &AuthorizationRequest) -> Result<CodeChallenge, Failure> {
    let missing = |msg: String| Failure::new(Reason::PkceMissing, OAuthError::invalid_request(msg));
    let challenge = req
        .code_challenge
        .as_deref()
        .ok_or_else(|| missing("code_challenge is missing: PKCE with S256 is required".into()))?;
    CodeChallengeMethod::parse(req.code_challenge_method.as_deref()).map_err(|e| missing(e.to_string()))?;
    CodeChallenge::parse(challenge).map_err(|e| missing(e.to_string()))
}

fn error_location(redirect_uri: &RedirectUri, error: &OAuthError, state: Option<&str>, issuer: &str) -> String {
    let mut params = vec![("error", error.code().as_str()), ("error_description", error.description())];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    location(redirect_uri, &params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientOrigin, TokenEndpointAuthMethod};

    fn client(auth: TokenEndpointAuthMethod, redirect: &RedirectUri, trusted: bool) -> Client {
        let mut c = Client::new(
            ClientId::parse("c1").unwrap(),
            auth,
            vec![redirect.clone()],
            ClientOrigin::Dynamic,
            UnixTime::from_secs(0),
        );
        c.trusted = trusted;
        c
    }

    /// A valid request of `c1` to `redirect`, with `edit` applied.
    fn request(redirect: &str, edit: impl FnOnce(&mut AuthorizationRequest)) -> AuthorizationRequest {
        let verifier = crate::secret::CodeVerifier::generate();
        let mut req = AuthorizationRequest {
            response_type: Some("code".into()),
            client_id: Some("c1".into()),
            redirect_uri: Some(redirect.into()),
            code_challenge: Some(CodeChallenge::s256(&verifier).as_str().to_owned()),
            code_challenge_method: Some("S256".into()),
            ..AuthorizationRequest::default()
        };
        edit(&mut req);
        req
    }

    #[test]
    fn each_request_check_names_its_reason_and_error() {
        use crate::ErrorCode::{
            InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient, UnsupportedResponseType,
        };
        let registered = "http://127.0.0.1:51234/callback";
        let c = client(TokenEndpointAuthMethod::None, &RedirectUri::parse(registered).unwrap(), false);
        let cfg = crate::testing::config();
        type Edit = fn(&mut AuthorizationRequest);
        let table: [(&str, Edit, Reason, crate::ErrorCode); 10] = [
            ("long state", |r| r.state = Some("s".repeat(MAX_STATE_LEN + 1)), Reason::InvalidRequest, InvalidRequest),
            ("no response_type", |r| r.response_type = None, Reason::InvalidRequest, InvalidRequest),
            (
                "token flow",
                |r| r.response_type = Some("token".into()),
                Reason::UnsupportedResponseType,
                UnsupportedResponseType,
            ),
            ("fragment mode", |r| r.response_mode = Some("fragment".into()), Reason::InvalidRequest, InvalidRequest),
            ("no PKCE", |r| r.code_challenge = None, Reason::PkceMissing, InvalidRequest),
            ("plain PKCE", |r| r.code_challenge_method = Some("plain".into()), Reason::PkceMissing, InvalidRequest),
            ("short challenge", |r| r.code_challenge = Some("abc".into()), Reason::PkceMissing, InvalidRequest),
            ("malformed scope", |r| r.scope = Some("bad\"scope".into()), Reason::InvalidScope, InvalidScope),
            (
                "another resource",
                |r| r.resource = vec!["https://elsewhere.example/mcp".into()],
                Reason::ResourceMismatch,
                InvalidTarget,
            ),
            ("bad resource", |r| r.resource = vec!["not a url".into()], Reason::ResourceMismatch, InvalidTarget),
        ];
        for (what, edit, reason, code) in table {
            let f = check_request(&request(registered, edit), &c, &cfg).expect_err(what);
            assert_eq!((f.reason, f.error.code()), (reason, code), "{what}");
            assert!(!f.error.description().is_empty(), "{what}");
        }
        // Claude's `scope=claudeai`: nothing this server defines, so the defaults, noted.
        let ok = check_request(&request(registered, |r| r.scope = Some("claudeai".into())), &c, &cfg).unwrap();
        assert_eq!(ok.scopes, cfg.default_scopes);
        assert!(ok.notes.iter().any(|n| n == "unknown_scopes_dropped (claudeai)"), "{:?}", ok.notes);
        let ok = check_request(&request(registered, |_| {}), &c, &cfg).unwrap();
        assert_eq!(ok.scopes, cfg.default_scopes);
        assert!(ok.notes.iter().any(|n| n.starts_with("resource_omitted")), "{:?}", ok.notes);
        // A client that did not register the code grant.
        let mut machine = c;
        machine.grant_types = vec![GrantType::ClientCredentials];
        let f = check_request(&request(registered, |_| {}), &machine, &cfg).unwrap_err();
        assert_eq!((f.reason, f.error.code()), (Reason::UnauthorizedClient, UnauthorizedClient));
    }

    #[test]
    fn the_redirect_uri_is_checked_before_anything_is_redirected() {
        let registered = RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap();
        let c = client(TokenEndpointAuthMethod::ClientSecretBasic, &registered, false);
        assert_eq!(check_client_and_redirect(&c, Some(registered.as_str())).unwrap(), (registered.clone(), true, None));
        assert_eq!(check_client_and_redirect(&c, None).unwrap(), (registered, false, None), "the only one");
        let f = check_client_and_redirect(&c, Some("https://evil.example/cb")).unwrap_err();
        assert_eq!(f.reason, Reason::RedirectUriNotRegistered);
        // The client is told it is not registered, never which ones are; the operator is.
        assert!(!f.error.description().contains("claude.ai"), "{}", f.error.description());
        assert!(f.operator_detail.as_deref().is_some_and(|d| d.contains("claude.ai")));
        assert_eq!(
            check_client_and_redirect(&c, Some("not a uri")).unwrap_err().reason,
            Reason::RedirectUriNotRegistered
        );
        let mut two = c.clone();
        two.redirect_uris.push(RedirectUri::parse("https://claude.com/api/mcp/auth_callback").unwrap());
        let f = check_client_and_redirect(&two, None).unwrap_err();
        assert_eq!(f.reason, Reason::InvalidRequest);
        assert!(!f.error.description().contains("claude.com") && f.operator_detail.is_some());
        let mut inactive = c;
        inactive.active = false;
        assert_eq!(check_client_and_redirect(&inactive, None).unwrap_err().reason, Reason::ClientInactive);
        assert_eq!(parse_client_id(None).unwrap_err().operator_detail.as_deref(), Some("no client_id"));
        assert_eq!(parse_client_id(Some("a b")).unwrap_err().error.code(), crate::ErrorCode::InvalidRequest);
    }

    #[test]
    fn remembered_consent_is_replayed_only_where_the_redirect_proves_the_client() {
        use ConsentDecision::{AskAgain, SkipRemembered, SkipTrusted};
        use TokenEndpointAuthMethod::{ClientSecretBasic, None as Public};
        let loopback = RedirectUri::parse("http://127.0.0.1:51234/callback").unwrap();
        let private_use = RedirectUri::parse("cursor://anysphere.cursor-mcp/oauth/callback").unwrap();
        let https = RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap();
        let scopes = ScopeSet::parse("mcp:tools").unwrap();
        let remembered = Consent::new(
            UserId::parse("u1").unwrap(),
            ClientId::parse("c1").unwrap(),
            scopes.clone(),
            UnixTime::from_secs(0),
        );
        // (client type, redirect, trusted) => decision with a remembered consent.
        let table = [
            (Public, &loopback, false, AskAgain),
            (Public, &private_use, false, AskAgain),
            (Public, &https, false, SkipRemembered),
            (ClientSecretBasic, &loopback, false, SkipRemembered),
            (ClientSecretBasic, &private_use, false, SkipRemembered),
            (ClientSecretBasic, &https, false, SkipRemembered),
            (Public, &loopback, true, SkipTrusted),
            (Public, &private_use, true, SkipTrusted),
            (Public, &https, true, SkipTrusted),
            (ClientSecretBasic, &loopback, true, SkipTrusted),
            (ClientSecretBasic, &private_use, true, SkipTrusted),
            (ClientSecretBasic, &https, true, SkipTrusted),
        ];
        for (auth, redirect, trusted, expected) in table {
            let c = client(auth, redirect, trusted);
            assert_eq!(
                consent_decision(&c, redirect, Some(&remembered), &scopes),
                expected,
                "{auth:?} to {redirect}, trusted {trusted}"
            );
            // Without a remembered consent only a trusted client skips the page.
            let fresh = consent_decision(&c, redirect, None, &scopes);
            assert_eq!(fresh, if trusted { SkipTrusted } else { ConsentDecision::Ask }, "{auth:?} to {redirect}");
        }
    }

    #[test]
    fn a_remembered_consent_covers_only_its_scopes_and_its_client() {
        let https = RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap();
        let c = client(TokenEndpointAuthMethod::None, &https, false);
        let user = UserId::parse("u1").unwrap();
        let narrow =
            Consent::new(user.clone(), c.id.clone(), ScopeSet::parse("mcp:tools").unwrap(), UnixTime::from_secs(0));
        let wider = ScopeSet::parse("mcp:tools mcp:admin").unwrap();
        assert_eq!(consent_decision(&c, &https, Some(&narrow), &wider), ConsentDecision::Ask, "new scopes");
        let other = Consent::new(user, ClientId::parse("c2").unwrap(), wider.clone(), UnixTime::from_secs(0));
        assert_eq!(consent_decision(&c, &https, Some(&other), &wider), ConsentDecision::Ask, "another client");
        assert!(ConsentDecision::AskAgain.ask() && ConsentDecision::Ask.ask());
        assert!(!ConsentDecision::SkipRemembered.ask() && !ConsentDecision::SkipTrusted.ask());
    }
}
