//! Job messages on the hot path: the API encodes one per accepted webhook, a worker decodes it.

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kai_common::jobs::{JobMessage, WebhookEvent, WebhookJobV1};
use std::hint::black_box;
use uuid::Uuid;

fn job() -> JobMessage {
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("user-agent".into(), "wrk".into());
    JobMessage::WebhookV1(WebhookJobV1 {
        execution_id: Uuid::now_v7(),
        workflow_id: Uuid::now_v7(),
        workflow_version: 3,
        user_id: Uuid::now_v7(),
        enqueued_at: Utc::now(),
        event: WebhookEvent {
            webhook_id: "wh_0123456789abcdef01234567".into(),
            node_id: "webhook-start".into(),
            correlation_id: Uuid::new_v4(),
            http_method: "POST".into(),
            event_type: "webhook.received".into(),
            data: serde_json::json!({"hello": "world", "n": 12345, "note": "load test"}),
            received_at: Utc::now(),
            client_ip: Some("127.0.0.1".into()),
            user_agent: Some("wrk".into()),
            headers,
            url: "http://127.0.0.1:8001/api/webhooks/wh_0123456789abcdef01234567".into(),
        },
        reply_to: Some("kai.replies.0123456789".into()),
        idempotent: false,
    })
}

fn bench(c: &mut Criterion) {
    let message = job();
    let bytes = message.encode().unwrap();
    c.bench_function("jobs: encode a webhook job", |b| {
        b.iter(|| black_box(&message).encode().unwrap())
    });
    c.bench_function("jobs: decode a webhook job", |b| {
        b.iter(|| JobMessage::decode(black_box(&bytes)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
