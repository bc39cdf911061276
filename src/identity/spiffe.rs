//! SPIFFE ID parsing and validation (SPIFFE-ID spec §2).

/// A SPIFFE ID failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpiffeIdError(pub &'static str);

/// A valid SPIFFE ID: `spiffe://<trust-domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    _private: (),
}

impl SpiffeId {
    /// Parses and validates.
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        let _ = s;
        todo!()
    }
    /// The whole ID.
    pub fn as_str(&self) -> &str {
        todo!()
    }
    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        todo!()
    }
    /// The path (empty or starting with `/`).
    pub fn path(&self) -> &str {
        todo!()
    }
}
