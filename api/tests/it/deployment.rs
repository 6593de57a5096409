//! The Dockerfile, docker-compose.yml and the Helm chart against kai-api's own configuration:
//! same variables, same port, health paths that answer, a migration hook that runs
//! `kai-api migrate` with nothing but the database URL, and values the chart refuses.

use std::path::Path;

use clap::CommandFactory;
use kai_common::testing::TestEnv;
use kai_common::testing::deployment::{self as files, Binary, Manifests};
use tokio_util::sync::CancellationToken;

fn api() -> Binary {
    Binary::from_command("api", "kai-api", kai_api::config::Cli::command())
}

const KAI_API: &str = env!("CARGO_BIN_EXE_kai-api");

#[test]
fn the_image_compose_and_every_chart_configuration_run_the_api_as_it_is_configured() {
    let api = api();
    assert_eq!(api.port, 8001);
    files::assert_every_deployment_runs(&api, 1);
}

#[test]
fn the_chart_gives_the_api_every_secret_it_needs_from_the_secret_it_names() {
    let api = api();
    for (configuration, secret) in [
        (None, "kai-fusion"),
        (
            Some("existing-secret-values.yaml"),
            "kai-fusion-credentials",
        ),
    ] {
        let manifests = files::render(configuration, &[]);
        let env = manifests.container(&api)["env"].as_array().unwrap().clone();
        let from_secret: Vec<(&str, &str)> = env
            .iter()
            .filter_map(|var| {
                let reference = &var["valueFrom"]["secretKeyRef"];
                assert_eq!(reference["name"], secret, "{var}");
                Some((var["name"].as_str()?, reference["key"].as_str()?))
            })
            .collect();
        // Only the previous encryption keys and signing secrets (outside a rotation) and the
        // model servers' keys (the API embeds collections' text queries) may be missing from the
        // Secret.
        let optional: Vec<&str> = env
            .iter()
            .filter(|var| var["valueFrom"]["secretKeyRef"]["optional"] == true)
            .filter_map(|var| var["name"].as_str())
            .collect();
        assert_eq!(
            optional,
            [
                "KAI_EMBEDDINGS_API_KEY",
                "KAI_ENCRYPTION_KEYS_PREVIOUS",
                "KAI_JWT_SECRETS_PREVIOUS",
                "KAI_OPENAI_API_KEY"
            ]
        );
        let names: Vec<&str> = from_secret.iter().map(|(name, _)| *name).collect();
        for needed in [
            "DATABASE_URL",
            "NATS_URL",
            "REDIS_URL",
            "KAI_JWT_SECRET",
            "KAI_ENCRYPTION_KEY",
        ] {
            assert!(names.contains(&needed), "{needed} is not given to kai-api");
        }
        if let Some(created) = manifests.find("Secret", secret) {
            // The chart's own Secret holds every key the pods read.
            for (name, key) in &from_secret {
                if !optional.contains(name) {
                    assert!(created["stringData"][key].is_string(), "{key} missing");
                }
            }
            for key in ["KAI_JWT_SECRET", "KAI_ENCRYPTION_KEY"] {
                let generated = created["stringData"][key].as_str().unwrap();
                assert!(generated.len() >= 32, "{key} is too short for production");
            }
        } else {
            assert!(
                configuration.is_some(),
                "the default values create the Secret"
            );
        }
    }
}

#[test]
fn a_settings_change_rolls_only_the_pods_it_concerns() {
    let api = api();
    let before = files::render(None, &[]);
    let after = files::render(None, &["api.jwtTtlSeconds=600"]);
    assert_eq!(
        after.variable(&api, "KAI_JWT_TTL_SECS").as_deref(),
        Some("600")
    );
    assert_ne!(
        files::config_checksum(&before, "api"),
        files::config_checksum(&after, "api"),
        "the API's pods would keep the old setting"
    );
    assert_eq!(
        files::config_checksum(&before, "worker"),
        files::config_checksum(&after, "worker"),
        "the workers would restart for an API setting"
    );
}

#[test]
fn the_api_is_served_by_its_service_and_ingress_and_autoscaled_on_cpu() {
    let manifests = files::render(Some("ingress-values.yaml"), &[]);
    let service = manifests.get("Service", "kai-fusion-api");
    assert_eq!(service["spec"]["ports"][0]["port"], 8001);
    let ingress = manifests.get("Ingress", "kai-fusion-api");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "kai-fusion-api");
    assert_eq!(backend["port"]["name"], service["spec"]["ports"][0]["name"]);
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "kai.example.com");
    // Webhooks, the management API and the docs are public; health and metrics are not.
    for configuration in [Some("ingress-values.yaml"), Some("everything-values.yaml")] {
        let rendered = files::render(configuration, &[]);
        let ingress = rendered.get("Ingress", "kai-fusion-api");
        let routed = |path: &str| {
            ingress["spec"]["rules"][0]["http"]["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|rule| match rule["pathType"].as_str().unwrap() {
                    "Exact" => rule["path"] == path,
                    _ => path.starts_with(rule["path"].as_str().unwrap()),
                })
        };
        for public in ["/api/webhooks/wh_0123", "/api/v1/workflows", "/docs"] {
            assert!(routed(public), "{configuration:?}: {public} is not routed");
        }
        for private in ["/metrics", "/health/detailed"] {
            assert!(!routed(private), "{configuration:?}: {private} is public");
        }
    }

    let hpa = manifests.get("HorizontalPodAutoscaler", "kai-fusion-api");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "kai-fusion-api");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    // The autoscaler owns the replica count: an upgrade must not reset it.
    let deployment = manifests.get("Deployment", "kai-fusion-api");
    assert!(deployment["spec"]["replicas"].is_null());

    let fixed = files::render(None, &["api.autoscaling.enabled=false", "api.replicas=3"]);
    assert!(
        fixed
            .find("HorizontalPodAutoscaler", "kai-fusion-api")
            .is_none()
    );
    assert_eq!(
        fixed.get("Deployment", "kai-fusion-api")["spec"]["replicas"],
        3
    );
}

#[test]
fn a_stopping_api_keeps_serving_while_load_balancers_let_it_go() {
    let api = api();
    let sleep_of = |manifests: &Manifests| {
        manifests.container(&api)["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64()
    };
    let current = files::render_on("1.30.0", None, &[]);
    assert_eq!(sleep_of(&current), Some(5));
    let pod = &current.get("Deployment", "kai-fusion-api")["spec"]["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 5);
    // Clusters before 1.30 have no sleep action: left out rather than refused by the API server.
    assert_eq!(sleep_of(&files::render_on("1.29.0", None, &[])), None);
    assert_eq!(
        sleep_of(&files::render(None, &["api.preStopSleepSeconds=0"])),
        None
    );
    // Workers take no traffic; they drain instead.
    let worker = &current.get("Deployment", "kai-fusion-worker")["spec"]["template"]["spec"];
    assert!(worker["containers"][0]["lifecycle"].is_null());
    let refused = files::try_render(
        None,
        &[
            "api.preStopSleepSeconds=30",
            "api.terminationGracePeriodSeconds=30",
        ],
    )
    .unwrap_err();
    assert!(
        refused.contains("api.terminationGracePeriodSeconds"),
        "{refused}"
    );
}

#[test]
fn the_migration_hook_runs_kai_api_migrate_before_install_and_upgrade() {
    for (configuration, secret, key) in [
        (None, "kai-fusion", "DATABASE_URL"),
        (
            Some("existing-secret-values.yaml"),
            "kai-fusion-credentials",
            "database-url",
        ),
    ] {
        let manifests = files::render(configuration, &[]);
        let job = manifests.get("Job", "kai-fusion-migrate");
        let annotations = &job["metadata"]["annotations"];
        assert_eq!(annotations["helm.sh/hook"], "pre-install,pre-upgrade");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["command"],
            serde_json::json!(["/usr/local/bin/kai-api", "migrate"])
        );
        let database = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|var| var["name"] == "DATABASE_URL")
            .expect("the job gets DATABASE_URL");
        assert_eq!(database["valueFrom"]["secretKeyRef"]["name"], secret);
        assert_eq!(database["valueFrom"]["secretKeyRef"]["key"], key);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        if let Some(created) = manifests.find("Secret", secret) {
            // A hook too, created before the job (lower weight) so the job can read it.
            let secret_annotations = &created["metadata"]["annotations"];
            assert_eq!(
                secret_annotations["helm.sh/hook"],
                "pre-install,pre-upgrade"
            );
            let weight = |a: &serde_json::Value| {
                a["helm.sh/hook-weight"]
                    .as_str()
                    .unwrap()
                    .parse::<i32>()
                    .unwrap()
            };
            assert!(weight(secret_annotations) < weight(annotations));
        }
    }
    let without = files::render(None, &["migrations.enabled=false"]);
    assert!(without.find("Job", "kai-fusion-migrate").is_none());
}

#[tokio::test]
async fn kai_api_migrate_needs_nothing_but_the_database_url_even_in_production() {
    let env = TestEnv::new();
    let output = tokio::process::Command::new(KAI_API)
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", env.database_url())
        .env("KAI_ENV", "production")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pool = sqlx::PgPool::connect(&env.database_url()).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'workflows'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 1, "migrations were not applied");
    pool.close().await;

    // Serving still refuses to start without real secrets in production.
    let serve = tokio::process::Command::new(KAI_API)
        .env_clear()
        .env("DATABASE_URL", env.database_url())
        .env("KAI_ENV", "production")
        .env("KAI_API_ADDR", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("KAI_JWT_SECRET"));
    env.cleanup().await;
}

#[tokio::test]
async fn the_probe_paths_answer_and_the_healthcheck_command_sees_a_ready_api() {
    let api = api();
    let manifests = files::render(None, &[]);
    let container = manifests.container(&api).clone();
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let running = kai_api::testing::start(&env, shutdown.clone()).await;
    let client = reqwest::Client::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        let response = client
            .get(format!("{}{path}", running.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{probe} {path}");
    }

    // As compose runs it: no URL, the address from KAI_API_ADDR.
    let (ready, stderr) = files::run_healthcheck(
        Path::new(KAI_API),
        &[],
        &[("KAI_API_ADDR", running.addr.to_string())],
    )
    .await;
    assert!(ready, "{stderr}");
    // As `helm test` runs it, and against a port nothing listens on.
    let readiness = format!("{}/health/detailed", running.base);
    let (ready, stderr) = files::run_healthcheck(Path::new(KAI_API), &[readiness], &[]).await;
    assert!(ready, "{stderr}");
    let nowhere = "http://127.0.0.1:1/health/detailed".to_owned();
    let (ready, stderr) =
        files::run_healthcheck(Path::new(KAI_API), std::slice::from_ref(&nowhere), &[]).await;
    assert!(!ready);
    assert!(stderr.contains(&nowhere), "{stderr}");

    shutdown.cancel();
    let _ = running.server.await;
    running.state.db.close().await;
    env.cleanup().await;
}

#[test]
fn helm_test_asks_every_component_for_its_readiness_through_its_service() {
    let manifests: Manifests = files::render(None, &[]);
    let pod = manifests.get("Pod", "kai-fusion-test-health");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let command: Vec<&str> = pod["spec"]["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["/usr/local/bin/kai-api", "healthcheck"]);
    for component in ["api", "worker", "scheduler"] {
        let service = manifests.get("Service", &format!("kai-fusion-{component}"));
        let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
        let url = format!("http://kai-fusion-{component}:{port}/health/detailed");
        let asked = command
            .windows(2)
            .any(|pair| pair == ["--url", url.as_str()]);
        assert!(asked, "helm test does not ask {url}: {command:?}");
    }
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn values_the_chart_cannot_deploy_are_refused_naming_them() {
    for (set, named) in [
        ("worker.replicas=-1", "worker.replicas"),
        ("config.environment=staging", "config.environment"),
        ("config.natsPrefix=a.b", "config.natsPrefix"),
        ("api.replica=2", "replica"),
        ("secrets.jwtSecret=too-short", "secrets.jwtSecret"),
        ("secrets.databaseUrl=mysql://db/kai", "secrets.databaseUrl"),
        ("keda.enabled=true", "keda.natsMonitoringEndpoint"),
        ("worker.executionEvents=some", "worker.executionEvents"),
        (
            "worker.terminationGracePeriodSeconds=20",
            "worker.terminationGracePeriodSeconds",
        ),
    ] {
        let refused = files::try_render(None, &[set]).expect_err(set);
        assert!(refused.contains(named), "{set}: {refused}");
    }
}

#[test]
fn network_policies_let_in_the_callers_the_scrapers_and_helm_test() {
    let manifests = files::render(Some("networkpolicy-values.yaml"), &[]);
    let test_pod_labels = &manifests.get("Pod", "kai-fusion-test-health")["metadata"]["labels"];
    let admits_test_pod = |from: &serde_json::Value| {
        from.as_array().unwrap().iter().any(|peer| {
            peer["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|labels| labels.iter().all(|(k, v)| &test_pod_labels[k] == v))
        })
    };
    for (component, port, allowed_namespace) in [
        ("api", 8001, "ingress-nginx"),
        ("worker", 9101, "monitoring"),
        ("scheduler", 9102, "monitoring"),
    ] {
        let name = format!("kai-fusion-{component}");
        let policy = &manifests.get("NetworkPolicy", &name)["spec"];
        let pod_labels =
            &manifests.get("Deployment", &name)["spec"]["template"]["metadata"]["labels"];
        let selected = policy["podSelector"]["matchLabels"].as_object().unwrap();
        assert!(selected.iter().all(|(k, v)| &pod_labels[k] == v), "{name}");
        let rule = &policy["ingress"][0];
        assert_eq!(rule["ports"][0]["port"], port, "{name}");
        let from = &rule["from"];
        let namespaces: Vec<&str> = from
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|peer| {
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str()
            })
            .collect();
        assert_eq!(namespaces, [allowed_namespace], "{name}");
        assert!(admits_test_pod(from), "helm test cannot reach {name}");
        assert_eq!(
            policy["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
    }
    // The API's operations port admits the metrics peers, not the API's callers.
    let api = &manifests.get("NetworkPolicy", "kai-fusion-api")["spec"];
    let ops = &api["ingress"][1];
    assert_eq!(ops["ports"][0]["port"], 9100, "{api}");
    let namespaces: Vec<&str> = ops["from"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|peer| {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str()
        })
        .collect();
    assert_eq!(namespaces, ["monitoring"], "{api}");
    // Without peers listed, anyone may call the API and egress stays open.
    let open = files::render(Some("everything-values.yaml"), &[]);
    let api = &open.get("NetworkPolicy", "kai-fusion-api")["spec"];
    assert!(api["ingress"][0]["from"].is_null(), "{api}");
    assert_eq!(api["policyTypes"], serde_json::json!(["Ingress"]));
}

#[test]
fn the_service_monitor_scrapes_the_metrics_of_every_component() {
    let manifests = files::render(Some("servicemonitor-values.yaml"), &[]);
    let monitor = &manifests.get("ServiceMonitor", "kai-fusion")["spec"];
    assert_eq!(monitor["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["endpoints"][0]["interval"], "15s");
    let port_name = monitor["endpoints"][0]["port"].as_str().unwrap();
    let match_labels = monitor["selector"]["matchLabels"].as_object().unwrap();
    let components = &monitor["selector"]["matchExpressions"][0];
    assert_eq!(components["key"], "app.kubernetes.io/component");
    for component in ["api", "worker", "scheduler"] {
        let service = manifests.get("Service", &format!("kai-fusion-{component}"));
        let labels = &service["metadata"]["labels"];
        assert!(
            match_labels.iter().all(|(k, v)| &labels[k] == v),
            "{component}"
        );
        let listed = components["values"].as_array().unwrap();
        assert!(
            listed.contains(&labels["app.kubernetes.io/component"]),
            "{component}"
        );
        let ports = service["spec"]["ports"].as_array().unwrap();
        assert!(
            ports.iter().any(|port| port["name"] == port_name),
            "{component}: {ports:?}"
        );
    }
    // The API's metrics come from its operations port, which the public port does not share.
    let api = manifests.get("Service", "kai-fusion-api");
    let metrics = api["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["name"] == port_name)
        .unwrap();
    assert_eq!(
        (metrics["port"].as_i64(), metrics["targetPort"].as_str()),
        (Some(9100), Some("metrics"))
    );
    let deployment = manifests.get("Deployment", "kai-fusion-api");
    let container_ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        container_ports
            .as_array()
            .unwrap()
            .iter()
            .any(|port| port["name"] == "metrics" && port["containerPort"] == 9100),
        "{container_ports}"
    );
    let config = &manifests.get("ConfigMap", "kai-fusion-api")["data"];
    assert_eq!(config["KAI_API_OPS_ADDR"], "0.0.0.0:9100");
    assert_eq!(config["KAI_API_PUBLIC_METRICS"], "false");
    let labels = &manifests.get("ServiceMonitor", "kai-fusion")["metadata"]["labels"];
    assert_eq!(labels["release"], "prometheus");
}
