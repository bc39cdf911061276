//! JWK and JWKS parsing into pre-parsed verification keys, with key hygiene.

use std::sync::Arc;

use super::Algorithm;

/// A signature did not verify (the precise cause is not exposed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature verification failed")]
pub struct SignatureError;

/// A JWKS document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Not a JSON object with a `keys` array.
    #[error("JWKS is not a JSON object with a keys array: {0}")]
    Malformed(String),
    /// Larger than the accepted size.
    #[error("JWKS is larger than {0} bytes")]
    TooLarge(usize),
    /// Parsed, but no key survived hygiene.
    #[error("JWKS holds no usable signing key")]
    NoUsableKeys,
}

/// One public key, parsed once at load.
#[derive(Debug)]
pub struct VerifyingKey {
    _private: (),
}

impl VerifyingKey {
    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        todo!()
    }
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        let _ = alg;
        todo!()
    }
    /// Verifies `signature` over `message` with `alg`.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let _ = (alg, message, signature);
        todo!()
    }
}

/// The result of looking a token's key up.
#[derive(Debug)]
pub enum KeyLookup<'a> {
    /// Keys to try, in order (one when the token has a `kid`).
    Found(Vec<&'a Arc<VerifyingKey>>),
    /// The token's `kid` is not in the set.
    UnknownKid,
    /// The `kid` is known (or there is no `kid`) but no key fits the token's `alg`.
    NoCompatibleKey,
}

/// A parsed JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    _private: (),
}

impl KeySet {
    /// Parses a JWKS document; keys failing hygiene are dropped, not fatal.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwkError> {
        let _ = json;
        todo!()
    }
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Looks up the key(s) for a token header.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        let _ = (kid, alg);
        todo!()
    }
}
