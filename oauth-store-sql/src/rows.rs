//! Rows as read from the tables, and their conversion into `oauth-core` records.
//!
//! The records are `#[non_exhaustive]`, so those without a constructor are rebuilt through
//! their serde form: a row struct with the record's field names serialises into exactly what
//! the record deserialises from, and every newtype is parsed (validated) on the way. A value
//! that does not parse is [`StoreError::Corrupt`].

use oauth_core::StoredKey;
use oauth_core::{Client, ClientOrigin};
use oauth_core::{ClientId, ScopeSet, UserId};
use oauth_core::{Consent, Grant, StoreResult, User};
use oauth_core::{FlowEvent, FlowStep, Reason};
use oauth_core::{StoreError, UnixTime};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::corrupt;

/// A record stored as JSON text.
pub(crate) fn from_json<T: DeserializeOwned>(op: &'static str, data: &str) -> StoreResult<T> {
    serde_json::from_str(data).map_err(|e| corrupt(op, e))
}

/// A record as JSON text, for storage.
pub(crate) fn to_json(op: &'static str, value: &impl Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| {
        tracing::error!(op, error = %e, "store: record does not serialise");
        StoreError::backend(e)
    })
}

/// A record rebuilt from a row struct with the same field names.
fn via_serde<T: DeserializeOwned>(op: &'static str, row: impl Serialize) -> StoreResult<T> {
    serde_json::to_value(row).and_then(serde_json::from_value).map_err(|e| corrupt(op, e))
}

/// How a client's origin is stored.
pub(crate) const fn origin_name(origin: ClientOrigin) -> &'static str {
    match origin {
        ClientOrigin::PreRegistered => "pre_registered",
        ClientOrigin::Dynamic => "dynamic",
        ClientOrigin::MetadataDocument => "metadata_document",
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    data: String,
    last_used_at: Option<i64>,
}

impl ClientRow {
    pub(crate) fn into_client(self, op: &'static str) -> StoreResult<Client> {
        let mut client: Client = from_json(op, &self.data)?;
        // The column is authoritative: `touch_client` updates only it.
        client.last_used_at = self.last_used_at.map(UnixTime::from_secs);
        Ok(client)
    }
}

/// The columns of `grants`, in [`GrantRow`]'s order.
macro_rules! grant_columns {
    () => {
        "id, client_id, user_id, scopes, resource, auth_time, created_at, generation, has_refresh_token, \
         rotated_at, refresh_expires_at, revoked_at"
    };
}
pub(crate) use grant_columns;

#[derive(sqlx::FromRow, Serialize)]
pub(crate) struct GrantRow {
    id: String,
    client_id: String,
    #[sqlx(rename = "user_id")]
    user: String,
    scopes: String,
    resource: String,
    auth_time: i64,
    created_at: i64,
    generation: i64,
    has_refresh_token: bool,
    rotated_at: Option<i64>,
    refresh_expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl GrantRow {
    pub(crate) fn into_grant(self, op: &'static str) -> StoreResult<Grant> {
        via_serde(op, self)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshTokenRow {
    #[sqlx(flatten)]
    grant: GrantRow,
    token_generation: i64,
}

impl RefreshTokenRow {
    pub(crate) fn into_pair(self, op: &'static str) -> StoreResult<(Grant, u64)> {
        let generation = u64::try_from(self.token_generation).map_err(|e| corrupt(op, e))?;
        Ok((self.grant.into_grant(op)?, generation))
    }
}

/// What `exchange_code` reads back when the conditional update did not redeem the code.
#[derive(sqlx::FromRow)]
pub(crate) struct CodeStateRow {
    pub(crate) redeemed_at: Option<i64>,
    pub(crate) data: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConsentRow {
    user_id: String,
    client_id: String,
    scopes: String,
    granted_at: i64,
}

impl ConsentRow {
    pub(crate) fn into_consent(self, op: &'static str) -> StoreResult<Consent> {
        Ok(Consent::new(
            UserId::parse(&self.user_id).map_err(|e| corrupt(op, e))?,
            ClientId::parse(&self.client_id).map_err(|e| corrupt(op, e))?,
            ScopeSet::parse(&self.scopes).map_err(|e| corrupt(op, e))?,
            UnixTime::from_secs(self.granted_at),
        ))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    password_hash: String,
    created_at: i64,
    disabled: bool,
    credential_version: i64,
}

impl UserRow {
    pub(crate) fn into_user(self, op: &'static str) -> StoreResult<User> {
        let id = UserId::parse(&self.id).map_err(|e| corrupt(op, e))?;
        let mut user = User::new(id, self.username, self.password_hash, UnixTime::from_secs(self.created_at));
        user.disabled = self.disabled;
        user.credential_version = u64::try_from(self.credential_version).map_err(|e| corrupt(op, e))?;
        Ok(user)
    }
}

#[derive(sqlx::FromRow, Serialize)]
pub(crate) struct KeyRow {
    kid: String,
    algorithm: String,
    private_der: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl KeyRow {
    pub(crate) fn into_key(self, op: &'static str) -> StoreResult<StoredKey> {
        via_serde(op, self)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    occurred_at: i64,
    step: String,
    client_id: Option<String>,
    user_id: Option<String>,
    reason: Option<String>,
    detail: String,
}

impl EventRow {
    pub(crate) fn into_event(self, op: &'static str) -> StoreResult<FlowEvent> {
        let at = UnixTime::from_secs(self.occurred_at);
        let step = FlowStep::parse(&self.step).ok_or_else(|| corrupt(op, format!("unknown step `{}`", self.step)))?;
        let mut event = match self.reason {
            Some(r) => {
                let reason = Reason::parse(&r).ok_or_else(|| corrupt(op, format!("unknown reason `{r}`")))?;
                FlowEvent::failure(at, step, reason, self.detail)
            }
            None => FlowEvent::success(at, step, self.detail),
        };
        if let Some(c) = self.client_id {
            event = event.client(&ClientId::parse(&c).map_err(|e| corrupt(op, e))?);
        }
        if let Some(u) = self.user_id {
            event = event.user(&UserId::parse(&u).map_err(|e| corrupt(op, e))?);
        }
        Ok(event)
    }
}
