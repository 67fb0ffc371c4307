//! The caller's side: attach a bearer token to every call of a tonic client.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// A token that cannot travel in an HTTP header (control characters, non-ASCII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token has characters a header cannot carry")]
pub struct InvalidToken;

/// `XClient::with_interceptor(channel, Bearer::new(token)?)`: sends
/// `authorization: Bearer <token>` with each request; [`Bearer::none`] sends nothing.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Result<Self, InvalidToken> {
        format!("Bearer {}", token.trim()).parse().map(|v| Self(Some(v))).map_err(|_| InvalidToken)
    }

    pub fn none() -> Self {
        Self(None)
    }
}

// The token is a credential: never in Debug output.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<token>)" } else { "Bearer(none)" })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_carries_the_token_and_debug_does_not() {
        let mut bearer = Bearer::new(" abc.def.ghi\n").unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer abc.def.ghi");
        assert!(!format!("{bearer:?}").contains("abc"));
        assert!(
            Bearer::none().call(tonic::Request::new(())).unwrap().metadata().get("authorization").is_none()
        );
        assert_eq!(Bearer::new("a\u{7}b").err(), Some(InvalidToken));
    }
}
