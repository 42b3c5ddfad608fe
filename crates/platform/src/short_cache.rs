//! A short-lived in-process cache of another service's answers, refreshed ahead of expiry.
//!
//! Ingest asks identity who a device is and training what state an activity is in, for every
//! batch. The answers may be a few seconds old (a revoked device or a finished activity is
//! refused within that time), so they are cached for `ttl`. A plain cache makes the first
//! request after each expiry wait for the other service: with a 2-second life that is one
//! request per device and activity every 2 seconds, and under load that wait is the slowest
//! part of ingest. So an answer older than half its life is served as it is while one
//! background fetch renews it; a request waits only for a key it has not seen (or not seen for
//! a whole `ttl`). No answer older than `ttl` is ever served, counted from when its fetch
//! began.
//!
//! Concurrent requests for a key nobody has an answer for share one fetch (after a restart
//! every device's first batches arrive at once; without this each of them would ask).
//!
//! Failed fetches are not cached: a failed renewal leaves the old answer in place until its
//! `ttl` ends, and the next request after that asks again itself. Requests that waited for a
//! fetch that failed (or was abandoned) each ask for themselves.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

/// Entries above which expired ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// When the fetch that produced `value` began.
    fetched: Instant,
    /// A background renewal is under way.
    renewing: bool,
}

#[derive(Debug)]
struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Fetches under way for keys without a servable answer; waiters get `Some(answer)`, or
    /// see the sender dropped when the fetch failed.
    fetching: HashMap<K, watch::Receiver<Option<V>>>,
}

/// Answers keyed by `K`, each served for at most `ttl` and renewed in the background once it
/// is half that old. Cheap to clone (shared state).
#[derive(Debug)]
pub struct ShortCache<K, V> {
    ttl: Duration,
    inner: Arc<Mutex<Inner<K, V>>>,
}

impl<K, V> Clone for ShortCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            inner: self.inner.clone(),
        }
    }
}

/// What a request without a servable answer does.
enum Plan<V> {
    /// Waits for the fetch under way.
    Wait(watch::Receiver<Option<V>>),
    /// Fetches, for itself and whoever waits.
    Fetch(watch::Sender<Option<V>>),
}

impl<K, V> ShortCache<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K, V> ShortCache<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache whose answers live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                fetching: HashMap::new(),
            })),
        }
    }

    /// The answer for `key`: cached when younger than `ttl` (renewed in the background by
    /// `fetch` when older than half of it), otherwise fetched now, once for all the requests
    /// that want it meanwhile. A fetch error is returned only when there is no answer young
    /// enough to serve.
    pub async fn get<E, F, Fut>(&self, key: K, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + 'static,
    {
        let now = Instant::now();
        let plan = {
            let mut inner = self.lock();
            let fresh = inner.entries.get_mut(&key).and_then(|entry| {
                let age = now.saturating_duration_since(entry.fetched);
                (age < self.ttl).then(|| {
                    let renew = age >= self.ttl / 2 && !entry.renewing;
                    entry.renewing |= renew;
                    (entry.value.clone(), renew)
                })
            });
            if let Some((value, renew)) = fresh {
                if renew {
                    self.renew(key, fetch);
                }
                return Ok(value);
            }
            match inner.fetching.get(&key) {
                Some(receiver) => Plan::Wait(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    inner.fetching.insert(key.clone(), receiver);
                    Plan::Fetch(sender)
                }
            }
        };
        match plan {
            Plan::Wait(mut receiver) => {
                if let Ok(answer) = receiver.wait_for(Option::is_some).await
                    && let Some(value) = answer.as_ref()
                {
                    return Ok(value.clone());
                }
                // The shared fetch failed: ask for ourselves.
                self.fetch_and_store(key, fetch, now).await
            }
            Plan::Fetch(sender) => {
                // Removes the fetch from `fetching` however this ends, even when the request
                // is dropped midway, so nobody waits for it forever.
                let _done = Fetching {
                    cache: self,
                    key: key.clone(),
                };
                let value = self.fetch_and_store(key, fetch, now).await?;
                sender.send_replace(Some(value.clone()));
                Ok(value)
            }
        }
    }

    /// Fetches `key` now and stores the answer as fetched at `began`.
    async fn fetch_and_store<E, F, Fut>(&self, key: K, fetch: F, began: Instant) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let value = fetch().await?;
        self.store(key, value.clone(), began);
        Ok(value)
    }

    /// Fetches `key` in the background and stores the answer; on failure the old answer
    /// stays until it expires.
    fn renew<E, F, Fut>(&self, key: K, fetch: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + 'static,
    {
        let cache = self.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            match fetch().await {
                Ok(value) => cache.store(key, value, began),
                Err(_) => {
                    if let Some(entry) = cache.lock().entries.get_mut(&key) {
                        entry.renewing = false;
                    }
                }
            }
        });
    }

    fn store(&self, key: K, value: V, fetched: Instant) {
        let mut inner = self.lock();
        let entries = &mut inner.entries;
        if entries.len() > PRUNE_ABOVE {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.fetched.elapsed() < ttl);
        }
        // An answer fetched earlier than the one stored (a slow renewal overtaken by a
        // fetch of its own) does not replace it.
        if entries
            .get(&key)
            .is_some_and(|entry| entry.fetched > fetched)
        {
            return;
        }
        entries.insert(
            key,
            Entry {
                value,
                fetched,
                renewing: false,
            },
        );
    }
}

/// Ends a shared fetch's registration when dropped.
struct Fetching<'a, K, V>
where
    K: Eq + Hash,
{
    cache: &'a ShortCache<K, V>,
    key: K,
}

impl<K, V> Drop for Fetching<'_, K, V>
where
    K: Eq + Hash,
{
    fn drop(&mut self) {
        self.cache.lock().fetching.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    type Answer = futures_util::future::BoxFuture<'static, Result<u32, &'static str>>;

    /// A fetch that answers with the number of fetches so far, after `delay`, or fails when
    /// `fail` is set.
    #[derive(Clone, Default)]
    struct Source {
        fetches: Arc<AtomicU32>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Source {
        fn fetch(&self, delay: Duration) -> impl FnOnce() -> Answer + Send + 'static {
            let source = self.clone();
            move || {
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    if source.fail.load(Ordering::SeqCst) {
                        return Err("down");
                    }
                    Ok(source.fetches.fetch_add(1, Ordering::SeqCst) + 1)
                })
            }
        }

        fn count(&self) -> u32 {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    /// Lets spawned renewals run to completion (time is paused, so their sleeps are instant).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_young_answer_is_served_without_asking() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(1));
        tokio::time::advance(TTL / 2 - Duration::from_millis(1)).await;
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(1));
        settle().await;
        assert_eq!(source.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ageing_answer_is_served_at_once_while_one_renewal_runs() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        cache.get("d", source.fetch(Duration::ZERO)).await.unwrap();
        tokio::time::advance(TTL * 3 / 4).await;
        // The renewal takes a while; the requests meanwhile get the old answer, at once.
        let slow = Duration::from_millis(50);
        for _ in 0..10 {
            let started = Instant::now();
            assert_eq!(cache.get("d", source.fetch(slow)).await, Ok(1));
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
        settle().await;
        assert_eq!(source.count(), 2, "one renewal for the ten requests");
        assert_eq!(cache.get("d", source.fetch(slow)).await, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_answer_is_never_served() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        cache.get("d", source.fetch(Duration::ZERO)).await.unwrap();
        tokio::time::advance(TTL).await;
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_keeps_the_answer_until_it_expires_then_fails() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        cache.get("d", source.fetch(Duration::ZERO)).await.unwrap();
        source.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(TTL * 3 / 4).await;
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(1));
        settle().await;
        // The failure is forgotten: the next request may try again, and still gets the answer.
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(1));
        tokio::time::advance(TTL).await;
        assert_eq!(
            cache.get("d", source.fetch(Duration::ZERO)).await,
            Err("down")
        );
        source.fail.store(false, Ordering::SeqCst);
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_for_an_unknown_key_share_one_fetch() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let (cache, fetch) = (cache.clone(), source.fetch(Duration::from_millis(50)));
                tokio::spawn(async move { cache.get("d", fetch).await })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.expect("request"), Ok(1));
        }
        assert_eq!(source.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_shared_fetch_fails_each_waiter_asks_for_itself() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        source.fail.store(true, Ordering::SeqCst);
        let leader = {
            let (cache, fetch) = (cache.clone(), source.fetch(Duration::from_millis(50)));
            tokio::spawn(async move { cache.get("d", fetch).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The waiter joins the failing fetch; by the time it asks itself the source is back.
        let waiter = {
            let (cache, fetch) = (cache.clone(), source.fetch(Duration::from_millis(50)));
            tokio::spawn(async move { cache.get("d", fetch).await })
        };
        // The shared fetch fails at 50 ms; the waiter's own fetch answers at 100 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
        source.fail.store(false, Ordering::SeqCst);
        assert_eq!(leader.await.expect("leader"), Err("down"));
        assert_eq!(waiter.await.expect("waiter"), Ok(1));
        // A dropped or failed fetch leaves nothing behind that later requests would wait on.
        assert_eq!(cache.get("d", source.fetch(Duration::ZERO)).await, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_fetch_does_not_strand_later_requests() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        let abandoned = {
            let (cache, fetch) = (cache.clone(), source.fetch(Duration::from_secs(60)));
            tokio::spawn(async move { cache.get("d", fetch).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        abandoned.abort();
        let _ = abandoned.await;
        let started = Instant::now();
        assert_eq!(
            cache.get("d", source.fetch(Duration::from_millis(5))).await,
            Ok(1)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_kept_apart() {
        let cache = ShortCache::new(TTL);
        let source = Source::default();
        assert_eq!(cache.get("a", source.fetch(Duration::ZERO)).await, Ok(1));
        assert_eq!(cache.get("b", source.fetch(Duration::ZERO)).await, Ok(2));
        assert_eq!(cache.get("a", source.fetch(Duration::ZERO)).await, Ok(1));
    }

    /// Under any pattern of requests, the answer served was fetched (began) less than `ttl`
    /// before it was served.
    #[test]
    fn no_answer_older_than_its_life_is_served() {
        use proptest::prelude::*;
        let runner = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        proptest!(|(gaps in proptest::collection::vec(0u64..3_000, 1..40),
                    fetch_ms in 0u64..1_500)| {
            runner.block_on(async {
                let cache = ShortCache::new(TTL);
                // Each answer is the instant (ms since start) its fetch began.
                let start = Instant::now();
                for gap in gaps {
                    tokio::time::advance(Duration::from_millis(gap)).await;
                    let served = cache
                        .get("d", move || async move {
                            let began = start.elapsed().as_millis() as u64;
                            tokio::time::sleep(Duration::from_millis(fetch_ms)).await;
                            Ok::<u64, ()>(began)
                        })
                        .await
                        .expect("fetch");
                    let now = start.elapsed().as_millis() as u64;
                    prop_assert!(now - served < TTL.as_millis() as u64,
                        "served at {now} ms an answer fetched at {served} ms");
                }
                Ok(())
            })?;
        });
    }
}
