//! Searching a collection: the k nearest chunks by the collection's distance, optionally only
//! those whose metadata contains a filter, at or above a score; or a diverse k of them (maximal
//! marginal relevance). The index's search breadth and iterative scans are set for each query,
//! so a filter that rejects most neighbours still yields k results.

use pgvector::Vector;
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::VectorError;
use super::catalogue::{Collection, IndexStatus};
use super::spec::{IndexKind, check_filter};

/// Most results one search returns.
pub const MAX_K: usize = 1_000;
/// HNSW's candidate list at query time unless the collection sets one (pgvector's default; at
/// least twice the results asked for). Measured recall@10 0.994 at 100,000 × 384
/// (`docs/BENCHMARKS.md`); each doubling costs about half as much time again.
pub const DEFAULT_EF_SEARCH: u32 = 40;
/// A filter matching fewer chunks than this is searched exactly among them.
pub const EXACT_FILTER_ROWS: i64 = 5_000;
/// Trade-off between relevance (1) and diversity (0) for MMR.
pub const DEFAULT_MMR_LAMBDA: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchMode {
    Similarity,
    /// Maximal marginal relevance over the `fetch_k` nearest.
    Mmr {
        lambda: f64,
        fetch_k: usize,
    },
}

impl SearchMode {
    /// `similarity` or `mmr` (with its usual defaults).
    pub fn parse(text: &str, k: usize) -> Option<Self> {
        match text {
            "similarity" | "similarity_score_threshold" => Some(SearchMode::Similarity),
            "mmr" => Some(SearchMode::Mmr {
                lambda: DEFAULT_MMR_LAMBDA,
                fetch_k: (k * 4).clamp(20, MAX_K),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub embedding: Vec<f32>,
    pub k: usize,
    /// Results scoring below it are left out (scores: `Distance::score`).
    pub threshold: Option<f64>,
    /// A JSON object the chunk's metadata must contain.
    pub filter: Option<Value>,
    pub mode: SearchMode,
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub document_id: String,
    pub chunk_index: i32,
    pub content: String,
    pub metadata: Value,
    pub score: f64,
}

/// Checks `request` against `collection`.
pub fn check(collection: &Collection, request: &SearchRequest) -> Result<(), VectorError> {
    if request.embedding.len() != collection.dimension {
        return Err(VectorError::QueryDimension {
            expected: collection.dimension,
            got: request.embedding.len(),
        });
    }
    if !(1..=MAX_K).contains(&request.k) {
        return Err(VectorError::Invalid(format!(
            "k must be between 1 and {MAX_K}"
        )));
    }
    if let Some(filter) = &request.filter {
        check_filter(filter)?;
    }
    if let Some(threshold) = request.threshold
        && !threshold.is_finite()
    {
        return Err(VectorError::Invalid("threshold must be a number".into()));
    }
    Ok(())
}

/// The collection's best matches for `request`, best first.
pub async fn search(
    db: &PgPool,
    collection: &Collection,
    request: &SearchRequest,
) -> Result<Vec<Hit>, VectorError> {
    check(collection, request)?;
    let (limit, with_vectors) = match request.mode {
        SearchMode::Similarity => (request.k, false),
        SearchMode::Mmr { fetch_k, .. } => (fetch_k.max(request.k), true),
    };
    let op = collection.distance.operator();
    let cast = collection.storage().type_name();
    let vectors = if with_vectors {
        ", embedding::vector AS vector"
    } else {
        ""
    };
    let table = collection.table();
    let mut conn = db.acquire().await?;
    // A filter that few chunks match is answered exactly from those chunks (found through the
    // metadata index), not by walking the approximate index past everything it rejects: both
    // faster and exact. The ordering is then written so the approximate index cannot serve it.
    let indexed = collection.index_status == IndexStatus::Ready;
    let selective = match (&request.filter, indexed) {
        (Some(filter), true) => {
            let matching: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE metadata @> $1 LIMIT $2) m"
            )))
            .bind(filter)
            .bind(EXACT_FILTER_ROWS)
            .fetch_one(&mut *conn)
            .await?;
            matching < EXACT_FILTER_ROWS
        }
        _ => false,
    };
    let order = if selective {
        format!("(embedding {op} $1::vector::{cast}) + 0")
    } else {
        format!("embedding {op} $1::vector::{cast}")
    };
    // Relaxed iterative scans may return neighbours slightly out of order: the outer query
    // orders them again.
    let sql = format!(
        "WITH nearest AS MATERIALIZED (
            SELECT document_id, chunk_index, content, metadata{vectors},
                   embedding {op} $1::vector::{cast} AS distance
            FROM {table}
            WHERE ($2::jsonb IS NULL OR metadata @> $2::jsonb)
            ORDER BY {order}
            LIMIT $3)
         SELECT * FROM nearest ORDER BY distance"
    );
    // The index's settings are set for the session of the connection the search then uses:
    // two round trips instead of a transaction's four. They linger on the pooled connection,
    // where only vector searches read them, and every search sets its own first.
    if indexed && !selective {
        let ef_search = collection
            .params
            .ef_search
            .unwrap_or(DEFAULT_EF_SEARCH)
            .max((2 * limit).min(1000) as u32);
        let probes = collection.params.probes.unwrap_or(10);
        let setting = match collection.index {
            IndexKind::Hnsw => {
                "SELECT set_config('hnsw.ef_search', $1, false), \
                 set_config('hnsw.iterative_scan', 'relaxed_order', false)"
            }
            _ => {
                "SELECT set_config('ivfflat.probes', $1, false), \
                 set_config('ivfflat.iterative_scan', 'relaxed_order', false)"
            }
        };
        let value = match collection.index {
            IndexKind::Hnsw => ef_search,
            _ => probes,
        };
        sqlx::query(setting)
            .bind(value.to_string())
            .execute(&mut *conn)
            .await?;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Vector::from(request.embedding.clone()))
        .bind(request.filter.as_ref())
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await?;
    drop(conn);

    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        let distance: f64 = row.try_get("distance")?;
        let vector: Option<Vec<f32>> = if with_vectors {
            Some(row.try_get::<Vector, _>("vector")?.to_vec())
        } else {
            None
        };
        candidates.push((
            Hit {
                document_id: row.try_get("document_id")?,
                chunk_index: row.try_get("chunk_index")?,
                content: row.try_get("content")?,
                metadata: row.try_get("metadata")?,
                score: collection.distance.score(distance),
            },
            vector,
        ));
    }
    if let Some(threshold) = request.threshold {
        candidates.retain(|(hit, _)| hit.score >= threshold);
    }
    Ok(match request.mode {
        SearchMode::Similarity => candidates.into_iter().map(|(hit, _)| hit).collect(),
        SearchMode::Mmr { lambda, .. } => {
            let picked = mmr(
                &request.embedding,
                &candidates
                    .iter()
                    .map(|(_, v)| v.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
                request.k,
                lambda,
            );
            picked
                .into_iter()
                .map(|i| candidates[i].0.clone())
                .collect()
        }
    })
}

/// Maximal marginal relevance: repeatedly the candidate most similar to the query and least
/// similar to those already picked, weighted by `lambda`; answers indexes into `candidates`.
pub fn mmr(query: &[f32], candidates: &[Vec<f32>], k: usize, lambda: f64) -> Vec<usize> {
    let relevance: Vec<f64> = candidates.iter().map(|c| cosine(query, c)).collect();
    let mut picked: Vec<usize> = Vec::with_capacity(k.min(candidates.len()));
    // The highest similarity of each candidate to anything picked so far.
    let mut redundancy = vec![f64::NEG_INFINITY; candidates.len()];
    while picked.len() < k.min(candidates.len()) {
        let mut best: Option<(usize, f64)> = None;
        for (i, rel) in relevance.iter().enumerate() {
            if picked.contains(&i) {
                continue;
            }
            let penalty = if picked.is_empty() {
                0.0
            } else {
                redundancy[i]
            };
            let value = lambda * rel - (1.0 - lambda) * penalty;
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        let Some((chosen, _)) = best else { break };
        picked.push(chosen);
        for (i, candidate) in candidates.iter().enumerate() {
            redundancy[i] = redundancy[i].max(cosine(candidate, &candidates[chosen]));
        }
    }
    picked
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmr_prefers_a_different_second_result_over_a_near_duplicate() {
        let query = [1.0, 0.0];
        let candidates = vec![
            vec![0.99, 0.1],  // best match
            vec![0.98, 0.11], // near duplicate of the first
            vec![0.7, -0.7],  // relevant and different
        ];
        assert_eq!(mmr(&query, &candidates, 2, 0.5), vec![0, 2]);
        // All relevance: the two nearest.
        assert_eq!(mmr(&query, &candidates, 2, 1.0), vec![0, 1]);
        assert_eq!(mmr(&query, &candidates, 5, 0.5).len(), 3);
    }
}
