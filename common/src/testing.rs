//! Integration-test isolation: each test gets its own database and NATS prefix on the real
//! PostgreSQL and NATS servers, so tests run in parallel without seeing each other.

pub mod deployment;
pub mod fake_openai;
pub mod nats_cluster;

use secrecy::SecretString;
use uuid::Uuid;

use crate::config::{CommonConfig, Environment};

/// Where the tests' services are; overridable like the binaries' own config.
fn base_database_url() -> String {
    std::env::var("KAI_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

const TEST_POOL: usize = 6;

/// The NATS server the tests use (`NATS_URL`, else the local one).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Whether `name` is a stream a test environment creates (`T` + 12 hex digits + a suffix).
pub fn is_test_stream(name: &str) -> bool {
    let Some((prefix, suffix)) = name.split_once('_') else {
        return false;
    };
    prefix.len() == 13
        && prefix.starts_with('T')
        && prefix[1..].bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(suffix, "JOBS" | "DLQ" | "EVENTS")
}

/// A fresh, isolated environment for one test.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub database_name: String,
    pub prefix: String,
}

impl TestEnv {
    pub fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self {
            database_name: format!("kai_test_{}", &id[..16]),
            prefix: format!("t{}", &id[..12]),
        }
    }

    pub fn database_url(&self) -> String {
        format!(
            "{}/{}",
            base_database_url().trim_end_matches('/'),
            self.database_name
        )
    }

    pub fn common_config(&self) -> CommonConfig {
        CommonConfig {
            database_url: SecretString::from(self.database_url()),
            nats_url: SecretString::from(nats_url()),
            redis_url: SecretString::from(
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            ),
            nats_prefix: self.prefix.clone(),
            jobs_max_messages: 10_000_000,
            jobs_max_bytes: 0,
            stream_replicas: 1,
            // Tests run in parallel against one server with 100 connections.
            database_max_connections: TEST_POOL,
            environment: Environment::Development,
        }
    }

    /// The environment variables a spawned binary needs to join this environment.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url()),
            ("KAI_NATS_PREFIX", self.prefix.clone()),
            ("KAI_ENV", "development".to_owned()),
            ("KAI_DATABASE_MAX_CONNECTIONS", TEST_POOL.to_string()),
        ]
    }

    /// Drops the database and the NATS streams of this environment.
    pub async fn cleanup(&self) {
        let names = crate::nats::Names::new(&self.prefix);
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(names.jobs_stream()).await;
            let _ = js.delete_stream(names.dlq_stream()).await;
            let _ = js.delete_stream(names.events_stream()).await;
        }
        let admin = format!("{}/postgres", base_database_url().trim_end_matches('/'));
        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
            let statement = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database_name
            );
            let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The `host:port` of the service a URL variable names (`NATS_URL`, `REDIS_URL`), `default`
/// when unset: what a test's `TcpProxy` forwards to.
pub fn service_addr(variable: &str, default: &str) -> std::net::SocketAddr {
    addr_of(&std::env::var(variable).unwrap_or_else(|_| default.to_owned()))
}

/// The `host:port` a service URL points at (`localhost` read as 127.0.0.1).
pub fn addr_of(service_url: &str) -> std::net::SocketAddr {
    let url = url::Url::parse(service_url).expect("a service URL");
    let host = match url.host_str().expect("a host") {
        "localhost" => "127.0.0.1",
        host => host,
    };
    let port = url.port_or_known_default().unwrap_or(match url.scheme() {
        "postgres" | "postgresql" => 5432,
        "nats" => 4222,
        "redis" => 6379,
        _ => 0,
    });
    format!("{host}:{port}")
        .parse()
        .expect("a numeric host and port")
}

/// A free port on loopback for a process a test spawns.
pub async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

/// A one-page PDF showing `text` in Helvetica, with a correct cross-reference table.
pub fn one_page_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Whether the TCP socket of this process whose local port is `port` has `TCP_NODELAY`
/// (`None`: no such socket, or it cannot be looked at).
#[cfg(target_os = "linux")]
pub fn nodelay_of_local_port(port: u16) -> Option<bool> {
    nodelay_of(|local, _| local.port() == port)
}

/// Whether this process's TCP socket from local port `local` to peer port `peer` has
/// `TCP_NODELAY` (a server's accepted connection, told apart from the client's own end).
#[cfg(target_os = "linux")]
pub fn nodelay_between(local: u16, peer: u16) -> Option<bool> {
    nodelay_of(|l, p| l.port() == local && p.port() == peer)
}

#[cfg(target_os = "linux")]
fn nodelay_of(
    matches: impl Fn(std::net::SocketAddr, std::net::SocketAddr) -> bool,
) -> Option<bool> {
    let mut found = None;
    crate::db_nodelay::for_each_tcp_socket(|socket, local, peer| {
        if matches(local, peer) {
            found = rustix::net::sockopt::tcp_nodelay(socket).ok();
        }
    });
    found
}
