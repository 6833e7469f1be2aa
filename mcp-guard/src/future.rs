//! What the guard's service returns: a named future and a named body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use tower::BoxError;

pin_project_lite::pin_project! {
    /// The body of a guarded response: the inner service's, or the guard's own JSON error
    /// when it refused the request. Its default is empty, for layers outside the guard that
    /// answer by themselves (CORS preflights).
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: Either<B, Full<Bytes>>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self { inner: Either::Left(body) }
    }

    pub(crate) fn refusal(body: Full<Bytes>) -> Self {
        Self { inner: Either::Right(body) }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::refusal(Full::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Inner<B, E> = Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody<B>>, E>> + Send>>;

/// The response future of [`McpGuard`](crate::McpGuard): the token check, then the inner
/// service's response, with the session it opened bound to the caller.
pub struct ResponseFuture<B, E> {
    inner: Inner<B, E>,
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn new(
        inner: impl Future<Output = Result<http::Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self { inner: Box::pin(inner) }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<http::Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
