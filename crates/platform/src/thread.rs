//! Background work on threads of its own, below the request path's priority.

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

/// Runs `work` on a new thread named `name`, at the priority of [`lower_priority`], in a
/// single-threaded Tokio runtime of its own, and waits for its result.
///
/// Long stretches of CPU work (decoding and encoding thousands of samples) never hold one of
/// the request path's runtime workers: the kernel preempts this thread for them instead.
pub async fn run_apart<F, Fut>(name: &str, work: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
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
