//! The guard as a [`tower::Service`]: the checks, then the inner service, then the session
//! bookkeeping its response calls for.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use tower::{BoxError, Service};

use crate::future::{ResponseBody, ResponseFuture};
use crate::guard::{Admitted, Guard};
use crate::session::{self, Route, SESSION_HEADER};

/// The guard service: see [`McpGuardLayer`](crate::McpGuardLayer).
///
/// It serves `http::Request<B>` for any body `B` that can be rebuilt from bytes (the guard
/// reads a JSON-RPC body to find the tool it calls, when the scope policy needs it, and puts it
/// back), so it stands in front of axum, hyper or any tower stack.
#[derive(Debug, Clone)]
pub struct McpGuard<S> {
    inner: S,
    guard: Guard,
}

impl<S> McpGuard<S> {
    pub(crate) fn new(inner: S, guard: Guard) -> Self {
        Self { inner, guard }
    }

    #[cfg(test)]
    pub(crate) fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone was not driven to readiness; the ready one handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // Another clone ends evicted sessions, after its own readiness.
        let closer = self.inner.clone();
        let guard = self.guard.clone();
        ResponseFuture::new(async move {
            let checked = guard.check(req).await;
            close_sessions(&closer, guard.state.sessions.take_evicted());
            let admitted = match checked {
                Ok(a) => a,
                Err(refusal) => return Ok(refusal.map(ResponseBody::refusal)),
            };
            // A POST without a session may open one (`initialize`): it runs to completion even
            // if the client goes away, so that the session it opens is always bound and
            // counted against the bounds.
            let opens = admitted.session.is_none() && admitted.req.method() == Method::POST;
            let served = serve(guard, inner, admitted, closer);
            if opens {
                match tokio::spawn(served).await {
                    Ok(r) => r,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            } else {
                served.await
            }
        })
    }
}

/// What the guard needs of the service it wraps: clones of it end evicted sessions from tasks
/// of their own.
trait Inner<ReqBody, ResBody>:
    Service<Request<ReqBody>, Response = Response<ResBody>, Future: Send + 'static, Error: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S, ReqBody, ResBody> Inner<ReqBody, ResBody> for S where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Future: Send + 'static, Error: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Calls the inner service and binds the session its response opens, or forgets the one it
/// ended.
async fn serve<S: Inner<ReqBody, ResBody>, ReqBody: From<Bytes> + Send + 'static, ResBody>(
    guard: Guard,
    mut inner: S,
    admitted: Admitted<ReqBody>,
    closer: S,
) -> Result<Response<ResponseBody<ResBody>>, S::Error> {
    let Admitted { req, owner, session } = admitted;
    let route = Route::of(&req);
    let deleting = req.method() == Method::DELETE;
    let resp = inner.call(req).await?;
    let status = resp.status();
    let sessions = &guard.state.sessions;
    match &session {
        Some(id) if status == StatusCode::NOT_FOUND || (deleting && status.is_success()) => sessions.forget(id),
        _ if status.is_success() => {
            let returned = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok());
            if let Some(new) = returned
                && let Some(owner) = owner
                && session.as_deref() != Some(new)
            {
                sessions.bind(new, owner, route, guard.now().as_secs());
                close_sessions(&closer, sessions.take_evicted());
            }
        }
        _ => {}
    }
    Ok(resp.map(ResponseBody::inner))
}

/// Ends `evicted` sessions in the inner service, each with a `DELETE` of its own.
fn close_sessions<S, ReqBody, ResBody>(service: &S, evicted: Vec<session::Evicted>)
where
    S: Inner<ReqBody, ResBody>,
    ReqBody: From<Bytes> + Send + 'static,
{
    for e in evicted {
        let Some(req) = e.delete_request() else { continue };
        let mut service = service.clone();
        tokio::spawn(async move {
            if std::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
                tracing::warn!("the MCP service was not ready to end an evicted session");
                return;
            }
            match service.call(req).await {
                Ok(r) if r.status().is_success() => tracing::debug!("ended an evicted MCP session"),
                Ok(r) => tracing::warn!(status = %r.status(), "the MCP service refused to end an evicted session"),
                Err(_) => tracing::warn!("the MCP service failed to end an evicted session"),
            }
        });
    }
}
