//! Property tests: what the API reads from callers (webhook payloads, signatures, IP lists and
//! CIDRs, `X-Forwarded-For`, webhook settings, access tokens, API keys, cursors, paths) is
//! answered with a value or an error, never a panic, and the security checks hold for any input:
//! a signature verifies only over the body it was made for, the client address is the peer or
//! one the header named.
//! More cases: `PROPTEST_CASES=10000 cargo test -p kai-api parser_properties`.

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use ipnet::IpNet;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::auth::token::TokenKeys;
use crate::auth::{api_key, scope};
use crate::routes::cursor::{Cursor, Listing};
use crate::webhooks::client_ip::client_ip;
use crate::webhooks::config::{WebhookConfig, parse_network};
use crate::webhooks::payload;
use crate::webhooks::signature::{self, SignedHeaders};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,24}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Whether any string (or key) in `value` holds a NUL character.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Address-ish text: digits, dots, colons, slashes, commas and spaces.
fn address_text() -> impl Strategy<Value = String> {
    "[0-9a-fA-F:./, %]{0,60}"
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn networks_parse_or_are_refused(text in address_text()) {
        if let Ok(net) = parse_network(&text)
            && let Ok(ip) = text.trim().parse::<IpAddr>()
        {
            prop_assert!(net.contains(&ip));
        }
    }

    #[test]
    fn the_client_is_the_peer_or_named_by_the_header(
        peer in any::<IpAddr>(),
        forwarded in prop::option::of(address_text()),
        trusted in prop::collection::vec(any::<IpAddr>().prop_map(IpNet::from), 0..3),
        trust_peer in any::<bool>(),
    ) {
        let mut trusted = trusted;
        if trust_peer {
            trusted.push(IpNet::from(peer));
        }
        if let Some(found) = client_ip(Some(peer), forwarded.as_deref(), &trusted) {
            let named = forwarded.as_deref().is_some_and(|header| {
                header.split(',').any(|hop| hop.trim().parse::<IpAddr>() == Ok(found))
            });
            prop_assert!(found == peer || named, "{found} from {peer} and {forwarded:?}");
            // An untrusted peer is never overridden by what it wrote.
            if !trusted.iter().any(|net| net.contains(&peer)) {
                prop_assert_eq!(found, peer);
            }
        }
    }

    #[test]
    fn payloads_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = payload::parse(&bytes);
    }

    #[test]
    fn json_payloads_parse_unless_they_hold_a_nul(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let result = payload::parse(&bytes);
        if holds_nul(&value) {
            prop_assert_eq!(result.err(), Some(payload::PayloadError::Nul));
        } else {
            prop_assert_eq!(result.unwrap().map(|raw| raw.get().as_bytes()), Some(&bytes[..]));
        }
    }

    #[test]
    fn a_signature_verifies_only_its_own_body(
        key in prop::collection::vec(any::<u8>(), 1..64),
        id in "[ -~]{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..128),
        other in prop::collection::vec(any::<u8>(), 0..128),
        timestamp in 0i64..4_000_000_000,
    ) {
        let signature = signature::sign(&key, &id, timestamp, &body);
        let timestamp_text = timestamp.to_string();
        let headers = SignedHeaders { id: &id, timestamp: &timestamp_text, signature: &signature };
        prop_assert!(signature::verify(&headers, &body, &[&key]).is_ok());
        if other != body {
            prop_assert!(signature::verify(&headers, &other, &[&key]).is_err());
        }
    }

    #[test]
    fn any_signature_headers_are_checked_without_panicking(
        id in ".{0,40}",
        timestamp in ".{0,20}",
        signature_header in "(v1,[A-Za-z0-9+/=]{0,50} ?){0,3}|.{0,60}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let headers = SignedHeaders { id: &id, timestamp: &timestamp, signature: &signature_header };
        let _ = signature::check_timestamp(&headers, Utc::now());
        prop_assert!(signature::verify(&headers, &body, &[b"key"]).is_err());
    }

    #[test]
    fn webhook_settings_are_read_or_refused(config in json_value()) {
        if let Ok(parsed) = serde_json::from_value::<WebhookConfig>(config) {
            let _ = parsed.validate();
            let _ = parsed.networks();
        }
    }

    #[test]
    fn webhook_shaped_settings_are_read_or_refused(
        ips in prop::collection::vec(address_text(), 0..4),
        origins in prop::collection::vec(".{0,30}", 0..3),
        rate in any::<i64>(),
        timeout in any::<i64>(),
    ) {
        let config = json!({"allowed_ips": ips, "allowed_origins": origins,
                            "rate_limit_per_minute": rate, "webhook_timeout": timeout});
        if let Ok(parsed) = serde_json::from_value::<WebhookConfig>(config) {
            let _ = parsed.validate();
        }
    }

    #[test]
    fn any_bearer_text_is_refused_or_verified(token in ".{0,200}") {
        let keys = TokenKeys::new(
            &SecretString::from("a-secret-that-is-at-least-32-characters".to_owned()),
            &[],
            Duration::from_secs(60),
        );
        prop_assert!(keys.verify(&token).is_err());
        let _ = api_key::looks_like_key(&token);
    }

    #[test]
    fn any_cursor_text_is_read_or_refused(text in "[A-Za-z0-9_-]{0,60}|.{0,60}") {
        let _ = Cursor::decode(&text, Listing::Executions, "scope");
    }

    #[test]
    fn any_path_needs_a_scope(path in "(/[a-z*{}_-]{0,12}){0,8}/?") {
        let _ = scope::required(&poem::http::Method::POST, &path);
    }
}
