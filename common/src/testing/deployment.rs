//! The deployment files (Dockerfile, docker-compose.yml, the Helm chart) read back for tests.
//! Each binary's tests check them against the binary's own configuration, so a renamed
//! variable, a moved port or a changed health path cannot drift from what operators deploy.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::healthcheck::{LIVENESS_PATH, READINESS_PATH};

/// The release name the chart is rendered with: resource names are `kai-fusion-<component>`.
pub const RELEASE: &str = "kai-fusion";
/// Where the image installs the binaries.
pub const BIN_DIR: &str = "/usr/local/bin";
/// The image's user (distroless "nonroot"); the chart must run as the same.
pub const IMAGE_USER: i64 = 65532;

/// Variables every binary reads outside its clap configuration: logging, the Rust runtime's
/// backtraces, and OpenTelemetry's standard `OTEL_*` variables (matched by prefix).
const RUNTIME_VARIABLES: &[&str] = &["RUST_LOG", "KAI_LOG_FORMAT", "RUST_BACKTRACE"];

/// What a binary is configured by, read from its command line definition.
#[derive(Debug, Clone)]
pub struct Binary {
    /// `api`, `worker` or `scheduler`: the chart's and compose file's name for it.
    pub component: &'static str,
    /// `kai-api` etc.
    pub name: &'static str,
    /// The port of its default `--addr`.
    pub port: u16,
    /// The variable that sets its address (`KAI_API_ADDR` etc.).
    pub addr_variable: String,
    /// Every environment variable it reads.
    pub variables: BTreeSet<String>,
}

impl Binary {
    /// Reads the variables and the default address from the binary's clap command.
    pub fn from_command(
        component: &'static str,
        name: &'static str,
        command: clap::Command,
    ) -> Self {
        let mut variables: BTreeSet<String> =
            RUNTIME_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        let mut addr = None;
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                variables.insert(env.to_string_lossy().into_owned());
            }
            if arg.get_id() == "addr" {
                let default = arg
                    .get_default_values()
                    .first()
                    .expect("--addr has a default");
                let socket: SocketAddr =
                    default.to_string_lossy().parse().expect("a socket address");
                let variable = arg.get_env().expect("--addr has a variable");
                addr = Some((socket.port(), variable.to_string_lossy().into_owned()));
            }
        }
        let (port, addr_variable) = addr.expect("the binary has an --addr argument");
        Self {
            component,
            name,
            port,
            addr_variable,
            variables,
        }
    }

    /// Whether the binary reads `variable`.
    pub fn reads(&self, variable: &str) -> bool {
        self.variables.contains(variable) || variable.starts_with("OTEL_")
    }

    /// The path the image installs it at.
    pub fn path(&self) -> String {
        format!("{BIN_DIR}/{}", self.name)
    }

    /// The chart's name for its Deployment, Service, ConfigMap, PDB...
    pub fn resource_name(&self) -> String {
        format!("{RELEASE}-{}", self.component)
    }
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("common/ is inside the repository")
        .to_path_buf()
}

/// The Dockerfile's text.
pub fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile")
}

/// docker-compose.yml, with YAML anchors and merge keys resolved.
pub fn compose() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).expect("compose");
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    yaml.apply_merge().expect("merge keys resolve");
    serde_json::to_value(yaml).expect("compose as JSON")
}

/// The Helm binary installed by scripts/setup-deploy-tools.sh (or `KAI_HELM`).
pub fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("KAI_HELM") {
        return PathBuf::from(path);
    }
    let tools = std::env::var("KAI_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/kai-fusion/tools")
        });
    let helm = tools.join("helm/helm");
    assert!(
        helm.exists(),
        "{} is missing: run scripts/setup-deploy-tools.sh (scripts/test.sh does)",
        helm.display()
    );
    helm
}

/// The result of `helm template`.
#[derive(Debug, Clone)]
pub struct Manifests(pub Vec<Value>);

/// Renders the chart with a values file from `helm/kai-fusion/ci/` (`None`: the defaults) and
/// `--set` overrides; panics with Helm's message if it refuses.
pub fn render(values_file: Option<&str>, sets: &[&str]) -> Manifests {
    match try_render(values_file, sets) {
        Ok(manifests) => manifests,
        Err(message) => panic!("helm template failed: {message}"),
    }
}

/// Like `render`, returning Helm's error message when it refuses the values.
pub fn try_render(values_file: Option<&str>, sets: &[&str]) -> Result<Manifests, String> {
    try_render_on(None, values_file, sets)
}

/// Like `render`, for a cluster of the given Kubernetes version (Helm's default otherwise).
pub fn render_on(kubernetes: &str, values_file: Option<&str>, sets: &[&str]) -> Manifests {
    try_render_on(Some(kubernetes), values_file, sets)
        .unwrap_or_else(|message| panic!("helm template failed: {message}"))
}

fn try_render_on(
    kubernetes: Option<&str>,
    values_file: Option<&str>,
    sets: &[&str],
) -> Result<Manifests, String> {
    let chart = repo_root().join("helm/kai-fusion");
    let mut command = Command::new(helm());
    command
        .args(["template", RELEASE])
        .arg(&chart)
        .args(["--namespace", "kai"]);
    if let Some(version) = kubernetes {
        command.args(["--kube-version", version]);
    }
    if let Some(file) = values_file {
        command.arg("-f").arg(chart.join("ci").join(file));
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().expect("helm runs");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("YAML");
            serde_json::to_value(yaml).expect("manifest as JSON")
        })
        .filter(|doc| !doc.is_null())
        .collect();
    Ok(Manifests(docs))
}

impl Manifests {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|doc| doc["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} named {name} in the rendered chart"))
    }

    /// The first container of a component's Deployment.
    pub fn container(&self, binary: &Binary) -> &Value {
        &self.get("Deployment", &binary.resource_name())["spec"]["template"]["spec"]["containers"]
            [0]
    }

    /// Every variable a component's container gets (its ConfigMap's keys included), with the
    /// literal value where there is one.
    pub fn environment(&self, binary: &Binary) -> Vec<(String, Option<String>)> {
        let container = self.container(binary);
        let mut variables = Vec::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let name = source["configMapRef"]["name"]
                .as_str()
                .expect("configMapRef");
            let data = self.get("ConfigMap", name)["data"]
                .as_object()
                .expect("data");
            for (key, value) in data {
                variables.push((key.clone(), value.as_str().map(str::to_owned)));
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().expect("name").to_owned();
            variables.push((name, var["value"].as_str().map(str::to_owned)));
        }
        variables
    }

    /// The literal value the chart gives `variable` in a component's container.
    pub fn variable(&self, binary: &Binary, variable: &str) -> Option<String> {
        self.environment(binary)
            .into_iter()
            .find(|(name, _)| name == variable)
            .and_then(|(_, value)| value)
    }
}

/// The port number in a socket address value such as `0.0.0.0:9101`.
pub fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
        .port()
}

/// The Dockerfile builds the binary, installs it where the chart and compose run it from,
/// exposes its port and runs as the user the chart expects.
pub fn assert_image_ships(binary: &Binary) {
    let dockerfile = dockerfile();
    assert!(
        dockerfile.contains(&format!("target/release/{}", binary.name)),
        "the Dockerfile does not install {}",
        binary.name
    );
    assert!(
        dockerfile.contains(&format!("/out/ {BIN_DIR}/")),
        "the Dockerfile does not copy the binaries to {BIN_DIR}"
    );
    let exposed: Vec<u16> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse().expect("a port")))
        .collect();
    assert!(
        exposed.contains(&binary.port),
        "the Dockerfile does not EXPOSE {}'s port {} ({exposed:?})",
        binary.name,
        binary.port
    );
    assert!(
        dockerfile.contains(&format!("USER {IMAGE_USER}:{IMAGE_USER}")),
        "the image does not run as {IMAGE_USER}"
    );
}

/// The compose file runs the binary `replicas` times with only variables it reads, on its port,
/// health-checked by its own `healthcheck` and started only once what it needs is healthy.
pub fn assert_compose_runs(binary: &Binary, replicas: u64) {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let (name, service) = services
        .iter()
        .find(|(_, s)| s["command"] == serde_json::json!([binary.path()]))
        .unwrap_or_else(|| panic!("no compose service runs {}", binary.path()));
    assert_eq!(
        service["deploy"]["replicas"].as_u64().unwrap_or(1),
        replicas,
        "replicas of {name}"
    );
    let environment = service["environment"].as_object().expect("environment");
    for key in environment.keys() {
        assert!(
            binary.reads(key),
            "compose sets {key} for {}, which does not read it",
            binary.name
        );
    }
    let addr = environment[&binary.addr_variable]
        .as_str()
        .expect("the address is set");
    assert_eq!(
        port_of(addr),
        binary.port,
        "{name}'s {}",
        binary.addr_variable
    );
    for published in service["ports"].as_array().into_iter().flatten() {
        let mapping = published.as_str().expect("a short port mapping");
        let container_port: u16 = mapping.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(container_port, binary.port, "{name} publishes {mapping}");
    }
    assert_eq!(
        service["healthcheck"]["test"],
        serde_json::json!(["CMD", binary.path(), "healthcheck"]),
        "{name}'s healthcheck"
    );
    let depends_on = service["depends_on"].as_object().expect("depends_on");
    for (dependency, condition) in [
        ("nats", "service_healthy"),
        ("redis", "service_healthy"),
        ("migrate", "service_completed_successfully"),
    ] {
        assert_eq!(
            depends_on[dependency]["condition"], condition,
            "{name} starts before {dependency} is ready"
        );
    }
    let migrate = &services["migrate"];
    assert_eq!(
        migrate["command"],
        serde_json::json!([format!("{BIN_DIR}/kai-api"), "migrate"])
    );
    assert_eq!(
        migrate["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
}

/// The chart's Deployment runs the binary with only variables it reads, on its port, probed on
/// its health paths, locked down, and rolled when its settings change; its PDB and Service
/// select its pods.
pub fn assert_chart_runs(binary: &Binary, manifests: &Manifests) {
    let name = binary.resource_name();
    let deployment = manifests.get("Deployment", &name);
    let pod = &deployment["spec"]["template"];
    let container = manifests.container(binary);
    assert_eq!(
        container["command"],
        serde_json::json!([binary.path()]),
        "{name}'s command"
    );

    let ports = container["ports"].as_array().expect("ports");
    assert_eq!(ports[0]["name"], "http");
    // Besides its port, the API has its operations port, where the chart says it listens.
    for extra in &ports[1..] {
        assert_eq!(extra["name"], "metrics", "{name}'s ports");
        let ops = manifests
            .variable(binary, "KAI_API_OPS_ADDR")
            .expect("the operations address is set");
        assert_eq!(
            extra["containerPort"].as_u64(),
            Some(u64::from(port_of(&ops))),
            "{name}'s operations port"
        );
    }
    assert!(ports.len() <= 2, "{name} has {} ports", ports.len());
    assert_eq!(
        ports[0]["containerPort"].as_u64(),
        Some(u64::from(binary.port)),
        "{name}'s port"
    );

    for (variable, _) in manifests.environment(binary) {
        assert!(
            binary.reads(&variable),
            "the chart sets {variable} for {}, which does not read it",
            binary.name
        );
    }
    let addr = manifests
        .variable(binary, &binary.addr_variable)
        .expect("the address is set");
    assert_eq!(
        port_of(&addr),
        binary.port,
        "{name}'s {}",
        binary.addr_variable
    );

    for (probe, path) in [
        ("startupProbe", LIVENESS_PATH),
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ] {
        assert_eq!(
            container[probe]["httpGet"]["path"], path,
            "{name}'s {probe}"
        );
        assert_eq!(
            container[probe]["httpGet"]["port"], "http",
            "{name}'s {probe}"
        );
    }

    let pod_security = &pod["spec"]["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true, "{name} may run as root");
    assert_eq!(
        pod_security["runAsUser"].as_i64(),
        Some(IMAGE_USER),
        "{name}'s user"
    );
    let security = &container["securityContext"];
    assert_eq!(
        security["readOnlyRootFilesystem"], true,
        "{name}'s root filesystem is writable"
    );
    assert_eq!(
        security["allowPrivilegeEscalation"], false,
        "{name} may escalate"
    );
    assert_eq!(
        security["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{name}'s capabilities"
    );
    assert_eq!(
        pod["spec"]["automountServiceAccountToken"], false,
        "{name} mounts a token"
    );

    let checksum = pod["metadata"]["annotations"]["checksum/config"].as_str();
    assert!(
        checksum.is_some_and(|c| c.len() == 64),
        "{name} has no checksum/config annotation"
    );

    let pod_labels = &pod["metadata"]["labels"];
    let selects_pods = |selector: &Value| {
        selector
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(key, value)| &pod_labels[key] == value)
    };
    assert!(selects_pods(&deployment["spec"]["selector"]["matchLabels"]));
    let pdb = manifests.get("PodDisruptionBudget", &name);
    assert!(
        selects_pods(&pdb["spec"]["selector"]["matchLabels"]),
        "{name}'s PDB"
    );
    let service = manifests.get("Service", &name);
    assert!(
        selects_pods(&service["spec"]["selector"]),
        "{name}'s Service"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
}

/// `checksum/config` of a component's pods (`api`, `worker`, `scheduler`).
pub fn config_checksum(manifests: &Manifests, component: &str) -> String {
    manifests.get("Deployment", &format!("{RELEASE}-{component}"))["spec"]["template"]["metadata"]
        ["annotations"]["checksum/config"]
        .as_str()
        .expect("checksum/config")
        .to_owned()
}

/// The chart configurations CI renders (`None`: the default values).
pub const CONFIGURATIONS: &[Option<&str>] = &[
    None,
    Some("keda-values.yaml"),
    Some("ingress-values.yaml"),
    Some("servicemonitor-values.yaml"),
    Some("networkpolicy-values.yaml"),
    Some("existing-secret-values.yaml"),
    Some("everything-values.yaml"),
];

/// The image, the compose file (running the binary `compose_replicas` times) and every chart
/// configuration CI renders run the binary as it is configured.
pub fn assert_every_deployment_runs(binary: &Binary, compose_replicas: u64) {
    assert_image_ships(binary);
    assert_compose_runs(binary, compose_replicas);
    for configuration in CONFIGURATIONS {
        assert_chart_runs(binary, &render(*configuration, &[]));
    }
}

/// Runs one of the image's binaries as compose and `helm test` do: `<binary> healthcheck`, with
/// `--url`s when given and extra environment (e.g. the address variable). Returns whether it
/// exited 0, and its stderr.
pub async fn run_healthcheck(
    executable: &Path,
    urls: &[String],
    env: &[(&str, String)],
) -> (bool, String) {
    let mut command = tokio::process::Command::new(executable);
    command.arg("healthcheck").args(["--timeout", "5"]);
    for url in urls {
        command.args(["--url", url]);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until `url` answers 200 (a spawned process has started and is ready).
pub async fn wait_until_ready(url: &str, limit: std::time::Duration) {
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} not ready within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
