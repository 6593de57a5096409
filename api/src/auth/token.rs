//! Access tokens: HS256 JWTs signed with `KAI_JWT_SECRET`, each naming its key (`kid`) so the
//! secret can be rotated: tokens signed with a secret listed in `KAI_JWT_SECRETS_PREVIOUS` are
//! still accepted until they expire (or the secret is removed), and new ones are signed with the
//! current secret. A token also carries its user's token generation at issue, so that logout
//! and a password change (which move the generation on) revoke every token issued before.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The user's token generation when it was issued; tokens from before generations existed
    /// carry none and count as generation 0.
    #[serde(default)]
    pub generation: i32,
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

/// The public name of a signing secret: a labelled hash, so the `kid` says which secret signed
/// a token without revealing anything usable about it.
fn key_id(secret: &SecretString) -> String {
    let digest = Sha256::new()
        .chain_update(b"kai-fusion jwt key id v1\n")
        .chain_update(secret.expose_secret().as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

pub struct TokenKeys {
    encoding: EncodingKey,
    current_id: String,
    /// The current secret's key first, then the previous ones', by key id.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    pub ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &SecretString, previous: &[SecretString], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let decoding = std::iter::once(secret)
            .chain(previous)
            .map(|s| {
                (
                    key_id(s),
                    DecodingKey::from_secret(s.expose_secret().as_bytes()),
                )
            })
            .collect();
        Self {
            encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            current_id: key_id(secret),
            decoding,
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid, generation: i32) -> anyhow::Result<String> {
        let exp = Utc::now().timestamp() + self.ttl.as_secs() as i64;
        self.issue_with_expiry(user_id, generation, exp)
    }

    fn issue_with_expiry(
        &self,
        user_id: Uuid,
        generation: i32,
        exp: i64,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user_id,
            iat: Utc::now().timestamp(),
            exp,
            generation,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_id.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// The token's claims if a secret we hold signed it (the one its `kid` names; a token
    /// without one, from before key ids, is checked against the current secret) and it has
    /// not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        let key = match header.kid {
            Some(kid) => self.decoding.iter().find(|(id, _)| *id == kid),
            None => self.decoding.first(),
        };
        let Some((_, key)) = key else {
            // Signed with a secret we no longer hold (retired) or never held.
            return Err(TokenRejection::Invalid);
        };
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenRejection::Expired)
            }
            Err(_) => Err(TokenRejection::Invalid),
        }
    }

    /// A token that expired a minute ago, for tests of expiry handling.
    pub fn issue_expired(&self, user_id: Uuid) -> anyhow::Result<String> {
        self.issue_with_expiry(user_id, 0, Utc::now().timestamp() - 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    fn keys(current: &str, previous: &[&str]) -> TokenKeys {
        let previous: Vec<SecretString> = previous.iter().map(|p| secret(p)).collect();
        TokenKeys::new(&secret(current), &previous, Duration::from_secs(60))
    }

    const A: &str = "a-secret-that-is-at-least-32-characters";
    const B: &str = "another-secret-at-least-32-characters!";

    #[test]
    fn round_trips_and_rejects_forgeries_and_expiry() {
        let keys_a = keys(A, &[]);
        let user = Uuid::new_v4();
        let token = keys_a.issue(user, 0).unwrap();
        assert_eq!(keys_a.verify(&token).unwrap().sub, user);
        let keys_b = keys(B, &[]);
        assert_eq!(keys_b.verify(&token).unwrap_err(), TokenRejection::Invalid);
        let expired = keys_a.issue_expired(user).unwrap();
        assert_eq!(
            keys_a.verify(&expired).unwrap_err(),
            TokenRejection::Expired
        );
    }

    #[test]
    fn a_rotated_secret_still_verifies_its_tokens_until_it_is_retired() {
        let user = Uuid::new_v4();
        let old = keys(A, &[]).issue(user, 0).unwrap();
        let header = jsonwebtoken::decode_header(&old).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(&secret(A)).as_str()));
        assert!(!header.kid.unwrap().contains("secret"));
        // B is current, A previous: A's tokens still pass, new ones are B's.
        let rotated = keys(B, &[A]);
        assert_eq!(rotated.verify(&old).unwrap().sub, user);
        let new = rotated.issue(user, 0).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid,
            Some(key_id(&secret(B)))
        );
        // A retired: its tokens are refused.
        let retired = keys(B, &[]);
        assert_eq!(retired.verify(&old).unwrap_err(), TokenRejection::Invalid);
        assert_eq!(retired.verify(&new).unwrap().sub, user);
        // A token claiming B's key id but signed with A is a forgery.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key_id(&secret(B)));
        let claims = Claims {
            sub: user,
            iat: 0,
            exp: Utc::now().timestamp() + 60,
            generation: 0,
        };
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(A.as_bytes()))
                .unwrap();
        assert_eq!(
            retired.verify(&forged).unwrap_err(),
            TokenRejection::Invalid
        );
    }
}
