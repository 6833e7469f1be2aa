//! Liveness and readiness for load balancers and orchestrators.
//!
//! `GET /healthz` answers 200 while the process serves HTTP at all. `GET /readyz` answers 200
//! when the embedded authorization server's database answers within [`READY_WITHIN`], and 503
//! otherwise, so that a balancer stops sending token requests to a replica that has lost its
//! database (tokens already issued are still checked by the guard without it). Neither says
//! why to the caller; the reason goes to the log.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oauth_core::AuthorizationServer;

/// The longest a readiness probe waits for the database.
pub const READY_WITHIN: Duration = Duration::from_secs(2);

/// `/healthz` and `/readyz`; `server` is the embedded authorization server, `None` when tokens
/// come from another one (then ready means alive).
pub fn health_router<S: Clone + Send + Sync + 'static>(server: Option<Arc<AuthorizationServer>>) -> Router<S> {
    Router::new().route("/healthz", get(alive)).route("/readyz", get(ready)).with_state(server)
}

async fn alive() -> Response {
    answer(StatusCode::OK, "ok")
}

async fn ready(State(server): State<Option<Arc<AuthorizationServer>>>) -> Response {
    let Some(server) = server else {
        return answer(StatusCode::OK, "ready");
    };
    match tokio::time::timeout(READY_WITHIN, server.ready()).await {
        Ok(Ok(())) => answer(StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        Err(_) => {
            tracing::warn!(within = ?READY_WITHIN, "not ready: the database did not answer in time");
            answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}
