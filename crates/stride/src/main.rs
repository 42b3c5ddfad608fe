//! `stride`: runs any set of Stride services, migrates their databases, and administers them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stride::Targets;
use stride_platform::{config::Config, observability, server};

/// Stride: a self-hostable backend for connected sports training.
///
/// Configuration comes from defaults, then the optional TOML file, then STRIDE_* environment
/// variables (see the README for the full list).
#[derive(Debug, Parser)]
#[command(name = "stride", version, about, long_about)]
struct Cli {
    /// TOML configuration file (its keys are the STRIDE_* names in lower case, without the
    /// prefix).
    #[arg(long, global = true, env = "STRIDE_CONFIG_FILE", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs services: all of them in one process (the default) or the given ones, on one HTTP
    /// and one gRPC port. Migrates their databases first. Stops gracefully on SIGINT/SIGTERM.
    Serve {
        /// `all`, or a comma-separated list of services (valid names: identity, training,
        /// telemetry, gamification, inventory).
        #[arg(
            long,
            env = "STRIDE_TARGETS",
            default_value = "all",
            value_name = "TARGETS"
        )]
        targets: Targets,
    },
    /// Creates missing service databases and applies migrations, then exits.
    Migrate {
        /// `all`, or a comma-separated list of services.
        #[arg(
            long,
            env = "STRIDE_TARGETS",
            default_value = "all",
            value_name = "TARGETS"
        )]
        targets: Targets,
    },
    /// Simulates devices recording workouts through the public HTTP API: a live demo and a
    /// load generator.
    ///
    /// Per device: registers an account, logs in, registers a device and starts a public
    /// workout, then streams one-second samples in batches (a GPS track around a loop with
    /// rolling hills, heart rate that follows effort with a lag and drifts up over time,
    /// cadence, power for rides), waits out 429 and 503 answers and sends the same batch
    /// again, finishes the workout and prints a report with every activity id. Ctrl-C stops
    /// streaming and finishes the workouts started so far.
    ///
    /// Example: `stride sim --devices 5 --speedup 60 --duration-mins 20`.
    Sim(stride::sim::Options),
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        task: AdminTask,
    },
}

#[derive(Debug, Subcommand)]
enum AdminTask {
    /// Gives an existing account a role: `admin` (operators) or `partner` (shops and brands
    /// that publish products to the catalog). It takes effect at the account's next login.
    Grant {
        /// The account's email address.
        email: String,
        /// `admin`, `partner` or `user` (takes a role back).
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

fn main() -> anyhow::Result<()> {
    stride_platform::thread::limit_malloc_arenas();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    observability::init_logging(&config);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stride-worker")
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { targets } => {
            // Listening before the servers start: a SIGTERM that comes as soon as the
            // process is ready still stops it gracefully.
            let signals = server::ShutdownSignals::install()?;
            let app = server::start(config, &targets.specs()).await?;
            app.run_until_signal(signals).await
        }
        Command::Migrate { targets } => server::migrate(&config, &targets.specs()).await,
        Command::Sim(options) => {
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("stopping: finishing the workouts started so far");
            };
            let report = stride::sim::run_until(options, stop).await?;
            println!("{report}");
            match report.failed_devices() {
                0 => Ok(()),
                failed => anyhow::bail!("{failed} simulated devices stopped early"),
            }
        }
        Command::Admin {
            task: AdminTask::Grant { email, role },
        } => {
            let parsed = match role.as_str() {
                "admin" => stride_identity::domain::Role::Admin,
                "partner" => stride_identity::domain::Role::Partner,
                "user" => stride_identity::domain::Role::User,
                other => {
                    anyhow::bail!("unknown role {other:?}; valid roles are admin, partner, user")
                }
            };
            stride_identity::grant_role(&config, &email, parsed).await?;
            println!("{email} now has the {role} role");
            Ok(())
        }
    }
}
