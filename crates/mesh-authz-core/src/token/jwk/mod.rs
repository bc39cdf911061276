//! JWK and JWKS parsing into pre-parsed verification keys, with key hygiene.
//!
//! Every usable key is parsed once, at load, into one aws-lc-rs [`ParsedPublicKey`] per algorithm it
//! may serve, so a verification never re-parses key material. Keys that fail hygiene are dropped
//! (with a reason, never key material, in [`KeySet::dropped`]) and the rest of the set is kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::ParsedPublicKey;
use serde_json::Value;

use super::Algorithm;

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Smallest accepted RSA modulus, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus aws-lc-rs verifies with (`RSA_*_2048_8192_*`).
const MAX_RSA_BITS: usize = 8192;

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
pub struct VerifyingKey {
    kid: Option<String>,
    /// Identifies this key (kid, type, public material, algorithms) across key-set loads: a
    /// cached verification stays usable only while a key with the same fingerprint is held.
    fingerprint: u64,
    /// One pre-parsed key per algorithm this key may verify (already filtered by kty/crv and by the
    /// JWK's own `alg`, when it declared one).
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl fmt::Debug for VerifyingKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field(
                "algorithms",
                &self.parsed.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl VerifyingKey {
    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's identity across loads (see [`KeySet::holds`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.parsed.iter().map(|(a, _)| *a)
    }

    /// Verifies `signature` over `message` with `alg`.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let (_, key) = self
            .parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .ok_or(SignatureError)?;
        key.verify_sig(message, signature)
            .map_err(|_| SignatureError)
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

/// A key that was dropped at load, and why (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// The key's `kid`, when it had a string one.
    pub kid: Option<String>,
    /// A fixed reason, e.g. `rsa modulus under 2048 bits`.
    pub reason: &'static str,
}

impl DroppedKey {
    /// A bounded label for the reason (the `reason` label of
    /// `mesh_authz_jwks_keys_dropped_total`): `weak_key`, `duplicate_kid`, `not_for_signing`,
    /// `unsupported` or `invalid`.
    pub fn label(&self) -> &'static str {
        drop_label(self.reason)
    }
}

/// See [`DroppedKey::label`].
fn drop_label(reason: &str) -> &'static str {
    match reason {
        "rsa modulus under 2048 bits"
        | "rsa exponent invalid"
        | "rsa modulus has the ROCA fingerprint"
        | "ed25519 key has small order" => "weak_key",
        "duplicate kid" => "duplicate_kid",
        "use is not sig" | "key_ops lacks verify" => "not_for_signing",
        "alg not supported"
        | "symmetric key (kty oct)"
        | "unsupported kty"
        | "unsupported curve"
        | "rsa modulus over 8192 bits" => "unsupported",
        _ => "invalid",
    }
}

impl fmt::Display for DroppedKey {
    /// `key 2 (kid "a"): rsa modulus under 2048 bits`; the kid is quoted and cut at 64 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}", self.index)?;
        if let Some(kid) = &self.kid {
            let short: String = kid.chars().take(64).collect();
            write!(f, " (kid {short:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A parsed JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    /// Keys by `kid`: several when they serve disjoint algorithms (RFC 7517 §4.5).
    by_kid: HashMap<String, Vec<usize>>,
    /// Every key's fingerprint, sorted.
    fingerprints: Vec<u64>,
    dropped: Vec<DroppedKey>,
}

impl KeySet {
    /// Parses a JWKS document; keys failing hygiene are dropped, not fatal.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwkError> {
        Self::parse_reporting(json).0
    }

    /// Like [`KeySet::parse`], and also returns the dropped keys, even when none survived (then
    /// they say why the document holds no usable key).
    pub fn parse_reporting(json: &[u8]) -> (Result<KeySet, JwkError>, Vec<DroppedKey>) {
        match Self::parse_inner(json) {
            Ok(set) if set.keys.is_empty() => (Err(JwkError::NoUsableKeys), set.dropped),
            Ok(set) => {
                let dropped = set.dropped.clone();
                (Ok(set), dropped)
            }
            Err(e) => (Err(e), Vec::new()),
        }
    }

    fn parse_inner(json: &[u8]) -> Result<KeySet, JwkError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwkError::TooLarge(MAX_JWKS_BYTES));
        }
        let doc: JwksDoc = serde_json::from_slice(json).map_err(|e| {
            JwkError::Malformed(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let entries = doc
            .keys
            .ok_or_else(|| JwkError::Malformed("no keys array".to_string()))?;

        let mut candidates: Vec<(usize, VerifyingKey)> = Vec::new();
        let mut dropped = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            match entry {
                Entry::Key(raw) => match build_key(&raw) {
                    Ok(key) => candidates.push((index, key)),
                    Err(reason) => dropped.push(DroppedKey {
                        index,
                        kid: raw.kid.as_ref().and_then(Value::as_str).map(str::to_string),
                        reason,
                    }),
                },
                Entry::Other(_) => dropped.push(DroppedKey {
                    index,
                    kid: None,
                    reason: "not a JWK object",
                }),
            }
        }

        // Keys may share a kid when they serve disjoint algorithms (RFC 7517 §4.5: different
        // kty, or pinned to different algs); then kid and alg together choose. Keys sharing a kid
        // and an algorithm are ambiguous: none of them is used.
        let mut same_kid: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (_, k)) in candidates.iter().enumerate() {
            if let Some(kid) = k.kid() {
                same_kid.entry(kid).or_default().push(i);
            }
        }
        let mut ambiguous = vec![false; candidates.len()];
        for group in same_kid.values().filter(|g| g.len() > 1) {
            for &i in group {
                let k = &candidates[i].1;
                ambiguous[i] = group
                    .iter()
                    .any(|&j| j != i && k.algorithms().any(|a| candidates[j].1.accepts(a)));
            }
        }

        let mut set = KeySet::default();
        for ((index, key), ambiguous) in candidates.into_iter().zip(ambiguous) {
            if ambiguous {
                set.dropped.push(DroppedKey {
                    index,
                    kid: key.kid.clone(),
                    reason: "duplicate kid",
                });
                continue;
            }
            if let Some(kid) = key.kid() {
                set.by_kid
                    .entry(kid.to_string())
                    .or_default()
                    .push(set.keys.len());
            }
            set.fingerprints.push(key.fingerprint);
            set.keys.push(Arc::new(key));
        }
        set.fingerprints.sort_unstable();
        set.dropped.extend(dropped);
        set.dropped.sort_by_key(|d| d.index);
        Ok(set)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// Keys dropped at load and why, for logging by the loader.
    pub fn dropped(&self) -> &[DroppedKey] {
        &self.dropped
    }

    /// True when a key with this [fingerprint](VerifyingKey::fingerprint) is held.
    pub fn holds(&self, fingerprint: u64) -> bool {
        self.fingerprints.binary_search(&fingerprint).is_ok()
    }

    /// Looks up the key(s) for a token header: with a `kid`, the one key of that kid that
    /// accepts `alg`; without, every key that accepts `alg`, in document order.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => KeyLookup::UnknownKid,
                Some(indices) => match indices
                    .iter()
                    .filter_map(|&i| self.keys.get(i))
                    .find(|k| k.accepts(alg))
                {
                    Some(key) => KeyLookup::Found(vec![key]),
                    None => KeyLookup::NoCompatibleKey,
                },
            },
            None => {
                let found: Vec<_> = self.keys.iter().filter(|k| k.accepts(alg)).collect();
                if found.is_empty() {
                    KeyLookup::NoCompatibleKey
                } else {
                    KeyLookup::Found(found)
                }
            }
        }
    }
}

mod build;
mod hygiene;

use build::{Entry, JwksDoc, build_key};

#[cfg(test)]
mod tests;
