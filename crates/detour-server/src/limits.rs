//! Tower layers that protect every route of the host, whatever the generated servers say:
//! a request message size limit and a concurrency limit that sheds load after a short wait.
//!
//! Both answer with a gRPC status in a normal gRPC response (HTTP 200, `grpc-status` in the
//! headers: "trailers-only"), not with an HTTP error status, and both sit inside the gRPC-Web
//! layer, so a gRPC-Web caller gets the same status in gRPC-Web framing. tower-http's
//! `RequestBodyLimitLayer` does neither: its HTTP 413 (sent only when `content-length` is
//! present) reaches a gRPC client as `UNKNOWN`, by the spec's mapping of HTTP statuses that
//! carry no `grpc-status`, and a streamed body over its limit as a body error tonic reports
//! as `UNKNOWN` too; gRPC names this case `RESOURCE_EXHAUSTED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt as _};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Length of the gRPC message prefix: a compression flag and a big-endian `u32` length.
const PREFIX_LEN: usize = 5;

// ------------------------------------------------------------------------------ message size

/// Refuses any request message longer than `max_bytes` with `RESOURCE_EXHAUSTED`.
///
/// The limit is checked against the length each gRPC frame declares in its 5-byte prefix, as
/// the request body streams in: an oversized message is refused when its prefix arrives,
/// before its bytes are read or buffered, and the handler is never called for a unary or
/// server-streaming method (tonic decodes the whole request message before calling it). A
/// streaming request is cut at its first oversized message. Checking the declared length,
/// rather than counting body bytes, also keeps the limit in front of tonic's own per-server
/// decoding limit (4 MiB, answered with `OUT_OF_RANGE`), which reads the same prefix.
///
/// `content-length` is not consulted: gRPC clients rarely send it, the gRPC-Web layer removes
/// it, and the prefix arrives with the first bytes of the body anyway.
#[derive(Debug, Clone, Copy)]
pub struct RequestSizeLimitLayer {
    max_bytes: usize,
}

impl RequestSizeLimitLayer {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> Layer<S> for RequestSizeLimitLayer {
    type Service = RequestSizeLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSizeLimit { inner, max_bytes: self.max_bytes }
    }
}

#[derive(Debug, Clone)]
pub struct RequestSizeLimit<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> Service<http::Request<Body>> for RequestSizeLimit<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max_bytes = self.max_bytes;
        self.inner.call(request.map(|body| Body::new(LimitedBody::new(body, max_bytes))))
    }
}

/// A request body that fails with `RESOURCE_EXHAUSTED` at the first gRPC frame prefix declaring
/// a message longer than the limit. tonic keeps a `Status` body error as the call's status.
struct LimitedBody {
    inner: Body,
    max_bytes: usize,
    /// The prefix being read, when `in_prefix > 0` or no message is in progress.
    prefix: [u8; PREFIX_LEN],
    in_prefix: usize,
    /// Bytes of the current message still to come.
    message_left: usize,
    failed: bool,
}

impl LimitedBody {
    fn new(inner: Body, max_bytes: usize) -> Self {
        Self { inner, max_bytes, prefix: [0; PREFIX_LEN], in_prefix: 0, message_left: 0, failed: false }
    }

    /// Follows the gRPC framing through `data`; the declared length of a message over the limit
    /// is returned as soon as its prefix is complete.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let skip = self.message_left.min(data.len());
                self.message_left -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (PREFIX_LEN - self.in_prefix).min(data.len());
            self.prefix[self.in_prefix..self.in_prefix + take].copy_from_slice(&data[..take]);
            self.in_prefix += take;
            data = &data[take..];
            if self.in_prefix == PREFIX_LEN {
                self.in_prefix = 0;
                let [_, a, b, c, d] = self.prefix;
                let declared = u32::from_be_bytes([a, b, c, d]) as usize;
                if declared > self.max_bytes {
                    return Err(declared);
                }
                self.message_left = declared;
            }
        }
        Ok(())
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(declared) = self.scan(data)
        {
            self.failed = true;
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "request message of {declared} bytes is larger than the limit of {} bytes",
                self.max_bytes
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ------------------------------------------------------------------------ concurrency, shedding

/// A process-wide concurrency limit that sheds instead of queueing without bound.
///
/// A call takes one of `limit` permits for as long as its handler runs (until its response
/// headers are ready, as tower's limit does). A call that finds none waits up to `queue_wait`
/// in FIFO order, inside the request timeout, then is answered `UNAVAILABLE` without reaching
/// its handler, so under a spike callers get a fast refusal they can retry with backoff,
/// preferably on another replica, instead of a queue that grows until deadlines expire.
///
/// Requests whose path starts with one of `exempt` are never limited: the gRPC health service,
/// so that a saturated but working replica stays ready rather than being taken out of rotation
/// and pushing its load onto replicas that are just as busy.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    exempt: Arc<[&'static str]>,
}

impl AdmissionLayer {
    pub fn new(limit: usize, queue_wait: Duration, exempt: &[&'static str]) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self { permits: Arc::new(Semaphore::new(limit)), queue_wait, exempt: exempt.into() }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, layer: self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    /// Always ready: waiting for a permit happens in the call, bounded by `queue_wait` and the
    /// request timeout (a limit that waits in `poll_ready` is covered by neither).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let path = request.uri().path();
        if self.layer.exempt.iter().any(|prefix| path.starts_with(prefix)) {
            return Box::pin(inner.oneshot(request));
        }
        let permits = self.layer.permits.clone();
        let queue_wait = self.layer.queue_wait;
        Box::pin(async move {
            // `timeout` polls the acquisition first, so a free permit is taken even with no wait.
            let Ok(Ok(permit)) = tokio::time::timeout(queue_wait, permits.acquire_owned()).await else {
                tracing::debug!(path = request.uri().path(), "concurrency limit reached; call shed");
                return Ok(Status::unavailable("the server is at its concurrency limit; retry with backoff")
                    .into_http());
            };
            let response = inner.oneshot(request).await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.resize(PREFIX_LEN + len as usize, 7);
        frame
    }

    fn scan_in_chunks(max_bytes: usize, data: &[u8], chunk: usize) -> Result<(), usize> {
        let mut body = LimitedBody::new(Body::empty(), max_bytes);
        data.chunks(chunk).try_for_each(|c| body.scan(c))
    }

    #[test]
    fn messages_up_to_the_limit_pass_in_any_chunking() {
        let mut data = frame(10);
        data.extend(frame(0));
        data.extend(frame(10));
        for chunk in [1, 2, 4, 5, 6, 7, 100] {
            assert_eq!(scan_in_chunks(10, &data, chunk), Ok(()), "chunk {chunk}");
        }
    }

    #[test]
    fn the_first_message_over_the_limit_is_named_by_its_prefix() {
        let mut data = frame(3);
        // Only the prefix of the oversized message: it is refused before its bytes arrive.
        data.extend_from_slice(&frame(11)[..PREFIX_LEN]);
        for chunk in [1, 3, 5, 8, 100] {
            assert_eq!(scan_in_chunks(10, &data, chunk), Err(11), "chunk {chunk}");
        }
    }
}
