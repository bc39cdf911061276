//! Bearer tokens: extraction, JWKS key sets, signature and claim verification.
//!
//! Entry point: [`verify::Verifier`], built once from the provider config and shared by every check.

pub mod claims;
pub mod extract;
mod json;
pub mod jwk;
pub mod jws;
mod source;
pub mod verified;
pub mod verify;

pub use crate::algorithm::{Algorithm, UnsupportedAlgorithm};
pub use source::{BoxFuture, KeySource, StaticKeys};
pub use verify::{TokenError, Verifier, VerifierError};
