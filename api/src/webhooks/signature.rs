//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the sender signs
//! `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 and sends
//! `webhook-signature: v1,<base64>` (several, space-separated, while it rotates keys). The key
//! is the random part of the webhook's security token, shown to users as `whsec_<base64>` so
//! that Standard Webhooks libraries can sign with it as it is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from our clock, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The headers a signed call carries.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the webhook-id, webhook-timestamp and webhook-signature headers are required")]
    Missing,
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes away from the server's time")]
    Expired,
    #[error("no webhook-signature matches the body")]
    Mismatch,
}

/// The HMAC key behind a `wht_<hex>` security token.
pub fn key_of(token: &str) -> Option<Vec<u8>> {
    hex::decode(token.strip_prefix("wht_")?).ok()
}

/// The `whsec_` form of a token's key, for Standard Webhooks libraries.
pub fn signing_secret(token: &str) -> Option<String> {
    key_of(token).map(|key| format!("whsec_{}", STANDARD.encode(key)))
}

/// Checks the timestamp against `now`: done before the body is read.
pub fn check_timestamp(
    headers: &SignedHeaders<'_>,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let sent: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now.timestamp() - sent).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

/// Whether one of the `v1` signatures was made over this id, timestamp and body with one of
/// `keys` (the current key, and the previous one during a rotation's grace period). Every
/// comparison is constant-time.
pub fn verify(
    headers: &SignedHeaders<'_>,
    body: &[u8],
    keys: &[&[u8]],
) -> Result<(), SignatureError> {
    let candidates: Vec<Vec<u8>> = headers
        .signature
        .split_whitespace()
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let mut matched = false;
    for key in keys {
        let mac = mac_of(key, headers, body);
        for candidate in &candidates {
            // Every pair is checked, so the time taken says nothing about which matched.
            matched |= mac.clone().verify_slice(candidate).is_ok();
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs like a Standard Webhooks sender (tests and the load generator use it).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let headers = SignedHeaders {
        id,
        timestamp: &timestamp,
        signature: "",
    };
    let tag = mac_of(key, &headers, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

fn mac_of(key: &[u8], headers: &SignedHeaders<'_>, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(headers.id.as_bytes());
    mac.update(b".");
    mac.update(headers.timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn verifies_the_specification_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let headers = SignedHeaders {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: "1614265330",
            signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        };
        assert_eq!(verify(&headers, body, &[&key]), Ok(()));
        assert_eq!(sign(&key, headers.id, 1614265330, body), headers.signature);
        assert_eq!(
            verify(&headers, br#"{"test": 2432232315}"#, &[&key]),
            Err(SignatureError::Mismatch)
        );
        let sent = DateTime::from_timestamp(1614265330, 0).unwrap();
        assert_eq!(check_timestamp(&headers, sent), Ok(()));
        assert_eq!(
            check_timestamp(&headers, sent + chrono::Duration::seconds(301)),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            check_timestamp(&headers, sent - chrono::Duration::seconds(301)),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn any_listed_signature_and_any_accepted_key_will_do() {
        let old = key_of(&format!("wht_{}", "ab".repeat(32))).unwrap();
        let new = key_of(&format!("wht_{}", "cd".repeat(32))).unwrap();
        let signature = sign(&old, "msg_1", 100, b"{}");
        let both = format!("v1,bm90IGl0 {signature}");
        let headers = SignedHeaders {
            id: "msg_1",
            timestamp: "100",
            signature: &both,
        };
        assert_eq!(verify(&headers, b"{}", &[&new, &old]), Ok(()));
        assert_eq!(
            verify(&headers, b"{}", &[&new]),
            Err(SignatureError::Mismatch)
        );
        assert!(signing_secret("wht_abcd").unwrap().starts_with("whsec_"));
        assert_eq!(signing_secret("not-a-token"), None);
    }
}
