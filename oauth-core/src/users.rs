//! Signing users in: the [`Authenticator`] trait that an application implements to plug in its
//! own users, and the built-in [`StoreAuthenticator`] over a [`UserStore`] with Argon2id
//! password hashes.
//!
//! ```no_run
//! # async fn demo(users: std::sync::Arc<dyn oauth_core::store::UserStore>) -> Result<(), oauth_core::Error> {
//! use oauth_core::users::{Authenticator, StoreAuthenticator, create_user};
//! use oauth_core::UnixTime;
//!
//! create_user(users.as_ref(), "alice", "correct horse battery", UnixTime::from_secs(0)).await?;
//! let auth = StoreAuthenticator::new(users);
//! assert!(auth.authenticate("alice", "correct horse battery").await?.is_some());
//! # Ok(()) }
//! ```

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::error::{Error, OAuthError, StoreError};
use crate::secret::{MAX_SECRET_LEN, hash_password, hash_password_off_thread, verify_password_off_thread};
use crate::store::{User, UserStore};
use crate::types::UserId;

/// Shortest password accepted for a new user.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest username.
pub const MAX_USERNAME_LEN: usize = 64;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthenticatedUser {
    /// Stable id: the token's `sub`.
    pub id: UserId,
    /// Name to show.
    pub name: String,
}

impl AuthenticatedUser {
    /// A signed-in user.
    pub fn new(id: UserId, name: impl Into<String>) -> Self {
        Self { id, name: name.into() }
    }
}

/// Checks a username and password. Implement it to sign users in against your own user base.
#[async_trait]
pub trait Authenticator: std::fmt::Debug + Send + Sync + 'static {
    /// The user, if the credentials are right; `None` if not. Errors are internal failures.
    async fn authenticate(&self, username: &str, password: &str) -> Result<Option<AuthenticatedUser>, Error>;
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
            Some(user) if !user.disabled && verify_password_off_thread(password, &user.password_hash).await => {
                Ok(Some(AuthenticatedUser::new(user.id, user.username)))
            }
            Some(_) => Ok(None),
            None => {
                // Spend the same time as a real check, so that response times do not reveal
                // which usernames exist.
                verify_password_off_thread(password, dummy_hash()).await;
                Ok(None)
            }
        }
    }
}

fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("timing-equaliser").unwrap_or_default())
}

/// Checks a username: 1 to 64 characters, no whitespace or control characters.
pub fn validate_username(username: &str) -> Result<(), OAuthError> {
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
pub fn validate_password(password: &str) -> Result<(), OAuthError> {
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

/// Sets a user's password.
pub async fn set_password(users: &dyn UserStore, username: &str, password: &str) -> Result<bool, Error> {
    validate_password(password)?;
    let Some(mut user) = users.user_by_username(username).await? else {
        return Ok(false);
    };
    user.password_hash = hash_password_off_thread(password).await?;
    Ok(users.update_user(&user).await?)
}
