//! What a storm run does, from the command line (`detour storm …`) or built in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use crate::contacts::ContactMix;
use crate::error::StormError;
use crate::itinerary::CrisisSpec;
use crate::scenario::Mode;

/// `detour storm`: generates a crisis against a running suite and measures it against the echo
/// and PostgreSQL ceilings of the same machine. The JSON report goes to stdout (or `--out`),
/// progress to stderr.
#[derive(clap::Args, Debug, Clone)]
pub struct StormArgs {
    /// The suite's gRPC address.
    #[arg(long, env = "DETOUR_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token with the crisis_manager, agent and supervisor roles.
    #[arg(long, env = "DETOUR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Flights departing the airport on the day, all of them disrupted.
    #[arg(long, default_value_t = 200)]
    pub flights: u32,
    /// Travelers booked on them (parties of 1 to 4, each trip with a hotel stay).
    #[arg(long, default_value_t = 20_000)]
    pub travelers: u32,
    #[arg(long, default_value = "PEK")]
    pub airport: String,
    /// The airport's offset from UTC in hours.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    pub utc_offset: i32,
    /// The local departure date (YYYY-MM-DD); tomorrow at the airport when not given.
    #[arg(long)]
    pub date: Option<NaiveDate>,
    /// Names the crisis: the same seed generates the same travelers, trips and contacts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// airport: one AIRPORT_CLOSED incident; flights: one FLIGHT_CANCELLED per flight.
    #[arg(long, value_enum, default_value = "airport")]
    pub mode: Mode,
    /// Contacts per second while the fan-out runs.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of contacts while the fan-out runs.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Workers of the closed-loop phases (ceilings and intake saturated), and the most calls in
    /// flight in the open-loop ones.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the calls are spread over, to intake and to the echo server alike.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds of each closed-loop phase: echo, PostgreSQL insert, intake saturated.
    #[arg(long, default_value_t = 10)]
    pub ceiling_duration: u64,
    /// Seconds of the half-load phase.
    #[arg(long, default_value_t = 20)]
    pub half_load_duration: u64,
    /// Contacts per second of the half-load phase; 0.5 × 0.4 × the echo ceiling when not given.
    #[arg(long)]
    pub half_load_rate: Option<f64>,
    /// Skip the echo and PostgreSQL ceilings (no ratios then).
    #[arg(long)]
    pub skip_ceilings: bool,
    /// Measure only the ceilings; no suite needed.
    #[arg(long, conflicts_with = "skip_ceilings")]
    pub ceilings_only: bool,
    /// The suite's PostgreSQL, for the insert ceiling (a scratch schema is created and dropped).
    #[arg(long, env = "DETOUR_STORM_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Sessions of the insert ceiling; min(concurrency, 32) when not given, so the suite's own
    /// pools still fit under PostgreSQL's default 100 connections.
    #[arg(long)]
    pub pg_connections: Option<u32>,
    /// Share of contacts that retry an earlier request with its idempotency key.
    #[arg(long, default_value_t = 0.05)]
    pub retry_fraction: f64,
    /// Share of contacts raising an acknowledged problem again on another channel.
    #[arg(long, default_value_t = 0.15)]
    pub other_channel_fraction: f64,
    /// Share of contacts reporting an injury or illness.
    #[arg(long, default_value_t = 0.02)]
    pub safety_fraction: f64,
    /// Share of the disruptions reported a second time.
    #[arg(long, default_value_t = 0.1)]
    pub rereport_fraction: f64,
    /// Trips per ImportItineraries message.
    #[arg(long, default_value_t = 500)]
    pub import_chunk: usize,
    /// Messages per ImportItineraries call.
    #[arg(long, default_value_t = 20)]
    pub import_messages_per_call: usize,
    /// Give up following the fan-out after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub fanout_timeout: u64,
    /// Acknowledged cases looked up with GetCase; an even sample when there are more.
    #[arg(long, default_value_t = 50_000)]
    pub verify_max: usize,
    /// Deadline of each call, in seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// Also serve the notification sink here: the suite's SMS and push provider,
    /// DETOUR_NOTIFY='{http_url="http://ADDR"}'.
    #[arg(long)]
    pub sink_listen: Option<SocketAddr>,
    /// With --sink-listen: also publish the public key of the development issuer kept in this
    /// directory (the one `detour token --data-dir` mints with) at http://<sink>/jwks.json, for a
    /// suite on PostgreSQL configured to trust it through DETOUR_AUTH_ISSUERS. Benchmarks only.
    #[arg(long, requires = "sink_listen")]
    pub serve_dev_jwks: Option<PathBuf>,
    /// Wait this many seconds for the suite to answer its health check before starting.
    #[arg(long, default_value_t = 60)]
    pub wait_ready: u64,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// A validated run.
#[derive(Debug, Clone, Serialize)]
pub struct StormConfig {
    pub server: String,
    #[serde(skip)]
    pub token: Option<String>,
    pub seed: u64,
    pub airport: String,
    pub date: NaiveDate,
    pub utc_offset_hours: i32,
    pub flights: u32,
    pub travelers: u32,
    pub mode: Mode,
    pub rate: f64,
    pub duration_secs: u64,
    pub concurrency: usize,
    pub connections: usize,
    pub ceiling_secs: u64,
    pub half_load_secs: u64,
    pub half_load_rate: Option<f64>,
    pub skip_ceilings: bool,
    pub ceilings_only: bool,
    /// Kept out of the report: it may carry a password.
    #[serde(skip)]
    pub postgres_url: Option<String>,
    pub pg_connections: u32,
    pub retry_fraction: f64,
    pub other_channel_fraction: f64,
    pub safety_fraction: f64,
    pub rereport_fraction: f64,
    pub import_chunk: usize,
    pub import_messages_per_call: usize,
    pub fanout_timeout_secs: u64,
    pub verify_max: usize,
    pub request_timeout_secs: u64,
    pub sink_listen: Option<SocketAddr>,
    #[serde(skip)]
    pub serve_dev_jwks: Option<PathBuf>,
    pub wait_ready_secs: u64,
    #[serde(skip)]
    pub out: Option<PathBuf>,
    #[serde(skip)]
    pub chart: Option<PathBuf>,
    pub progress: bool,
}

fn fraction(name: &str, v: f64) -> Result<f64, StormError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(StormError::Config(format!("{name} must be between 0 and 1, not {v}")))
    }
}

impl StormArgs {
    pub fn into_config(self) -> Result<StormConfig, StormError> {
        let mix = [
            fraction("--retry-fraction", self.retry_fraction)?,
            fraction("--other-channel-fraction", self.other_channel_fraction)?,
            fraction("--safety-fraction", self.safety_fraction)?,
        ];
        if mix.iter().sum::<f64>() > 1.0 {
            return Err(StormError::Config(
                "--retry-fraction, --other-channel-fraction and --safety-fraction add up to more than 1"
                    .into(),
            ));
        }
        fraction("--rereport-fraction", self.rereport_fraction)?;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(StormError::Config("--rate must be above 0".into()));
        }
        if let Some(r) = self.half_load_rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(StormError::Config("--half-load-rate must be above 0".into()));
        }
        if self.concurrency == 0 || self.connections == 0 {
            return Err(StormError::Config("--concurrency and --connections must be at least 1".into()));
        }
        if self.flights == 0 || (self.travelers == 0 && !self.ceilings_only) {
            return Err(StormError::Config("--flights and --travelers must be at least 1".into()));
        }
        if !(-12..=14).contains(&self.utc_offset) {
            return Err(StormError::Config("--utc-offset must be between -12 and 14".into()));
        }
        let date = match self.date {
            Some(d) => d,
            None => {
                let local = Utc::now() + chrono::Duration::hours(i64::from(self.utc_offset));
                local.date_naive() + chrono::Duration::days(1)
            }
        };
        Ok(StormConfig {
            server: self.server,
            token: self.token,
            seed: self.seed,
            airport: self.airport.trim().to_ascii_uppercase(),
            date,
            utc_offset_hours: self.utc_offset,
            flights: self.flights,
            travelers: self.travelers,
            mode: self.mode,
            rate: self.rate,
            duration_secs: self.duration,
            concurrency: self.concurrency,
            connections: self.connections,
            ceiling_secs: self.ceiling_duration,
            half_load_secs: self.half_load_duration,
            half_load_rate: self.half_load_rate,
            skip_ceilings: self.skip_ceilings,
            ceilings_only: self.ceilings_only,
            postgres_url: self.postgres_url.filter(|u| !u.trim().is_empty()),
            pg_connections: self
                .pg_connections
                .unwrap_or_else(|| u32::try_from(self.concurrency.min(32)).unwrap_or(32))
                .max(1),
            retry_fraction: self.retry_fraction,
            other_channel_fraction: self.other_channel_fraction,
            safety_fraction: self.safety_fraction,
            rereport_fraction: self.rereport_fraction,
            import_chunk: self.import_chunk.max(1),
            import_messages_per_call: self.import_messages_per_call.max(1),
            fanout_timeout_secs: self.fanout_timeout,
            verify_max: self.verify_max,
            request_timeout_secs: self.request_timeout.max(1),
            sink_listen: self.sink_listen,
            serve_dev_jwks: self.serve_dev_jwks,
            wait_ready_secs: self.wait_ready,
            out: self.out,
            chart: self.chart,
            progress: !self.quiet,
        })
    }
}

impl StormConfig {
    pub fn crisis_spec(&self) -> CrisisSpec {
        CrisisSpec {
            seed: self.seed,
            airport: self.airport.clone(),
            date: self.date,
            utc_offset_hours: self.utc_offset_hours,
            flights: self.flights,
            travelers: self.travelers,
        }
    }

    pub fn mix(&self) -> ContactMix {
        ContactMix {
            retry: self.retry_fraction,
            other_channel: self.other_channel_fraction,
            safety: self.safety_fraction,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        storm: StormArgs,
    }

    fn parse(args: &[&str]) -> Result<StormConfig, StormError> {
        let cli = Cli::try_parse_from(std::iter::once("storm").chain(args.iter().copied()))
            .map_err(|e| StormError::Config(e.to_string()))?;
        cli.storm.into_config()
    }

    #[test]
    fn defaults_are_the_issues_sizes() {
        let c = parse(&["--date", "2026-12-03"]).unwrap();
        assert_eq!((c.flights, c.travelers, c.airport.as_str(), c.mode), (200, 20_000, "PEK", Mode::Airport));
        assert_eq!(c.pg_connections, 32);
        assert!(c.progress);
        assert_eq!(c.date, NaiveDate::from_ymd_opt(2026, 12, 3).unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let e = parse(&["--retry-fraction", "0.7", "--other-channel-fraction", "0.5"]).unwrap_err();
        assert!(e.to_string().contains("add up"), "{e}");
        let e = parse(&["--safety-fraction", "1.5"]).unwrap_err();
        assert!(e.to_string().contains("--safety-fraction"), "{e}");
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--ceilings-only", "--skip-ceilings"]).is_err());
        assert!(parse(&["--utc-offset", "-5", "--airport", "jfk"]).is_ok_and(|c| c.airport == "JFK"));
        // The issuer's keys are published by the sink, so there must be one.
        assert!(parse(&["--serve-dev-jwks", "/tmp/x"]).is_err());
        assert!(parse(&["--serve-dev-jwks", "/tmp/x", "--sink-listen", "127.0.0.1:0"]).is_ok());
    }

    #[test]
    fn the_report_never_carries_secrets() {
        let c = parse(&["--token", "secret-token", "--postgres-url", "postgres://u:pw@h/db"]).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("secret-token") && !json.contains("pw@"), "{json}");
    }
}
