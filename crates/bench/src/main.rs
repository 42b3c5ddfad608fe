//! `stride-bench`: measures a running Stride server and prints the figures (see the library
//! docs and `docs/benchmarks.md`).

use clap::{Parser, Subcommand};
use stride_bench::{codec, gamification, hashing, identity, procfs, telemetry, training};

/// Measures Stride: prints a report for people, then the same figures as one JSON line.
#[derive(Debug, Parser)]
#[command(name = "stride-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Login throughput under a storm of concurrent logins, and GET /v1/me latency before and
    /// during it.
    Identity(identity::Options),
    /// Parse-and-summarise time, upload to ready, and GET /v1/activities at a fixed rate.
    Training(training::Options),
    /// Durable-accept rate, end to end into InfluxDB, latency, live delay, memory, disk.
    Telemetry(telemetry::Options),
    /// Delay from a finished workout to points and leaderboard, and backlog throughput.
    Gamification(gamification::Options),
    /// The ingest path's CPU on a batch's bytes (decode, validate, columns), one thread, no
    /// server.
    Codec,
    /// Times single-thread argon2id hashes with Stride's parameters.
    Hash {
        /// Hashes to time.
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// Resident memory of a process (VmRSS and VmHWM from /proc).
    Rss {
        /// The process.
        #[arg(long)]
        pid: u32,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Training(options) => {
            let report = runtime()?.block_on(training::run(options))?;
            print!("{}", training::render(&report));
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Telemetry(options) => {
            let report = runtime()?.block_on(telemetry::run(options))?;
            print!("{}", telemetry::render(&report));
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Gamification(options) => {
            let report = runtime()?.block_on(gamification::run(options))?;
            print!("{}", gamification::render(&report));
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Identity(options) => {
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(identity::run(options))?;
            print!("{}", identity::render(&report));
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Codec => {
            let report = codec::run()?;
            print!("{}", codec::render(&report));
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Hash { samples } => {
            let timing = hashing::measure(samples)?;
            let cores = hashing::cores();
            println!(
                "argon2id (m=19456 KiB, t=2, p=1), one thread: median {:.1} ms, min {:.1} ms, \
                 max {:.1} ms (n = {}); CPU time median {:.1} ms; {} cores ÷ CPU time = {:.1} \
                 hashes/s",
                timing.median_ms,
                timing.min_ms,
                timing.max_ms,
                timing.samples,
                timing.cpu_median_ms,
                cores,
                timing.ceiling_per_second(cores)
            );
            println!(
                "{}",
                serde_json::json!({"scenario": "hash", "cores": cores, "hash": timing})
            );
        }
        Command::Rss { pid } => {
            let memory = procfs::memory(pid)?;
            println!(
                "{}",
                serde_json::json!({
                    "pid": pid,
                    "rss_kib": memory.rss_kib,
                    "peak_rss_kib": memory.peak_rss_kib,
                })
            );
        }
    }
    Ok(())
}
