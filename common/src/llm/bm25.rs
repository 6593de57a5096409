//! A local lexical reranker (Okapi BM25 over the documents being ranked), used by Reranker
//! nodes when neither a credential nor an operator rerank server is configured, so workflows
//! exported with a Cohere reranker still run; its outputs say `bm25` so nobody mistakes it for
//! a neural ranking.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::nodes::NodeError;
use crate::nodes::capability::Reranker;

/// Term-frequency saturation and length normalisation, the usual values.
const K1: f64 = 1.2;
const B: f64 = 0.75;

fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// BM25 scores of `documents` for `query`, in document order.
pub fn scores(query: &str, documents: &[String]) -> Vec<f64> {
    let documents: Vec<Vec<String>> = documents.iter().map(|d| terms(d)).collect();
    let count = documents.len() as f64;
    let average_length = documents.iter().map(Vec::len).sum::<usize>() as f64 / count.max(1.0);
    let mut query_terms = terms(query);
    query_terms.sort();
    query_terms.dedup();
    let containing: HashMap<&str, f64> = query_terms
        .iter()
        .map(|term| {
            let n = documents.iter().filter(|d| d.contains(term)).count() as f64;
            (term.as_str(), n)
        })
        .collect();
    documents
        .iter()
        .map(|document| {
            let length = document.len() as f64;
            query_terms
                .iter()
                .map(|term| {
                    let frequency = document.iter().filter(|t| *t == term).count() as f64;
                    if frequency == 0.0 {
                        return 0.0;
                    }
                    let n = containing[term.as_str()];
                    let idf = ((count - n + 0.5) / (n + 0.5) + 1.0).ln();
                    let norm = K1 * (1.0 - B + B * length / average_length.max(1.0));
                    idf * frequency * (K1 + 1.0) / (frequency + norm)
                })
                .sum()
        })
        .collect()
}

/// The local ranking; `top_n` is the node's, used when the consumer asks for no number.
#[derive(Default)]
pub struct Bm25Reranker {
    pub top_n: Option<usize>,
}

impl Reranker for Bm25Reranker {
    fn method(&self) -> &str {
        "bm25"
    }

    fn rerank<'a>(
        &'a self,
        query: &'a str,
        documents: &'a [String],
        top_n: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<(usize, f64)>, NodeError>> {
        async move {
            let mut ranked: Vec<(usize, f64)> =
                scores(query, documents).into_iter().enumerate().collect();
            // Stable: equal scores keep the retriever's order.
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(top_n.or(self.top_n).unwrap_or(ranked.len()));
            Ok(ranked)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_document_sharing_rare_query_terms_ranks_first() {
        let documents = [
            "The cat sat on the mat.",
            "Rust's borrow checker prevents data races at compile time.",
            "A mat is a piece of fabric.",
        ]
        .map(str::to_owned);
        let ranked = Bm25Reranker::default()
            .rerank("how does the borrow checker work", &documents, Some(2))
            .await
            .unwrap();
        assert_eq!(ranked.len(), 2);
        assert_eq!(ranked[0].0, 1);
        assert!(ranked[0].1 > ranked[1].1);
        assert_eq!(scores("", &documents), vec![0.0; 3]);
    }
}
