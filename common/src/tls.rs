//! One TLS crypto provider for the whole process.
//!
//! sqlx and async-nats use rustls with ring; installing ring as the process default before any
//! client is built means rustls never has to guess between providers (it panics if two are
//! compiled in and none is chosen).

/// Installs ring as the process-wide rustls provider; safe to call more than once.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
