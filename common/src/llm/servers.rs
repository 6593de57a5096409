//! The model servers an operator configures for the whole deployment: the chat and embeddings
//! server that nodes without a credential use (KAI-Fusion's exports carry none), an optional
//! rerank server, and where Tavily and Cohere are. Operator-set, so reached with a client the
//! SSRF guard does not restrict; whatever a workflow author sets goes through the guard.

use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use url::Url;

use super::openai::OpenAiServer;

/// The embeddings model of collections without an embedder, unless the operator names another.
pub const DEFAULT_EMBEDDINGS_MODEL: &str = "text-embedding-3-small";

/// What operators set (each also a flag). Empty means unset.
#[derive(Debug, Clone, Args)]
pub struct ModelServersConfig {
    /// OpenAI-compatible server (`.../v1`) for chat nodes that name no credential; empty: such
    /// nodes fail naming the missing credential.
    #[arg(long, env = "KAI_OPENAI_BASE_URL", value_name = "KAI_OPENAI_BASE_URL",
          default_value = "", value_parser = parse_optional_url)]
    pub openai_base_url: OptionalUrl,

    /// API key for `KAI_OPENAI_BASE_URL` (and `KAI_EMBEDDINGS_BASE_URL` unless it has its own).
    #[arg(long, env = "KAI_OPENAI_API_KEY", value_name = "KAI_OPENAI_API_KEY",
          hide_env_values = true, default_value = "", value_parser = parse_optional_secret)]
    pub openai_api_key: OptionalSecret,

    /// OpenAI-compatible embeddings server for embedding nodes without a credential; empty:
    /// `KAI_OPENAI_BASE_URL`.
    #[arg(long, env = "KAI_EMBEDDINGS_BASE_URL", value_name = "KAI_EMBEDDINGS_BASE_URL",
          default_value = "", value_parser = parse_optional_url)]
    pub embeddings_base_url: OptionalUrl,

    /// API key for `KAI_EMBEDDINGS_BASE_URL`; empty: `KAI_OPENAI_API_KEY`.
    #[arg(long, env = "KAI_EMBEDDINGS_API_KEY", value_name = "KAI_EMBEDDINGS_API_KEY",
          hide_env_values = true, default_value = "", value_parser = parse_optional_secret)]
    pub embeddings_api_key: OptionalSecret,

    /// The embeddings model asked of the deployment's embeddings server for vector collections
    /// that name no embedder (their text queries and documents).
    #[arg(long, env = "KAI_EMBEDDINGS_MODEL", value_name = "KAI_EMBEDDINGS_MODEL",
          default_value = DEFAULT_EMBEDDINGS_MODEL)]
    pub embeddings_model: String,

    /// Cohere-compatible rerank server (`POST {url}/v2/rerank`) for Reranker nodes without a
    /// credential; empty: those rank locally (BM25) and say so.
    #[arg(long, env = "KAI_RERANK_BASE_URL", value_name = "KAI_RERANK_BASE_URL",
          default_value = "", value_parser = parse_optional_url)]
    pub rerank_base_url: OptionalUrl,

    /// API key for `KAI_RERANK_BASE_URL`.
    #[arg(long, env = "KAI_RERANK_API_KEY", value_name = "KAI_RERANK_API_KEY",
          hide_env_values = true, default_value = "", value_parser = parse_optional_secret)]
    pub rerank_api_key: OptionalSecret,

    /// Where Tavily's API is, for `tavily` credentials that do not name a `base_url`.
    #[arg(long, env = "KAI_TAVILY_BASE_URL", value_name = "KAI_TAVILY_BASE_URL",
          default_value = "https://api.tavily.com", value_parser = parse_optional_url)]
    pub tavily_base_url: OptionalUrl,

    /// Where Cohere's API is, for `cohere` credentials that do not name a `base_url`.
    #[arg(long, env = "KAI_COHERE_BASE_URL", value_name = "KAI_COHERE_BASE_URL",
          default_value = "https://api.cohere.com", value_parser = parse_optional_url)]
    pub cohere_base_url: OptionalUrl,
}

impl Default for ModelServersConfig {
    fn default() -> Self {
        Self {
            openai_base_url: OptionalUrl(None),
            openai_api_key: OptionalSecret(None),
            embeddings_base_url: OptionalUrl(None),
            embeddings_api_key: OptionalSecret(None),
            embeddings_model: DEFAULT_EMBEDDINGS_MODEL.to_owned(),
            rerank_base_url: OptionalUrl(None),
            rerank_api_key: OptionalSecret(None),
            tavily_base_url: OptionalUrl(Url::parse("https://api.tavily.com").ok()),
            cohere_base_url: OptionalUrl(Url::parse("https://api.cohere.com").ok()),
        }
    }
}

impl ModelServersConfig {
    /// Chat, embeddings, rerank, Tavily and Cohere all at `root` (a test's fake server):
    /// OpenAI's API under `root/v1`.
    pub fn all_at(root: &str) -> Self {
        let root = root.trim_end_matches('/');
        let url = |text: String| OptionalUrl(Some(Url::parse(&text).expect("a fake server URL")));
        Self {
            openai_base_url: url(format!("{root}/v1")),
            rerank_base_url: url(root.to_owned()),
            tavily_base_url: url(root.to_owned()),
            cohere_base_url: url(root.to_owned()),
            ..Self::default()
        }
    }
}

/// A URL that may be unset (an empty environment variable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionalUrl(pub Option<Url>);

/// A secret that may be unset.
#[derive(Debug, Clone, Default)]
pub struct OptionalSecret(pub Option<SecretString>);

fn parse_optional_url(text: &str) -> Result<OptionalUrl, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(OptionalUrl(None));
    }
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    Ok(OptionalUrl(Some(url)))
}

fn parse_optional_secret(text: &str) -> Result<OptionalSecret, String> {
    let text = text.trim();
    Ok(OptionalSecret(
        (!text.is_empty()).then(|| SecretString::from(text.to_owned())),
    ))
}

/// The operator's servers, ready to call, and the client that calls them.
#[derive(Debug, Clone)]
pub struct ModelServers {
    pub chat: Option<OpenAiServer>,
    pub embeddings: Option<OpenAiServer>,
    /// `KAI_EMBEDDINGS_MODEL`.
    pub embeddings_model: String,
    pub rerank: Option<(Url, Option<SecretString>)>,
    pub tavily: Option<Url>,
    pub cohere: Option<Url>,
    /// Not behind the SSRF guard: only operator-set addresses are called with it.
    pub http: reqwest::Client,
}

impl ModelServers {
    pub fn new(config: &ModelServersConfig, user_agent: &str) -> reqwest::Result<Self> {
        crate::tls::install_crypto_provider();
        let chat = config
            .openai_base_url
            .0
            .clone()
            .map(|base_url| OpenAiServer {
                base_url,
                api_key: config.openai_api_key.0.clone(),
                organization: None,
            });
        let embeddings = config
            .embeddings_base_url
            .0
            .clone()
            .map(|base_url| OpenAiServer {
                base_url,
                api_key: config
                    .embeddings_api_key
                    .0
                    .clone()
                    .or_else(|| config.openai_api_key.0.clone()),
                organization: None,
            })
            .or_else(|| chat.clone());
        Ok(Self {
            chat,
            embeddings,
            embeddings_model: config.embeddings_model.clone(),
            rerank: config
                .rerank_base_url
                .0
                .clone()
                .map(|url| (url, config.rerank_api_key.0.clone())),
            tavily: config.tavily_base_url.0.clone(),
            cohere: config.cohere_base_url.0.clone(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(user_agent)
                .build()?,
        })
    }
}

impl Default for ModelServers {
    fn default() -> Self {
        Self::new(&ModelServersConfig::default(), "kai-fusion").expect("a default HTTP client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn embeddings_fall_back_to_the_chat_server_and_its_key() {
        let config = ModelServersConfig {
            openai_base_url: parse_optional_url("http://models:8080/v1").unwrap(),
            openai_api_key: parse_optional_secret("sk-operator").unwrap(),
            ..ModelServersConfig::default()
        };
        let servers = ModelServers::new(&config, "test").unwrap();
        let embeddings = servers.embeddings.unwrap();
        assert_eq!(embeddings.base_url.as_str(), "http://models:8080/v1");
        assert_eq!(embeddings.api_key.unwrap().expose_secret(), "sk-operator");
        assert!(servers.rerank.is_none());
        assert_eq!(parse_optional_url(" ").unwrap(), OptionalUrl(None));
        assert!(parse_optional_url("ftp://x").is_err());
    }
}
