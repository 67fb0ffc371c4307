//! Who is calling Detour, and what they may do.
//!
//! - [`Verifier`]: verifies bearer JWTs (RS256 or ES256 only) of the configured issuers against
//!   their JWKS, fetched over HTTP(S) with rustls and cached, re-read on expiry and when a token
//!   names an unknown `kid`, so key rotation needs no restart. A token with claim `svc` is a
//!   service ([`Caller::Service`], acting for the user in `on_behalf_of` or `act.sub`); any other
//!   is a user ([`Caller::User`]) with the [`Role`]s of its roles claim.
//! - [`DevIssuer`]: a local ES256 key that mints tokens, for `detour dev` and `detour token`
//!   only; never configure it in a deployed environment.
//! - [`Policy`]: `proto/policy.toml`, the roles (and whether services) allowed per RPC; an RPC
//!   without an entry is refused.
//! - [`AuthLayer`]: the tower layer for `tonic::transport::Server::builder().layer(…)` that
//!   applies both to every call but health and reflection and hands handlers the
//!   [`Principal`] (`Principal::from_request(&request)`).
//!
//! Tokens are never logged, and no error message contains one.

mod client;
mod dev;
mod error;
mod jwks;
mod layer;
mod policy;
mod principal;
mod verifier;

pub use client::{Bearer, InvalidToken};
pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DEV_KEY_FILE, DevIssuer, DevIssuerError};
pub use error::AuthError;
pub use layer::{AuthFuture, AuthLayer, AuthService, AuthorizedRpc, is_open_path};
pub use policy::{POLICY_TOML, Policy, PolicyError, Rule};
pub use principal::{Caller, Principal, Role, UnknownRole};
pub use verifier::{AuthConfigError, AuthSettings, IssuerSettings, MAX_TOKEN_BYTES, Verifier, bearer_token};
