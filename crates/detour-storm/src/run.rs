//! One storm run, phase by phase; a phase that fails is reported and the run goes on to write
//! what it measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prost::Message;
use tokio::net::TcpListener;

use crate::client::{Bearer, connect_pool};
use crate::config::StormConfig;
use crate::contacts::{self, ContactTarget, Contacts};
use crate::echo::{EchoServer, EchoTarget};
use crate::error::StormError;
use crate::itinerary::{self, Crisis};
use crate::load::{LoadPlan, Pacing, Stop, drive};
use crate::pg::PgCeiling;
use crate::report::{Machine, Report};
use crate::scenario::{self, Intake};
use crate::sink::{self, Sink};
use crate::stats::PhaseReport;

// Phases of contacts, each with its own idempotency keys.
const PHASE_FANOUT: u64 = 1;
const PHASE_SATURATED: u64 = 2;
const PHASE_HALF_LOAD: u64 = 3;
const PHASE_HALF_OWN_LOAD: u64 = 4;

/// The target: acceptance at 40 % of the echo ceiling, p99 judged at half that load.
const TARGET_SHARE_OF_ECHO: f64 = 0.4;

fn say(progress: bool, line: impl AsRef<str>) {
    if progress {
        eprintln!("{}", line.as_ref());
    }
}

/// The command line, to reproduce the run, with the token and any database password left out.
fn command_line() -> String {
    redacted_command(std::env::args())
}

fn redacted_command(args: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut secret_next = false;
    for arg in args {
        let arg = if secret_next {
            secret_next = false;
            "<redacted>".to_owned()
        } else if arg == "--token" {
            secret_next = true;
            arg
        } else if arg.starts_with("--token=") {
            "--token=<redacted>".to_owned()
        } else {
            without_password(&arg)
        };
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$`\\|&;<>(){}*?".contains(c)) {
            out.push(format!("'{}'", arg.replace('\'', "'\\''")));
        } else {
            out.push(arg);
        }
    }
    out.join(" ")
}

/// `postgres://user:password@host/db` → `postgres://user:<redacted>@host/db`; anything else as
/// it is.
fn without_password(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else { return arg.to_owned() };
    let rest = &arg[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@').and_then(|at| authority[..at].find(':').map(|colon| (colon, at))) {
        Some((colon, at)) => {
            format!("{}{}:<redacted>{}", &arg[..scheme_end + 3], &authority[..colon], &rest[at..])
        }
        None => arg.to_owned(),
    }
}

/// Ceiling A: the echo server on a free loopback port, `plan` against it.
pub async fn measure_echo(
    plan: &LoadPlan,
    payload: Vec<u8>,
    connections: usize,
) -> Result<PhaseReport, StormError> {
    let server = EchoServer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    // The same bearer header as intake's calls carry, so both requests are the same size.
    let bearer = Bearer::new(Some("storm.echo.token"))?;
    let pool = connect_pool(&server.url(), connections, Duration::from_secs(30), &bearer).await?;
    let measured = drive(plan, Arc::new(EchoTarget::new(pool, payload))).await;
    server.stop().await?;
    measured
}

/// Ceiling B: single-row inserts with `plan`; answers the phase and the rows found afterwards.
pub async fn measure_postgres(
    url: &str,
    connections: u32,
    plan: &LoadPlan,
    payload: Vec<u8>,
) -> Result<(PhaseReport, i64), StormError> {
    let ceiling = Arc::new(PgCeiling::prepare(url, connections, payload).await?);
    let measured = drive(plan, ceiling.clone()).await;
    let rows = ceiling.rows().await;
    // Every clone went with the finished tasks; if not, the schema is left for the next run's
    // operator to drop rather than failing the measurement.
    if let Ok(ceiling) = Arc::try_unwrap(ceiling) {
        ceiling.drop_schema().await?;
    }
    Ok((measured?, rows?))
}

/// The echo payload: as many bytes as this run's OpenCase requests carry on average (their
/// identification ranges from one handle to full contact details), taken from a real one.
fn sample_payload(contacts: &Contacts) -> Vec<u8> {
    const SAMPLE: u64 = 256;
    // Phase 0 is never sent; its plans are the run's mix without touching its records.
    let requests: Vec<Vec<u8>> = (0..SAMPLE)
        .filter_map(|seq| contacts.request(&contacts.plan(0, seq).1))
        .map(|r| r.encode_to_vec())
        .collect();
    let total: usize = requests.iter().map(Vec::len).sum();
    let mean = total.checked_div(requests.len()).unwrap_or(320).max(1);
    let source = requests.iter().max_by_key(|r| r.len()).cloned().unwrap_or_else(|| vec![0x2a; mean]);
    source.iter().copied().cycle().take(mean).collect()
}

async fn ceilings(config: &StormConfig, payload: Vec<u8>, report: &mut Report) {
    let duration = Duration::from_secs(config.ceiling_secs);
    report.ceilings.echo_payload_bytes = payload.len();
    let plan = |name: &str| LoadPlan {
        name: name.to_owned(),
        pacing: Pacing::Closed { concurrency: config.concurrency },
        stop: Stop::After(duration),
        progress: config.progress,
    };
    say(
        config.progress,
        format!("[echo] ceiling: {} workers, {} B requests", config.concurrency, payload.len()),
    );
    match measure_echo(&plan("echo"), payload.clone(), config.connections).await {
        Ok(p) => report.ceilings.echo = Some(p),
        Err(e) => report.errors.push(format!("echo ceiling: {e}")),
    }
    match &config.postgres_url {
        Some(url) => {
            say(
                config.progress,
                format!(
                    "[pg-insert] ceiling: {} workers over {} sessions",
                    config.concurrency, config.pg_connections
                ),
            );
            report.ceilings.postgres_connections = Some(config.pg_connections);
            match measure_postgres(url, config.pg_connections, &plan("pg-insert"), payload).await {
                Ok((p, rows)) => {
                    report.ceilings.postgres_insert = Some(p);
                    report.ceilings.postgres_rows = Some(rows);
                }
                Err(e) => report.errors.push(format!("PostgreSQL ceiling: {e}")),
            }
        }
        None => report.ceilings.skipped.push("PostgreSQL insert: no --postgres-url".into()),
    }
}

/// Generates the crisis, measures the ceilings, runs the storm, and writes the report and
/// the chart where the configuration says.
pub async fn run(config: StormConfig) -> Result<Report, StormError> {
    let mut report = Report {
        tool: "detour storm",
        version: env!("CARGO_PKG_VERSION"),
        started_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: command_line(),
        machine: Machine::this(),
        config: serde_json::to_value(&config)?,
        ..Report::default()
    };
    let progress = config.progress;
    let sink = match config.sink_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| StormError::io(format!("notification sink on {addr}"), e))?;
            let jwks = match &config.serve_dev_jwks {
                Some(dir) => {
                    let issuer = detour_auth::DevIssuer::load_or_create(dir)
                        .map_err(|e| StormError::Config(format!("--serve-dev-jwks: {e}")))?;
                    Some(serde_json::to_string(&issuer.jwks())?)
                }
                None => None,
            };
            let published = jwks.is_some();
            let sink = sink::serve_with_jwks(listener, jwks)?;
            say(progress, format!("[sink] notification sink on http://{}", sink.addr()));
            if published {
                say(progress, format!("[sink] development issuer keys at http://{}/jwks.json", sink.addr()));
            }
            Some(sink)
        }
        None => None,
    };

    let crisis = Arc::new(itinerary::generate(&config.crisis_spec())?);
    say(
        progress,
        format!(
            "[storm] seed {}: {} travelers in {} trips on {} flights from {} on {} ({} segments)",
            config.seed,
            crisis.travelers.len(),
            crisis.trips.len(),
            crisis.flights.len(),
            config.airport,
            crisis.local_date(),
            crisis.segment_count()
        ),
    );
    let contacts = Arc::new(Contacts::new(crisis.clone(), config.seed, config.mix()));

    if !config.skip_ceilings {
        ceilings(&config, sample_payload(&contacts), &mut report).await;
    } else {
        report.ceilings.skipped.push("--skip-ceilings".into());
    }

    let mut half_load_rate = None;
    if !config.ceilings_only {
        half_load_rate = config.half_load_rate.or_else(|| {
            report
                .ceilings
                .echo
                .as_ref()
                .map(|e| e.ok_per_sec * TARGET_SHARE_OF_ECHO * 0.5)
                .filter(|r| *r > 0.0)
        });
        if let Err(e) = storm(&config, &crisis, &contacts, sink.as_ref(), half_load_rate, &mut report).await {
            report.errors.push(e.to_string());
        }
    }

    if let Some(sink) = sink {
        match sink.stop().await {
            Ok(s) => report.sink = Some(s),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    report.conclude(half_load_rate);
    report.finished_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    write_outputs(&config, &report).await?;
    Ok(report)
}

async fn storm(
    config: &StormConfig,
    crisis: &Arc<Crisis>,
    contacts: &Arc<Contacts>,
    sink: Option<&Sink>,
    half_load_rate: Option<f64>,
    report: &mut Report,
) -> Result<(), StormError> {
    let progress = config.progress;
    let bearer = Bearer::new(config.token.as_deref())?;
    wait_ready(&config.server, Duration::from_secs(config.wait_ready_secs), progress).await?;
    // Control calls (import, reports, polling, checks) get their own connection, so following
    // the fan-out never queues behind the load.
    let control: Intake =
        match connect_pool(&config.server, 1, config.request_timeout(), &bearer).await?.pop() {
            Some(c) => Intake::new(c),
            None => return Err(StormError::Scenario("no control connection".into())),
        };
    let pool = connect_pool(&config.server, config.connections, config.request_timeout(), &bearer).await?;
    // ListCases from a little before the run, for clocks that differ by a moment.
    let since = Utc::now() - chrono::Duration::seconds(5);

    say(progress, format!("[import] {} trips, {} per message", crisis.trips.len(), config.import_chunk));
    let imported =
        scenario::import(&control, crisis, config.import_chunk, config.import_messages_per_call, progress)
            .await;
    let imported = match imported {
        Ok(i) => i,
        Err(e) => return Err(e),
    };
    let refused = imported.refused;
    report.import = Some(imported);
    if refused > 0 {
        report
            .errors
            .push(format!("ImportItineraries refused {refused} trips (see import.refused_examples)"));
    }

    say(progress, format!("[disruption] reporting ({:?} mode)", config.mode));
    let declared = scenario::declare(&control, crisis, config.mode).await?;
    let rereports = scenario::rereport(&control, &declared, config.rereport_fraction, config.seed).await;
    let follower = tokio::spawn(scenario::follow(
        control.clone(),
        declared,
        crisis.travelers.len() as u64,
        Duration::from_secs(config.fanout_timeout_secs),
        sink.map(Sink::watcher),
        progress,
    ));

    let during = LoadPlan {
        name: "contacts".into(),
        pacing: Pacing::Open { rate_per_sec: config.rate, max_in_flight: config.concurrency },
        stop: Stop::After(Duration::from_secs(config.duration_secs)),
        progress,
    };
    let target = Arc::new(ContactTarget::new(contacts.clone(), pool.clone(), PHASE_FANOUT));
    match drive(&during, target).await {
        Ok(p) => report.contacts = Some(p),
        Err(e) => report.errors.push(format!("contacts: {e}")),
    }
    match follower.await {
        Ok(mut f) => {
            f.mode = Some(config.mode);
            f.rereports = rereports;
            if f.timed_out {
                report
                    .errors
                    .push(format!("the fan-out did not complete within {} s", config.fanout_timeout_secs));
            }
            if let Some(why) = &f.gave_up {
                report.errors.push(format!("following the fan-out stopped: {why}"));
            }
            report.disruption = Some(f);
        }
        Err(e) => report.errors.push(format!("fan-out follower: {e}")),
    }

    let saturated = LoadPlan {
        name: "saturated".into(),
        pacing: Pacing::Closed { concurrency: config.concurrency },
        stop: Stop::After(Duration::from_secs(config.ceiling_secs)),
        progress,
    };
    let target = Arc::new(ContactTarget::new(contacts.clone(), pool.clone(), PHASE_SATURATED));
    match drive(&saturated, target).await {
        Ok(p) => report.saturation = Some(p),
        Err(e) => report.errors.push(format!("saturated: {e}")),
    }

    match half_load_rate {
        Some(rate) => {
            let half = LoadPlan {
                name: "half-load".into(),
                pacing: Pacing::Open { rate_per_sec: rate, max_in_flight: config.concurrency },
                stop: Stop::After(Duration::from_secs(config.half_load_secs)),
                progress,
            };
            let target = Arc::new(ContactTarget::new(contacts.clone(), pool.clone(), PHASE_HALF_LOAD));
            match drive(&half, target).await {
                Ok(p) => report.half_load = Some(p),
                Err(e) => report.errors.push(format!("half load: {e}")),
            }
        }
        None => report.ceilings.skipped.push("half load: no echo ceiling and no --half-load-rate".into()),
    }

    // Informative, not a target: the p99 at half of what intake itself sustained, to tell a
    // latency problem from a throughput one when the half-load rate is beyond intake.
    let own = report.saturation.as_ref().map(|p| p.ok_per_sec * 0.5).filter(|r| *r > 0.0);
    if let Some(rate) = own {
        let plan = LoadPlan {
            name: "half-own-load".into(),
            pacing: Pacing::Open { rate_per_sec: rate, max_in_flight: config.concurrency },
            stop: Stop::After(Duration::from_secs(config.half_load_secs)),
            progress,
        };
        let target = Arc::new(ContactTarget::new(contacts.clone(), pool, PHASE_HALF_OWN_LOAD));
        match drive(&plan, target).await {
            Ok(p) => report.half_own_load = Some(p),
            Err(e) => report.errors.push(format!("half own load: {e}")),
        }
    }

    let fanned_out = report.disruption.as_ref().is_some_and(|d| d.complete);
    let records = contacts.records();
    report.contact_checks = Some(contacts::check(&records));
    say(
        progress,
        format!(
            "[verify] looking up acknowledged cases and listing the run's cases ({} contacts)",
            records.len()
        ),
    );
    report.verification =
        Some(scenario::verify(&control, crisis, &records, since, config.verify_max, fanned_out).await);
    Ok(())
}

/// Waits until the suite accepts connections and its health check answers SERVING (every
/// database and the event bus reachable), so start-up is not measured as failures.
async fn wait_ready(server: &str, patience: Duration, progress: bool) -> Result<(), StormError> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = tokio::time::Instant::now() + patience;
    let mut last = String::from("not tried");
    loop {
        match connect_pool(server, 1, Duration::from_secs(5), &Bearer::new(None)?).await {
            Ok(mut pool) => {
                if let Some(channel) = pool.pop() {
                    match HealthClient::new(channel)
                        .check(HealthCheckRequest { service: String::new() })
                        .await
                    {
                        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                        Ok(r) => last = format!("health {:?}", ServingStatus::try_from(r.get_ref().status)),
                        Err(s) => last = format!("health check: {}", s.message()),
                    }
                }
            }
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StormError::Scenario(format!("the suite at {server} is not ready: {last}")));
        }
        say(progress, format!("[storm] waiting for the suite: {last}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn write_outputs(config: &StormConfig, report: &Report) -> Result<(), StormError> {
    let json = serde_json::to_string_pretty(report)?;
    match &config.out {
        Some(path) => tokio::fs::write(path, json + "\n")
            .await
            .map_err(|e| StormError::io(format!("writing {}", path.display()), e))?,
        None => println!("{json}"),
    }
    if let Some(path) = &config.chart {
        tokio::fs::write(path, crate::svg::chart(report))
            .await
            .map_err(|e| StormError::io(format!("writing {}", path.display()), e))?;
    }
    if config.progress {
        for (k, v) in crate::svg::summary_lines(report) {
            eprintln!("  {k}: {v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_keeps_no_secret() {
        let args = [
            "detour",
            "storm",
            "--token",
            "eyJhbGciOi.secret",
            "--postgres-url",
            "postgres://postgres:hunter2@127.0.0.1:5432/db",
            "--token=abc",
            "--airport",
            "PEK",
            "--out",
            "my report.json",
        ]
        .map(str::to_owned);
        let line = redacted_command(args);
        assert_eq!(
            line,
            "detour storm --token '<redacted>' --postgres-url 'postgres://postgres:<redacted>@127.0.0.1:5432/db' \
             '--token=<redacted>' --airport PEK --out 'my report.json'"
        );
        assert_eq!(without_password("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(without_password("http://a:b@h"), "http://a:<redacted>@h");
    }
}
