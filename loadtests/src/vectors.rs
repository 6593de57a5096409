//! The `vectors` scenario: one collection of `rows` vectors loaded through the API with
//! precomputed embeddings (vectors/s), its HNSW index built after the load (build time and
//! size), then top-k searches from `concurrency` clients (latency percentiles, searches/s) and
//! their recall@k against exact search on the same data computed here, and the same with a
//! metadata filter matching 1 % of the rows (every search must still return k).
//!
//! The data is synthetic but shaped like embeddings: unit vectors around a thousand cluster
//! centres (uniform random vectors are far harder for any approximate index than real
//! embeddings, and say nothing about them). A seeded generator makes runs repeatable.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::target::{Api, client_builder};

#[derive(Debug, Clone)]
pub struct VectorsSettings {
    pub rows: usize,
    pub dimension: usize,
    pub batch: usize,
    pub writers: usize,
    pub searches: usize,
    pub concurrency: usize,
    pub k: usize,
    /// Queries whose exact neighbours are computed for recall.
    pub recall_queries: usize,
    pub index_timeout: Duration,
    pub seed: u64,
    pub ef_search: Option<u32>,
    /// Leave the collection (and its user) in place, printing how to reach it.
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub searches: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub recall_at_k: f64,
    /// Searches that returned fewer than k results.
    pub short: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VectorsReport {
    pub scenario: &'static str,
    pub rows: usize,
    pub dimension: usize,
    pub k: usize,
    pub concurrency: usize,
    pub insert_seconds: f64,
    pub vectors_per_second: f64,
    pub index_wait_seconds: f64,
    pub index_build_ms: Option<i64>,
    pub index_bytes: Option<i64>,
    pub table_bytes: i64,
    pub search: Latency,
    pub filtered: Latency,
}

/// The data: `rows` unit vectors around `rows / 100` (at most 1,000) centres, and queries from
/// the same distribution (not members of the data).
struct Data {
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn generate(settings: &VectorsSettings, queries: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let d = settings.dimension;
    let centres: Vec<Vec<f32>> = (0..(settings.rows / 100).clamp(1, 1000))
        .map(|_| {
            let mut c: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            normalise(&mut c);
            c
        })
        .collect();
    let point = |rng: &mut StdRng| {
        let centre = &centres[rng.random_range(0..centres.len())];
        let mut v: Vec<f32> = centre
            .iter()
            .map(|x| x + rng.random_range(-1.0f32..1.0) * 0.12)
            .collect();
        normalise(&mut v);
        v
    };
    let vectors = (0..settings.rows).map(|_| point(&mut rng)).collect();
    let queries = (0..queries).map(|_| point(&mut rng)).collect();
    Data { vectors, queries }
}

/// The exact top-`k` rows by cosine similarity (the vectors are unit length: the dot product),
/// among the rows `keep` admits; computed on every core.
fn exact(
    data: &Data,
    queries: &[usize],
    k: usize,
    keep: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Vec<Vec<usize>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&q| {
                            let query = &data.queries[q];
                            let mut scored: Vec<(f32, usize)> = data
                                .vectors
                                .iter()
                                .enumerate()
                                .filter(|(row, _)| keep(q, *row))
                                .map(|(row, v)| {
                                    (v.iter().zip(query).map(|(a, b)| a * b).sum(), row)
                                })
                                .collect();
                            if scored.len() > k {
                                scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
                                scored.truncate(k);
                            }
                            scored.into_iter().map(|(_, row)| row).collect()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("exact search thread"))
            .collect()
    })
}

/// The filter bucket of row `row` and of query `q`: 100 buckets, 1 % of the rows each.
fn bucket(n: usize) -> usize {
    n % 100
}

pub async fn run(api_base: &str, settings: &VectorsSettings) -> anyhow::Result<VectorsReport> {
    let api = Api::new(api_base)?;
    let token = api.sign_up().await?;
    let client = client_builder().timeout(Duration::from_secs(120)).build()?;
    let base = api.base.clone();
    eprintln!(
        "generating {} × {} vectors",
        settings.rows, settings.dimension
    );
    let recall_queries = settings.recall_queries.max(1);
    let data = Arc::new(generate(settings, recall_queries));

    let mut params = json!({});
    if let Some(ef) = settings.ef_search {
        params["ef_search"] = json!(ef);
    }
    let created: Value = client
        .post(format!("{base}/api/v1/vectors/collections"))
        .bearer_auth(&token)
        .json(
            &json!({"collection_name": format!("loadtest-{}", uuid::Uuid::new_v4().simple()),
                       "embedding_dimension": settings.dimension, "index_params": params}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"]
        .as_str()
        .context("a collection id")?
        .to_owned();
    let collection = format!("{base}/api/v1/vectors/collections/{id}");

    // The request bodies are written before the clock starts: the embeddings are precomputed,
    // and writing them as JSON is the client's work (on another machine in a deployment).
    let bodies: Vec<(usize, usize, Vec<u8>)> = {
        let (data, rows, batch) = (data.clone(), settings.rows, settings.batch);
        tokio::task::spawn_blocking(move || {
            (0..rows)
                .step_by(batch)
                .map(|from| {
                    let to = (from + batch).min(rows);
                    let documents: Vec<Value> = (from..to)
                        .map(|row| json!({"id": format!("d{row}"), "content": format!("document {row}"),
                                          "metadata": {"bucket": bucket(row)}, "embedding": data.vectors[row]}))
                        .collect();
                    (from, to, serde_json::to_vec(&json!({"documents": documents})).expect("a body"))
                })
                .collect()
        })
        .await?
    };
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(bodies)
        .map(|(from, to, body)| {
            let (client, token, url) = (
                client.clone(),
                token.clone(),
                format!("{collection}/documents"),
            );
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!(
                        "storing rows {from}..{to}: {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(settings.writers)
        .collect()
        .await;
    for result in results {
        result?;
    }
    let insert_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "loaded {} vectors in {insert_seconds:.1} s ({:.0}/s); waiting for the index",
        settings.rows,
        settings.rows as f64 / insert_seconds
    );

    // The index, built once the collection is quiet.
    let waiting = Instant::now();
    loop {
        let state: Value = client
            .get(&collection)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if state["index_status"] == "ready" {
            break;
        }
        if waiting.elapsed() > settings.index_timeout {
            bail!(
                "the index was not built within {:?}: {state}",
                settings.index_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let index_wait_seconds = waiting.elapsed().as_secs_f64();
    let stats: Value = client
        .get(format!("{collection}/stats"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    eprintln!("index ready after {index_wait_seconds:.1} s: {stats}");

    eprintln!("exact neighbours of {recall_queries} queries");
    let all: Vec<usize> = (0..recall_queries).collect();
    let exact_plain = {
        let data = data.clone();
        let k = settings.k;
        let all = all.clone();
        tokio::task::spawn_blocking(move || exact(&data, &all, k, &|_, _| true)).await?
    };
    let exact_filtered = {
        let data = data.clone();
        let k = settings.k;
        tokio::task::spawn_blocking(move || {
            exact(&data, &all, k, &|q, row| bucket(row) == bucket(q))
        })
        .await?
    };

    let search = searches(
        &client,
        &token,
        &collection,
        &data,
        settings,
        &exact_plain,
        false,
    )
    .await?;
    eprintln!("search: {search:?}");
    let filtered = searches(
        &client,
        &token,
        &collection,
        &data,
        settings,
        &exact_filtered,
        true,
    )
    .await?;
    eprintln!("filtered: {filtered:?}");

    if settings.keep {
        eprintln!("kept: collection {collection} (token {token})");
    } else {
        let _ = client.delete(&collection).bearer_auth(&token).send().await;
    }
    Ok(VectorsReport {
        scenario: "vectors",
        rows: settings.rows,
        dimension: settings.dimension,
        k: settings.k,
        concurrency: settings.concurrency,
        insert_seconds,
        vectors_per_second: settings.rows as f64 / insert_seconds,
        index_wait_seconds,
        index_build_ms: stats["index_build_ms"].as_i64(),
        index_bytes: stats["vector_index_bytes"].as_i64(),
        table_bytes: stats["table_bytes"].as_i64().unwrap_or(0),
        search,
        filtered,
    })
}

/// `settings.searches` searches from `settings.concurrency` clients, cycling the queries.
async fn searches(
    client: &reqwest::Client,
    token: &str,
    collection: &str,
    data: &Arc<Data>,
    settings: &VectorsSettings,
    truth: &[Vec<usize>],
    filtered: bool,
) -> anyhow::Result<Latency> {
    let url = format!("{collection}/search");
    let started = Instant::now();
    let outcomes: Vec<anyhow::Result<(Duration, usize, usize)>> =
        futures::stream::iter(0..settings.searches)
            .map(|n| {
                let q = n % data.queries.len();
                let mut body = json!({"embedding": data.queries[q], "k": settings.k});
                if filtered {
                    body["filter"] = json!({"bucket": bucket(q)});
                }
                let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
                let expected = truth[q].clone();
                async move {
                    let sent = Instant::now();
                    let response = client
                        .post(url)
                        .bearer_auth(token)
                        .json(&body)
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!(
                            "search: {}: {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                    let found: Value = response.json().await?;
                    let took = sent.elapsed();
                    let ids: Vec<usize> = found["documents"]
                        .as_array()
                        .map(|docs| {
                            docs.iter()
                                .filter_map(|d| d["id"].as_str()?.strip_prefix('d')?.parse().ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    let hits = ids.iter().filter(|id| expected.contains(id)).count();
                    Ok((took, hits, ids.len()))
                }
            })
            .buffer_unordered(settings.concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut histogram = Histogram::<u64>::new(3)?;
    let (mut hits, mut short) = (0usize, 0usize);
    for outcome in outcomes {
        let (took, found, returned) = outcome?;
        histogram.record(took.as_micros() as u64)?;
        hits += found;
        if returned < settings.k {
            short += 1;
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        searches: settings.searches,
        per_second: settings.searches as f64 / elapsed,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        recall_at_k: hits as f64 / (settings.searches * settings.k) as f64,
        short,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_search_finds_the_query_itself_first() {
        let settings = VectorsSettings {
            rows: 500,
            dimension: 16,
            batch: 100,
            writers: 1,
            searches: 1,
            concurrency: 1,
            k: 5,
            recall_queries: 3,
            index_timeout: Duration::from_secs(1),
            seed: 7,
            ef_search: None,
            keep: false,
        };
        let mut data = generate(&settings, 3);
        data.vectors[42] = data.queries[1].clone();
        let found = exact(&data, &[0, 1, 2], 5, &|_, _| true);
        assert_eq!(found[1][0], 42);
        assert_eq!(found.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 5]);
        let filtered = exact(&data, &[1], 5, &|q, row| bucket(row) == bucket(q));
        assert!(filtered[0].iter().all(|row| bucket(*row) == 1));
    }
}
