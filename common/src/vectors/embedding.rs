//! The embedder of a collection: the one it was created with (a credential's server and a
//! model), else the deployment's embeddings server with `KAI_EMBEDDINGS_MODEL`, asked for the
//! collection's dimension when the model's own size is unknown or different.

use std::sync::Arc;

use serde_json::{Value, json};

use super::catalogue::Collection;
use super::spec::EmbedderSpec;
use crate::llm::embedder::known_dimension;
use crate::nodes::capability::{Embedder, Provided};
use crate::nodes::services::{NodeServices, RunIds};
use crate::nodes::{NodeDefinition, NodeError, ProviderContext, Providers};
use crate::workflow::template::TemplateScope;

/// Builds `collection`'s embedder for its owner, through the OpenAIEmbedder node's own code.
pub async fn collection_embedder(
    collection: &Collection,
    services: &NodeServices,
) -> Result<Arc<dyn Embedder>, NodeError> {
    embedder_for(
        collection.embedder.as_ref(),
        Some(collection.dimension),
        collection.owner,
        &format!("collection {}", collection.name),
        services,
    )
    .await
}

/// The embedder `spec` names for `owner` (none: the deployment's server and model), asked for
/// `dimension` when its model's own size is unknown or different.
pub async fn embedder_for(
    spec: Option<&EmbedderSpec>,
    dimension: Option<usize>,
    owner: uuid::Uuid,
    label: &str,
    services: &NodeServices,
) -> Result<Arc<dyn Embedder>, NodeError> {
    let config = embedder_config(spec, dimension, &services.models.embeddings_model);
    let run = RunIds {
        owner,
        ..RunIds::default()
    };
    let scope = TemplateScope::empty();
    let providers = Providers::none();
    let trigger: crate::json::SharedValue = Default::default();
    let provided = crate::nodes::openai_embedder::OpenAIEmbedder
        .provide(ProviderContext {
            node_id: label,
            config: &config,
            scope: &scope,
            providers: &providers,
            run: &run,
            trigger: &trigger,
            services,
        })
        .await?;
    match provided {
        Provided::Embedder(embedder) => Ok(embedder),
        _ => Err(NodeError::Configuration(
            "the embedder node provided something else".into(),
        )),
    }
}

fn embedder_config(
    spec: Option<&EmbedderSpec>,
    dimension: Option<usize>,
    default_model: &str,
) -> Value {
    let (model, credential) = match spec {
        Some(spec) => (spec.model.as_str(), spec.credential_id.as_deref()),
        None => (default_model, None),
    };
    let mut config = json!({"model": model});
    if let Some(credential) = credential {
        config["credential_id"] = json!(credential);
    }
    if let Some(dimension) = dimension
        && known_dimension(model) != Some(dimension)
    {
        config["dimensions"] = json!(dimension);
    }
    config
}
