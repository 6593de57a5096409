//! Stored credentials: their types and shapes ([`services`]) and their encryption ([`cipher`]).

pub mod cipher;
pub mod services;
pub mod store;

pub use cipher::{KeyRing, OpenError, Sealed};
pub use services::{SERVICE_TYPES, ServiceType, SplitData, service_type, service_type_names};
pub use store::{Credential, CredentialError, CredentialStore};
