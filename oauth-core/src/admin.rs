//! The operator's actions.
//! Documented in the crate docs, "The operator".

use std::sync::Arc;

use serde::Serialize;

use crate::client::{ApplicationType, Client, ClientOrigin, GrantType, TokenEndpointAuthMethod};
use crate::clock::{Clock, SystemClock, UnixTime};
use crate::error::{Error, OAuthError, StoreError};
use crate::events::{EventQuery, FlowEvent, FlowStep, Reason};
use crate::jwks::Jwks;
use crate::secret::{ClientSecret, ClientSecretHash, ServerSecret};
use crate::store::Stores;
use crate::stored::{CLIENT_SECRET_PEPPER, load_server_secret, record_event};
use crate::types::{ClientId, RedirectKind, RedirectUri};

/// A client created by the operator, and its secret if it has one (shown once).
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedClient {
    /// The client.
    pub client: Client,
    /// Its clear secret, for confidential clients.
    pub secret: Option<ClientSecret>,
}

/// What a pre-registered client looks like.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewClient {
    /// Display name.
    pub name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Confidential (with a secret, `client_secret_post`) or public.
    pub confidential: bool,
    /// Trusted clients skip the consent page.
    pub trusted: bool,
    /// A fixed client id; generated when `None`.
    pub client_id: Option<ClientId>,
    /// Grant types; default `authorization_code` and `refresh_token`.
    pub grant_types: Vec<GrantType>,
    /// A machine client: `client_credentials` only, no redirect URIs, tokens with no user.
    pub machine: bool,
    /// May introspect any access token of this server (a resource server).
    pub introspection: bool,
    /// Authenticates with `private_key_jwt` against these inline keys instead of a secret.
    pub jwks: Option<Jwks>,
    /// Authenticates with `private_key_jwt` against the keys published here instead of a secret.
    pub jwks_uri: Option<String>,
}

impl NewClient {
    /// A public, untrusted client with the code and refresh grants.
    pub fn new(name: impl Into<String>, redirect_uris: Vec<RedirectUri>) -> Self {
        Self {
            name: name.into(),
            redirect_uris,
            confidential: false,
            trusted: false,
            client_id: None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            machine: false,
            introspection: false,
            jwks: None,
            jwks_uri: None,
        }
    }

    /// A machine client: confidential, the `client_credentials` grant only, no redirect URIs.
    /// Its tokens name the client, never a user, and are backed by a revocable grant. The
    /// server must allow the grant ([`ServerConfig::with_client_credentials`](crate::ServerConfig::with_client_credentials)) and the
    /// resource must accept machine tokens.
    pub fn machine(name: impl Into<String>) -> Self {
        Self {
            confidential: true,
            grant_types: vec![GrantType::ClientCredentials],
            machine: true,
            ..Self::new(name, Vec::new())
        }
    }

    /// Lets the client introspect any access token of this server (RFC 7662): for a resource
    /// server that does not verify tokens itself. Needs a confidential client.
    #[must_use]
    pub fn introspection(mut self) -> Self {
        self.introspection = true;
        self
    }

    /// Gives the client a secret (`client_secret_post`, the method Claude's "Advanced settings"
    /// uses; Basic is accepted too).
    #[must_use]
    pub fn confidential(mut self) -> Self {
        self.confidential = true;
        self
    }

    /// Makes the client authenticate with `private_key_jwt` (RFC 7523) against its public
    /// keys, given inline, instead of a secret: nothing secret is issued or stored.
    #[must_use]
    pub fn with_jwks(mut self, keys: Jwks) -> Self {
        self.confidential = true;
        self.jwks = Some(keys);
        self
    }

    /// Makes the client authenticate with `private_key_jwt` against the keys it publishes at
    /// `uri` (https; fetched through the server's SSRF-safe fetcher), instead of a secret.
    #[must_use]
    pub fn with_jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.confidential = true;
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Lets the client skip the consent page.
    #[must_use]
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// Uses a fixed client id.
    #[must_use]
    pub fn with_client_id(mut self, id: ClientId) -> Self {
        self.client_id = Some(id);
        self
    }

    /// Sets the grant types.
    #[must_use]
    pub fn with_grant_types(mut self, grants: Vec<GrantType>) -> Self {
        self.grant_types = grants;
        self
    }
}

/// The operator's view of the stores.
#[derive(Debug, Clone)]
pub struct Operator {
    stores: Stores,
    clock: Arc<dyn Clock>,
}

/// Changes to a client; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientUpdate {
    /// Replaces the redirect URIs.
    pub redirect_uris: Option<Vec<RedirectUri>>,
    /// Trusted clients skip the consent page.
    pub trusted: Option<bool>,
    /// Inactive clients are refused at every endpoint.
    pub active: Option<bool>,
    /// Replaces the display name.
    pub name: Option<String>,
}

impl ClientUpdate {
    /// Replaces the redirect URIs.
    #[must_use]
    pub fn redirect_uris(mut self, uris: Vec<RedirectUri>) -> Self {
        self.redirect_uris = Some(uris);
        self
    }

    /// Sets whether the client skips consent.
    #[must_use]
    pub fn trusted(mut self, trusted: bool) -> Self {
        self.trusted = Some(trusted);
        self
    }

    /// Activates or deactivates the client.
    #[must_use]
    pub fn active(mut self, active: bool) -> Self {
        self.active = Some(active);
        self
    }

    /// Renames the client.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A client as the operator sees it: its metadata (never its secret hash) and what its codes
/// became, counted from the flow events still retained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientReport {
    /// The client id.
    pub client_id: ClientId,
    /// Display name.
    pub name: Option<String>,
    /// How it was registered.
    pub origin: ClientOrigin,
    /// `native` or `web`, when it said.
    pub application_type: Option<ApplicationType>,
    /// Token endpoint authentication.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Whether it has a secret.
    pub has_secret: bool,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Registered grant types.
    pub grant_types: Vec<GrantType>,
    /// Skips consent.
    pub trusted: bool,
    /// Accepted at the endpoints.
    pub active: bool,
    /// Registered at.
    pub created_at: UnixTime,
    /// Last obtained a token at.
    pub last_used_at: Option<UnixTime>,
    /// Authorization codes issued.
    pub codes_issued: u64,
    /// Codes exchanged for tokens.
    pub codes_exchanged: u64,
    /// Codes presented after they expired.
    pub codes_expired: u64,
    /// Codes issued and never presented (or whose exchange failed for another reason).
    pub codes_unused: u64,
    /// Grants not revoked.
    pub active_grants: u64,
}

impl ClientReport {
    /// A human-readable report.
    pub fn render(&self) -> String {
        let opt_time = |t: Option<UnixTime>| t.map(UnixTime::to_rfc3339).unwrap_or_else(|| "never".into());
        let grants: Vec<&str> = self.grant_types.iter().map(|g| g.as_str()).collect();
        let mut out = format!(
            "client {}\n  name:            {}\n  registered:      {:?}, {}\n  auth method:     {}{}\n  grant types:     {}\n  trusted:         {}\n  active:          {}\n  last used:       {}\n  redirect URIs:\n",
            self.client_id,
            self.name.as_deref().unwrap_or("(none)"),
            self.origin,
            self.created_at.to_rfc3339(),
            self.token_endpoint_auth_method.as_str(),
            if self.has_secret { " (has a secret)" } else { "" },
            grants.join(", "),
            self.trusted,
            self.active,
            opt_time(self.last_used_at),
        );
        for uri in &self.redirect_uris {
            out.push_str(&format!("    {uri}\n"));
        }
        out.push_str(&format!(
            "  codes:           {} issued, {} exchanged, {} expired before exchange, {} unused\n  active grants:   {}\n",
            self.codes_issued, self.codes_exchanged, self.codes_expired, self.codes_unused, self.active_grants
        ));
        out
    }
}

impl Operator {
    /// An operator on the system clock.
    pub fn new(stores: Stores) -> Self {
        Self::with_clock(stores, Arc::new(SystemClock))
    }

    /// An operator on the given clock.
    pub fn with_clock(stores: Stores, clock: Arc<dyn Clock>) -> Self {
        Self { stores, clock }
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Registers a client on the operator's behalf (pre-registration). Confidential clients
    /// get a generated secret, returned once and stored as a password hash.
    pub async fn create_client(&self, spec: NewClient) -> Result<CreatedClient, Error> {
        check_operator_redirects(&spec.redirect_uris)?;
        let machine_grant = spec.grant_types.contains(&GrantType::ClientCredentials);
        if spec.machine != machine_grant || (spec.machine && !spec.confidential) {
            return Err(OAuthError::invalid_client_metadata(
                "client_credentials is for machine clients only, and a machine client is confidential with that grant",
            )
            .into());
        }
        if (spec.machine || spec.introspection) && !spec.confidential {
            return Err(
                OAuthError::invalid_client_metadata("an introspecting client needs a secret (confidential)").into()
            );
        }
        let with_keys = spec.jwks.is_some() || spec.jwks_uri.is_some();
        if with_keys {
            crate::client_assertion::check_key_material(spec.jwks.as_ref(), spec.jwks_uri.as_deref())?;
        }
        let now = self.clock.now();
        let method = match (with_keys, spec.confidential) {
            (true, _) => TokenEndpointAuthMethod::PrivateKeyJwt,
            (false, true) => TokenEndpointAuthMethod::ClientSecretPost,
            (false, false) => TokenEndpointAuthMethod::None,
        };
        let id = spec.client_id.unwrap_or_else(ClientId::generate);
        let mut client = Client::new(id, method, spec.redirect_uris, ClientOrigin::PreRegistered, now);
        client.name = Some(spec.name);
        client.trusted = spec.trusted;
        client.grant_types = spec.grant_types;
        client.machine = spec.machine;
        client.introspection = spec.introspection;
        client.jwks = spec.jwks;
        client.jwks_uri = spec.jwks_uri;
        let secret = method.uses_secret().then(ClientSecret::generate);
        if let Some(s) = &secret {
            client.secret_hash = Some(ClientSecretHash::of(s.secret(), &self.pepper().await?));
        }
        match self.stores.clients.create_client(&client).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(
                    OAuthError::invalid_request(format!("a client with id '{}' already exists", client.id)).into()
                );
            }
            Err(e) => return Err(e.into()),
        }
        self.record(
            FlowEvent::success(now, FlowStep::Registration, format!("pre-registered '{}'", client.display_name()))
                .client(&client.id),
        )
        .await;
        Ok(CreatedClient { client, secret })
    }

    /// Changes a client. Deactivating it also revokes its grants, so that its refresh tokens
    /// stop working at once.
    pub async fn update_client(&self, id: &ClientId, update: ClientUpdate) -> Result<Client, Error> {
        let mut client = self.existing(id).await?;
        let mut changes = Vec::new();
        if let Some(uris) = update.redirect_uris {
            if uris.is_empty() {
                return Err(OAuthError::invalid_redirect_uri("a client needs at least one redirect URI").into());
            }
            check_operator_redirects(&uris)?;
            changes
                .push(format!("redirect URIs {}", uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>().join(", ")));
            client.redirect_uris = uris;
        }
        if let Some(trusted) = update.trusted {
            changes.push(format!("trusted {trusted}"));
            client.trusted = trusted;
        }
        if let Some(active) = update.active {
            changes.push(format!("active {active}"));
            client.active = active;
        }
        if let Some(name) = update.name {
            changes.push(format!("name '{name}'"));
            client.name = Some(name);
        }
        if !self.stores.clients.update_client(&client).await? {
            return Err(not_found(id));
        }
        let now = self.clock.now();
        if update.active == Some(false) {
            self.stores.grants.revoke_client_grants(id, now).await?;
        }
        tracing::info!(client_id = %id, changes = %changes.join("; "), "client changed by the operator");
        Ok(client)
    }

    /// Gives a confidential client a new secret (returned once; the old one stops working).
    pub async fn rotate_client_secret(&self, id: &ClientId) -> Result<ClientSecret, Error> {
        let mut client = self.existing(id).await?;
        if !client.auth_method.uses_secret() {
            return Err(OAuthError::invalid_request(format!(
                "client '{id}' authenticates with {}: it has no secret to rotate",
                client.auth_method.as_str()
            ))
            .into());
        }
        let secret = ClientSecret::generate();
        client.secret_hash = Some(ClientSecretHash::of(secret.secret(), &self.pepper().await?));
        client.secret_expires_at = None;
        if !self.stores.clients.update_client(&client).await? {
            return Err(not_found(id));
        }
        if client.machine {
            // A machine client's tokens are its secret's only output: a rotation after a leak
            // must end the tokens minted with the old one too.
            self.stores.grants.revoke_client_grants(id, self.clock.now()).await?;
        }
        tracing::info!(client_id = %id, "client secret rotated by the operator");
        Ok(secret)
    }

    /// Revokes every grant of a client and deletes it; `false` if there was no such client.
    pub async fn remove_client(&self, id: &ClientId) -> Result<bool, Error> {
        let now = self.clock.now();
        let revoked = self.stores.grants.revoke_client_grants(id, now).await?;
        let removed = self.stores.clients.delete_client(id).await?;
        if removed {
            tracing::info!(client_id = %id, revoked_grants = revoked, "client removed by the operator");
        }
        Ok(removed)
    }

    /// The operator's report on one client; `None` if there is no such client.
    pub async fn client_report(&self, id: &ClientId) -> Result<Option<ClientReport>, Error> {
        let Some(client) = self.stores.clients.client(id).await? else {
            return Ok(None);
        };
        let events = self.stores.events.events(&EventQuery::all().for_client(id).limit(10_000)).await?;
        let count = |f: &dyn Fn(&FlowEvent) -> bool| events.iter().filter(|e| f(e)).count() as u64;
        let codes_issued = count(&|e| e.step == FlowStep::CodeIssued && e.succeeded());
        let codes_exchanged = count(&|e| e.step == FlowStep::CodeExchange && e.succeeded());
        let codes_expired = count(&|e| e.step == FlowStep::CodeExchange && e.reason == Some(Reason::CodeExpired));
        let grants = self.stores.grants.client_grants(id).await?;
        Ok(Some(ClientReport {
            client_id: client.id,
            name: client.name,
            origin: client.origin,
            application_type: client.application_type,
            token_endpoint_auth_method: client.auth_method,
            has_secret: client.secret_hash.is_some(),
            redirect_uris: client.redirect_uris,
            grant_types: client.grant_types,
            trusted: client.trusted,
            active: client.active,
            created_at: client.created_at,
            last_used_at: client.last_used_at,
            codes_issued,
            codes_exchanged,
            codes_expired,
            codes_unused: codes_issued.saturating_sub(codes_exchanged + codes_expired),
            active_grants: grants.iter().filter(|g| g.revoked_at.is_none()).count() as u64,
        }))
    }

    /// Deletes a user of the built-in sign-in, unlinks its upstream identities, ends its
    /// sign-in sessions and revokes every grant it approved (which deletes their upstream
    /// tokens); `false` if there was no such user.
    pub async fn remove_user(&self, username: &str) -> Result<bool, Error> {
        let Some(user) = self.stores.users.user_by_username(username).await? else {
            return Ok(false);
        };
        // The links first: if a later step fails, no upstream identity signs in as a user who
        // is half removed. The store's `delete_user` drops any link made in between.
        let unlinked = self.stores.upstream.unlink_user(&user.id).await?;
        let sessions = self.stores.sessions.delete_user_sessions(&user.id).await?;
        let revoked = self.revoke_user_grants(&user.id).await?;
        let removed = self.stores.users.delete_user(&user.id).await?;
        tracing::info!(
            user = %user.id,
            revoked_grants = revoked,
            ended_sessions = sessions,
            upstream_links = unlinked,
            "user removed by the operator"
        );
        Ok(removed)
    }

    /// Disables a user of the built-in sign-in: it can no longer sign in, its sign-in sessions
    /// end and every grant it approved is revoked (refresh tokens stop working; access tokens
    /// already issued are refused by guards that follow the revocation feed, and otherwise last
    /// until they expire). `false` if there was no such user.
    pub async fn disable_user(&self, username: &str) -> Result<bool, Error> {
        let Some(mut user) = self.stores.users.user_by_username(username).await? else {
            return Ok(false);
        };
        user.disabled = true;
        if !self.stores.users.update_user(&user).await? {
            return Ok(false);
        }
        let sessions = self.stores.sessions.delete_user_sessions(&user.id).await?;
        let revoked = self.revoke_user_grants(&user.id).await?;
        tracing::info!(user = %user.id, revoked_grants = revoked, ended_sessions = sessions, "user disabled by the operator");
        Ok(true)
    }

    /// Lets a disabled user sign in again. `false` if there was no such user.
    pub async fn enable_user(&self, username: &str) -> Result<bool, Error> {
        let Some(mut user) = self.stores.users.user_by_username(username).await? else {
            return Ok(false);
        };
        user.disabled = false;
        let updated = self.stores.users.update_user(&user).await?;
        if updated {
            tracing::info!(user = %user.id, "user enabled by the operator");
        }
        Ok(updated)
    }

    /// Sets a user's password ([`crate::users::set_password`]) and ends its sign-in sessions,
    /// so that a browser signed in with the old password must sign in again. Grants stay.
    /// `false` if there was no such user.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<bool, Error> {
        if !crate::users::set_password(self.stores.users.as_ref(), username, password).await? {
            return Ok(false);
        }
        if let Some(user) = self.stores.users.user_by_username(username).await? {
            let sessions = self.stores.sessions.delete_user_sessions(&user.id).await?;
            tracing::info!(user = %user.id, ended_sessions = sessions, "password changed by the operator");
        }
        Ok(true)
    }

    /// Revokes every unrevoked grant `user` approved. Returns how many.
    async fn revoke_user_grants(&self, user: &crate::types::UserId) -> Result<u64, Error> {
        let now = self.clock.now();
        let mut revoked = 0u64;
        for client in self.stores.clients.list_clients().await? {
            for grant in self.stores.grants.client_grants(&client.id).await? {
                if &grant.user == user
                    && grant.revoked_at.is_none()
                    && self.stores.grants.revoke_grant(&grant.id, now).await?
                {
                    revoked += 1;
                }
            }
        }
        Ok(revoked)
    }

    /// The pepper of client-secret hashes, shared with the server through the key store.
    async fn pepper(&self) -> Result<ServerSecret, Error> {
        load_server_secret(&self.stores, CLIENT_SECRET_PEPPER, self.clock.now()).await
    }

    async fn existing(&self, id: &ClientId) -> Result<Client, Error> {
        self.stores.clients.client(id).await?.ok_or_else(|| not_found(id))
    }

    async fn record(&self, event: FlowEvent) {
        record_event(&self.stores, event).await;
    }
}

fn not_found(id: &ClientId) -> Error {
    OAuthError::invalid_request(format!("there is no client '{id}'")).into()
}

/// An operator may register any redirect a client could, but never plain http to a
/// non-loopback host: the code would cross the network in clear.
fn check_operator_redirects(uris: &[RedirectUri]) -> Result<(), Error> {
    for uri in uris {
        if uri.kind() == RedirectKind::PlainHttp {
            return Err(
                OAuthError::invalid_redirect_uri(format!("'{uri}' uses plain http to a non-loopback host")).into()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // On real stores: the conformance kit's `operator_manages_clients_and_users`.
    use super::*;

    #[test]
    fn plain_http_redirects_are_refused_for_operators_too() {
        let bad = [RedirectUri::parse("http://example.com/cb").unwrap()];
        assert!(check_operator_redirects(&bad).is_err());
        let good = [
            RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap(),
            RedirectUri::parse("http://127.0.0.1:33418/").unwrap(),
        ];
        assert!(check_operator_redirects(&good).is_ok());
    }
}
