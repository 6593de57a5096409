//! A brake on password guessing: failed logins are counted per account (the email as given,
//! lower-cased and hashed) and per client address, in Redis so that every replica sees them,
//! each count for a window starting at its first failure. At a limit, every login for that
//! account or from that address is refused with 429 and `Retry-After` until the window ends:
//! the same answer whether or not the account exists, and even with the right password (or a
//! guesser could tell). A successful login clears its account's count. With Redis unreachable,
//! this replica counts on its own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use deadpool_redis::redis::Script;
use kai_common::config::{parse_positive, parse_seconds};
use moka::sync::Cache;
use sha2::{Digest, Sha256};

const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// The retry-after seconds of the first key at or over its limit, else 0.
const CHECK: &str = r"
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
return 0
";

/// Counts a failure on every key, each key's window starting with its first failure.
const FAIL: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 0
";

#[derive(Debug, Clone, clap::Args)]
pub struct LoginLimits {
    /// Failed logins for one account (existing or not) before its logins are refused for the
    /// rest of the window.
    #[arg(long = "login-max-failures-per-account", env = "KAI_LOGIN_MAX_FAILURES_PER_ACCOUNT",
          value_name = "KAI_LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value = "10",
          value_parser = parse_positive)]
    pub per_account: usize,

    /// Failed logins from one client address before its logins are refused for the rest of
    /// the window.
    #[arg(long = "login-max-failures-per-address", env = "KAI_LOGIN_MAX_FAILURES_PER_ADDRESS",
          value_name = "KAI_LOGIN_MAX_FAILURES_PER_ADDRESS", default_value = "50",
          value_parser = parse_positive)]
    pub per_address: usize,

    /// Seconds a count lasts from its first failure.
    #[arg(long = "login-failure-window-secs", env = "KAI_LOGIN_FAILURE_WINDOW_SECS",
          value_name = "KAI_LOGIN_FAILURE_WINDOW_SECS", default_value = "900",
          value_parser = parse_seconds)]
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 50,
            window: Duration::from_secs(900),
        }
    }
}

pub struct LoginLimiter {
    redis: deadpool_redis::Pool,
    prefix: String,
    limits: LoginLimits,
    /// This replica's own counts, used while Redis does not answer: (failures, first failure).
    local: Cache<String, (usize, Instant)>,
    check: Script,
    fail: Script,
}

impl LoginLimiter {
    pub fn new(redis: deadpool_redis::Pool, prefix: &str, limits: LoginLimits) -> Self {
        let local = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(limits.window)
            .build();
        Self {
            redis,
            prefix: format!("{prefix}login:"),
            limits,
            local,
            check: Script::new(CHECK),
            fail: Script::new(FAIL),
        }
    }

    /// The keys of an attempt with their limits: the account's, and the address's when known.
    fn keys(&self, email: &str, address: Option<IpAddr>) -> Vec<(String, usize)> {
        let account = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let mut keys = vec![(
            format!("{}a:{}", self.prefix, hex::encode(&account[..16])),
            self.limits.per_account,
        )];
        if let Some(address) = address {
            keys.push((
                format!("{}ip:{address}", self.prefix),
                self.limits.per_address,
            ));
        }
        keys
    }

    /// `Some(seconds)` when an attempt for `email` from `address` must be refused for now.
    pub async fn refused(&self, email: &str, address: Option<IpAddr>) -> Option<u32> {
        let keys = self.keys(email, address);
        let mut script = self.check.prepare_invoke();
        for (key, limit) in &keys {
            script.key(key).arg(*limit);
        }
        let answered = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut connection = self.redis.get().await.ok()?;
            script.invoke_async::<u32>(&mut connection).await.ok()
        })
        .await
        .ok()
        .flatten();
        let retry_after = match answered {
            Some(seconds) => seconds,
            None => self.refused_locally(&keys),
        };
        (retry_after > 0).then_some(retry_after)
    }

    /// Counts a failed attempt.
    pub async fn failed(&self, email: &str, address: Option<IpAddr>) {
        let keys = self.keys(email, address);
        let mut script = self.fail.prepare_invoke();
        for (key, _) in &keys {
            script.key(key);
        }
        script.arg(self.limits.window.as_secs());
        let counted = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut connection = self.redis.get().await.ok()?;
            script.invoke_async::<i64>(&mut connection).await.ok()
        })
        .await
        .ok()
        .flatten();
        if counted.is_none() {
            tracing::warn!("Redis did not count a failed login; counting it in this replica");
            for (key, _) in keys {
                let now = Instant::now();
                let (count, since) = self.local.get(&key).unwrap_or((0, now));
                self.local.insert(key, (count + 1, since));
            }
        }
    }

    /// Clears the account's count after a successful login.
    pub async fn succeeded(&self, email: &str) {
        let (key, _) = self.keys(email, None).remove(0);
        self.local.invalidate(&key);
        let _ = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut connection = self.redis.get().await.ok()?;
            deadpool_redis::redis::cmd("DEL")
                .arg(&key)
                .query_async::<i64>(&mut connection)
                .await
                .ok()
        })
        .await;
    }

    fn refused_locally(&self, keys: &[(String, usize)]) -> u32 {
        keys.iter()
            .find_map(|(key, limit)| {
                let (count, since) = self.local.get(key)?;
                let left = self.limits.window.checked_sub(since.elapsed())?;
                (count >= *limit).then(|| left.as_secs().max(1) as u32)
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LoginLimits,
    }

    #[test]
    fn the_default_is_what_the_flags_default_to() {
        let parsed = Flags::try_parse_from(["kai-api"]).unwrap().limits;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", LoginLimits::default())
        );
    }
}
