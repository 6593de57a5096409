//! An embeddings model on an OpenAI-compatible server, as OpenAIEmbedder provides it: inputs
//! sent in batches of `batch_size` (OpenAI accepts up to 2,048 inputs a request; 100 by default
//! keeps each request small enough to retry cheaply), each batch retried under the node's
//! policy, `dimensions` passed on, and the vector size known for OpenAI's models on OpenAI's API,
//! else learnt from the first answer (or probed once).

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::connection::Connection;
use super::policy::CallPolicy;
use crate::nodes::NodeError;
use crate::nodes::capability::Embedder;

/// Inputs per request unless the node says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// The vector sizes of OpenAI's embedding models (without `dimensions`).
pub fn known_dimension(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

pub struct OpenAiEmbedder {
    pub connection: Connection,
    pub model: String,
    /// Asked of the server (models that can shorten their vectors).
    pub dimensions: Option<u32>,
    pub batch_size: usize,
    pub policy: CallPolicy,
    /// The size learnt from the first answer when not known beforehand.
    pub probed: OnceCell<usize>,
    /// The credential its server came from, if any.
    pub credential_id: Option<String>,
}

impl OpenAiEmbedder {
    async fn batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, NodeError> {
        let Connection { server, http } = &self.connection;
        let (vectors, _usage) = self
            .policy
            .run(
                || {
                    server.embed(
                        http,
                        &self.model,
                        texts,
                        self.dimensions,
                        self.policy.timeout,
                    )
                },
                || true,
            )
            .await?;
        Ok(vectors)
    }
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn credential_id(&self) -> Option<&str> {
        self.credential_id.as_deref()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, NodeError>> {
        async move {
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(self.batch_size.max(1)) {
                vectors.extend(self.batch(batch).await?);
            }
            if let Some(first) = vectors.first() {
                let _ = self.probed.set(first.len());
            }
            Ok(vectors)
        }
        .boxed()
    }

    fn dimension(&self) -> BoxFuture<'_, Result<usize, NodeError>> {
        async move {
            if let Some(dimensions) = self.dimensions {
                return Ok(dimensions as usize);
            }
            // A model's published size holds on OpenAI's own API; a server elsewhere answering
            // to the same name (a local model standing in for it) is asked.
            if let Some(known) = known_dimension(&self.model)
                && self.connection.server.base_url.host_str() == Some("api.openai.com")
            {
                return Ok(known);
            }
            self.probed
                .get_or_try_init(|| async {
                    let probe = self.batch(&["dimension probe".to_owned()]).await?;
                    probe.first().map(Vec::len).ok_or_else(|| {
                        NodeError::Configuration("the embeddings server returned no vector".into())
                    })
                })
                .await
                .copied()
        }
        .boxed()
    }
}
