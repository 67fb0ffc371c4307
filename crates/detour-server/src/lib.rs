//! Hosting for Detour services.
//!
//! A service crate describes itself as a [`ServiceModule`]: its name, its migrations, and a
//! `build` function that turns a [`BuildContext`] into a [`ServicePart`] (its gRPC routes, the
//! dependencies its health depends on, its background tasks). [`host::serve`] runs any number of
//! parts on one listener: one part per process in Kubernetes (`detour serve triage`), all five in
//! `detour dev`.

pub mod config;
pub mod host;
pub mod limits;
pub mod module;
pub mod process;
pub mod undecodable;

pub use config::{ConfigError, LogFormat, Settings};
pub use host::{HostError, serve};
pub use module::{BuildContext, BuildError, Consumer, Dependency, ServiceModule, ServicePart, Wiring};
