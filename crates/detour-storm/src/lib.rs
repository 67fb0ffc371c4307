//! The storm benchmark: a crisis load generator for a running Detour suite.
//!
//! One run ([`run`]) measures, on one machine and with one load generator ([`load`]):
//! - two ceilings: a bare tonic echo server ([`echo`]) and single-row inserts into the suite's
//!   PostgreSQL ([`pg`]), so intake's throughput can be stated as a share of each;
//! - the storm ([`scenario`]): itineraries imported, a disruption reported and followed until
//!   the last affected traveler is notified, travelers contacting on several channels
//!   ([`contacts`]) with retries, repeats and emergencies;
//! - what intake promised: nothing acknowledged is lost, nobody gets two cases for one flight,
//!   safety is never shed.
//!
//! The report is JSON ([`report`]) and an SVG chart ([`svg`]). [`sink`] is the notification
//! provider the suite delivers to during the run.

// A benchmark computes rates, ratios and percentiles; there is no money here for the
// workspace's float warning to protect.
#![allow(clippy::float_arithmetic)]

pub mod client;
pub mod config;
pub mod contacts;
pub mod echo;
pub mod error;
pub mod itinerary;
pub mod load;
pub mod pg;
pub mod report;
pub mod rng;
mod run;
pub mod scenario;
pub mod sink;
pub mod stats;
pub mod svg;

pub use config::{StormArgs, StormConfig};
pub use error::StormError;
pub use report::Report;
pub use run::{measure_echo, measure_postgres, run};
