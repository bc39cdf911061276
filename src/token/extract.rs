//! Bearer token extraction from the `authorization` header (RFC 6750 §2.1).

use std::collections::HashMap;

/// Why the `authorization` header could not be read as one Bearer token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Not `Bearer <token68>`, or another scheme.
    #[error("authorization header is not a single Bearer token")]
    Malformed,
    /// More than one token (Envoy joins repeated headers with `,`).
    #[error("more than one bearer token")]
    Multiple,
}

/// Returns the Bearer token, `None` when there is no `authorization` header.
pub fn bearer(headers: &HashMap<String, String>) -> Result<Option<&str>, ExtractError> {
    let _ = headers;
    todo!("token::extract::bearer")
}
