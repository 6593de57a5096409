//! KEDA starts workers from zero on the lag of the workers' consumer, which it reads from the
//! NATS monitoring endpoint's `/jsz`: the API creates that consumer with the streams, so a
//! backlog shows as lag before any worker has ever run.

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use kai_common::testing::nats_cluster::NatsCluster;

use crate::helpers::{TestApp, lone_webhook_workflow};

#[tokio::test]
async fn a_backlog_shows_as_lag_on_jsz_before_any_worker_has_run() {
    // A private server: the shared one exposes no monitoring endpoint.
    let nats = NatsCluster::start(1).await;
    let url = nats.url();
    let app = TestApp::spawn_api_only_with(|config| {
        config.common.nats_url = SecretString::from(url);
    })
    .await;
    let token = app.user("keda@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let (hook, secret) = app
        .webhook_of(&token, workflow["id"].as_str().unwrap())
        .await;
    for _ in 0..7 {
        let response = app
            .request(Method::POST, &hook, Some(&secret))
            .header("Prefer", "respond-async")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    // The query KEDA's nats-jetstream scaler makes, and the numbers it reads.
    let jsz: Value = reqwest::get(format!(
        "{}/jsz?acc=$G&consumers=true&config=true",
        nats.monitor_url(0)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let names = &app.state.names;
    let stream = jsz["account_details"]
        .as_array()
        .and_then(|accounts| accounts.iter().find(|a| a["name"] == "$G"))
        .and_then(|account| account["stream_detail"].as_array())
        .and_then(|streams| {
            streams
                .iter()
                .find(|s| s["name"] == names.jobs_stream().as_str())
        })
        .unwrap_or_else(|| panic!("no jobs stream in /jsz: {jsz}"));
    assert_eq!(stream["state"]["messages"], 7, "{stream}");
    let consumer = stream["consumer_detail"]
        .as_array()
        .and_then(|consumers| {
            consumers
                .iter()
                .find(|c| c["name"] == names.workers_consumer().as_str())
        })
        .unwrap_or_else(|| panic!("no workers' consumer in /jsz: {stream}"));
    assert_eq!(consumer["num_pending"], 7, "{consumer}");
    assert_eq!(consumer["num_ack_pending"], 0, "{consumer}");
    app.stop().await;
}
