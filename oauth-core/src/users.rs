//! Signing users in.
//! Documented in the crate docs, "Users and passwords".

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::error::{Error, OAuthError, StoreError};
use crate::secret::{MAX_SECRET_LEN, hash_password, hash_password_off_thread, verify_password_off_thread};
use crate::store::{User, UserStore};
use crate::types::UserId;

/// Shortest password accepted for a new user.
pub(crate) const MIN_PASSWORD_LEN: usize = 8;
/// Longest username.
pub(crate) const MAX_USERNAME_LEN: usize = 64;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthenticatedUser {
    /// Stable id: the token's `sub`.
    pub id: UserId,
    /// Name to show.
    pub name: String,
    /// The user's credential version now (see [`UserStatus::Active`]); 0 for authenticators
    /// that do not track one.
    pub credential_version: u64,
}

impl AuthenticatedUser {
    /// A signed-in user.
    pub fn new(id: UserId, name: impl Into<String>) -> Self {
        Self { id, name: name.into(), credential_version: 0 }
    }

    /// Sets the credential version the sign-in session is bound to.
    #[must_use]
    pub fn with_credential_version(mut self, version: u64) -> Self {
        self.credential_version = version;
        self
    }
}

/// A signed-in user's standing now, checked every time a sign-in session is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserStatus {
    /// The user may sign in; sessions made at another credential version are refused.
    Active {
        /// Changes whenever the user's credentials do (a password change).
        credential_version: u64,
    },
    /// The user is disabled: every session is refused.
    Disabled,
    /// The user no longer exists: every session is refused.
    Removed,
    /// The authenticator cannot tell: sessions last until they expire or are ended.
    Unchecked,
}

/// Checks a username and password. Implement it to sign users in against your own user base.
#[async_trait]
pub trait Authenticator: std::fmt::Debug + Send + Sync + 'static {
    /// The user, if the credentials are right; `None` if not. Errors are internal failures.
    async fn authenticate(&self, username: &str, password: &str) -> Result<Option<AuthenticatedUser>, Error>;

    /// The user's standing now, checked at every use of a sign-in session. The default,
    /// [`UserStatus::Unchecked`], keeps sessions until they expire, are signed out, or are
    /// ended through [`crate::store::SessionStore::delete_user_sessions`]; implement it so that
    /// removing or disabling a user, or changing a password, ends that user's sessions at once.
    async fn user_status(&self, user: &UserId) -> Result<UserStatus, Error> {
        let _ = user;
        Ok(UserStatus::Unchecked)
    }
}

/// The built-in authenticator: users in a [`UserStore`], passwords as Argon2id hashes.
#[derive(Debug, Clone)]
pub struct StoreAuthenticator {
    users: Arc<dyn UserStore>,
}

impl StoreAuthenticator {
    /// An authenticator over `users`.
    pub fn new(users: Arc<dyn UserStore>) -> Self {
        Self { users }
    }
}

#[async_trait]
impl Authenticator for StoreAuthenticator {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Option<AuthenticatedUser>, Error> {
        if username.len() > MAX_USERNAME_LEN || password.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        // Argon2id runs on the blocking pool, a few at a time: a flood of sign-ins waits its
        // turn instead of stalling every other request.
        match self.users.user_by_username(username).await? {
            // A disabled user, or one who signs in only upstream (no password hash), costs a
            // real check too: response times do not tell them from the others.
            Some(user) => {
                let usable = !user.disabled && user.password_hash != crate::upstream::NO_LOCAL_PASSWORD;
                let hash = if usable { user.password_hash.as_str() } else { dummy_hash() };
                let verified = verify_password_off_thread(password, hash).await;
                Ok((usable && verified).then(|| {
                    AuthenticatedUser::new(user.id, user.username).with_credential_version(user.credential_version)
                }))
            }
            None => {
                // Spend the same time as a real check, so that response times do not reveal
                // which usernames exist.
                verify_password_off_thread(password, dummy_hash()).await;
                Ok(None)
            }
        }
    }

    async fn user_status(&self, user: &UserId) -> Result<UserStatus, Error> {
        Ok(match self.users.user(user).await? {
            None => UserStatus::Removed,
            Some(u) if u.disabled => UserStatus::Disabled,
            Some(u) => UserStatus::Active { credential_version: u.credential_version },
        })
    }
}

fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("timing-equaliser").unwrap_or_default())
}

/// Checks a username: 1 to 64 characters, no whitespace or control characters.
pub(crate) fn validate_username(username: &str) -> Result<(), OAuthError> {
    if username.is_empty()
        || username.chars().count() > MAX_USERNAME_LEN
        || username.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OAuthError::invalid_request(format!(
            "a username has 1 to {MAX_USERNAME_LEN} characters and no spaces"
        )));
    }
    Ok(())
}

/// Checks a new password: at least 8 characters, at most 512 bytes.
pub(crate) fn validate_password(password: &str) -> Result<(), OAuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > MAX_SECRET_LEN {
        return Err(OAuthError::invalid_request(format!(
            "a password has at least {MIN_PASSWORD_LEN} characters (and at most {MAX_SECRET_LEN} bytes)"
        )));
    }
    Ok(())
}

/// Creates a user of the built-in sign-in. The username must be new.
pub async fn create_user(users: &dyn UserStore, username: &str, password: &str, now: UnixTime) -> Result<User, Error> {
    validate_username(username)?;
    validate_password(password)?;
    let user = User::new(UserId::generate(), username.to_owned(), hash_password_off_thread(password).await?, now);
    match users.create_user(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict(_)) => {
            Err(OAuthError::invalid_request(format!("a user named '{username}' already exists")).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets a user's password and bumps its credential version, so that sign-in sessions made
/// with the old password are refused at their next use (
/// [`Operator::set_password`](crate::admin::Operator::set_password) also deletes them at once).
pub async fn set_password(users: &dyn UserStore, username: &str, password: &str) -> Result<bool, Error> {
    validate_password(password)?;
    let Some(mut user) = users.user_by_username(username).await? else {
        return Ok(false);
    };
    user.password_hash = hash_password_off_thread(password).await?;
    user.credential_version = user.credential_version.wrapping_add(1);
    Ok(users.update_user(&user).await?)
}
