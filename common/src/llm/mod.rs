//! Clients for model servers (chat and embeddings), used by the LLM, embedding and agent nodes.

pub mod bm25;
pub mod chat;
pub mod cohere;
pub mod connection;
pub mod embedder;
pub mod memory_store;
pub mod openai;
pub mod policy;
pub mod servers;

#[cfg(all(test, feature = "testing"))]
mod tests;
