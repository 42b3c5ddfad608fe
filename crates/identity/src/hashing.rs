//! Password hashing on a bounded pool of low-priority threads.
//!
//! argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1) costs tens of
//! milliseconds of CPU per hash. Hashing runs on its own threads — never on the async workers
//! — at a lower CPU priority (nice 10), so a storm of logins is limited by the cores while
//! other requests keep being served promptly. The queue is bounded: when it is full the
//! caller gets "busy" (503) instead of an ever-growing backlog.

use std::sync::{
    Arc, Mutex,
    mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
};

use std::cell::RefCell;

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};

type Job = Box<dyn FnOnce() + Send>;

/// Hashes waiting at most; more are refused as busy.
const QUEUE_LENGTH: usize = 512;

/// The pool is saturated.
#[derive(Debug, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Busy;

/// A pool of hashing threads.
#[derive(Clone)]
pub struct HashPool {
    queue: SyncSender<Job>,
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool").finish_non_exhaustive()
    }
}

thread_local! {
    /// The 19 MiB working memory of argon2, kept by each hashing thread and reused. Letting
    /// every hash allocate its own left the allocator holding about 170 MiB per thread after
    /// a storm of logins.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2id, v0x13, m=19456 KiB, t=2, p=1: the OWASP recommendation.
fn owasp_params() -> Params {
    Params::default()
}

fn raw_hash(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.resize(params.block_count(), Block::default());
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..])
    })
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
fn hash_phc(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let params = owasp_params();
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(length, |out| {
        raw_hash(
            Algorithm::Argon2id,
            Version::V0x13,
            &params,
            password,
            salt_bytes,
            out,
        )
        .map_err(Into::into)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches a PHC string, with the parameters the string names.
fn verify_phc(stored: &str, password: &[u8]) -> Result<bool, argon2::password_hash::Error> {
    let parsed = PasswordHash::new(stored)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        raw_hash(algorithm, version, &params, password, salt_bytes, out).map_err(Into::into)
    })?;
    // Output's equality is constant-time.
    Ok(computed == expected)
}

impl HashPool {
    /// Starts `threads` hashing threads (0 = one per core).
    pub fn start(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            threads
        };
        let (queue, jobs) = sync_channel::<Job>(QUEUE_LENGTH);
        let jobs: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(jobs));
        for index in 0..threads {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("stride-hash-{index}"))
                .spawn(move || {
                    stride_platform::thread::lower_priority();
                    loop {
                        let job = match jobs.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a hashing thread");
            }
        }
        // A hash of a random password, verified against when an email is unknown so that the
        // answer takes as long as for a known one.
        let dummy_hash = hash_phc(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default();
        Self {
            queue,
            dummy_hash: Arc::new(dummy_hash),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        match self.queue.try_send(job) {
            Ok(()) => result.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_phc(password.as_bytes()))
            .await?
            .map_err(|_| Busy)
    }

    /// Whether `password` matches `stored`; with `None`, checks against a dummy hash and
    /// answers false, taking the same time.
    pub async fn verify(&self, stored: Option<String>, password: String) -> Result<bool, Busy> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        self.run(move || verify_phc(&stored, password.as_bytes()).unwrap_or(false) && known)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_interchangeable_with_the_reference_implementation() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hash_phc(b"tangerine volcano").expect("hashed");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(
            Argon2::default()
                .verify_password(b"tangerine volcano", &parsed)
                .is_ok()
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"tangerine volcano", &salt)
            .expect("hashed")
            .to_string();
        assert!(verify_phc(&theirs, b"tangerine volcano").expect("verified"));
        assert!(!verify_phc(&theirs, b"tangerine volcanO").expect("verified"));
    }

    #[tokio::test]
    async fn hashes_use_argon2id_with_owasp_parameters_and_verify() {
        let pool = HashPool::start(1);
        let hash = pool.hash("tangerine volcano".into()).await.expect("hashed");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            pool.verify(Some(hash.clone()), "tangerine volcano".into())
                .await
                .expect("ran")
        );
        assert!(
            !pool
                .verify(Some(hash), "tangerine volcanO".into())
                .await
                .expect("ran")
        );
        assert!(!pool.verify(None, "anything".into()).await.expect("ran"));
    }
}
