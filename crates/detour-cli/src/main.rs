//! `detour`: one binary for the whole suite.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use detour_auth::{DevIssuer, Role};
use figment::Figment;
use figment::providers::Serialized;

use detour_cli::client::{self, OpenArgs, Output};
use detour_server::{Settings, process};

#[derive(Parser)]
#[command(
    name = "detour",
    version,
    about = "Detour: crisis response and complaint resolution for travel companies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the commands that call a running suite send their calls, and how they answer.
#[derive(Args)]
struct Remote {
    /// The suite's gRPC address.
    #[arg(long, global = true, env = "DETOUR_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token for the calls (`detour token` mints one for `detour dev`; imports need a
    /// crisis manager's or admin's: `detour token --role crisis_manager`).
    #[arg(long, global = true, env = "DETOUR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    fn split(self) -> (client::Target, Output) {
        let output = if self.json { Output::Json } else { Output::Text };
        (client::Target { url: self.server, token: self.token }, output)
    }
}

/// Prints a command's answer, or its error.
fn answer(result: Result<String, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs all five services in one process on the embedded default (SQLite files, in-process
    /// events), every gRPC service on one address.
    Dev(DevArgs),
    /// Runs one service as its own process (how Kubernetes runs it).
    Serve {
        /// intake, triage, supplier, compensation or feedback.
        service: String,
        #[arg(long, env = "DETOUR_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Brings a service's database schema up to date (`all` for every service).
    Migrate {
        service: String,
        #[arg(long, env = "DETOUR_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Mints a token from the development issuer (the one `detour dev` trusts).
    Token {
        /// agent, supervisor, finance, crisis_manager, admin or partner; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Who the token speaks for.
        #[arg(long, default_value = "dev-user")]
        subject: String,
        #[arg(long, default_value_t = 480)]
        ttl_minutes: u64,
        /// The data directory of the `detour dev` that should accept it.
        #[arg(long, default_value = ".detour-data")]
        data_dir: PathBuf,
    },
    /// Prints a fresh key-encryption key for DETOUR_VAULT_KEKS (32 random bytes, base64).
    Kek {
        /// The id to give it; dated ids make rotation easy to follow.
        #[arg(long, default_value = "kek-1")]
        id: String,
    },
    /// Work with cases from a terminal.
    Case {
        #[command(subcommand)]
        command: Box<CaseCommand>,
        #[command(flatten)]
        remote: Remote,
    },
    /// The itinerary registry: bookings in bulk.
    Itinerary {
        #[command(subcommand)]
        command: ItineraryCommand,
        #[command(flatten)]
        remote: Remote,
    },
    // --- storm benchmark (crates/detour-storm) ---
    /// The storm benchmark: a crisis against a running suite, measured against an echo server
    /// and PostgreSQL inserts on the same machine (JSON report on stdout, progress on stderr).
    Storm(Box<detour_storm::StormArgs>),
}

#[derive(Args)]
struct DevArgs {
    #[arg(long, env = "DETOUR_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Where the SQLite files live; the suite keeps its data across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum ItineraryCommand {
    /// Imports bookings from a CSV or JSON file (format from the extension or --format),
    /// streamed in chunks; prints what was stored and every refused trip with why.
    Import {
        file: PathBuf,
        #[arg(long)]
        format: Option<String>,
        /// Trips per streamed message.
        #[arg(long, default_value_t = 500)]
        chunk: usize,
    },
}

#[derive(Subcommand)]
enum CaseCommand {
    /// Opens a case and prints its acknowledgement.
    Open(Box<OpenArgs>),
    /// Lists cases, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i32,
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Shows a case with its timeline.
    Show { case_id: String },
    /// Resolves a case.
    Resolve {
        case_id: String,
        #[arg(long)]
        resolution: String,
    },
    /// Everything held about a traveler, as JSON (a data-subject access request).
    Export { traveler_id: String },
    /// Erases a traveler's personal data; their cases stay, anonymised.
    Erase {
        traveler_id: String,
        /// The request's reference, for the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// The audit trail: of one case, of one user (`--actor`), or everything, newest first.
    Audit {
        case_id: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i32,
        #[arg(long)]
        page_token: Option<String>,
    },
}

fn dev_defaults() -> Settings {
    Settings {
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
        // Every call needs a token in `dev` too; the local issuer mints them.
        auth_dev_issuer: true,
        ..Settings::default()
    }
}

// --- storm benchmark (crates/detour-storm) ---
/// Runs the benchmark; fails when a phase could not run or a must-be-zero check (lost, duplicated,
/// safety shed) is not zero, so scripts notice. The report is written either way.
async fn storm(args: detour_storm::StormArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match detour_storm::run(config).await {
        Ok(report) => {
            let problems: Vec<String> =
                report.errors.iter().cloned().chain(report.broken_promises()).collect();
            if problems.is_empty() { ExitCode::SUCCESS } else { fail(problems.join("; ")) }
        }
        Err(e) => fail(e),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

// glibc's malloc took about a sixth of intake's CPU in a storm (`perf`: _int_malloc,
// malloc_consolidate, _int_free), with many small allocations freed on other threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => {
            let base = Figment::from(Serialized::defaults(dev_defaults()));
            let mut settings = match Settings::load_from(base, args.config.as_deref()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if let Some(dir) = args.data_dir {
                settings.data_dir = dir;
            }
            if let Some(addr) = args.grpc_addr {
                settings.grpc_addr = addr;
            }
            if let Some(addr) = args.metrics_addr {
                settings.metrics_addr = addr;
            }
            if !settings.events_url.starts_with("inproc://") && settings.database_url.is_none() {
                eprintln!("note: events go to {}, data stays in SQLite files", settings.events_url);
            }
            if let Err(e) = settings.validate().and_then(|()| settings.validate_auth()) {
                return fail(e);
            }
            println!("detour dev: all services on one address");
            println!("  gRPC (+ gRPC-Web, health, reflection): http://{}", settings.grpc_addr);
            println!("  metrics: http://{}/metrics", settings.metrics_addr);
            println!("  data: {}", settings.data_dir.display());
            println!("  tokens (every detour.* call needs one):");
            for role in ["agent", "supervisor", "finance", "crisis_manager", "admin"] {
                println!(
                    "    export DETOUR_TOKEN=$(detour token --role {role} --data-dir {})",
                    settings.data_dir.display()
                );
            }
            println!("  try: detour case list --server http://{}", settings.grpc_addr);
            process::serve_until_signal(settings, detour_cli::MODULES, "detour-dev").await
        }
        Command::Serve { service, config } => {
            let Some(module) = detour_cli::module(&service) else {
                return fail(format!("unknown service `{service}`: one of {}", detour_cli::module_names()));
            };
            match Settings::load(config.as_deref()) {
                Ok(settings) => process::serve_until_signal(settings, &[module], module.name).await,
                Err(e) => fail(e),
            }
        }
        Command::Migrate { service, config } => {
            let modules: Vec<_> = if service == "all" {
                detour_cli::MODULES.to_vec()
            } else {
                match detour_cli::module(&service) {
                    Some(m) => vec![m],
                    None => {
                        return fail(format!(
                            "unknown service `{service}`: one of {}, or all",
                            detour_cli::module_names()
                        ));
                    }
                }
            };
            let settings = match Settings::load(config.as_deref()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            for m in modules {
                match detour_server::module::open_database(&settings, m.name, m.migrations, true).await {
                    Ok(db) => {
                        db.close().await;
                        println!("{}: schema up to date", m.name);
                    }
                    Err(e) => return fail(e),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Token { roles, subject, ttl_minutes, data_dir } => {
            let roles = match roles.iter().map(|r| r.parse::<Role>()).collect::<Result<Vec<_>, _>>() {
                Ok(r) => r,
                Err(e) => {
                    return fail(format!(
                        "{e}: one of agent, supervisor, finance, crisis_manager, admin, partner"
                    ));
                }
            };
            let issuer = match DevIssuer::load_or_create(&data_dir) {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            match issuer.mint(&subject, &roles, Duration::from_secs(ttl_minutes.saturating_mul(60))) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Kek { id } => match detour_vault::generate_kek_base64() {
            Ok(key) => {
                println!("{{id=\"{id}\",key=\"{key}\"}}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Case { command, remote } => {
            let (server, output) = remote.split();
            let result = match *command {
                CaseCommand::Open(args) => client::open(&server, *args, output).await,
                CaseCommand::List { status, category, channel, limit, page_token } => {
                    client::list(&server, status, category, channel, limit, page_token, output).await
                }
                CaseCommand::Show { case_id } => client::show(&server, &case_id, output).await,
                CaseCommand::Resolve { case_id, resolution } => {
                    client::resolve(&server, &case_id, &resolution, output).await
                }
                CaseCommand::Export { traveler_id } => client::export(&server, &traveler_id).await,
                CaseCommand::Erase { traveler_id, reason } => {
                    client::erase(&server, &traveler_id, &reason, output).await
                }
                CaseCommand::Audit { case_id, actor, limit, page_token } => {
                    client::audit(&server, case_id, actor, limit, page_token, output).await
                }
            };
            answer(result)
        }
        Command::Itinerary { command, remote } => {
            let (server, output) = remote.split();
            let ItineraryCommand::Import { file, format, chunk } = command;
            let result = match detour_cli::itinerary::read_trips(&file, format.as_deref()) {
                Ok(trips) => detour_cli::itinerary::import(&server, trips, chunk, output).await,
                Err(e) => Err(e),
            };
            answer(result)
        }
        Command::Storm(args) => storm(*args).await,
    }
}
