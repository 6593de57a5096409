//! Redis connection pool. Redis holds rate limits and caches only; it is never the only copy of
//! anything, so every caller must keep working (degraded) when it is unreachable.

use std::time::Duration;

use deadpool_redis::redis::IntoConnectionInfo;
use deadpool_redis::redis::io::tcp::TcpSettings;
use deadpool_redis::{Manager, Pool, Runtime};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid REDIS_URL: {0}")]
    Config(String),
    #[error("redis unreachable: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis command failed: {0}")]
    Command(#[from] deadpool_redis::redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Builds a pool; connections are opened lazily, so this succeeds while Redis is down.
pub fn pool(url: &SecretString) -> Result<Pool, RedisError> {
    // The URL is a secret (it may hold a password): the error names what is wrong, not it.
    let info = url
        .expose_secret()
        .into_connection_info()
        .map_err(|e| RedisError::Config(e.to_string()))?
        // redis-rs leaves Nagle's algorithm on by default: a pipelined call written in more
        // than one segment then waits for Redis's delayed ACK (up to 40 ms) before its rest.
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let manager = Manager::new(info).map_err(|e| RedisError::Config(e.to_string()))?;
    let mut pool_config = deadpool_redis::PoolConfig::new(32);
    pool_config.timeouts.wait = Some(Duration::from_secs(2));
    pool_config.timeouts.create = Some(Duration::from_secs(2));
    pool_config.timeouts.recycle = Some(Duration::from_secs(2));
    Pool::builder(manager)
        .config(pool_config)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| RedisError::Config(e.to_string()))
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

#[cfg(all(test, feature = "testing", target_os = "linux"))]
mod tests {
    use super::*;
    use crate::testing::nodelay_of_local_port;

    #[tokio::test]
    async fn every_pooled_connection_to_redis_has_tcp_nodelay() {
        let config = crate::testing::TestEnv::new().common_config();
        let pool = pool(&config.redis_url).unwrap();
        let mut connections = Vec::new();
        for _ in 0..3 {
            connections.push(pool.get().await.unwrap());
        }
        for connection in &mut connections {
            // `addr=` is the client's side of the connection, as Redis sees it (loopback).
            let info: String = deadpool_redis::redis::cmd("CLIENT")
                .arg("INFO")
                .query_async(connection)
                .await
                .unwrap();
            let port: u16 = info
                .split_whitespace()
                .find_map(|field| field.strip_prefix("addr="))
                .and_then(|addr| addr.rsplit(':').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no client address in {info}"));
            assert_eq!(
                nodelay_of_local_port(port),
                Some(true),
                "the connection from port {port}"
            );
        }
    }

    #[test]
    fn a_malformed_url_is_named_without_being_repeated() {
        let url = SecretString::from("redis://user:s3cret@[not-a-host");
        let error = pool(&url).expect_err("refused").to_string();
        assert!(error.starts_with("invalid REDIS_URL"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
