//! A failed check, as every endpoint's checks return it: the stable reason its flow event
//! carries, the error the client is told, and, when they differ, what only the operator may
//! see. The endpoint records it once and answers with the error, so that no check writes an
//! event or builds a response itself.

use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::types::ClientId;

/// One failed check.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) error: OAuthError,
    /// The event's text when the operator should see more than the client (the registered
    /// redirect URIs, say); otherwise the error's description is the text.
    pub(crate) operator_detail: Option<String>,
}

impl Failure {
    pub(crate) fn new(reason: Reason, error: OAuthError) -> Self {
        Self { reason, error, operator_detail: None }
    }

    /// The same failure, told to the operator as `detail`.
    pub(crate) fn for_operator(mut self, detail: impl Into<String>) -> Self {
        self.operator_detail = Some(detail.into());
        self
    }

    /// The same failure, with `detail` for the operator after the client's description.
    pub(crate) fn noting(mut self, detail: impl std::fmt::Display) -> Self {
        self.operator_detail = Some(format!("{} [{detail}]", self.error.description()));
        self
    }

    /// The flow event that records it.
    pub(crate) fn event(&self, at: UnixTime, step: FlowStep, client: Option<&ClientId>) -> FlowEvent {
        let text = self.operator_detail.clone().unwrap_or_else(|| self.error.description().to_owned());
        let event = FlowEvent::failure(at, step, self.reason, text);
        match client {
            Some(c) => event.client(c),
            None => event,
        }
    }
}
