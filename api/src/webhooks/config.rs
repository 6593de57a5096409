//! A webhook endpoint's configuration, with the seed's keys and defaults.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    pub authentication_required: bool,
    pub allowed_event_types: Vec<String>,
    /// KiB.
    pub max_payload_size: u64,
    pub rate_limit_per_minute: u32,
    /// Seconds a synchronous caller waits for the result before getting 202.
    pub webhook_timeout: u64,
    pub enable_cors: bool,
    pub node_behavior: String,
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
        }
    }
}

/// Longest a caller may be kept waiting, whatever a node asks for.
const MAX_TIMEOUT_SECS: u64 = 300;

impl WebhookConfig {
    /// The configuration a webhook node asks for, from its `data` (KAI-Fusion names included:
    /// `timeout`, `require_auth`).
    pub fn from_node_data(data: &Value) -> Self {
        let mut config = Self::default();
        let config_source = kai_common::nodes::config_of(data);
        let get = |keys: &[&str]| keys.iter().find_map(|k| config_source.get(*k));
        if let Some(timeout) = get(&["webhook_timeout", "timeout"]).and_then(Value::as_u64) {
            config.webhook_timeout = timeout.clamp(1, MAX_TIMEOUT_SECS);
        }
        if let Some(required) =
            get(&["authentication_required", "require_auth"]).and_then(Value::as_bool)
        {
            config.authentication_required = required;
        }
        if let Some(size) = get(&["max_payload_size"]).and_then(Value::as_u64) {
            config.max_payload_size = size.max(1);
        }
        if let Some(rate) = get(&["rate_limit_per_minute"]).and_then(Value::as_u64) {
            config.rate_limit_per_minute = rate.min(u64::from(u32::MAX)) as u32;
        }
        config
    }

    pub fn max_payload_bytes(&self) -> usize {
        (self.max_payload_size.saturating_mul(1024)).min(usize::MAX as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_kai_fusion_node_settings() {
        let config = WebhookConfig::from_node_data(&json!({"timeout": 5, "require_auth": false}));
        assert_eq!(config.webhook_timeout, 5);
        assert!(!config.authentication_required);
        assert_eq!(
            WebhookConfig::from_node_data(&json!({})),
            WebhookConfig::default()
        );
        assert_eq!(
            WebhookConfig::from_node_data(&json!({"timeout": 99999})).webhook_timeout,
            300
        );
    }
}
