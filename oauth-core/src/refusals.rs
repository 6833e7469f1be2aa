//! Requests an adapter refuses before any endpoint's checks run.
//! Documented in the crate docs, "Refusals before a client is known".

use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::server::AuthorizationServer;

/// The endpoint whose request an adapter could not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Dynamic client registration (RFC 7591): a body that is not the JSON of client metadata.
    Registration,
    /// The token endpoint (RFC 6749 3.2).
    Token,
    /// Token revocation (RFC 7009).
    Revocation,
    /// Token introspection (RFC 7662).
    Introspection,
}

impl Endpoint {
    fn step(self) -> FlowStep {
        match self {
            Self::Registration => FlowStep::Registration,
            Self::Token => FlowStep::CodeExchange,
            Self::Revocation => FlowStep::Revocation,
            Self::Introspection => FlowStep::Introspection,
        }
    }

    /// RFC 7591 3.2.2 calls a registration body that cannot be read invalid client metadata;
    /// the other endpoints answer `invalid_request` (RFC 6749 5.2).
    fn reason(self) -> Reason {
        match self {
            Self::Registration => Reason::InvalidClientMetadata,
            Self::Token | Self::Revocation | Self::Introspection => Reason::InvalidRequest,
        }
    }
}

/// The step of a request that a rate limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Dynamic client registration, per address or server-wide.
    Registration,
    /// The authorization endpoint.
    Authorization,
    /// A sign-in form.
    SignIn,
    /// The token, revocation and introspection endpoints.
    Token,
}

impl AuthorizationServer {
    /// Records that the adapter could not parse a request to `endpoint`, and returns the error
    /// to answer with.
    pub async fn refuse_malformed(&self, endpoint: Endpoint, error: OAuthError) -> Error {
        let event = Failure::new(endpoint.reason(), error.clone()).event(self.now(), endpoint.step(), None);
        self.record_unauthenticated(event).await;
        Error::OAuth(error)
    }

    /// Records the first refusal of a run of rate-limited requests (the adapter calls it once
    /// per run, not per request); `detail` says which limit, for which address, and when it
    /// lifts.
    pub async fn record_rate_limited(&self, limited: Limited, detail: impl Into<String>) {
        let step = match limited {
            Limited::Registration => FlowStep::Registration,
            Limited::Authorization => FlowStep::AuthorizationRequest,
            Limited::SignIn => FlowStep::SignIn,
            Limited::Token => FlowStep::CodeExchange,
        };
        self.record_unauthenticated(FlowEvent::failure(self.now(), step, Reason::RateLimited, detail)).await;
    }

    /// Records a registration refused for its initial access token (RFC 7591 3): `sent` says
    /// whether the request carried a wrong one or none.
    pub async fn record_initial_access_token_refused(&self, sent: bool) {
        let given = if sent { "a wrong" } else { "no" };
        let detail = format!("registration refused: {given} initial access token");
        let event = FlowEvent::failure(self.now(), FlowStep::Registration, Reason::InitialAccessTokenInvalid, detail);
        self.record_unauthenticated(event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_has_its_step_and_reason() {
        let table = [
            (Endpoint::Registration, FlowStep::Registration, Reason::InvalidClientMetadata),
            (Endpoint::Token, FlowStep::CodeExchange, Reason::InvalidRequest),
            (Endpoint::Revocation, FlowStep::Revocation, Reason::InvalidRequest),
            (Endpoint::Introspection, FlowStep::Introspection, Reason::InvalidRequest),
        ];
        for (endpoint, step, reason) in table {
            assert_eq!((endpoint.step(), endpoint.reason()), (step, reason), "{endpoint:?}");
        }
    }
}
