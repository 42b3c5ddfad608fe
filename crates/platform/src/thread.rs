//! Background work on threads of its own, below the request path's priority.

/// Limits glibc's malloc to one arena per core, unless `MALLOC_ARENA_MAX` says otherwise.
/// Call it first thing in `main`, before any other thread starts.
///
/// By default glibc gives threads up to eight arenas per core, and memory freed into one
/// is kept for that arena. Telemetry ingest allocates a request body of about 70 KB per
/// batch on whichever thread reads it: at 2 M samples/s on 2 cores the process peaked at
/// 449-463 MiB with the default and at 329 MiB with two arenas. Does nothing off Linux
/// with glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes a malloc tunable; called before other threads
        // exist, it races with no allocation.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Lowers the calling thread's CPU priority to nice 10, so that on a busy machine it runs
/// when the threads that answer requests (nice 0, same process) leave a core free.
/// Threads of one process share their scheduling group, so this orders work within the
/// process only. Does nothing off Linux.
pub fn lower_priority() {
    // SAFETY: setpriority on the calling thread's own id changes only this thread's nice
    // value; it has no memory-safety preconditions.
    #[cfg(target_os = "linux")]
    unsafe {
        let thread_id = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread_id, 10);
    }
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs on CPU time that no other
/// thread of the machine wants, and any other thread that wakes up preempts it at once. Unlike
/// a nice value, this holds across processes and scheduling groups: a nice-10 thread in a
/// process whose other threads are waiting takes its group's whole share, as much as a
/// broker or database server that a request is waiting on.
///
/// Only for work whose delay costs lag and nothing else (draining a durable buffer), never
/// for work a request waits on. Falls back to [`lower_priority`] where the class is refused.
/// Threads this thread starts inherit the class.
pub fn idle_priority() {
    // SAFETY: sched_setscheduler on pid 0 changes only the calling thread's policy; the
    // parameter is a valid, initialised struct that outlives the call.
    #[cfg(target_os = "linux")]
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 {
            return;
        }
    }
    lower_priority();
}

/// Moves the calling thread (only it, not its process) into the CPU cgroup at `folder`:
/// `tasks` in cgroup v1, `cgroup.threads` in a threaded cgroup v2 subtree.
///
/// `SCHED_IDLE` orders threads inside their process's scheduling group only: while the
/// process's other threads wait, the group's share at the top level is the idle thread's,
/// as large as a broker's. A thread in a group with `cpu.idle = 1` is idle at the top level
/// too, so a woken broker or database thread preempts it at once.
pub fn join_cgroup(folder: &std::path::Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; it returns the calling thread's id.
        let thread_id = unsafe { libc::syscall(libc::SYS_gettid) };
        let v1 = std::fs::write(folder.join("tasks"), thread_id.to_string());
        match v1 {
            Ok(()) => Ok(()),
            Err(error) if folder.join("cgroup.threads").exists() => {
                std::fs::write(folder.join("cgroup.threads"), thread_id.to_string())
                    .map_err(|v2| std::io::Error::new(v2.kind(), format!("{error}; {v2}")))
            }
            Err(error) => Err(error),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = folder;
        Err(std::io::Error::other("CPU cgroups exist on Linux only"))
    }
}

/// Runs `work` on a new thread named `name`, at the priority of [`idle_priority`] and, when
/// `cgroup` is given, in that CPU cgroup ([`join_cgroup`]), in a single-threaded Tokio
/// runtime of its own, and waits for its result. A cgroup that cannot be joined is logged
/// and the thread goes on at `SCHED_IDLE`.
///
/// Long stretches of CPU work (decoding and encoding thousands of samples) never hold one of
/// the request path's runtime workers, nor a core that the broker needs to acknowledge a
/// request's write: the kernel preempts this thread for any of them.
pub async fn run_apart<F, Fut>(name: &str, cgroup: Option<&str>, work: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let cgroup = cgroup.map(std::path::PathBuf::from);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            idle_priority();
            if let Some(folder) = cgroup {
                let thread = std::thread::current();
                let thread = thread.name().unwrap_or_default();
                match join_cgroup(&folder) {
                    Ok(()) => tracing::info!(
                        thread,
                        cgroup = %folder.display(),
                        "background thread runs in its CPU cgroup"
                    ),
                    Err(error) => tracing::warn!(
                        thread,
                        cgroup = %folder.display(),
                        %error,
                        "cannot join the background CPU cgroup; running at SCHED_IDLE only"
                    ),
                }
            }
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(work()));
            let _ = done.send(outcome);
        })?;
    result
        .await
        .map_err(|_| anyhow::anyhow!("the thread {name} ended without a result"))?
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_policy() -> i32 {
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[tokio::test]
    async fn work_apart_runs_at_sched_idle_and_leaves_the_caller_alone() {
        let caller = own_policy();
        let (tell, policy) = tokio::sync::oneshot::channel();
        run_apart("test-apart", None, move || async move {
            let _ = tell.send(own_policy());
            Ok(())
        })
        .await
        .expect("the work ran");
        assert_eq!(policy.await.expect("a policy"), libc::SCHED_IDLE);
        assert_eq!(own_policy(), caller);
    }

    #[tokio::test]
    async fn a_cgroup_that_cannot_be_joined_does_not_stop_the_work() {
        let missing = std::env::temp_dir().join(format!("no-such-cgroup-{}", std::process::id()));
        assert!(join_cgroup(&missing).is_err());
        let (tell, ran) = tokio::sync::oneshot::channel();
        run_apart("test-apart", missing.to_str(), move || async move {
            let _ = tell.send(own_policy());
            Ok(())
        })
        .await
        .expect("the work ran");
        assert_eq!(ran.await.expect("it ran"), libc::SCHED_IDLE);
    }

    #[tokio::test]
    async fn an_error_of_the_work_reaches_the_caller() {
        let error = run_apart("test-apart", None, || async { anyhow::bail!("it broke") })
            .await
            .expect_err("the work failed");
        assert!(error.to_string().contains("it broke"), "{error}");
    }

    /// Where this process may write cgroup v1's `cpu` hierarchy (as root on such machines),
    /// the thread, and only it, lands in the group.
    #[test]
    fn a_thread_joins_a_writable_v1_cgroup_alone() {
        let root = std::path::Path::new("/sys/fs/cgroup/cpu");
        let folder = root.join(format!("stride-test-{}", std::process::id()));
        if !root.join("cpu.idle").exists() || std::fs::create_dir(&folder).is_err() {
            eprintln!("no writable cgroup v1 cpu hierarchy here; nothing to check");
            return;
        }
        let in_group = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    join_cgroup(&folder).expect("joined");
                    std::fs::read_to_string("/proc/thread-self/cgroup").unwrap_or_default()
                })
                .join()
                .expect("thread")
        });
        let process = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        // The thread has ended, so the group is empty again and can go.
        std::fs::remove_dir(&folder).expect("removed the test cgroup");
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(in_group.contains(name), "{in_group}");
        assert!(!process.contains(name), "{process}");
    }
}
