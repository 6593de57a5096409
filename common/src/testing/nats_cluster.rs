//! A private NATS deployment for tests that need what the shared server cannot give: several
//! JetStream servers clustered by routes on loopback (replicated streams, a server killed), or
//! a monitoring endpoint. Each server is a `nats-server` process with its own ports and store,
//! killed and removed when the value is dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server` process of the deployment.
struct Server {
    name: String,
    client_port: u16,
    monitor_port: u16,
    config: PathBuf,
    process: Option<Child>,
}

pub struct NatsCluster {
    dir: PathBuf,
    servers: Vec<Server>,
}

impl NatsCluster {
    /// Starts `size` JetStream servers (a cluster when `size` > 1) and waits until JetStream
    /// answers through them (a meta leader is elected).
    pub async fn start(size: usize) -> Self {
        assert!(size >= 1, "a deployment has at least one server");
        let dir = std::env::temp_dir().join(format!("kai-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the servers' directory");
        let ports: Vec<[u16; 3]> = free_ports(3 * size)
            .chunks(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        let routes = ports
            .iter()
            .map(|[_, route, _]| format!("nats-route://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(", ");
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, &[client_port, route_port, monitor_port])| {
                let name = format!("n{}", i + 1);
                let store = dir.join(&name);
                let cluster = if size > 1 {
                    format!(
                        "cluster {{ name: kai-test, listen: \"127.0.0.1:{route_port}\", \
                         routes: [{routes}] }}"
                    )
                } else {
                    String::new()
                };
                let config = dir.join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\nlisten: \"127.0.0.1:{client_port}\"\n\
                         http: \"127.0.0.1:{monitor_port}\"\n\
                         jetstream {{ store_dir: \"{}\" }}\n{cluster}\n",
                        store.display()
                    ),
                )
                .expect("write a server's configuration");
                Server {
                    name,
                    client_port,
                    monitor_port,
                    config,
                    process: None,
                }
            })
            .collect();
        let mut cluster = Self { dir, servers };
        for i in 0..size {
            cluster.restart(i);
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every server's client URL, comma-separated (a `NATS_URL` with several seeds).
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s monitoring endpoint (`http://host:port`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.servers[i].monitor_port)
    }

    /// Server `i`'s name (`n1`, `n2`...), as stream and cluster infos report it.
    pub fn server_name(&self, i: usize) -> &str {
        &self.servers[i].name
    }

    /// Kills server `i` at once (SIGKILL), as a machine lost.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.servers[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts server `i` (again), with the store it had.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let server = &mut self.servers[i];
        let process = Command::new(server_binary())
            .arg("-c")
            .arg(&server.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (scripts/setup-services.sh installs it)");
        server.process = Some(process);
    }

    /// Waits until every running server accepts clients and JetStream answers requests.
    pub async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.jetstream_answers().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS servers did not elect a JetStream leader within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn jetstream_answers(&self) -> bool {
        for server in self.servers.iter().filter(|s| s.process.is_some()) {
            let url = format!("nats://127.0.0.1:{}", server.client_port);
            let Ok(client) = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(url)
                .await
            else {
                return false;
            };
            if !jetstream_ready(&client).await {
                return false;
            }
        }
        true
    }
}

/// Whether JetStream answers its account-information request through `client` without an
/// error. Read as plain JSON: this client's typed answer wants fields NATS 2.9 does not send.
pub async fn jetstream_ready(client: &async_nats::Client) -> bool {
    let request = client.request("$JS.API.INFO", bytes::Bytes::new());
    let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(2), request).await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&answer.payload)
        .is_ok_and(|info| info.get("error").is_none() && info.get("memory").is_some())
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nats-server to run: `KAI_NATS_SERVER`, else the recent one `scripts/setup-services.sh`
/// installs for clusters (Debian's 2.9 loses acknowledged messages as a cluster), else the one on
/// the `PATH`.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KAI_NATS_SERVER") {
        return path.into();
    }
    let tools = std::env::var_os("KAI_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kai-fusion/tools"))
        });
    tools
        .map(|tools| tools.join("nats/bin/nats-server"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// `count` distinct ports free on loopback now (all held until all are chosen, so none is
/// given twice); the servers bind them soon after.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}
