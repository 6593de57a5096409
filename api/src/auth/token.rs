//! Access tokens: HS256 JWTs signed with `KAI_JWT_SECRET`.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Why a token was refused; the message is safe to show the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Expired,
    Invalid,
}

impl TokenRejection {
    pub fn message(self) -> &'static str {
        match self {
            TokenRejection::Expired => "the access token has expired",
            TokenRejection::Invalid => "the access token is invalid",
        }
    }
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid) -> anyhow::Result<String> {
        self.issue_with_expiry(user_id, Utc::now().timestamp() + self.ttl.as_secs() as i64)
    }

    fn issue_with_expiry(&self, user_id: Uuid, exp: i64) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user_id,
            iat: Utc::now().timestamp(),
            exp,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejection> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenRejection::Expired)
            }
            Err(_) => Err(TokenRejection::Invalid),
        }
    }

    /// A token that expired a minute ago, for tests of expiry handling.
    pub fn issue_expired(&self, user_id: Uuid) -> anyhow::Result<String> {
        self.issue_with_expiry(user_id, Utc::now().timestamp() - 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::new(
            &SecretString::from(secret.to_owned()),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn round_trips_and_rejects_forgeries_and_expiry() {
        let keys_a = keys("a-secret-that-is-at-least-32-characters");
        let user = Uuid::new_v4();
        let token = keys_a.issue(user).unwrap();
        assert_eq!(keys_a.verify(&token).unwrap().sub, user);
        let keys_b = keys("another-secret-at-least-32-characters!");
        assert_eq!(keys_b.verify(&token).unwrap_err(), TokenRejection::Invalid);
        let expired = keys_a.issue_expired(user).unwrap();
        assert_eq!(
            keys_a.verify(&expired).unwrap_err(),
            TokenRejection::Expired
        );
    }
}
