//! Configuration shared by every process: connection URLs, the NATS prefix, the environment and
//! the secrets. Each value is an environment variable and also a command-line flag; an invalid
//! value stops the process with a message that names the variable.

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// Development-only defaults; refused when `KAI_ENV=production`.
const DEV_JWT_SECRET: &str = "kai-development-jwt-secret-do-not-use-in-production";
const DEV_ENCRYPTION_KEY: &str = "kai-development-encryption-key-do-not-use-in-production";
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

/// Connections every process needs.
#[derive(Debug, Clone, Args)]
pub struct CommonConfig {
    /// PostgreSQL URL; the database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL",
          default_value = "postgres://postgres@127.0.0.1:5432/kai",
          value_parser = parse_postgres_url, hide_default_value = false)]
    pub database_url: SecretString,

    /// NATS server URL (JetStream must be enabled), or several seed servers of one cluster,
    /// comma-separated: the client connects to any of them and learns the rest of the cluster.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL",
          default_value = "nats://127.0.0.1:4222", value_parser = parse_nats_url)]
    pub nats_url: SecretString,

    /// Servers holding a copy of each stream (jobs, dead letters, events): 1 on a single
    /// server, 3 on a cluster so that losing one server loses no accepted job and stops no
    /// ingestion. Applied at start: an existing stream is brought to this count.
    #[arg(long, env = "KAI_NATS_STREAM_REPLICAS", value_name = "KAI_NATS_STREAM_REPLICAS",
          default_value = "1", value_parser = parse_replicas)]
    pub stream_replicas: usize,

    /// Redis URL (rate limits and caches; never the only copy of anything).
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL",
          default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url)]
    pub redis_url: SecretString,

    /// Prefix of every JetStream stream, consumer and subject name, so tests and tenants can
    /// share a NATS server.
    #[arg(long, env = "KAI_NATS_PREFIX", value_name = "KAI_NATS_PREFIX",
          default_value = "kai", value_parser = parse_prefix)]
    pub nats_prefix: String,

    /// Most jobs the queue holds; beyond it webhook ingress answers 503 with `Retry-After`
    /// instead of accepting work it cannot store.
    #[arg(long, env = "KAI_JOBS_MAX_MESSAGES", value_name = "KAI_JOBS_MAX_MESSAGES",
          default_value = "10000000", value_parser = parse_positive)]
    pub jobs_max_messages: usize,

    /// Most bytes the job queue holds (0: only JetStream's own storage limit).
    #[arg(
        long,
        env = "KAI_JOBS_MAX_BYTES",
        value_name = "KAI_JOBS_MAX_BYTES",
        default_value = "0"
    )]
    pub jobs_max_bytes: u64,

    /// Most connections this process opens to PostgreSQL.
    #[arg(long, env = "KAI_DATABASE_MAX_CONNECTIONS", value_name = "KAI_DATABASE_MAX_CONNECTIONS",
          default_value = "16", value_parser = parse_positive)]
    pub database_max_connections: usize,

    /// `development` allows built-in secrets (with a warning); `production` requires them.
    #[arg(
        long = "env",
        env = "KAI_ENV",
        value_name = "KAI_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,
}

/// Secrets used by the API (tokens) and by API and worker (credential encryption).
#[derive(Debug, Clone, Args)]
pub struct SecretsConfig {
    /// HMAC key that signs access tokens (at least 32 characters).
    #[arg(long, env = "KAI_JWT_SECRET", value_name = "KAI_JWT_SECRET", hide_env_values = true,
          value_parser = parse_secret)]
    pub jwt_secret: Option<SecretString>,

    /// Secrets that signed access tokens before the current one, comma-separated: their tokens
    /// are still accepted until they expire or the secret is removed from this list. Empty (or
    /// unset) when there is none.
    #[arg(long, env = "KAI_JWT_SECRETS_PREVIOUS", value_name = "KAI_JWT_SECRETS_PREVIOUS",
          hide_env_values = true, default_value = "", value_parser = parse_secret_list)]
    pub jwt_secrets_previous: SecretList,

    #[command(flatten)]
    pub encryption: EncryptionKeysConfig,
}

/// The keys stored credentials are sealed and opened with (API and worker).
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptionKeysConfig {
    /// Key that encrypts stored credentials (at least 32 characters).
    #[arg(long, env = "KAI_ENCRYPTION_KEY", value_name = "KAI_ENCRYPTION_KEY",
          hide_env_values = true, value_parser = parse_secret)]
    pub encryption_key: Option<SecretString>,

    /// Keys that encrypted credentials before the current one, comma-separated: they still
    /// decrypt until `kai-api rotate-credentials` has re-encrypted everything under
    /// `KAI_ENCRYPTION_KEY`, and can then be removed.
    /// Empty (or unset) when there is none.
    #[arg(long, env = "KAI_ENCRYPTION_KEYS_PREVIOUS", value_name = "KAI_ENCRYPTION_KEYS_PREVIOUS",
          hide_env_values = true, default_value = "", value_parser = parse_secret_list)]
    pub encryption_keys_previous: SecretList,
}

impl EncryptionKeysConfig {
    /// The key ring under the environment's rules (production requires `KAI_ENCRYPTION_KEY`).
    pub fn key_ring(
        &self,
        environment: Environment,
    ) -> Result<crate::credentials::KeyRing, MissingSecret> {
        let current = pick(
            &self.encryption_key,
            "KAI_ENCRYPTION_KEY",
            DEV_ENCRYPTION_KEY,
            environment,
        )?;
        Ok(crate::credentials::KeyRing::new(
            &current,
            &self.encryption_keys_previous.0,
        ))
    }
}

/// Secrets after the environment's rules were applied.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub jwt_secret: SecretString,
    pub jwt_secrets_previous: Vec<SecretString>,
    pub encryption_key: SecretString,
    pub encryption_keys_previous: Vec<SecretString>,
}

impl Secrets {
    /// The keys credentials are sealed and opened with.
    pub fn key_ring(&self) -> crate::credentials::KeyRing {
        crate::credentials::KeyRing::new(&self.encryption_key, &self.encryption_keys_previous)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{variable} is required when KAI_ENV=production")]
pub struct MissingSecret {
    pub variable: &'static str,
}

impl SecretsConfig {
    /// Applies the environment's rules: production requires every secret; development falls
    /// back to a built-in value and says so loudly.
    pub fn resolve(&self, environment: Environment) -> Result<Secrets, MissingSecret> {
        Ok(Secrets {
            jwt_secret: pick(
                &self.jwt_secret,
                "KAI_JWT_SECRET",
                DEV_JWT_SECRET,
                environment,
            )?,
            jwt_secrets_previous: self.jwt_secrets_previous.0.clone(),
            encryption_key: pick(
                &self.encryption.encryption_key,
                "KAI_ENCRYPTION_KEY",
                DEV_ENCRYPTION_KEY,
                environment,
            )?,
            encryption_keys_previous: self.encryption.encryption_keys_previous.0.clone(),
        })
    }
}

fn pick(
    value: &Option<SecretString>,
    variable: &'static str,
    dev_default: &str,
    environment: Environment,
) -> Result<SecretString, MissingSecret> {
    match (value, environment) {
        (Some(secret), _) => Ok(secret.clone()),
        (None, Environment::Production) => Err(MissingSecret { variable }),
        (None, Environment::Development) => {
            tracing::warn!(
                variable,
                "!!! {variable} is not set: using a built-in DEVELOPMENT secret. Anyone can forge \
                 or read what it protects. Set {variable} (KAI_ENV=production refuses to start \
                 without it) !!!"
            );
            Ok(SecretString::from(dev_default.to_owned()))
        }
    }
}

fn parse_url_with_schemes(value: &str, schemes: &[&str]) -> Result<SecretString, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!("scheme must be one of {}", schemes.join(", ")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_postgres_url(value: &str) -> Result<SecretString, String> {
    let parsed = parse_url_with_schemes(value, &["postgres", "postgresql"])?;
    let url = url::Url::parse(value).map_err(|e| e.to_string())?;
    if url.path().trim_start_matches('/').is_empty() {
        return Err("the URL names no database".to_owned());
    }
    Ok(parsed)
}

fn parse_nats_url(value: &str) -> Result<SecretString, String> {
    // A comma-separated list of servers is allowed, as the NATS client accepts it.
    for server in value.split(',') {
        parse_url_with_schemes(server.trim(), &["nats", "tls", "ws", "wss"])?;
    }
    Ok(SecretString::from(value.to_owned()))
}

/// JetStream keeps at most 5 copies of a stream.
pub const MAX_STREAM_REPLICAS: usize = 5;

fn parse_replicas(value: &str) -> Result<usize, String> {
    match parse_positive(value)? {
        n if n <= MAX_STREAM_REPLICAS => Ok(n),
        _ => Err(format!(
            "must be 1 to {MAX_STREAM_REPLICAS} (JetStream's limit)"
        )),
    }
}

fn parse_redis_url(value: &str) -> Result<SecretString, String> {
    parse_url_with_schemes(value, &["redis", "rediss"])
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("use 1 to 32 letters, digits, '_' or '-'".to_owned())
    }
}

/// Secrets given as one comma-separated value; empty entries are ignored.
#[derive(Debug, Clone, Default)]
pub struct SecretList(pub Vec<SecretString>);

fn parse_secret_list(value: &str) -> Result<SecretList, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_secret)
        .collect::<Result<_, _>>()
        .map(SecretList)
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.len() < MIN_SECRET_LEN {
        return Err(format!("must be at least {MIN_SECRET_LEN} characters"));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// Parses a positive integer (used for sizes and counts).
pub fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a positive number of seconds.
pub fn parse_seconds(value: &str) -> Result<std::time::Duration, String> {
    parse_positive(value).map(|s| std::time::Duration::from_secs(s as u64))
}

/// A URL without user information, for logs; each server of a comma-separated list alike.
pub fn redact_url(url: &SecretString) -> String {
    url.expose_secret()
        .split(',')
        .map(|server| match url::Url::parse(server.trim()) {
            Ok(mut parsed) => {
                let _ = parsed.set_password(None);
                let _ = parsed.set_username("");
                parsed.to_string()
            }
            Err(_) => "<unparseable url>".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_requires_secrets() {
        let config = SecretsConfig {
            jwt_secret: None,
            jwt_secrets_previous: Default::default(),
            encryption: EncryptionKeysConfig::default(),
        };
        let err = config.resolve(Environment::Production).unwrap_err();
        assert_eq!(err.variable, "KAI_JWT_SECRET");
        assert!(config.resolve(Environment::Development).is_ok());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse_postgres_url("mysql://x/db").is_err());
        assert!(parse_postgres_url("postgres://host").is_err());
        assert!(parse_prefix("a.b").is_err());
        assert!(parse_secret("short").is_err());
        assert!(parse_positive("0").is_err());
        assert!(parse_nats_url("nats://a:4222,nats://b:4222").is_ok());
        assert!(parse_nats_url("nats://a:4222,http://b").is_err());
        assert!(parse_replicas("0").is_err());
        assert!(parse_replicas("6").is_err());
        assert_eq!(parse_replicas("3"), Ok(3));
    }

    #[test]
    fn redacts_credentials() {
        let url = SecretString::from("postgres://user:hunter2@db/kai".to_owned());
        assert!(!redact_url(&url).contains("hunter2"));
        let seeds = SecretString::from("nats://u:pw1@a:4222, nats://u:pw2@b:4222".to_owned());
        assert_eq!(redact_url(&seeds), "nats://a:4222,nats://b:4222");
    }
}
