//! The raw cost of one argon2id hash with the parameters Stride uses (`Argon2::default()`:
//! argon2id, m = 19456 KiB, t = 2, p = 1), on one thread. A login verifies one hash, so with
//! one hashing thread per core the server cannot exceed about `cores ÷ hash time` logins per
//! second.
//!
//! Both wall time and the thread's own CPU time are recorded: on a shared machine (a build
//! running next to the benchmark) wall time includes waiting for a core, CPU time does not, so
//! the ceiling is computed from CPU time.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::{
    Argon2, PasswordHasher as _,
    password_hash::{SaltString, rand_core::OsRng},
};
use serde::Serialize;

use crate::stats;

/// Timings of single-thread hashes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HashTiming {
    /// Hashes measured.
    pub samples: usize,
    /// Fastest hash, wall time.
    pub min_ms: f64,
    /// Median hash, wall time.
    pub median_ms: f64,
    /// Slowest hash, wall time.
    pub max_ms: f64,
    /// Median hash, CPU time of the hashing thread.
    pub cpu_median_ms: f64,
}

impl HashTiming {
    /// Logins per second `cores` fully busy hashing threads could verify (from CPU time).
    pub fn ceiling_per_second(&self, cores: usize) -> f64 {
        cores as f64 * 1000.0 / self.cpu_median_ms
    }
}

/// CPU time the calling thread has used so far.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Hashes a password `samples` times on the calling thread (blocking) and times each hash.
pub fn measure(samples: usize) -> anyhow::Result<HashTiming> {
    anyhow::ensure!(samples > 0, "need at least one hash to time");
    let hasher = Argon2::default();
    let password = b"violet quartz lantern 42";
    // One untimed hash first, so page faults of the first 19 MiB block do not count.
    let salt = SaltString::generate(&mut OsRng);
    hasher
        .hash_password(password, &salt)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("hashing")?;
    let mut timings = Vec::with_capacity(samples);
    let mut cpu_timings = Vec::with_capacity(samples);
    for _ in 0..samples {
        let salt = SaltString::generate(&mut OsRng);
        let started = Instant::now();
        let cpu_started = thread_cpu_time();
        hasher
            .hash_password(password, &salt)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .context("hashing")?;
        cpu_timings.push(thread_cpu_time().saturating_sub(cpu_started));
        timings.push(started.elapsed());
    }
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1000.0;
    Ok(HashTiming {
        samples,
        min_ms: milliseconds(timings.iter().copied().min().context("no timings")?),
        median_ms: milliseconds(stats::median(&timings).context("no timings")?),
        max_ms: milliseconds(timings.iter().copied().max().context("no timings")?),
        cpu_median_ms: milliseconds(stats::median(&cpu_timings).context("no timings")?),
    })
}

/// Cores this machine offers the process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
