//! What a resource server reports of the calls it admits and refuses.
//! Documented in the crate docs, "Resource access events".

use crate::clock::UnixTime;
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::server::AuthorizationServer;
use crate::types::{ClientId, UserId};

/// Longest token payload read to find the client a refused token claims.
const MAX_PEEKED_PAYLOAD: usize = 8192;

/// Longest claimed client id kept in an event.
const MAX_CLAIMED_CHARS: usize = 128;

/// A flow event of the resource-access step.
#[derive(Debug, Clone)]
pub struct AccessEvent(FlowEvent);

impl AccessEvent {
    /// The first call made with one access token: `what` describes it (`tools/call
    /// add_note`, say).
    pub fn first_call(at: UnixTime, client: &ClientId, subject: &UserId, what: &str) -> Self {
        let detail = format!("first call with this token: {what}");
        Self(FlowEvent::success(at, FlowStep::ResourceAccess, detail).client(client).user(subject))
    }

    /// A call of an authenticated caller refused for `reason` (insufficient scope, another
    /// caller's session, a malformed request); `detail` is for the operator.
    pub fn refused(at: UnixTime, client: &ClientId, subject: &UserId, reason: Reason, detail: String) -> Self {
        Self(FlowEvent::failure(at, FlowStep::ResourceAccess, reason, detail).client(client).user(subject))
    }

    /// A bearer token the verifier refused for `reason` with `description`. The event names
    /// the client the token claims, marked unverified, so that the operator can tie a
    /// forged or stale token to a connection attempt; nothing else of the token is kept.
    pub fn token_refused(at: UnixTime, token: &str, reason: Reason, description: &str) -> Self {
        let claimed = claimed_client_id(token);
        let note = claimed.as_ref().map(|c| format!(" (token claims client {c}, unverified)")).unwrap_or_default();
        let event =
            FlowEvent::failure(at, FlowStep::ResourceAccess, reason, format!("token refused: {description}{note}"));
        match claimed.as_deref().and_then(|c| ClientId::parse(c).ok()) {
            Some(c) => Self(event.client(&c)),
            None => Self(event),
        }
    }

    /// The event.
    pub fn event(&self) -> &FlowEvent {
        &self.0
    }

    /// The event, for a sink that stores it.
    pub fn into_event(self) -> FlowEvent {
        self.0
    }
}

/// The `client_id` a JWT claims, read without verifying it (clipped, from a bounded payload):
/// only ever to tie an event to a client for the operator, never to decide anything.
pub(crate) fn claimed_client_id(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    if payload.len() > MAX_PEEKED_PAYLOAD {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("client_id")?.as_str().map(|s| s.chars().take(MAX_CLAIMED_CHARS).collect())
}

impl AuthorizationServer {
    /// Stores an event of the resource this server protects (logged too).
    pub async fn record_access(&self, event: AccessEvent) {
        self.record(event.0).await;
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"ES256"}"#), b64(payload))
    }

    #[test]
    fn the_claimed_client_is_read_from_a_bounded_payload_only() {
        let long = "a".repeat(300);
        let table: [(String, Option<String>); 6] = [
            (jwt(r#"{"client_id":"mcp_abc"}"#), Some("mcp_abc".into())),
            (jwt(r#"{"sub":"u"}"#), None),
            (jwt(r#"{"client_id":7}"#), None),
            ("not a jwt".into(), None),
            (format!("x.{}.y", "A".repeat(MAX_PEEKED_PAYLOAD + 4)), None),
            (jwt(&format!(r#"{{"client_id":"{long}"}}"#)), Some("a".repeat(MAX_CLAIMED_CHARS))),
        ];
        for (token, expected) in table {
            assert_eq!(claimed_client_id(&token), expected, "{token:.40}");
        }
    }

    #[test]
    fn a_refused_token_names_its_claimed_client_as_unverified() {
        let at = UnixTime::from_secs(1);
        let e = AccessEvent::token_refused(at, &jwt(r#"{"client_id":"mcp_abc"}"#), Reason::TokenExpired, "expired");
        let e = e.event();
        assert_eq!((e.step, e.reason), (FlowStep::ResourceAccess, Some(Reason::TokenExpired)));
        assert_eq!(e.client_id.as_ref().map(ClientId::as_str), Some("mcp_abc"));
        assert_eq!(e.detail, "token refused: expired (token claims client mcp_abc, unverified)");

        let e = AccessEvent::token_refused(at, "garbage", Reason::TokenMalformed, "not a JWT");
        assert_eq!((e.event().client_id.as_ref(), e.event().detail.as_str()), (None, "token refused: not a JWT"));
    }
}
