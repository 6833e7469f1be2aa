//! What the server and the operator both do with the stores: record a flow event, and load a
//! server secret shared by every replica.

use crate::clock::UnixTime;
use crate::error::Error;
use crate::events::FlowEvent;
use crate::secret::ServerSecret;
use crate::store::Stores;

/// The key-store name of the pepper of client-secret hashes. Never rotated: every stored client
/// secret hash depends on it (rotate the clients' secrets instead).
pub(crate) const CLIENT_SECRET_PEPPER: &str = "client-secret-pepper-v1";

/// Traces `event` and stores it; a store failure is logged, never returned.
pub(crate) async fn record_event(stores: &Stores, event: FlowEvent) {
    event.trace();
    if let Err(e) = stores.events.record_event(&event).await {
        tracing::error!(error = %e, step = event.step.as_str(), "could not store a flow event");
    }
}

/// The server secret `name` from the key store, generated and stored on first use; every
/// replica on the same store gets the same one.
pub(crate) async fn load_server_secret(stores: &Stores, name: &str, now: UnixTime) -> Result<ServerSecret, Error> {
    let bytes = stores.keys.server_secret(name, ServerSecret::generate().as_bytes(), now).await?;
    ServerSecret::from_bytes(&bytes).ok_or_else(|| {
        Error::Config(format!(
            "the stored server secret '{name}' cannot be read: it is sealed with a key-encryption key this process was not given (set the same one as the server), or the row is damaged"
        ))
    })
}
