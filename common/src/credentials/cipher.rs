//! Credential encryption: AES-256-GCM with a fresh random nonce per write, under a key derived
//! (HKDF-SHA256) from `KAI_ENCRYPTION_KEY`. The associated data is the credential's id and its
//! owner, so a ciphertext copied to another row or another user does not decrypt. Each sealed
//! secret names the key that sealed it; the previous keys (`KAI_ENCRYPTION_KEYS_PREVIOUS`) still
//! open what they sealed until `kai-api rotate-credentials` has re-sealed it under the current
//! one.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

const KEY_INFO: &[u8] = b"kai-fusion credential key v1";
const KEY_ID_INFO: &[u8] = b"kai-fusion credential key id v1";
const AAD_PREFIX: &[u8] = b"kai-fusion credential v1:";
const NONCE_BYTES: usize = 12;

/// A secret sealed under one key: `nonce || ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The key that sealed it is neither the current nor a previous one.
    #[error(
        "sealed under key {0}, which is neither KAI_ENCRYPTION_KEY nor one of \
         KAI_ENCRYPTION_KEYS_PREVIOUS"
    )]
    UnknownKey(String),
    /// Altered, or moved from another credential or owner.
    #[error("does not decrypt: altered, or not this credential's")]
    Rejected,
}

struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn derive(secret: &SecretString) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, secret.expose_secret().as_bytes());
        let mut key = [0u8; 32];
        hkdf.expand(KEY_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut id = [0u8; 8];
        hkdf.expand(KEY_ID_INFO, &mut id)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aes256Gcm::new_from_slice(&key).expect("a 32-byte key");
        key.fill(0);
        Self {
            id: hex::encode(id),
            cipher,
        }
    }
}

/// The current key and the previous ones.
pub struct KeyRing {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Self {
        Self {
            current: SealingKey::derive(current),
            previous: previous.iter().map(SealingKey::derive).collect(),
        }
    }

    /// The id stored with everything sealed now.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` as credential `credential` of `owner`, under the current key.
    pub fn seal(&self, credential: Uuid, owner: Uuid, plaintext: &[u8]) -> Sealed {
        let nonce = Nonce::generate();
        let aad = associated_data(credential, owner);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any message this size");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.current.id.clone(),
            bytes,
        }
    }

    /// Opens what [`Self::seal`] sealed for the same credential and owner.
    pub fn open(
        &self,
        credential: Uuid,
        owner: Uuid,
        key_id: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Rejected);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError::Rejected)?;
        let aad = associated_data(credential, owner);
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Rejected)
    }
}

fn associated_data(credential: Uuid, owner: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 32);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(credential.as_bytes());
    aad.extend_from_slice(owner.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: &[&str]) -> KeyRing {
        let previous: Vec<SecretString> = previous
            .iter()
            .map(|k| SecretString::from(k.to_string()))
            .collect();
        KeyRing::new(&SecretString::from(current.to_owned()), &previous)
    }

    const OLD: &str = "an-old-key-of-at-least-thirty-two-characters";
    const NEW: &str = "a-new-key-of-at-least-thirty-two-characters!";

    #[test]
    fn a_sealed_secret_opens_for_its_credential_and_owner_only() {
        let keys = ring(NEW, &[]);
        let (credential, owner) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = keys.seal(credential, owner, b"{\"api_key\":\"sk-1\"}");
        assert!(
            !sealed.bytes.windows(4).any(|w| w == b"sk-1"),
            "not in clear"
        );
        assert_eq!(
            keys.open(credential, owner, &sealed.key_id, &sealed.bytes)
                .unwrap(),
            b"{\"api_key\":\"sk-1\"}"
        );
        assert_eq!(
            keys.open(Uuid::new_v4(), owner, &sealed.key_id, &sealed.bytes),
            Err(OpenError::Rejected),
            "copied to another row"
        );
        assert_eq!(
            keys.open(credential, Uuid::new_v4(), &sealed.key_id, &sealed.bytes),
            Err(OpenError::Rejected),
            "copied to another owner"
        );
        let mut altered = sealed.bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keys.open(credential, owner, &sealed.key_id, &altered),
            Err(OpenError::Rejected)
        );
    }

    #[test]
    fn each_write_has_a_fresh_nonce() {
        let keys = ring(NEW, &[]);
        let (credential, owner) = (Uuid::new_v4(), Uuid::new_v4());
        let one = keys.seal(credential, owner, b"same");
        let two = keys.seal(credential, owner, b"same");
        assert_ne!(one.bytes, two.bytes);
    }

    #[test]
    fn previous_keys_open_what_they_sealed_and_unknown_keys_are_named() {
        let (credential, owner) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = ring(OLD, &[]).seal(credential, owner, b"secret");
        let rotated = ring(NEW, &[OLD]);
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        assert_eq!(
            rotated
                .open(credential, owner, &sealed.key_id, &sealed.bytes)
                .unwrap(),
            b"secret"
        );
        let without_old = ring(NEW, &[]);
        assert_eq!(
            without_old.open(credential, owner, &sealed.key_id, &sealed.bytes),
            Err(OpenError::UnknownKey(sealed.key_id.clone()))
        );
        assert!(
            !format!("{without_old:?}").contains("thirty"),
            "no key in Debug"
        );
    }
}
