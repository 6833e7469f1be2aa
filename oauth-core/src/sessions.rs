//! Sign-in sessions on the server.
//! Documented in the crate docs, "Sign-in sessions".

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::params::clip;
use crate::secret::{SecretHash, ct_eq, random_token};
use crate::server::AuthorizationServer;
use crate::store::SignInSession;
use crate::types::ClientId;
use crate::users::{AuthenticatedUser, Authenticator, UserStatus};

#[cfg(doc)]
use crate::store::SessionStore;

/// Most sign-in sessions one user keeps; signing in once more ends the oldest. Bounds the
/// session table by the number of users, whatever a password holder does.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 16;

/// Longest display name kept with a session.
const MAX_NAME_CHARS: usize = 128;

/// Length of a generated token: 256 bits in unpadded base64url.
const TOKEN_LEN: usize = 43;

/// A sign-in session token: the value of the session cookie, stored only as a SHA-256 hash.
/// Not `Clone`.
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh random token (256 bits).
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// Wraps a token read from a cookie.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The clear value, for the cookie.
    ///
    /// # Security
    /// The value signs its holder in: never log it, put it in an error, or store it. Store
    /// [`Self::hash`] instead.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The SHA-256 hash under which the session is stored and looked up.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SessionToken {}

/// Why a stored session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRefusal {
    /// The user was removed.
    UserRemoved,
    /// The user is disabled.
    UserDisabled,
    /// The user's password changed after the session began.
    CredentialsChanged,
}

impl SessionRefusal {
    /// What the session's user says about it now; `None` when the session still holds.
    pub fn judge(session: &SignInSession, status: UserStatus) -> Option<Self> {
        match status {
            UserStatus::Active { credential_version } if credential_version == session.credential_version => None,
            UserStatus::Active { .. } => Some(Self::CredentialsChanged),
            UserStatus::Disabled => Some(Self::UserDisabled),
            UserStatus::Removed => Some(Self::UserRemoved),
            UserStatus::Unchecked => None,
        }
    }

    /// The flow event reason.
    pub const fn reason(self) -> Reason {
        match self {
            Self::UserRemoved => Reason::SessionUserRemoved,
            Self::UserDisabled => Reason::SessionUserDisabled,
            Self::CredentialsChanged => Reason::SessionCredentialsChanged,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::UserRemoved => "the user was removed",
            Self::UserDisabled => "the user is disabled",
            Self::CredentialsChanged => "the user's password changed since",
        }
    }
}

impl AuthorizationServer {
    /// Signs `user` in: records the sign-in, during `client`'s authorization request or (with
    /// `None`) on the Connected apps page, and starts a session lasting `ttl`: the token for
    /// the cookie, and the record stored under its hash. The user's oldest sessions beyond
    /// the 16 newest end.
    pub async fn start_session(
        &self,
        user: &AuthenticatedUser,
        ttl: Duration,
        client: Option<&ClientId>,
    ) -> Result<(SessionToken, SignInSession), Error> {
        let now = self.now();
        let detail = match client {
            Some(_) => format!("signed in as '{}'", user.name),
            None => format!("signed in as '{}' (Connected apps)", user.name),
        };
        self.record(with_client(FlowEvent::success(now, FlowStep::SignIn, detail).user(&user.id), client)).await;
        let token = SessionToken::generate();
        let session = SignInSession::new(
            token.hash(),
            user.id.clone(),
            user.name.chars().take(MAX_NAME_CHARS).collect(),
            user.credential_version,
            now,
            now.plus(ttl),
        );
        self.stores().sessions.create_session(&session, MAX_SESSIONS_PER_USER).await?;
        Ok((token, session))
    }

    /// Records a sign-in refused for a wrong username or password, during `client`'s
    /// authorization request or on the Connected apps page. What was typed as the username is
    /// often a password (typed in the wrong field), so it is named only when it is a known
    /// user's name; otherwise the event carries a short keyed hash of it, enough to see the
    /// same mistyped name again (for one signing key), useless to whoever reads the events.
    pub async fn record_failed_sign_in(&self, username: &str, client: Option<&ClientId>) {
        let lookup = if username.len() <= crate::users::MAX_USERNAME_LEN {
            self.stores().users.user_by_username(username).await
        } else {
            Ok(None)
        };
        let known = lookup.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not look up a username for a failed sign-in's event");
            None
        });
        let event = match known {
            Some(user) => {
                let detail = format!("wrong password for '{}'", clip(&user.username));
                FlowEvent::failure(self.now(), FlowStep::SignIn, Reason::BadCredentials, detail).user(&user.id)
            }
            None => {
                let key = self.derive_secret("failed sign-in username");
                let hash = SecretHash::of(&[&key[..], username.as_bytes()].concat());
                let detail = format!("no user with the username typed (keyed hash {})", hash.short());
                FlowEvent::failure(self.now(), FlowStep::SignIn, Reason::BadCredentials, detail)
            }
        };
        self.record(with_client(event, client)).await;
    }

    /// Records that sign-in for `username` is blocked for `wait` after repeated wrong
    /// passwords (the adapter's throttle calls it once per block, not per attempt).
    pub async fn record_sign_in_throttled(&self, username: &str, wait: Duration, client: Option<&ClientId>) {
        let detail = format!(
            "sign-in for '{}' blocked for {} s after repeated wrong passwords",
            clip(username),
            wait.as_secs().max(1)
        );
        let event = FlowEvent::failure(self.now(), FlowStep::SignIn, Reason::SignInThrottled, detail);
        self.record(with_client(event, client)).await;
    }

    /// The session `token` stands for, if it exists, has not expired, and its user still
    /// holds: exists, is enabled, and has the credential version of the sign-in (as
    /// `authenticator` tells). A session that fails is deleted and recorded as a failed
    /// sign-in of `client` with the reason; `None` then, as for an unknown token.
    pub async fn check_session(
        &self,
        token: &str,
        authenticator: &dyn Authenticator,
        client: Option<&ClientId>,
    ) -> Result<Option<SignInSession>, Error> {
        if token.len() != TOKEN_LEN {
            return Ok(None);
        }
        let hash = SessionToken::new(token.to_owned()).hash();
        let sessions = &self.stores().sessions;
        let Some(session) = sessions.session(&hash, self.now()).await? else {
            return Ok(None);
        };
        let Some(refusal) = SessionRefusal::judge(&session, authenticator.user_status(&session.user).await?) else {
            return Ok(Some(session));
        };
        sessions.delete_session(&hash).await?;
        let event = FlowEvent::failure(
            self.now(),
            FlowStep::SignIn,
            refusal.reason(),
            format!(
                "the sign-in session of '{}' (since {}) was refused and ended: {}",
                session.name,
                session.auth_time.to_rfc3339(),
                refusal.describe()
            ),
        )
        .user(&session.user);
        self.record(with_client(event, client)).await;
        Ok(None)
    }

    /// Signs out: deletes the session `token` stands for, recorded as a sign-out during
    /// `client`'s request. The ended session, if there was one.
    pub async fn end_session(&self, token: &str, client: Option<&ClientId>) -> Result<Option<SignInSession>, Error> {
        if token.len() != TOKEN_LEN {
            return Ok(None);
        }
        let hash = SessionToken::new(token.to_owned()).hash();
        let sessions = &self.stores().sessions;
        let Some(session) = sessions.session(&hash, self.now()).await? else {
            return Ok(None);
        };
        if !sessions.delete_session(&hash).await? {
            return Ok(None);
        }
        let event = FlowEvent::failure(
            self.now(),
            FlowStep::SignIn,
            Reason::SignedOut,
            format!("'{}' signed out", session.name),
        )
        .user(&session.user);
        self.record(with_client(event, client)).await;
        Ok(Some(session))
    }
}

fn with_client(event: FlowEvent, client: Option<&ClientId>) -> FlowEvent {
    match client {
        Some(c) => event.client(c),
        None => event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::types::UserId;

    fn session(version: u64) -> SignInSession {
        let t = UnixTime::from_secs(0);
        SignInSession::new(SecretHash::of(b"x"), UserId::parse("u1").unwrap(), "alice".into(), version, t, t)
    }

    #[test]
    fn the_users_standing_decides() {
        let s = session(3);
        assert_eq!(SessionRefusal::judge(&s, UserStatus::Active { credential_version: 3 }), None);
        assert_eq!(SessionRefusal::judge(&s, UserStatus::Unchecked), None);
        assert_eq!(
            SessionRefusal::judge(&s, UserStatus::Active { credential_version: 4 }),
            Some(SessionRefusal::CredentialsChanged)
        );
        assert_eq!(SessionRefusal::judge(&s, UserStatus::Disabled), Some(SessionRefusal::UserDisabled));
        assert_eq!(SessionRefusal::judge(&s, UserStatus::Removed), Some(SessionRefusal::UserRemoved));
        assert_eq!(SessionRefusal::UserRemoved.reason().as_str(), "session_user_removed");
    }

    #[test]
    fn tokens_are_random_redacted_and_hashed() {
        let a = SessionToken::generate();
        assert_eq!(a.secret().len(), TOKEN_LEN);
        assert_ne!(a, SessionToken::generate());
        assert_eq!(format!("{a:?}"), "SessionToken([redacted])");
        assert_eq!(a.hash(), SessionToken::new(a.secret().to_owned()).hash());
    }
}
