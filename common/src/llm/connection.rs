//! Which OpenAI-compatible server a model node calls, with which key and through which client:
//! its credential's (behind the SSRF guard, the author chose it), its own `base_url` (guarded
//! too), else the operator's default server; with none of them it fails as a credential error
//! naming the node.

use secrecy::SecretString;
use url::Url;

use super::openai::OpenAiServer;
use crate::nodes::NodeError;
use crate::nodes::services::{NodeServices, RunIds};

/// OpenAI's own API, for `openai` credentials that name no `base_url`.
pub const OPENAI_API: &str = "https://api.openai.com/v1";

/// A server to call and the client to call it with.
#[derive(Debug, Clone)]
pub struct Connection {
    pub server: OpenAiServer,
    pub http: reqwest::Client,
}

/// What a model node's configuration says about where to go.
pub struct Target<'a> {
    pub node_id: &'a str,
    /// `credential_id`, when set.
    pub credential_id: Option<&'a str>,
    /// The node's own `base_url`, when set (OpenAICompatibleNode).
    pub base_url: Option<&'a str>,
    /// The operator's server for this kind of call (chat or embeddings).
    pub default: Option<&'a OpenAiServer>,
    /// Named in the error when nothing is configured: `KAI_OPENAI_BASE_URL`, say.
    pub default_setting: &'a str,
}

/// Resolves `target` for the run's owner.
pub async fn connect(
    target: Target<'_>,
    run: &RunIds,
    services: &NodeServices,
) -> Result<Connection, NodeError> {
    let node = target.node_id;
    let own_base = target.base_url.map(str::trim).filter(|u| !u.is_empty());
    if let Some(id) = target
        .credential_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        let credential = services.credential(run, node, id).await?;
        if !matches!(credential.kind.name, "openai" | "openai_compatible") {
            return Err(NodeError::Credential(format!(
                "node {node}: credential `{}` is a `{}` credential; this node needs an `openai` \
                 or `openai_compatible` one",
                credential.name, credential.kind.name
            )));
        }
        let base = own_base
            .or(credential.field("base_url"))
            .unwrap_or(OPENAI_API);
        return guarded(
            node,
            base,
            credential
                .field("api_key")
                .map(|key| SecretString::from(key.to_owned())),
            credential.field("organization").map(str::to_owned),
            services,
        );
    }
    if let Some(base) = own_base {
        return guarded(node, base, None, None, services);
    }
    match target.default {
        Some(server) => Ok(Connection {
            server: server.clone(),
            http: services.models.http.clone(),
        }),
        None => Err(NodeError::Credential(format!(
            "node {node}: no credential_id is set and this deployment has no default model \
             server ({})",
            target.default_setting
        ))),
    }
}

/// A server the workflow's author chose: reached through the SSRF guard.
fn guarded(
    node: &str,
    base: &str,
    api_key: Option<SecretString>,
    organization: Option<String>,
    services: &NodeServices,
) -> Result<Connection, NodeError> {
    let (base_url, http) = guarded_url(node, base, services)?;
    Ok(Connection {
        server: OpenAiServer {
            base_url,
            api_key,
            organization,
        },
        http,
    })
}

/// An address the workflow's author chose, checked by the SSRF guard, with the guarded client
/// that must call it.
pub fn guarded_url(
    node: &str,
    base: &str,
    services: &NodeServices,
) -> Result<(Url, reqwest::Client), NodeError> {
    let url = Url::parse(base)
        .map_err(|e| NodeError::Configuration(format!("node {node}: base_url: {e}")))?;
    let client = services.outbound.client(true);
    client
        .check_url(&url)
        .map_err(|e| NodeError::Configuration(format!("node {node}: base_url: {e}")))?;
    Ok((url, client.client().clone()))
}
