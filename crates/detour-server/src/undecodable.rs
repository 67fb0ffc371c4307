//! Requests that cannot be decoded are the caller's mistake, not the server's.
//!
//! A generated tonic server answers a request message it cannot decode (invalid UTF-8 in a
//! string field, a truncated message, a wrong wire type) with `INTERNAL` and prost's message.
//! That tells a channel adapter that forwards a mis-encoded e-mail to retry, and an SRE that the
//! server is broken. This layer turns that answer into `INVALID_ARGUMENT` with a `BadRequest`
//! detail naming the field (`traveler.email`), like every other validation failure.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use detour_errors::{ErrorCode, ServiceError, Violations};
use tonic::body::Body;
use tower::{Layer, Service};

const PROST_PREFIX: &str = "failed to decode Protobuf message: ";

#[derive(Debug, Clone, Copy, Default)]
pub struct UndecodableLayer;

impl<S> Layer<S> for UndecodableLayer {
    type Service = Undecodable<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Undecodable { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Undecodable<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Undecodable<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move { Ok(rewrite(answer.await?)) })
    }
}

/// A refusal of a request that did not decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UndecodableRequest(Violations);

impl ServiceError for UndecodableRequest {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }

    fn field_violations(&self) -> Option<&Violations> {
        Some(&self.0)
    }
}

fn rewrite(response: http::Response<Body>) -> http::Response<Body> {
    // A decode failure is answered before the handler runs, as a trailers-only response: the
    // status is in the headers.
    let Some(status) = tonic::Status::from_header_map(response.headers()) else { return response };
    if status.code() != tonic::Code::Internal {
        return response;
    }
    let Some(violations) = violations_of(status.message()) else { return response };
    detour_errors::to_status(&UndecodableRequest(violations)).into_http()
}

/// prost writes `failed to decode Protobuf message: Inner.field: Outer.field: why`, innermost
/// first; the field path is the field names outermost first (`outer.inner`).
fn violations_of(message: &str) -> Option<Violations> {
    let rest = message.strip_prefix(PROST_PREFIX)?;
    let mut fields = Vec::new();
    let mut why = rest;
    for part in rest.split(": ") {
        match part.split_once('.') {
            Some((message, field))
                if !message.is_empty()
                    && message.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !field.is_empty()
                    && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                fields.push(field);
                why = &why[(part.len() + 2).min(why.len())..];
            }
            _ => break,
        }
    }
    fields.reverse();
    let field = if fields.is_empty() { "request".to_owned() } else { fields.join(".") };
    let mut v = Violations::new();
    v.add(field, format!("could not be decoded: {why}"));
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_path_is_read_outermost_first() {
        let v = violations_of(
            "failed to decode Protobuf message: Traveler.email: OpenCaseRequest.traveler: invalid string value: data is not UTF-8 encoded",
        )
        .unwrap_or_default();
        let v = v.as_slice();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "traveler.email");
        assert_eq!(v[0].description, "could not be decoded: invalid string value: data is not UTF-8 encoded");
    }

    #[test]
    fn a_message_without_a_path_names_the_request_and_other_errors_stay() {
        let v =
            violations_of("failed to decode Protobuf message: unexpected end of buffer").unwrap_or_default();
        assert_eq!(v.as_slice()[0].field, "request");
        assert!(violations_of("database exploded").is_none());
    }
}
