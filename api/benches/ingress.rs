//! The per-request checks of webhook ingress that need no I/O: recognising a webhook id and
//! reading the body into event data (empty body, JSON parse, NUL check), for a small and a
//! 4 KiB body.

use criterion::{Criterion, criterion_group, criterion_main};
use kai_api::webhooks::{endpoint, payload};
use std::hint::black_box;

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
