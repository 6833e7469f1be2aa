//! Why did a connection not come up? Correlates a client's flow events into connection attempts, each ending at its furthest step, and turns the failure (or the silence after the last step) into a verdict with a plain-language fix.
//! Documented in the crate docs, "Diagnosis".

use serde::Serialize;

use crate::clock::UnixTime;
use crate::error::Error;
use crate::events::{EventQuery, FlowEvent, FlowStep, Reason};
use crate::server::AuthorizationServer;
use crate::store::EventStore;
use crate::types::ClientId;

/// How a connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The client called the MCP endpoint with a token that was accepted.
    Connected,
    /// A step failed.
    Failed {
        /// The step.
        step: FlowStep,
        /// The stable reason.
        reason: Reason,
        /// What happened, exactly.
        detail: String,
        /// What to change.
        fix: String,
    },
    /// Nothing failed, but the flow stopped after `step`.
    Stalled {
        /// The furthest step reached.
        step: FlowStep,
        /// What did not happen next, and what to check.
        explanation: String,
    },
}

/// One connection attempt of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Attempt {
    /// The client.
    pub client_id: Option<ClientId>,
    /// First event.
    pub started_at: UnixTime,
    /// Last event.
    pub ended_at: UnixTime,
    /// The furthest step that succeeded.
    pub furthest: Option<FlowStep>,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The events, oldest first.
    pub events: Vec<FlowEvent>,
}

fn rank(step: FlowStep) -> usize {
    FlowStep::ALL.iter().position(|s| *s == step).unwrap_or(0)
}

/// Splits one client's events (oldest first) into connection attempts. An attempt starts at a
/// registration, or at an authorization request once the previous attempt got a code or
/// failed; refreshes and MCP calls belong to the attempt whose tokens they use.
pub fn attempts(events: &[FlowEvent]) -> Vec<Attempt> {
    let mut groups: Vec<Vec<FlowEvent>> = Vec::new();
    for e in events {
        let starts_new = match groups.last() {
            None => true,
            Some(current) => {
                let got_code = current.iter().any(|x| x.succeeded() && rank(x.step) >= rank(FlowStep::CodeIssued));
                let failed = current.iter().any(|x| !x.succeeded());
                match e.step {
                    FlowStep::Registration => true,
                    FlowStep::AuthorizationRequest => got_code || failed,
                    _ => false,
                }
            }
        };
        if starts_new {
            groups.push(Vec::new());
        }
        if let Some(g) = groups.last_mut() {
            g.push(e.clone());
        }
    }
    groups.into_iter().map(judge).collect()
}

fn judge(events: Vec<FlowEvent>) -> Attempt {
    let started_at = events.first().map(|e| e.at).unwrap_or(UnixTime::from_secs(0));
    let ended_at = events.last().map(|e| e.at).unwrap_or(started_at);
    let client_id = events.iter().find_map(|e| e.client_id.clone());
    let furthest = events.iter().filter(|e| e.succeeded()).map(|e| e.step).max_by_key(|s| rank(*s));
    let connected = events.iter().any(|e| e.succeeded() && e.step == FlowStep::ResourceAccess);
    // The last failure decides, unless the client got through afterwards (a retry that worked).
    let last_failure = events.iter().rposition(|e| !e.succeeded());
    let recovered = last_failure.is_some_and(|i| {
        let failed = rank(events[i].step);
        events[i + 1..].iter().any(|e| e.succeeded() && rank(e.step) >= failed)
    });
    let last_failure = last_failure.map(|i| &events[i]);
    let verdict = match last_failure {
        Some(f) if !recovered => {
            let reason = f.reason.unwrap_or(Reason::Internal);
            Verdict::Failed { step: f.step, reason, detail: f.detail.clone(), fix: fix(reason).to_owned() }
        }
        _ if connected => Verdict::Connected,
        _ => {
            let step = furthest.unwrap_or(FlowStep::Registration);
            Verdict::Stalled { step, explanation: stalled(step, ended_at).to_owned() }
        }
    };
    Attempt { client_id, started_at, ended_at, furthest, verdict, events }
}

fn stalled(step: FlowStep, _at: UnixTime) -> &'static str {
    match step {
        FlowStep::Registration => {
            "the client registered but never sent an authorization request: check from the client's side that the protected-resource and authorization-server metadata are reachable and agree on the issuer"
        }
        FlowStep::AuthorizationRequest => {
            "the sign-in page was shown but nobody signed in: the person closed the window, or the page did not open"
        }
        FlowStep::SignIn => "the person signed in but did not answer the consent page",
        FlowStep::Consent => "consent was given but no code was issued: see the server log for an internal error",
        FlowStep::CodeIssued => {
            "a code was issued but never exchanged: the client never called the token endpoint; check that the token endpoint is reachable from the client's servers (Claude.ai and ChatGPT call it from the internet: the public URL must be https and reachable)"
        }
        FlowStep::CodeExchange | FlowStep::Refresh | FlowStep::ClientCredentials => {
            "tokens were issued but never presented to the MCP endpoint: the client did not call the MCP URL with them; check that the URL the client was given is this server's MCP endpoint"
        }
        _ => "the flow stopped here without an error",
    }
}

/// What to change for each reason: see [`fix`].
const FIXES: [(Reason, &str); 60] = [
    (Reason::InvalidRequest, "the client sent a malformed request; the detail names the parameter"),
    (
        Reason::ClientUnknown,
        "the client id is not registered here (deleted, or registered with another server or database): reconnect so that the client registers again",
    ),
    (Reason::ClientInactive, "the client is deactivated: reactivate it, or have the client register again"),
    (
        Reason::ClientAuthFailed,
        "the client's secret is wrong or missing: re-enter the client id and secret in the client (Claude: the connector's advanced settings), or rotate the secret and give the client the new one",
    ),
    (
        Reason::ClientAssertionInvalid,
        "the client's private_key_jwt assertion was refused (the detail says which check): its clock, its key, or the aud it signs for; aud must be this server's issuer or token endpoint",
    ),
    (
        Reason::ClientAssertionReplayed,
        "the client sent the same client assertion twice: each request needs a new one with a new jti (a retry of a lost response must sign again)",
    ),
    (
        Reason::ClientKeysUnavailable,
        "the client's public keys could not be fetched from its jwks_uri (the detail says why): check that the URL is public https and serves a JWK set with a usable signature key",
    ),
    (
        Reason::IdJagUntrustedIssuer,
        "the client presented an identity assertion from an IdP this server does not trust: add the IdP (its issuer and keys) to the enterprise IdPs, or have the client use the IdP that is configured",
    ),
    (
        Reason::IdJagInvalid,
        "the enterprise IdP's assertion (ID-JAG) was refused (the detail says which check): its aud must be this server's issuer, its client_id the client presenting it, its resource this MCP server; check the IdP's configuration for this application",
    ),
    (
        Reason::IdJagReplayed,
        "the same ID-JAG was presented twice: the client must get a new one from its IdP for each token request",
    ),
    (
        Reason::IdJagUserUnknown,
        "the enterprise IdP vouched for a person with no account here: create the user (username = the IdP's subject, or the verified email when email linking is on)",
    ),
    (
        Reason::UpstreamStateMismatch,
        "the sign-in came back from the upstream provider to a browser that did not start it, or after 10 minutes: the person should start again from the application; if it happens to everyone, check that the callback URL's host is the public URL's (the flow cookie is bound to it)",
    ),
    (
        Reason::UpstreamRefused,
        "the upstream provider refused the sign-in (the detail has its error): check this server's client id, secret and callback URL registered at the provider",
    ),
    (
        Reason::UpstreamUnreachable,
        "the upstream provider could not be reached or did not answer its protocol: check the network path to it and its issuer URL",
    ),
    (
        Reason::UpstreamIdTokenInvalid,
        "the upstream provider's id_token was refused (the detail says which check): check the configured issuer (exactly as in its tokens) and client id",
    ),
    (
        Reason::UpstreamNonceMismatch,
        "the upstream id_token was not issued for this sign-in, or was used twice: a replay, or a provider that does not echo the nonce",
    ),
    (
        Reason::UpstreamUserRefused,
        "the upstream provider signed in someone the allow-list does not admit (the detail says which rule): widen the allow-list, or this person may not use the server",
    ),
    (
        Reason::UpstreamTokenUnavailable,
        "a tool needed the person's upstream token and none is kept for this grant: configure the vault key, or have the person sign in again through the provider",
    ),
    (
        Reason::UpstreamGrantEnded,
        "the upstream provider ended this server's access (refresh refused with invalid_grant): the grant here is revoked and the client must sign in again; nothing to fix unless it happens to everyone (then check the client secret at the provider)",
    ),
    (
        Reason::UpstreamExchangeRefused,
        "the upstream provider would not exchange the person's token for the downstream API's (the detail has its error): enable token exchange for this client at the provider and allow the audience or resource the tool asks for",
    ),
    (
        Reason::RedirectUriNotRegistered,
        "the redirect URI the client sent is not among the registered ones: register that exact URI for the client (loopback URIs match on any port)",
    ),
    (
        Reason::RedirectUriMismatch,
        "the client sent a different redirect_uri at the token endpoint than in the authorization request",
    ),
    (Reason::UnsupportedResponseType, "the client asked for a response type other than 'code'"),
    (
        Reason::UnsupportedGrantType,
        "the client used a grant it did not register: register the client with that grant type",
    ),
    (
        Reason::UnauthorizedClient,
        "the client used a grant it did not register: register the client with that grant type",
    ),
    (Reason::PkceMissing, "the client did not send an S256 PKCE challenge: it must (MCP requires PKCE)"),
    (
        Reason::PkceMismatch,
        "the code verifier does not match the challenge: the client lost its verifier between authorization and exchange (a restart, or two flows at once)",
    ),
    (
        Reason::InvalidScope,
        "the client asked for scopes this server does not offer: see the detail for the supported ones",
    ),
    (
        Reason::ResourceMismatch,
        "the client asked for a resource this server does not protect: give the client this server's MCP URL exactly",
    ),
    (Reason::PendingExpired, "the sign-in took longer than the request lives: start the connection again"),
    (Reason::AccessDenied, "the person denied the request on the consent page"),
    (Reason::BadCredentials, "wrong username or password on the sign-in page"),
    (Reason::CodeUnknown, "the code is unknown: it was never issued here, or another server (or database) issued it"),
    (
        Reason::CodeExpired,
        "the code expired before the client exchanged it: the client's token request came too late; check that the token endpoint is reachable quickly from the client",
    ),
    (
        Reason::CodeReused,
        "the code was exchanged twice (a client retry or a stolen code): its tokens were revoked; connect again",
    ),
    (Reason::CodeClientMismatch, "a client exchanged a code issued to another client"),
    (Reason::RefreshUnknown, "the refresh token is unknown or expired: the client must sign in again"),
    (Reason::RefreshExpired, "the refresh token is unknown or expired: the client must sign in again"),
    (
        Reason::RefreshReused,
        "an old refresh token was replayed after rotation: every token of that authorization was revoked; the client must sign in again (if the client keeps doing this, it is not storing the rotated token)",
    ),
    (Reason::GrantRevoked, "the authorization was revoked: the client must sign in again"),
    (
        Reason::InvalidClientMetadata,
        "the registration request was refused: the detail says which field; private-use redirect schemes must be allowed by the operator",
    ),
    (
        Reason::InvalidRedirectUri,
        "the registration request was refused: the detail says which field; private-use redirect schemes must be allowed by the operator",
    ),
    (Reason::TokenMissing, "the client called the MCP endpoint without a token"),
    (Reason::TokenMalformed, "the client sent something that is not one of this server's access tokens"),
    (
        Reason::TokenSignatureInvalid,
        "the token was signed by another key: issued by another server, or before the keys were replaced; the client must sign in again",
    ),
    (Reason::TokenExpired, "the access token expired and the client did not refresh it"),
    (Reason::TokenIssuerMismatch, "the token comes from another issuer: the client is using tokens of another server"),
    (
        Reason::TokenAudienceMismatch,
        "the token is for another resource URL (a trailing slash, another path or host): give the client this server's MCP URL exactly",
    ),
    (
        Reason::InsufficientScope,
        "the token lacks a scope the tool needs: the client must ask for it and the person consent again",
    ),
    (
        Reason::IntrospectionNotEntitled,
        "a client introspected a token that is not its own: only resource servers the operator registered for it may (clients add --introspection)",
    ),
    (
        Reason::MachineTokenRefused,
        "a machine client's token was presented to an MCP endpoint that accepts only users' tokens: let the resource accept machine clients, or sign a person in",
    ),
    (
        Reason::SessionNotYours,
        "the request used an MCP session created by another user or client: a client must never share its Mcp-Session-Id; if this repeats, someone is trying to take over sessions",
    ),
    (
        Reason::SessionUnknown,
        "the MCP session has ended (idle too long, replaced by newer sessions of the same user and client, or the server restarted): the client must send initialize again",
    ),
    (
        Reason::SessionUserRemoved,
        "the browser was signed in as a user who was since removed or disabled: its session was ended; sign in as a current user",
    ),
    (
        Reason::SessionUserDisabled,
        "the browser was signed in as a user who was since removed or disabled: its session was ended; sign in as a current user",
    ),
    (
        Reason::SessionCredentialsChanged,
        "the user's password changed after this browser signed in: its session was ended; sign in with the new password",
    ),
    (
        Reason::SignedOut,
        "the person signed out on the consent page instead of answering it; connect again and sign in (perhaps as another user)",
    ),
    (
        Reason::SignInThrottled,
        "too many wrong passwords for this account: sign-in is blocked for the time the page states (doubling up to the cap); a successful sign-in clears it. Many addresses at once means someone is guessing the password",
    ),
    (
        Reason::RateLimited,
        "one address (or every client together, for registration) went over a rate limit: wait for Retry-After; if all visitors share one address, trust the reverse proxy so that limits key on the forwarded address",
    ),
    (
        Reason::InitialAccessTokenInvalid,
        "registration is closed: the client must send the deployment's initial access token as 'Authorization: Bearer …' (RFC 7591 §3)",
    ),
];

/// What to change, for each reason a step can fail.
pub fn fix(reason: Reason) -> &'static str {
    FIXES.iter().find(|(r, _)| *r == reason).map_or("an internal error: see the server log", |(_, fix)| fix)
}

/// The attempts of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientDiagnosis {
    /// The client (`None` for events that name none, such as refused malformed tokens).
    pub client_id: Option<ClientId>,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

impl ClientDiagnosis {
    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut out = format!("client {}\n", self.client_id.as_ref().map(ClientId::as_str).unwrap_or("(none)"));
        for (i, a) in self.attempts.iter().enumerate() {
            out.push_str(&format!(
                "  attempt {} ({} .. {}): ",
                i + 1,
                a.started_at.to_rfc3339(),
                a.ended_at.to_rfc3339()
            ));
            match &a.verdict {
                Verdict::Connected => out.push_str("connected\n"),
                Verdict::Failed { step, reason, detail, fix } => {
                    out.push_str(&format!("FAILED at {step}: {reason}\n    what happened: {detail}\n    fix: {fix}\n"));
                }
                Verdict::Stalled { step, explanation } => {
                    out.push_str(&format!("stopped after {step}\n    {explanation}\n"));
                }
            }
            for e in &a.events {
                let outcome = e.reason.map(|r| format!("FAILED {r}")).unwrap_or_else(|| "ok".into());
                out.push_str(&format!(
                    "    {} {:<22} {:<28} {}\n",
                    e.at.to_rfc3339(),
                    e.step.as_str(),
                    outcome,
                    e.detail
                ));
            }
        }
        out
    }
}

/// Leaves out of `report` the attempts that connected, and the clients left with none: what
/// an operator asking "what went wrong?" wants to see. Returns how many attempts were left out.
pub fn without_connected(report: &mut Vec<ClientDiagnosis>) -> usize {
    let mut hidden = 0;
    for d in report.iter_mut() {
        let before = d.attempts.len();
        d.attempts.retain(|a| a.verdict != Verdict::Connected);
        hidden += before - d.attempts.len();
    }
    report.retain(|d| !d.attempts.is_empty());
    hidden
}

impl AuthorizationServer {
    /// The connection attempts since `since`, per client (or of one client).
    pub async fn diagnose(&self, client: Option<&ClientId>, since: UnixTime) -> Result<Vec<ClientDiagnosis>, Error> {
        diagnose(self.stores().events.as_ref(), client, since).await
    }
}

/// The connection attempts recorded in `store` since `since`, per client (or of one client):
/// what an operator's command line runs against the server's database.
pub async fn diagnose(
    store: &dyn EventStore,
    client: Option<&ClientId>,
    since: UnixTime,
) -> Result<Vec<ClientDiagnosis>, Error> {
    {
        let mut query = EventQuery::all().since(since).limit(10_000);
        if let Some(c) = client {
            query = query.for_client(c);
        }
        let events = store.events(&query).await?;
        let mut clients: Vec<Option<ClientId>> = Vec::new();
        for e in &events {
            if !clients.contains(&e.client_id) {
                clients.push(e.client_id.clone());
            }
        }
        Ok(clients
            .into_iter()
            .map(|c| {
                let mine: Vec<FlowEvent> = events.iter().filter(|e| e.client_id == c).cloned().collect();
                ClientDiagnosis { client_id: c, attempts: attempts(&mine) }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: i64, step: FlowStep) -> FlowEvent {
        FlowEvent::success(UnixTime::from_secs(t), step, format!("{step} ok"))
    }

    fn bad(t: i64, step: FlowStep, reason: Reason) -> FlowEvent {
        FlowEvent::failure(UnixTime::from_secs(t), step, reason, "exact detail")
    }

    #[test]
    fn a_full_flow_is_connected() {
        let e = [
            ok(0, FlowStep::Registration),
            ok(1, FlowStep::AuthorizationRequest),
            ok(2, FlowStep::SignIn),
            ok(3, FlowStep::Consent),
            ok(4, FlowStep::CodeIssued),
            ok(5, FlowStep::CodeExchange),
            ok(6, FlowStep::ResourceAccess),
            ok(900, FlowStep::Refresh),
        ];
        let a = attempts(&e);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].verdict, Verdict::Connected);
    }

    #[test]
    fn failures_name_step_reason_and_fix() {
        let e = [
            ok(0, FlowStep::Registration),
            ok(1, FlowStep::AuthorizationRequest),
            ok(4, FlowStep::CodeIssued),
            bad(400, FlowStep::CodeExchange, Reason::CodeExpired),
        ];
        match &attempts(&e)[0].verdict {
            Verdict::Failed { step, reason, detail, fix } => {
                assert_eq!((*step, *reason), (FlowStep::CodeExchange, Reason::CodeExpired));
                assert_eq!(detail, "exact detail");
                assert!(fix.contains("expired"));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn silence_after_a_code_is_a_stall_at_the_token_endpoint() {
        let e = [ok(0, FlowStep::Registration), ok(1, FlowStep::AuthorizationRequest), ok(2, FlowStep::CodeIssued)];
        match &attempts(&e)[0].verdict {
            Verdict::Stalled { step, explanation } => {
                assert_eq!(*step, FlowStep::CodeIssued);
                assert!(explanation.contains("never exchanged"));
            }
            v => panic!("{v:?}"),
        }
        let e = [ok(0, FlowStep::CodeIssued), ok(1, FlowStep::CodeExchange)];
        assert!(
            matches!(&attempts(&e)[0].verdict, Verdict::Stalled { explanation, .. } if explanation.contains("never presented"))
        );
    }

    #[test]
    fn retries_start_new_attempts_and_recoveries_count() {
        let e = [
            ok(0, FlowStep::Registration),
            bad(1, FlowStep::AuthorizationRequest, Reason::RedirectUriNotRegistered),
            ok(50, FlowStep::Registration),
            ok(51, FlowStep::AuthorizationRequest),
            ok(52, FlowStep::CodeIssued),
            ok(53, FlowStep::CodeExchange),
            // A corrupted token, then the client refreshed and got through.
            bad(60, FlowStep::ResourceAccess, Reason::TokenExpired),
            ok(61, FlowStep::Refresh),
            ok(62, FlowStep::ResourceAccess),
        ];
        let a = attempts(&e);
        assert_eq!(a.len(), 2);
        assert!(matches!(a[0].verdict, Verdict::Failed { reason: Reason::RedirectUriNotRegistered, .. }));
        assert_eq!(a[1].verdict, Verdict::Connected);
    }

    #[test]
    fn every_reason_has_a_fix() {
        let generic = fix(Reason::Internal);
        for r in Reason::ALL {
            assert!(!fix(*r).is_empty());
            let entries = FIXES.iter().filter(|(reason, _)| reason == r).count();
            assert!(entries <= 1, "{r:?} has {entries} fixes");
            if *r != Reason::Internal {
                assert_ne!(fix(*r), generic, "{r:?} has no fix of its own");
            }
        }
        let d = ClientDiagnosis {
            client_id: None,
            attempts: attempts(&[bad(1, FlowStep::CodeExchange, Reason::PkceMismatch)]),
        };
        let text = d.render();
        assert!(text.contains("FAILED at code_exchange: pkce_mismatch") && text.contains("fix: "), "{text}");
    }

    #[test]
    fn connected_attempts_can_be_left_out() {
        let connected = [ok(0, FlowStep::CodeExchange), ok(1, FlowStep::ResourceAccess)];
        let failed = [bad(2, FlowStep::CodeExchange, Reason::PkceMismatch)];
        let mut report = vec![
            ClientDiagnosis { client_id: None, attempts: attempts(&connected) },
            ClientDiagnosis { client_id: None, attempts: [attempts(&connected), attempts(&failed)].concat() },
        ];
        assert_eq!(without_connected(&mut report), 2);
        assert_eq!(report.len(), 1, "a client left with no attempt is dropped");
        assert!(matches!(report[0].attempts[..], [Attempt { verdict: Verdict::Failed { .. }, .. }]));
    }
}
