//! A webhook endpoint's configuration: the seed's keys with their defaults plus the controls
//! ingress enforces (IPs, methods, response mode, auth mode, CORS origins). Read leniently from
//! workflow nodes (KAI-Fusion exports write lists as comma-separated text and booleans as
//! strings), strictly from the management API, and always validated before it is stored.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// The caller waits for the run's result (up to `webhook_timeout`).
    Sync,
    /// The caller gets 202 as soon as the job is stored.
    Async,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `Authorization: Bearer <security_token>`.
    Bearer,
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Hmac,
    /// No credentials; only with `authentication_required: false`.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    pub authentication_required: bool,
    /// Event types accepted; empty accepts every type.
    pub allowed_event_types: Vec<String>,
    /// KiB.
    pub max_payload_size: u64,
    /// Calls per minute across all replicas; 0 is unlimited.
    pub rate_limit_per_minute: u32,
    /// Seconds a synchronous caller waits for the result before getting 202.
    pub webhook_timeout: u64,
    pub enable_cors: bool,
    /// `auto`, `start_only` or `trigger_only` (recorded for the editor; ingress ignores it).
    pub node_behavior: String,
    /// Addresses and CIDR blocks (IPv4 and IPv6) allowed to call; empty allows every address.
    pub allowed_ips: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub response_mode: ResponseMode,
    pub auth_mode: AuthMode,
    /// Origins browsers may call from (`https://app.example.com`, or `*`); empty allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            authentication_required: true,
            allowed_event_types: Vec::new(),
            max_payload_size: 1024,
            rate_limit_per_minute: 60,
            webhook_timeout: 30,
            enable_cors: true,
            node_behavior: "auto".to_owned(),
            allowed_ips: Vec::new(),
            allowed_methods: vec!["POST".to_owned()],
            response_mode: ResponseMode::Sync,
            auth_mode: AuthMode::Bearer,
            allowed_origins: Vec::new(),
        }
    }
}

pub const MAX_TIMEOUT_SECS: u64 = 300;
pub const MAX_PAYLOAD_KIB: u64 = 10 * 1024;
pub const MAX_RATE_PER_MINUTE: u64 = 100_000_000;
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const NODE_BEHAVIORS: &[&str] = &["auto", "start_only", "trigger_only"];
const MAX_LIST_LEN: usize = 256;
const MAX_EVENT_TYPE_LEN: usize = 100;

/// What is wrong with a configuration, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook config `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Keys the management API accepts; anything else is a mistake worth naming.
const KEYS: &[&str] = &[
    "authentication_required",
    "allowed_event_types",
    "max_payload_size",
    "rate_limit_per_minute",
    "webhook_timeout",
    "enable_cors",
    "node_behavior",
    "allowed_ips",
    "allowed_methods",
    "response_mode",
    "auth_mode",
    "allowed_origins",
];

impl WebhookConfig {
    /// The configuration a webhook node asks for, from its `data`, over `base` (the stored
    /// configuration, so keys set through the management API survive a save that does not set
    /// them). KAI-Fusion's own names are understood: `timeout`, `require_auth`, `http_method`,
    /// `authentication_type`.
    pub fn from_node_data(base: &WebhookConfig, data: &Value) -> Result<Self, ConfigError> {
        let empty = Map::new();
        let source = kai_common::nodes::config_of(data)
            .as_object()
            .unwrap_or(&empty);
        let mut patch = Map::new();
        let aliases: &[(&str, &str)] = &[
            ("timeout", "webhook_timeout"),
            ("require_auth", "authentication_required"),
            ("http_method", "allowed_methods"),
        ];
        for (key, value) in source {
            let key = aliases
                .iter()
                .find(|(alias, _)| alias == key)
                .map_or(key.as_str(), |(_, name)| *name);
            if KEYS.contains(&key) && !is_blank(value) {
                patch.insert(key.to_owned(), value.clone());
            }
        }
        // KAI-Fusion's `authentication_type: none` is an open webhook; its basic/header auth
        // used stored credentials, which the bearer token replaces.
        if source.get("authentication_type").and_then(Value::as_str) == Some("none")
            && !patch.contains_key("authentication_required")
        {
            patch.insert("authentication_required".into(), Value::Bool(false));
        }
        let mut config = base.clone();
        config.apply(&patch, false)?;
        Ok(config)
    }

    /// Applies the keys of `patch` (a management API request), refusing unknown keys.
    pub fn patched(&self, patch: &Map<String, Value>) -> Result<Self, ConfigError> {
        let mut config = self.clone();
        config.apply(patch, true)?;
        Ok(config)
    }

    fn apply(&mut self, patch: &Map<String, Value>, strict: bool) -> Result<(), ConfigError> {
        for (key, value) in patch {
            match key.as_str() {
                "authentication_required" => self.authentication_required = boolean(key, value)?,
                "enable_cors" => self.enable_cors = boolean(key, value)?,
                "allowed_event_types" => self.allowed_event_types = list(key, value)?,
                "allowed_ips" => self.allowed_ips = list(key, value)?,
                "allowed_origins" => self.allowed_origins = list(key, value)?,
                "allowed_methods" => {
                    self.allowed_methods = list(key, value)?
                        .into_iter()
                        .map(|m| m.to_ascii_uppercase())
                        .collect();
                }
                "max_payload_size" => self.max_payload_size = number(key, value)?,
                "webhook_timeout" => self.webhook_timeout = number(key, value)?,
                "rate_limit_per_minute" => {
                    let rate = number(key, value)?;
                    if rate > MAX_RATE_PER_MINUTE {
                        return Err(invalid(key, format!("at most {MAX_RATE_PER_MINUTE}")));
                    }
                    self.rate_limit_per_minute =
                        u32::try_from(rate).expect("bounded by MAX_RATE_PER_MINUTE");
                }
                "node_behavior" => self.node_behavior = text(key, value)?,
                "response_mode" => self.response_mode = choice(key, value)?,
                "auth_mode" => self.auth_mode = choice(key, value)?,
                other if strict => {
                    return Err(invalid(
                        other,
                        format!("unknown key; known keys are {}", KEYS.join(", ")),
                    ));
                }
                _ => {}
            }
        }
        // Without an explicit mode, the mode follows `authentication_required`: an open
        // webhook has nothing to check, a closed one checks the bearer token at least. An
        // explicit `none` on a closed webhook is left for `validate` to refuse.
        if !patch.contains_key("auth_mode") {
            if !self.authentication_required {
                self.auth_mode = AuthMode::None;
            } else if self.auth_mode == AuthMode::None {
                self.auth_mode = AuthMode::Bearer;
            }
        }
        self.validate()
    }

    /// Checks every key's value, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_PAYLOAD_KIB).contains(&self.max_payload_size) {
            return Err(invalid(
                "max_payload_size",
                format!("must be 1 to {MAX_PAYLOAD_KIB} KiB"),
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.webhook_timeout) {
            return Err(invalid(
                "webhook_timeout",
                format!("must be 1 to {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        if !NODE_BEHAVIORS.contains(&self.node_behavior.as_str()) {
            return Err(invalid(
                "node_behavior",
                format!("must be one of {}", NODE_BEHAVIORS.join(", ")),
            ));
        }
        for (key, list) in [
            ("allowed_event_types", &self.allowed_event_types),
            ("allowed_ips", &self.allowed_ips),
            ("allowed_methods", &self.allowed_methods),
            ("allowed_origins", &self.allowed_origins),
        ] {
            if list.len() > MAX_LIST_LEN {
                return Err(invalid(key, format!("at most {MAX_LIST_LEN} entries")));
            }
        }
        if let Some(t) = self
            .allowed_event_types
            .iter()
            .find(|t| t.is_empty() || t.len() > MAX_EVENT_TYPE_LEN)
        {
            return Err(invalid(
                "allowed_event_types",
                format!("`{t}` must be 1 to {MAX_EVENT_TYPE_LEN} characters"),
            ));
        }
        for ip in &self.allowed_ips {
            parse_network(ip).map_err(|problem| invalid("allowed_ips", problem))?;
        }
        if self.allowed_methods.is_empty() {
            return Err(invalid("allowed_methods", "at least one method is needed"));
        }
        if let Some(m) = self
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(invalid(
                "allowed_methods",
                format!("`{m}` is not one of {}", METHODS.join(", ")),
            ));
        }
        for origin in &self.allowed_origins {
            check_origin(origin).map_err(|problem| invalid("allowed_origins", problem))?;
        }
        if self.authentication_required && self.auth_mode == AuthMode::None {
            return Err(invalid(
                "auth_mode",
                "`none` needs `authentication_required: false`",
            ));
        }
        Ok(())
    }

    pub fn max_payload_bytes(&self) -> usize {
        usize::try_from(self.max_payload_size.saturating_mul(1024)).unwrap_or(usize::MAX)
    }

    /// The allowed networks, parsed (the configuration was validated when stored).
    pub fn networks(&self) -> Vec<IpNet> {
        self.allowed_ips
            .iter()
            .filter_map(|ip| parse_network(ip).ok())
            .collect()
    }
}

/// An address (a one-address network) or a CIDR block.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))
}

fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || format!("`{origin}` is not an origin like https://app.example.com, or *");
    let url = url::Url::parse(origin).map_err(|_| bad())?;
    let bare = url.path() == "/" && !origin.ends_with('/');
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !bare
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad());
    }
    Ok(())
}

/// Empty strings and nulls in node data mean "not set".
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn boolean(key: &str, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(key, format!("must be true or false, not {value}"))),
    }
}

fn number(key: &str, value: &Value) -> Result<u64, ConfigError> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(key, format!("must be a whole number ≥ 0, not {value}")))
}

fn text(key: &str, value: &Value) -> Result<String, ConfigError> {
    value
        .as_str()
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| invalid(key, format!("must be a string, not {value}")))
}

/// A list of strings, or one comma-separated string.
fn list(key: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::String(s) => s.split(',').map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(key, format!("entries must be strings, not {item}")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                key,
                format!("must be a list of strings, not {value}"),
            ));
        }
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

fn choice<T: serde::de::DeserializeOwned>(key: &str, value: &Value) -> Result<T, ConfigError> {
    serde_json::from_value(value.clone())
        .map_err(|_| invalid(key, format!("`{value}` is not one of the accepted values")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_node(data: Value) -> Result<WebhookConfig, ConfigError> {
        WebhookConfig::from_node_data(&WebhookConfig::default(), &data)
    }

    #[test]
    fn reads_kai_fusion_node_settings() {
        let config = from_node(json!({"timeout": 5, "require_auth": false})).unwrap();
        assert_eq!(config.webhook_timeout, 5);
        assert!(!config.authentication_required);
        assert_eq!(config.auth_mode, AuthMode::None);
        assert_eq!(from_node(json!({})).unwrap(), WebhookConfig::default());
        // The shapes of the Webhook-Template export.
        let config = from_node(json!({
            "allowed_ips": "", "enable_cors": "true", "http_method": "POST",
            "authentication_type": "none", "rate_limit_per_minute": 60,
            "allowed_event_types": "order.created, order.paid", "allowed_origins": "*"
        }))
        .unwrap();
        assert!(!config.authentication_required);
        assert_eq!(config.allowed_methods, ["POST"]);
        assert_eq!(config.allowed_event_types, ["order.created", "order.paid"]);
        assert_eq!(config.allowed_origins, ["*"]);
    }

    #[test]
    fn node_settings_override_only_the_keys_they_set() {
        let base = WebhookConfig::default()
            .patched(json!({"rate_limit_per_minute": 5000}).as_object().unwrap())
            .unwrap();
        let config = WebhookConfig::from_node_data(&base, &json!({"timeout": 9})).unwrap();
        assert_eq!(config.rate_limit_per_minute, 5000);
        assert_eq!(config.webhook_timeout, 9);
    }

    #[test]
    fn invalid_values_are_named() {
        let patch = |v: Value| WebhookConfig::default().patched(v.as_object().unwrap());
        for (body, key) in [
            (json!({"allowed_ips": ["10.0.0.0/33"]}), "allowed_ips"),
            (json!({"allowed_ips": ["nope"]}), "allowed_ips"),
            (json!({"allowed_methods": ["TRACE"]}), "allowed_methods"),
            (json!({"allowed_methods": []}), "allowed_methods"),
            (json!({"response_mode": "later"}), "response_mode"),
            (json!({"auth_mode": "none"}), "auth_mode"),
            (json!({"auth_mode": "magic"}), "auth_mode"),
            (
                json!({"allowed_origins": ["https://a.example/path"]}),
                "allowed_origins",
            ),
            (json!({"max_payload_size": 0}), "max_payload_size"),
            (json!({"webhook_timeout": 301}), "webhook_timeout"),
            (
                json!({"rate_limit_per_minute": -1}),
                "rate_limit_per_minute",
            ),
            (json!({"enable_cors": "maybe"}), "enable_cors"),
            (json!({"node_behavior": "sometimes"}), "node_behavior"),
            (json!({"colour": "blue"}), "colour"),
        ] {
            let error = patch(body.clone()).expect_err(&body.to_string());
            assert_eq!(error.key, key, "{body}");
        }
        let open = patch(json!({"authentication_required": false, "auth_mode": "none"})).unwrap();
        assert_eq!(open.auth_mode, AuthMode::None);
        let ok = patch(json!({
            "allowed_ips": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"],
            "allowed_methods": ["get", "POST"],
            "allowed_origins": ["https://app.example.com", "http://localhost:3000"],
            "auth_mode": "hmac", "response_mode": "async"
        }))
        .unwrap();
        assert_eq!(ok.networks().len(), 3);
        assert_eq!(ok.allowed_methods, ["GET", "POST"]);
    }
}
