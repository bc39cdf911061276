//! JWKS sources (file, URI, OIDC discovery), the per-provider key cache and its refresh loop.

/// A JWKS source could not be set up or fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Bad source configuration (e.g. an unreadable CA file).
    #[error("{0}")]
    Config(String),
    /// A fetch failed.
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The document was refused.
    #[error(transparent)]
    Document(#[from] super::jwk::JwkError),
}
