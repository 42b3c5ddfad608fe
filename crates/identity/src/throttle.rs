//! Login throttling in Redis, shared by every identity replica.
//!
//! Failed logins are counted per account-and-address, per address, and per account. Past a
//! free allowance each further failure locks that key for a growing delay (1 s, 2 s, 4 s, ...
//! up to a cap); while a key is locked, attempts it covers get 429 with `Retry-After` and the
//! password is not even checked.
//!
//! The per-account count only applies to addresses that have not logged in to the account
//! before, so an attacker spraying guesses from many addresses throttles themselves, not the
//! owner on their usual address.

use std::{net::IpAddr, time::Duration};

use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use stride_platform::cache::{Redis, hex};

/// One throttling rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Failures allowed before delays start.
    pub free: u32,
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// How long failures are remembered.
    pub window: Duration,
}

impl Rule {
    /// The lock after the `failures`-th failure, if any: doubles from `base` up to `max`.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free)?.checked_sub(1);
        let over = over?;
        let factor = 2u32.saturating_pow(over.min(31));
        Some(self.base.saturating_mul(factor).min(self.max))
    }
}

/// The throttle's rules.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// One account from one address.
    pub account_address: Rule,
    /// One address, any account.
    pub address: Rule,
    /// One account, from addresses that never logged in to it.
    pub account: Rule,
}

impl Default for Rules {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            account_address: Rule {
                free: 5,
                base: Duration::from_secs(1),
                max: Duration::from_secs(900),
                window: hour,
            },
            address: Rule {
                free: 30,
                base: Duration::from_secs(1),
                max: hour,
                window: hour,
            },
            account: Rule {
                free: 10,
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
                window: hour,
            },
        }
    }
}

/// How long an address stays "known" for an account after a successful login.
const KNOWN_ADDRESS_DAYS: u64 = 90;

/// Login throttling.
#[derive(Debug, Clone)]
pub struct Throttle {
    redis: Redis,
    rules: Rules,
}

struct Keys {
    account_address: String,
    address: String,
    account: String,
    known: String,
}

impl Throttle {
    /// A throttle with the default rules.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            rules: Rules::default(),
        }
    }

    fn keys(&self, account: &str, address: IpAddr) -> Keys {
        // Hashed so that Redis holds no email addresses.
        let account = hex(&Sha256::digest(account.as_bytes())[..16]);
        Keys {
            account_address: self.redis.key(format!("login:aa:{account}:{address}")),
            address: self.redis.key(format!("login:ad:{address}")),
            account: self.redis.key(format!("login:ac:{account}")),
            known: self.redis.key(format!("login:known:{account}")),
        }
    }

    fn applicable<'k>(&self, keys: &'k Keys, known: bool) -> Vec<(&'k str, Rule)> {
        let mut rules = vec![
            (keys.account_address.as_str(), self.rules.account_address),
            (keys.address.as_str(), self.rules.address),
        ];
        if !known {
            rules.push((keys.account.as_str(), self.rules.account));
        }
        rules
    }

    /// `Ok(None)` when an attempt may proceed, `Ok(Some(delay))` when it must wait.
    pub async fn check(
        &self,
        account: &str,
        address: IpAddr,
    ) -> redis::RedisResult<Option<Duration>> {
        let keys = self.keys(account, address);
        let mut redis = self.redis.connection();
        let known: bool = redis.sismember(&keys.known, address.to_string()).await?;
        let mut pipe = redis::pipe();
        for (key, _) in self.applicable(&keys, known) {
            pipe.pttl(format!("{key}:lock"));
        }
        let remaining: Vec<i64> = pipe.query_async(&mut redis).await?;
        let longest = remaining.into_iter().max().unwrap_or(0);
        Ok((longest > 0).then(|| Duration::from_millis(longest as u64)))
    }

    /// Records a failed attempt; returns the delay now imposed on this address, if any.
    pub async fn failure(
        &self,
        account: &str,
        address: IpAddr,
    ) -> redis::RedisResult<Option<Duration>> {
        let keys = self.keys(account, address);
        let mut redis = self.redis.connection();
        let known: bool = redis.sismember(&keys.known, address.to_string()).await?;
        let rules = self.applicable(&keys, known);
        let mut pipe = redis::pipe();
        for (key, rule) in &rules {
            let counter = format!("{key}:n");
            pipe.incr(&counter, 1)
                .expire(&counter, rule.window.as_secs() as i64)
                .ignore();
        }
        let counts: Vec<u32> = pipe.query_async(&mut redis).await?;
        let mut locks = redis::pipe();
        let mut imposed = None;
        for ((key, rule), count) in rules.iter().zip(counts) {
            if let Some(delay) = rule.delay_after(count) {
                locks
                    .pset_ex(format!("{key}:lock"), 1, delay.as_millis() as u64)
                    .ignore();
                imposed = imposed.max(Some(delay));
            }
        }
        locks.query_async::<()>(&mut redis).await?;
        Ok(imposed)
    }

    /// Records a successful login: clears this address's failures on the account and
    /// remembers the address as the owner's.
    pub async fn success(&self, account: &str, address: IpAddr) -> redis::RedisResult<()> {
        let keys = self.keys(account, address);
        let mut redis = self.redis.connection();
        redis::pipe()
            .del(format!("{}:n", keys.account_address))
            .ignore()
            .del(format!("{}:lock", keys.account_address))
            .ignore()
            .sadd(&keys.known, address.to_string())
            .ignore()
            .expire(&keys.known, (KNOWN_ADDRESS_DAYS * 86_400) as i64)
            .ignore()
            .query_async::<()>(&mut redis)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double() {
        let rule = Rules::default().account_address;
        assert_eq!(rule.delay_after(5), None);
        assert_eq!(rule.delay_after(6), Some(Duration::from_secs(1)));
        assert_eq!(rule.delay_after(7), Some(Duration::from_secs(2)));
        assert_eq!(rule.delay_after(9), Some(Duration::from_secs(8)));
        assert_eq!(rule.delay_after(1000), Some(Duration::from_secs(900)));
    }

    proptest! {
        #[test]
        fn delays_never_shrink_and_never_exceed_the_cap(failures in 0u32..10_000) {
            let rule = Rules::default().address;
            let now = rule.delay_after(failures).unwrap_or_default();
            let next = rule.delay_after(failures + 1).unwrap_or_default();
            prop_assert!(next >= now);
            prop_assert!(next <= rule.max);
        }
    }
}
