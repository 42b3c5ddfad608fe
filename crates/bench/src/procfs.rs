//! Resident memory and CPU time from Linux's `/proc`: of the server under test (split into its
//! password-hashing threads and everything else), of this benchmark process, and of the whole
//! machine — so a latency figure can be read next to who was using the cores at the time.

use std::{
    collections::HashMap,
    fs,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

/// Name prefix of the server's password-hashing threads (see `stride_identity::hashing`).
const HASH_THREAD_PREFIX: &str = "stride-hash";

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl Memory {
    /// `VmRSS` in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// `VmHWM` in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
}

/// Reads `VmRSS` and `VmHWM` of `pid` from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(Memory {
        rss_kib: status_kib(&status, "VmRSS").with_context(|| format!("no VmRSS in {path}"))?,
        peak_rss_kib: status_kib(&status, "VmHWM")
            .with_context(|| format!("no VmHWM in {path}"))?,
    })
}

/// `(comm, utime + stime)` of a `/proc/.../stat` line. The name is in parentheses and may hold
/// spaces, so the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((name, user + system))
}

/// `(busy, total)` jiffies of all CPUs from the first line of `/proc/stat`.
fn parse_machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal; guest time is already in user and nice.
    let values: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU time counters at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    machine_busy: u64,
    machine_total: u64,
    server_hashing: u64,
    server_other: u64,
    bench: u64,
    /// Every process: pid -> (name, utime + stime).
    processes: HashMap<u32, (String, u64)>,
}

fn all_processes() -> HashMap<u32, (String, u64)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            // A process may end between listing and reading; it then simply does not count.
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, ticks) = parse_stat(&stat)?;
            Some((pid, (name.to_owned(), ticks)))
        })
        .collect()
}

impl CpuSnapshot {
    /// Reads the machine's, this process's and (when given) the server's counters.
    pub fn take(server_pid: Option<u32>) -> anyhow::Result<Self> {
        let machine = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let (machine_busy, machine_total) =
            parse_machine(&machine).context("unexpected /proc/stat")?;
        let own = fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        let (_, bench) = parse_stat(&own).context("unexpected /proc/self/stat")?;
        let (mut server_hashing, mut server_other) = (0, 0);
        if let Some(pid) = server_pid {
            let tasks = format!("/proc/{pid}/task");
            for entry in fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
                let path = entry.with_context(|| format!("listing {tasks}"))?.path();
                // A thread may end between listing and reading; it then simply does not count.
                let Ok(stat) = fs::read_to_string(path.join("stat")) else {
                    continue;
                };
                let Some((name, ticks)) = parse_stat(&stat) else {
                    continue;
                };
                if name.starts_with(HASH_THREAD_PREFIX) {
                    server_hashing += ticks;
                } else {
                    server_other += ticks;
                }
            }
        }
        Ok(Self {
            at: Instant::now(),
            machine_busy,
            machine_total,
            server_hashing,
            server_other,
            bench,
            processes: all_processes(),
        })
    }
}

/// CPU use of the processes that share a name.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    /// Process name (`comm`), e.g. `postgres`.
    pub name: String,
    /// Average cores used.
    pub cores: f64,
}

/// The busiest other processes between two snapshots, grouped by name, leaving out the
/// server and this process. Processes that lived only between the snapshots are missed.
fn busiest_others(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    leave_out: &[u32],
    ticks_per_core: f64,
) -> Vec<ProcessCpu> {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for (pid, (name, ticks)) in &after.processes {
        if leave_out.contains(pid) {
            continue;
        }
        // A process that started in between counts from zero. Kernel workers rename
        // themselves after their current work item, so they are matched by pid and counted
        // as one group.
        let earlier = before.processes.get(pid).map_or(0, |(_, ticks)| *ticks);
        let name = if name.starts_with("kworker/") {
            "kworker"
        } else {
            name.as_str()
        };
        *by_name.entry(name).or_default() += ticks.saturating_sub(earlier);
    }
    let mut busiest: Vec<ProcessCpu> = by_name
        .into_iter()
        .map(|(name, ticks)| ProcessCpu {
            name: name.to_owned(),
            cores: ticks as f64 / ticks_per_core,
        })
        .filter(|process| process.cores >= 0.01)
        .collect();
    busiest.sort_by(|a, b| b.cores.total_cmp(&a.cores));
    busiest.truncate(6);
    busiest
}

/// Average number of cores each party kept busy between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    /// Length of the interval, seconds.
    pub wall_secs: f64,
    /// Cores the machine has.
    pub machine_cores: usize,
    /// Cores busy machine-wide.
    pub machine_busy_cores: f64,
    /// Cores used by the server's password-hashing threads (nice 10).
    pub server_hashing_cores: f64,
    /// Cores used by the rest of the server: async workers, database and Redis clients.
    pub server_other_cores: f64,
    /// Cores used by this benchmark process (the load generator itself).
    pub bench_cores: f64,
    /// Cores used by everything else: PostgreSQL, Redis, NATS, the kernel, other programs.
    pub others_cores: f64,
    /// The busiest of those other processes.
    pub busiest_others: Vec<ProcessCpu>,
}

impl CpuUsage {
    /// Usage from `before` to `after`; `server_pid` is left out of the busiest others.
    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot, server_pid: Option<u32>) -> Self {
        let wall_secs = after.at.duration_since(before.at).as_secs_f64();
        let ticks = clock_ticks_per_second();
        let cores_of =
            |from: u64, to: u64| to.saturating_sub(from) as f64 / ticks / wall_secs.max(1e-9);
        let machine_cores = crate::hashing::cores();
        let machine_total = after.machine_total.saturating_sub(before.machine_total);
        let machine_busy = after.machine_busy.saturating_sub(before.machine_busy);
        let machine_busy_cores = if machine_total == 0 {
            0.0
        } else {
            machine_busy as f64 / machine_total as f64 * machine_cores as f64
        };
        let server_hashing_cores = cores_of(before.server_hashing, after.server_hashing);
        let server_other_cores = cores_of(before.server_other, after.server_other);
        let bench_cores = cores_of(before.bench, after.bench);
        let leave_out: Vec<u32> = [Some(std::process::id()), server_pid]
            .into_iter()
            .flatten()
            .collect();
        let busiest_others = busiest_others(before, after, &leave_out, ticks * wall_secs.max(1e-9));
        Self {
            wall_secs,
            machine_cores,
            machine_busy_cores,
            server_hashing_cores,
            server_other_cores,
            bench_cores,
            others_cores: (machine_busy_cores
                - server_hashing_cores
                - server_other_cores
                - bench_cores)
                .max(0.0),
            busiest_others,
        }
    }
}

/// What the benchmark found when it waited for the machine to go quiet before a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    /// Seconds it waited.
    pub waited_secs: f64,
    /// Whether the machine went quiet within the limit.
    pub quiet: bool,
    /// The last second it looked at: the cores busy and the busiest processes.
    pub last_second: CpuUsage,
}

/// Waits until the whole machine has kept fewer than `below` cores busy in each of
/// `seconds` seconds in a row, or until `at_most` has passed, whichever comes first.
///
/// Work that earlier phases leave behind (InfluxDB compacting the points just written to
/// it, the kernel writing the broker's files back) would otherwise share the cores with the
/// next phase, and its latency would be theirs.
pub async fn settle(
    below: f64,
    seconds: u32,
    at_most: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<Settled> {
    let began = Instant::now();
    let mut quiet_seconds = 0;
    let mut before = CpuSnapshot::take(server_pid)?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = CpuSnapshot::take(server_pid)?;
        let last_second = CpuUsage::between(&before, &after, server_pid);
        quiet_seconds = if last_second.machine_busy_cores < below {
            quiet_seconds + 1
        } else {
            0
        };
        let waited = began.elapsed();
        if quiet_seconds >= seconds || waited >= at_most {
            return Ok(Settled {
                waited_secs: waited.as_secs_f64(),
                quiet: quiet_seconds >= seconds,
                last_second,
            });
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_of_a_thread_whose_name_has_spaces_and_parentheses() {
        let stat = "4242 (stride (hash) 0) S 1 4242 4242 0 -1 4194368 \
                    100 0 0 0 1234 56 0 0 30 10 1 0 12345 1000000 300";
        assert_eq!(parse_stat(stat), Some(("stride (hash) 0", 1290)));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 20 30 400 50 6 4 0 0 0\ncpu0 50 10 15 200 25 3 2 0 0 0\n";
        assert_eq!(parse_machine(stat), Some((160, 610)));
    }

    #[test]
    fn reads_resident_memory_fields() {
        let status = "Name:\tstride\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    fn snapshot(processes: &[(u32, &str, u64)]) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            machine_busy: 0,
            machine_total: 0,
            server_hashing: 0,
            server_other: 0,
            bench: 0,
            processes: processes
                .iter()
                .map(|(pid, name, ticks)| (*pid, (name.to_string(), *ticks)))
                .collect(),
        }
    }

    #[test]
    fn busiest_others_group_by_name_and_leave_out_the_server() {
        let before = snapshot(&[
            (1, "postgres", 100),
            (2, "postgres", 50),
            (3, "stride", 0),
            (5, "kworker/1:0-events", 1000),
        ]);
        let after = snapshot(&[
            (1, "postgres", 150),
            (2, "postgres", 100),
            (3, "stride", 900),
            (4, "rustc", 40),
            (5, "kworker/1:0-writeback", 1020),
        ]);
        let busiest = busiest_others(&before, &after, &[3], 100.0);
        let summary: Vec<(&str, f64)> = busiest
            .iter()
            .map(|process| (process.name.as_str(), process.cores))
            .collect();
        assert_eq!(
            summary,
            vec![("postgres", 1.0), ("rustc", 0.4), ("kworker", 0.2)]
        );
    }

    #[test]
    fn own_process_is_readable() {
        let memory = memory(std::process::id()).expect("own /proc entry");
        assert!(memory.rss_kib > 0);
        assert!(memory.peak_rss_kib >= memory.rss_kib);
    }

    #[tokio::test]
    async fn settling_ends_once_the_machine_is_quiet_long_enough() {
        // Every second is "quiet" below more cores than the machine has.
        let cores = crate::hashing::cores() as f64;
        let settled = settle(cores + 1.0, 2, Duration::from_secs(30), None)
            .await
            .expect("settled");
        assert!(settled.quiet);
        assert!(
            (1.9..10.0).contains(&settled.waited_secs),
            "two quiet seconds took {} s",
            settled.waited_secs
        );
    }

    #[tokio::test]
    async fn settling_gives_up_at_the_limit_on_a_busy_machine() {
        // No second is quiet below zero cores.
        let settled = settle(0.0, 1, Duration::from_secs(2), None)
            .await
            .expect("settled");
        assert!(!settled.quiet);
        assert!(settled.waited_secs >= 2.0, "{}", settled.waited_secs);
        assert!(settled.last_second.wall_secs > 0.5);
    }
}
