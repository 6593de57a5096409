//! Clients for model servers (chat and embeddings), used by the LLM, embedding and agent nodes.

pub mod openai;

#[cfg(all(test, feature = "testing"))]
mod tests;
