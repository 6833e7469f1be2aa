#![doc = include_str!("../README.md")]

pub mod access;
pub mod account;
pub mod admin;
pub mod authorize;
pub mod challenge;
pub mod client;
mod client_auth;
pub mod clock;
mod config;
pub mod diagnose;
pub mod error;
pub mod events;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod metadata;
pub mod metadata_document;
pub mod pkce;
pub mod policy;
mod refresh;
pub mod refusals;
pub mod registration;
pub mod revoke;
pub mod sealing;
pub mod secret;
pub mod selfcheck;
pub mod server;
pub mod sessions;
pub mod store;
pub mod token;
pub mod types;
pub mod users;

mod escape;
mod failure;
mod known_client;
mod params;
mod stored;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use error::{Error, ErrorCode, OAuthError, StoreError};
pub use server::{AuthorizationServer, ServerConfig};
pub use store::Stores;
