//! What a signed-in person sees of their own consent, and how they take it back.
//! Documented in the crate docs, "Connected apps".

use std::collections::BTreeMap;

use crate::client::{Client, ClientOrigin};
use crate::clock::UnixTime;
use crate::error::Error;
use crate::events::{FlowEvent, FlowStep};
use crate::server::AuthorizationServer;
use crate::store::Grant;
use crate::types::{ClientId, ScopeSet, UserId};

/// Most grants read for one person's Connected apps page.
pub(crate) const MAX_LISTED_GRANTS: usize = 500;

/// What a client is, as far as this server can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIdentity {
    /// Registered by the operator of this server: its name was typed by the operator.
    PreRegistered,
    /// Registered itself through dynamic client registration (RFC 7591): anyone can register
    /// any name, so the name is unverified.
    Registered,
    /// Described by a Client ID Metadata Document at an https URL on `host`: the name is what
    /// that host publishes, unverified beyond that.
    MetadataDocument {
        /// The host serving the document (the `client_id` URL's host).
        host: String,
    },
}

impl ClientIdentity {
    /// What `client` is.
    pub fn of(client: &Client) -> Self {
        match client.origin {
            ClientOrigin::PreRegistered => Self::PreRegistered,
            ClientOrigin::Dynamic => Self::Registered,
            ClientOrigin::MetadataDocument => Self::MetadataDocument {
                host: url::Url::parse(client.id.as_str())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| client.id.to_string()),
            },
        }
    }

    /// Whether someone this server trusts stands behind the client's name (only the operator).
    pub fn name_verified(&self) -> bool {
        matches!(self, Self::PreRegistered)
    }

    /// The metadata document's host, for a metadata document client.
    pub fn published_by(&self) -> Option<&str> {
        match self {
            Self::MetadataDocument { host } => Some(host),
            _ => None,
        }
    }
}

/// A scope as a person reads it: the operator's description, else the scope string itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeDescription {
    /// The scope string.
    pub scope: String,
    /// What it allows, from [`ServerConfig::with_scope_descriptions`]; `None` when the
    /// operator gave none (show the scope string).
    ///
    /// [`ServerConfig::with_scope_descriptions`]: crate::ServerConfig::with_scope_descriptions
    pub description: Option<String>,
}

impl ScopeDescription {
    /// A scope and its description, if any.
    pub fn new(scope: impl Into<String>, description: Option<String>) -> Self {
        Self { scope: scope.into(), description }
    }
}

/// One client connected to a person's account: their live grants to it, folded together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectedApp {
    /// The client.
    pub client_id: ClientId,
    /// The name to show (the client's name, else its id).
    pub name: String,
    /// What the client is.
    pub identity: ClientIdentity,
    /// When the person last approved it (the newest grant's creation).
    pub approved_at: UnixTime,
    /// When it last obtained tokens (the latest refresh-token rotation or grant creation).
    pub last_used_at: UnixTime,
    /// Every scope it holds, over all its grants.
    pub scopes: ScopeSet,
    /// How many live grants it holds (one per connection).
    pub grants: usize,
}

impl AuthorizationServer {
    /// `scopes` as a person reads them, in order.
    pub fn describe_scopes(&self, scopes: &ScopeSet) -> Vec<ScopeDescription> {
        scopes
            .iter()
            .map(|s| ScopeDescription::new(s.as_str(), self.config().scope_descriptions.get(s.as_str()).cloned()))
            .collect()
    }

    /// The clients connected to `user`'s account, most recently approved first: every client
    /// holding a grant that can still yield a token (unrevoked, refresh token unexpired, or
    /// without refresh token but younger than an access token's lifetime).
    pub async fn connected_apps(&self, user: &UserId) -> Result<Vec<ConnectedApp>, Error> {
        let now = self.now();
        let grants = self.stores().grants.user_grants(user, now, MAX_LISTED_GRANTS).await?;
        let access_ttl = self.config().access_token_ttl;
        let mut by_client: BTreeMap<ClientId, Vec<Grant>> = BTreeMap::new();
        for g in grants.into_iter().filter(|g| g.has_refresh_token || g.created_at.plus(access_ttl) > now) {
            by_client.entry(g.client_id.clone()).or_default().push(g);
        }
        let mut apps = Vec::with_capacity(by_client.len());
        for (client_id, grants) in by_client {
            let client = self.stores().clients.client(&client_id).await?;
            let (name, identity) = match &client {
                Some(c) => (c.display_name().to_owned(), ClientIdentity::of(c)),
                // Deleted meanwhile: its grants are revoked with it, but list what is left.
                None => (client_id.to_string(), ClientIdentity::Registered),
            };
            let scopes = grants
                .iter()
                .fold(ScopeSet::new(), |acc, g| ScopeSet::from_scopes(acc.iter().chain(g.scopes.iter()).cloned()));
            apps.push(ConnectedApp {
                approved_at: grants.iter().map(|g| g.created_at).max().unwrap_or(now),
                last_used_at: grants.iter().map(|g| g.rotated_at.unwrap_or(g.created_at)).max().unwrap_or(now),
                grants: grants.len(),
                client_id,
                name,
                identity,
                scopes,
            });
        }
        apps.sort_by(|a, b| b.approved_at.cmp(&a.approved_at).then_with(|| a.client_id.cmp(&b.client_id)));
        Ok(apps)
    }

    /// Takes `user`'s consent to `client_id` back: revokes each of the user's grants to that
    /// client (so their refresh tokens fail at once, and access tokens at every guard watching
    /// the grant store) and withdraws the remembered consent, so that the client must ask
    /// again. Another user's grants are never touched. Records a flow event; returns how many
    /// grants were revoked.
    pub async fn revoke_connected_app(&self, user: &UserId, client_id: &ClientId) -> Result<u64, Error> {
        let now = self.now();
        let mut revoked = 0;
        for g in self.stores().grants.client_grants(client_id).await? {
            if &g.user == user && g.revoked_at.is_none() && self.stores().grants.revoke_grant(&g.id, now).await? {
                revoked += 1;
            }
        }
        let consent = self.stores().consents.revoke_consent(user, client_id).await?;
        self.record(
            FlowEvent::success(
                now,
                FlowStep::Revocation,
                format!(
                    "revoked from Connected apps by the user: {revoked} grant(s) with their tokens{}",
                    if consent { ", and the remembered consent" } else { "" }
                ),
            )
            .client(client_id)
            .user(user),
        )
        .await;
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TokenEndpointAuthMethod;

    fn client(id: &str, origin: ClientOrigin) -> Client {
        Client::new(ClientId::parse(id).unwrap(), TokenEndpointAuthMethod::None, vec![], origin, UnixTime::from_secs(0))
    }

    #[test]
    fn only_the_operator_vouches_for_a_name() {
        let dcr = ClientIdentity::of(&client("mcp_abc", ClientOrigin::Dynamic));
        assert_eq!(dcr, ClientIdentity::Registered);
        assert!(!dcr.name_verified() && dcr.published_by().is_none());
        let pre = ClientIdentity::of(&client("notes-cli", ClientOrigin::PreRegistered));
        assert!(pre.name_verified());
        let doc = ClientIdentity::of(&client("https://app.example.com/client.json", ClientOrigin::MetadataDocument));
        assert_eq!(doc.published_by(), Some("app.example.com"));
        assert!(!doc.name_verified());
    }
}
