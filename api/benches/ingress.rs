//! The per-request checks of webhook ingress that need no I/O: recognising a webhook id, the
//! bearer token, the IP allow-list, a Standard Webhooks signature, the CORS origin, and reading
//! the body into event data (empty body, JSON parse, NUL check) for a small and a 4 KiB body.

use std::hint::black_box;
use std::net::IpAddr;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kai_api::webhooks::config::WebhookConfig;
use kai_api::webhooks::endpoint::Endpoint;
use kai_api::webhooks::signature::{self, SignedHeaders};
use kai_api::webhooks::{client_ip, cors, endpoint, payload};
use uuid::Uuid;

fn an_endpoint() -> Endpoint {
    let config = WebhookConfig::default()
        .patched(
            serde_json::json!({
                "allowed_ips": ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"],
                "allowed_origins": ["https://app.example.com"]
            })
            .as_object()
            .unwrap(),
        )
        .unwrap();
    Endpoint {
        webhook_id: "wh_0123456789abcdef01234567".into(),
        workflow_id: Uuid::nil(),
        node_id: "hook".into(),
        user_id: Uuid::nil(),
        workflow_version: 1,
        secret_token: format!("wht_{}", "ab".repeat(32)),
        previous_token: None,
        networks: config.networks(),
        config,
        active: true,
    }
}

fn body_of(size: usize) -> Vec<u8> {
    let items: Vec<String> = (0..)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}","tags":["a","b"],"ok":true}}"#))
        .take_while({
            let mut total = 0;
            move |item: &String| {
                total += item.len() + 1;
                total < size
            }
        })
        .collect();
    format!(
        r#"{{"event":"order.created","items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let small = br#"{"hello":"world","n":12345,"note":"load test"}"#.to_vec();
    let large = body_of(4096);
    c.bench_function("ingress: recognise a webhook id", |b| {
        b.iter(|| endpoint::is_well_formed(black_box("wh_0123456789abcdef01234567")))
    });
    let hook = an_endpoint();
    let now = Utc::now();
    c.bench_function("ingress: bearer token (constant time)", |b| {
        b.iter(|| hook.accepts_token(black_box(&hook.secret_token), now))
    });
    let caller: IpAddr = "192.168.7.9".parse().unwrap();
    c.bench_function("ingress: IP allow-list of 3 networks", |b| {
        b.iter(|| client_ip::allowed(black_box(Some(caller)), &hook.networks))
    });
    c.bench_function("ingress: CORS origin", |b| {
        b.iter(|| cors::allowed_origin(&hook.config, black_box("https://app.example.com")))
    });
    let key = signature::key_of(&hook.secret_token).unwrap();
    let timestamp = now.timestamp().to_string();
    let signed = signature::sign(&key, "msg_1", now.timestamp(), &small);
    let headers = SignedHeaders {
        id: "msg_1",
        timestamp: &timestamp,
        signature: &signed,
    };
    c.bench_function("ingress: Standard Webhooks signature, 47-byte body", |b| {
        b.iter(|| {
            let keys = hook.signing_keys(now);
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            signature::check_timestamp(&headers, now).unwrap();
            signature::verify(&headers, black_box(&small), &keys).unwrap()
        })
    });
    c.bench_function("ingress: read a 47-byte JSON body", |b| {
        b.iter(|| payload::parse(black_box(&small)).unwrap())
    });
    c.bench_function(
        &format!("ingress: read a {}-byte JSON body", large.len()),
        |b| b.iter(|| payload::parse(black_box(&large)).unwrap()),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
