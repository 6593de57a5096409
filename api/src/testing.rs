//! Starts the real API in-process on port 0 in an isolated test environment, for the
//! integration tests of this crate and of the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kai_common::config::SecretsConfig;
use kai_common::testing::TestEnv;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::state::AppState;

pub struct RunningApi {
    pub state: Arc<AppState>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The operations port (`/metrics`, health), always served on a free port.
    pub ops_base: String,
    pub addr: SocketAddr,
    pub server: JoinHandle<()>,
}

/// Serves the API for `env` until `shutdown` is cancelled.
pub async fn start(env: &TestEnv, shutdown: CancellationToken) -> RunningApi {
    start_with(env, shutdown, |_| {}).await
}

/// Like `start`, with the configuration adjusted first (e.g. a dependency made unreachable).
pub async fn start_with(
    env: &TestEnv,
    shutdown: CancellationToken,
    adjust: impl FnOnce(&mut ApiConfig),
) -> RunningApi {
    kai_common::tls::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local address");
    let base = format!("http://{addr}");
    let mut config = ApiConfig {
        common: env.common_config(),
        secrets: SecretsConfig {
            jwt_secret: None,
            jwt_secrets_previous: Default::default(),
            encryption: Default::default(),
        },
        // Test servers (echo, redirect...) listen on loopback.
        outbound: kai_common::outbound::OutboundConfig::allowing("127.0.0.1"),
        addr,
        public_url: base.clone(),
        jwt_ttl: Duration::from_secs(3600),
        trusted_proxies: Default::default(),
        max_inflight_body_bytes: 32 << 20,
        models: Default::default(),
        vector_index: Default::default(),
        connections: Default::default(),
        login_limits: Default::default(),
        // The operations port is bound below on a free port.
        ops_addr: crate::config::OptionalAddr(None),
        public_metrics: true,
    };
    adjust(&mut config);
    let state = crate::build_state(&config).await.expect("API state");
    let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let ops_base = format!("http://{}", ops.local_addr().expect("local address"));
    let server = tokio::spawn({
        let state = state.clone();
        let limits = config.connections.clone();
        async move {
            crate::serve(state, listener, Some(ops), shutdown, &limits)
                .await
                .expect("API serves")
        }
    });
    RunningApi {
        state,
        base,
        ops_base,
        addr,
        server,
    }
}

/// Signs up `email` on the API at `base` and returns an access token.
pub async fn access_token(base: &str, email: &str) -> String {
    let client = reqwest::Client::new();
    let credentials = serde_json::json!({"email": email, "password": "correct-horse-battery"});
    let signup = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup answers");
    assert!(signup.status().is_success(), "signup: {}", signup.status());
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("login answers JSON");
    login["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
