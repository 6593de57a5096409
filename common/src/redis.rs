//! Redis connection pool. Redis holds rate limits and caches only; it is never the only copy of
//! anything, so every caller must keep working (degraded) when it is unreachable.

use std::time::Duration;

use deadpool_redis::{Config, Pool, Runtime};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid REDIS_URL: {0}")]
    Config(#[from] deadpool_redis::CreatePoolError),
    #[error("redis unreachable: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis command failed: {0}")]
    Command(#[from] deadpool_redis::redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Builds a pool; connections are opened lazily, so this succeeds while Redis is down.
pub fn pool(url: &SecretString) -> Result<Pool, RedisError> {
    let mut config = Config::from_url(url.expose_secret());
    let mut pool_config = deadpool_redis::PoolConfig::new(32);
    pool_config.timeouts.wait = Some(Duration::from_secs(2));
    pool_config.timeouts.create = Some(Duration::from_secs(2));
    pool_config.timeouts.recycle = Some(Duration::from_secs(2));
    config.pool = Some(pool_config);
    Ok(config.create_pool(Some(Runtime::Tokio1))?)
}

/// Sends PING, bounded by `timeout`.
pub async fn ping(pool: &Pool, timeout: Duration) -> Result<(), RedisError> {
    let check = async {
        let mut conn = pool.get().await?;
        let _: String = deadpool_redis::redis::cmd("PING")
            .query_async(&mut conn)
            .await?;
        Ok::<(), RedisError>(())
    };
    tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| RedisError::Timeout(timeout))?
}

/// A cached value, or `None` when absent or Redis is unavailable (a cache miss, never an error).
pub async fn cached(pool: &Pool, key: &str, timeout: Duration) -> Option<String> {
    let read = async {
        let mut conn = pool.get().await?;
        let value: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await?;
        Ok::<_, RedisError>(value)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cache read failed");
            None
        }
        Err(_) => None,
    }
}

/// Caches `value` for `ttl`, best effort (a failure only costs a later miss).
pub async fn cache(pool: &Pool, key: &str, value: &str, ttl: Duration, timeout: Duration) {
    let write = async {
        let mut conn = pool.get().await?;
        let () = deadpool_redis::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok::<_, RedisError>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(timeout, write).await {
        tracing::debug!(error = %e, "cache write failed");
    }
}
