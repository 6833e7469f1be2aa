#![doc = include_str!("../README.md")]
#![doc = include_str!("guide.md")]

mod access;
mod account;
mod admin;
mod authorize;
mod challenge;
mod client;
mod client_assertion;
mod client_auth;
mod clock;
mod config;
mod diagnose;
mod enterprise;
mod error;
mod event_writer;
mod events;
mod introspect;
mod jwks;
mod jwt;
mod keys;
mod metadata;
mod metadata_document;
mod pkce;
mod policy;
mod refresh;
mod refusals;
mod registration;
mod revocations;
mod revoke;
mod rotation;
mod sealing;
mod secret;
mod selfcheck;
mod server;
mod sessions;
mod store;
mod token;
mod types;
pub mod upstream;
mod users;

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

pub use crate::access::AccessEvent;
pub use crate::account::{ClientIdentity, ConnectedApp, ScopeDescription};
pub use crate::admin::{ClientReport, ClientUpdate, CreatedClient, NewClient, Operator};
pub use crate::authorize::{
    AuthorizationPrompt, AuthorizationRequest, AuthorizeError, ConsentDecision, MAX_STATE_LEN, consent_decision,
};
pub use crate::challenge::{BearerChallenge, INSUFFICIENT_SCOPE, bearer_token, quote};
pub use crate::client::{ApplicationType, Client, ClientOrigin, GrantType, TokenEndpointAuthMethod};
pub use crate::client_assertion::{
    ASSERTION_ALGORITHMS, CLIENT_ASSERTION_TYPE, ClientAssertion, JWKS_REFETCH_INTERVAL, MAX_ASSERTION_LIFETIME,
};
pub use crate::clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use crate::diagnose::{Attempt, ClientDiagnosis, Verdict, attempts, diagnose, fix, without_connected};
pub use crate::enterprise::{
    EnterpriseIdp, ID_JAG_TYP, IdpKeys, JWT_BEARER_GRANT, MAX_ID_JAG_LIFETIME, discover_idp_keys,
};
pub use crate::error::{Error, ErrorCode, OAuthError, StoreError};
pub use crate::events::{EventBudget, EventQuery, FlowEvent, FlowStep, Reason};
pub use crate::introspect::IntrospectionResponse;
pub use crate::jwks::{Jwks, VerifyingKeys};
pub use crate::jwt::{
    AccessTokenClaims, Audience, JwtRules, MAX_TOKEN_LEN, TokenValidation, VerifiedJwt, VerifyError, mint,
};
pub use crate::keys::{KeySet, SigningAlgorithm, StoredKey};
pub use crate::metadata::{
    AuthorizationServerMetadata, EndpointPaths, ProtectedResourceMetadata, well_known_path, well_known_url,
};
pub use crate::metadata_document::{
    DEFAULT_CACHE, DocumentFetchError, FetchedDocument, MAX_CACHE, MAX_DOCUMENT_BYTES, MIN_CACHE,
    MetadataDocumentFetcher, client_from_document, is_document_url,
};
pub use crate::pkce::{CodeChallenge, CodeChallengeMethod};
pub use crate::policy::{OFFLINE_ACCESS, RedirectPolicy, RedirectRefusal};
pub use crate::refusals::{Endpoint, Limited};
pub use crate::registration::{
    MAX_CONTACTS, MAX_REDIRECT_URIS, MAX_TEXT_LEN, RegistrationRequest, RegistrationResponse, ValidatedRegistration,
};
pub use crate::revocations::RevocationFollower;
pub use crate::revoke::TokenRequestForm;
pub use crate::rotation::KeyReport;
pub use crate::sealing::{EncryptedKeyStore, KeyEncryption};
pub use crate::secret::{
    AuthorizationCode, ClientSecret, CodeVerifier, MAX_SECRET_LEN, RefreshToken, SecretHash, ServerSecret, ct_eq,
    verify_password,
};
pub use crate::selfcheck::{KnownClient, Problem, check};
pub use crate::server::{AuthorizationServer, ServerConfig, SweepReport};
pub use crate::sessions::{SessionRefusal, SessionToken};
pub use crate::store::{
    AuthorizationCodeRecord, AuthorizationStore, BlockAfter, BucketRate, ClientStore, CodeRedemption, Consent,
    ConsentStore, EventStore, Grant, GrantForCode, GrantStore, KeyStore, LimitStore, MAX_LEASE_HOLDER_LEN,
    MAX_LIMIT_KEY, MAX_SEALED_UPSTREAM_LEN, NewGrant, PendingAuthorization, Revocation, SealedUpstream, SessionStore,
    SignInSession, StoreResult, Stores, UpstreamLink, UpstreamStore, User, UserStore, check_lease_holder,
    check_sealed_upstream,
};
pub use crate::token::{ClientCredentials, TokenRequest, TokenResponse};
pub use crate::types::{
    ClientId, GrantId, Issuer, MAX_CALLBACK_ID_LEN, MAX_SCOPES, MAX_UPSTREAM_PROVIDER_LEN, MAX_UPSTREAM_SUBJECT_LEN,
    MAX_URI_LEN, ParseError, RedirectKind, RedirectMatch, RedirectUri, ResourceUri, Scope, ScopeSet,
    UpstreamProviderId, UpstreamSubject, UserId,
};
pub use crate::users::{AuthenticatedUser, Authenticator, StoreAuthenticator, UserStatus, create_user, set_password};
