//! Older KAI-Fusion exports chain providers between steps with edges that name no handle:
//! `splitter → embedder → vector store`, `vector store → reranker → QA`, `memory → QA`. The
//! engine that wrote them handed a provider to whatever followed it. Here such a provider is
//! lifted out of the chain: its edge into the next node becomes a provider edge at the input that
//! accepts its capability, and what flowed into it flows past it to that node.
//!
//! Only edges without a target handle are read this way, and only for providers that are never
//! steps themselves; everything else is left to the graph's ordinary checks.

use super::flow::Edge;
use crate::nodes::{NodeCategory, NodeType};

/// The edges with legacy provider chains rewritten; `node_of` maps a node id to its index.
pub fn lift(
    edges: &[Edge],
    definitions: &[NodeType],
    node_of: &dyn Fn(&str) -> Option<usize>,
) -> Vec<Edge> {
    let liftable = |id: &str| {
        node_of(id).filter(|&i| {
            definitions[i].category() == NodeCategory::Provider && !definitions[i].also_a_step()
        })
    };
    // Each liftable provider's edges onward, given the handle that accepts it.
    let mut lifted: Vec<Edge> = Vec::with_capacity(edges.len());
    let mut onward: Vec<(String, String)> = Vec::new(); // (provider id, target id)
    for edge in edges {
        let handle = match (liftable(&edge.source), node_of(&edge.target)) {
            (Some(provider), Some(target)) if edge.target_handle.is_none() => definitions[target]
                .provider_inputs()
                .iter()
                .find(|input| Some(input.accepts) == definitions[provider].provides())
                .map(|input| input.handle),
            _ => None,
        };
        match handle {
            Some(handle) => {
                onward.push((edge.source.clone(), edge.target.clone()));
                lifted.push(Edge {
                    target_handle: Some(handle.to_owned()),
                    source_handle: None,
                    ..edge.clone()
                });
            }
            None => lifted.push(edge.clone()),
        }
    }
    // Data that flowed into a lifted provider flows past it, through chains of them too.
    let mut result: Vec<Edge> = Vec::with_capacity(lifted.len());
    for edge in lifted {
        let into_lifted = edge.target_handle.is_none()
            && liftable(&edge.target).is_some()
            && onward.iter().any(|(provider, _)| *provider == edge.target);
        if !into_lifted {
            result.push(edge);
            continue;
        }
        let mut frontier = vec![edge.target.clone()];
        let mut seen = Vec::new();
        while let Some(provider) = frontier.pop() {
            if seen.contains(&provider) {
                continue;
            }
            seen.push(provider.clone());
            for (_, next) in onward.iter().filter(|(p, _)| *p == provider) {
                if liftable(next).is_some() && onward.iter().any(|(p, _)| p == next) {
                    frontier.push(next.clone());
                } else {
                    let bypass = Edge {
                        id: edge.id.as_ref().map(|id| format!("{id}~{next}")),
                        source: edge.source.clone(),
                        target: next.clone(),
                        source_handle: edge.source_handle.clone(),
                        target_handle: None,
                    };
                    let duplicate = result.iter().chain(edges.iter()).any(|e| {
                        e.source == bypass.source
                            && e.target == bypass.target
                            && e.target_handle.is_none()
                    });
                    if !duplicate {
                        result.push(bypass);
                    }
                }
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::catalogue::implemented;

    fn edge(source: &str, target: &str) -> Edge {
        Edge {
            id: None,
            source: source.into(),
            target: target.into(),
            source_handle: None,
            target_handle: None,
        }
    }

    #[test]
    fn providers_in_a_chain_are_lifted_and_data_flows_past_them() {
        let nodes = [
            ("start", "StartNode"),
            ("split", "ChunkSplitterNode"),
            ("embed", "OpenAIEmbedderNode"),
            ("store", "PGVectorStoreNode"),
            ("rerank", "RerankerNode"),
            ("memory", "BufferMemoryNode"),
            ("qa", "RetrievalQANode"),
        ];
        let definitions: Vec<NodeType> =
            nodes.iter().map(|(_, t)| implemented(t).unwrap()).collect();
        let node_of = |id: &str| nodes.iter().position(|(n, _)| *n == id);
        let edges = [
            edge("start", "split"),
            edge("split", "embed"),
            edge("embed", "store"),
            edge("store", "rerank"),
            edge("rerank", "qa"),
            edge("memory", "qa"),
        ];
        let lifted = lift(&edges, &definitions, &node_of);
        let shown: Vec<String> = lifted
            .iter()
            .map(|e| {
                format!(
                    "{}->{}:{}",
                    e.source,
                    e.target,
                    e.target_handle.as_deref().unwrap_or("-")
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "start->split:-",
                "split->store:-",
                "embed->store:embedder",
                "store->qa:-",
                "rerank->qa:reranker",
                "memory->qa:memory"
            ]
        );
    }
}
