//! Idempotent calls: a call with an `Idempotency-Key` header (or, for signed calls, a
//! `webhook-id`) gets an execution id derived from the webhook and the key, so a retry names
//! the same execution. JetStream drops the retry's job within its duplicate window (the id is
//! the message id); beyond it, the worker finds the execution recorded under that id (its
//! primary key) and runs nothing.

use uuid::Uuid;

/// The namespace of execution ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6b61_6966_7573_696f_6e2d_6964_656d_706f);
pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {header} header must be 1 to 255 visible ASCII characters")]
pub struct BadKey {
    pub header: &'static str,
}

/// Checks a key's shape.
pub fn check(header: &'static str, key: &str) -> Result<(), BadKey> {
    let ok =
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(BadKey { header }) }
}

/// The execution id of every call to `webhook_id` with `key`.
pub fn execution_id(webhook_id: &str, key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{webhook_id}\n{key}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_one_execution_per_webhook() {
        assert_eq!(execution_id("wh_a", "k1"), execution_id("wh_a", "k1"));
        assert_ne!(execution_id("wh_a", "k1"), execution_id("wh_b", "k1"));
        assert_ne!(execution_id("wh_a", "k1"), execution_id("wh_a", "k2"));
        assert!(check("Idempotency-Key", "order-17").is_ok());
        assert!(check("Idempotency-Key", "").is_err());
        assert!(check("Idempotency-Key", "has space").is_err());
        assert!(check("Idempotency-Key", &"x".repeat(256)).is_err());
    }
}
