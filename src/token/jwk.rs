//! JWK and JWKS parsing into pre-parsed verification keys, with key hygiene.
//!
//! Every usable key is parsed once, at load, into one aws-lc-rs [`ParsedPublicKey`] per algorithm it
//! may serve, so a verification never re-parses key material. Keys that fail hygiene are dropped
//! (with a reason, never key material, in [`KeySet::dropped`]) and the rest of the set is kept.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
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

/// The JWKS document: only `keys` is read.
#[derive(Deserialize)]
struct JwksDoc {
    keys: Option<Vec<Entry>>,
}

/// One element of `keys`: a JWK object, or anything else (dropped, not fatal).
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Key(Box<RawJwk>),
    Other(serde::de::IgnoredAny),
}

/// The public members we read. Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`, `oth`) are
/// not fields, so they are never stored. Types are checked by hand for precise drop reasons.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<Value>,
    kid: Option<Value>,
    #[serde(rename = "use")]
    use_: Option<Value>,
    key_ops: Option<Value>,
    alg: Option<Value>,
    crv: Option<Value>,
    n: Option<Value>,
    e: Option<Value>,
    x: Option<Value>,
    y: Option<Value>,
}

/// Optional string member: absent → `None`, non-string → error.
fn opt_str<'a>(
    v: &'a Option<Value>,
    reason: &'static str,
) -> Result<Option<&'a str>, &'static str> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(reason),
    }
}

/// Required base64url (strict, unpadded) member.
fn b64_member(
    v: &Option<Value>,
    missing: &'static str,
    bad: &'static str,
) -> Result<Vec<u8>, &'static str> {
    let s = opt_str(v, bad)?.ok_or(missing)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| bad)
}

/// Applies hygiene and builds the pre-parsed key, or says why it is dropped.
fn build_key(raw: &RawJwk) -> Result<VerifyingKey, &'static str> {
    let kid = opt_str(&raw.kid, "kid is not a string")?.map(str::to_string);
    let kty = opt_str(&raw.kty, "kty is not a string")?.ok_or("kty missing")?;
    if let Some(use_) = opt_str(&raw.use_, "use is not a string")?
        && use_ != "sig"
    {
        return Err("use is not sig");
    }
    if let Some(ops) = &raw.key_ops {
        let ops = ops.as_array().ok_or("key_ops is not an array")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("key_ops lacks verify");
        }
    }
    let pinned = match opt_str(&raw.alg, "alg is not a string")? {
        None => None,
        Some(a) => Some(Algorithm::from_str(a).map_err(|_| "alg not supported")?),
    };
    let parsed = match kty {
        "RSA" => rsa_keys(raw, pinned)?,
        "EC" => ec_key(raw, pinned)?,
        "OKP" => okp_key(raw, pinned)?,
        "oct" => return Err("symmetric key (kty oct)"),
        _ => return Err("unsupported kty"),
    };
    let fingerprint = fingerprint(kid.as_deref(), kty, raw, &parsed);
    Ok(VerifyingKey {
        kid,
        fingerprint,
        parsed,
    })
}

/// SHA-256 over the kid, the key type, the public members as written and the algorithms served,
/// each length-prefixed; the first 8 bytes.
fn fingerprint(
    kid: Option<&str>,
    kty: &str,
    raw: &RawJwk,
    parsed: &[(Algorithm, ParsedPublicKey)],
) -> u64 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut field = |bytes: Option<&[u8]>| match bytes {
        None => ctx.update(&[0]),
        Some(b) => {
            ctx.update(&[1]);
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b);
        }
    };
    field(kid.map(str::as_bytes));
    field(Some(kty.as_bytes()));
    for member in [&raw.crv, &raw.n, &raw.e, &raw.x, &raw.y] {
        field(member.as_ref().and_then(Value::as_str).map(str::as_bytes));
    }
    for (alg, _) in parsed {
        field(Some(alg.as_str().as_bytes()));
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.as_ref().get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first)
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn rsa_params(alg: Algorithm) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn rsa_keys(
    raw: &RawJwk,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, &'static str> {
    if pinned.is_some_and(|a| !RSA_ALGS.contains(&a)) {
        return Err("alg inconsistent with kty RSA");
    }
    let n = b64_member(&raw.n, "rsa n missing", "rsa n is not base64url")?;
    let e = b64_member(&raw.e, "rsa e missing", "rsa e is not base64url")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err("rsa modulus under 2048 bits");
    }
    if bits > MAX_RSA_BITS {
        return Err("rsa modulus over 8192 bits");
    }
    // e must be odd and at least 3 (e = 1 makes every "signature" its own message); cap its size.
    if e.len() > 8 || e.last().is_none_or(|l| l & 1 == 0) || e == [1u8] {
        return Err("rsa exponent invalid");
    }
    if is_roca_modulus(n) {
        return Err("rsa modulus has the ROCA fingerprint");
    }
    let components = RsaPublicKeyComponents { n, e };
    let algs: Vec<Algorithm> = match pinned {
        Some(a) => vec![a],
        None => RSA_ALGS.to_vec(),
    };
    algs.into_iter()
        .map(|alg| {
            let params = rsa_params(alg).ok_or("alg inconsistent with kty RSA")?;
            components
                .to_parsed_public_key(params)
                .map(|k| (alg, k))
                .map_err(|_| "rsa key rejected")
        })
        .collect()
}

fn ec_key(
    raw: &RawJwk,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, &'static str> {
    // RFC 7518 §6.2.1.1: `crv` is required; it is not guessed from `alg`.
    let crv = opt_str(&raw.crv, "crv is not a string")?.ok_or("ec crv missing")?;
    // JWS ES256/ES384 (and RFC 9864 ESP256/ESP384) signatures are raw r||s (IEEE P1363), never
    // DER.
    let (algs, len, verify_alg): (_, usize, &'static signature::EcdsaVerificationAlgorithm) =
        match crv {
            "P-256" => (
                [Algorithm::ES256, Algorithm::ESP256],
                32,
                &signature::ECDSA_P256_SHA256_FIXED,
            ),
            "P-384" => (
                [Algorithm::ES384, Algorithm::ESP384],
                48,
                &signature::ECDSA_P384_SHA384_FIXED,
            ),
            _ => return Err("unsupported curve"),
        };
    if pinned.is_some_and(|a| !algs.contains(&a)) {
        return Err("alg inconsistent with crv");
    }
    let x = b64_member(&raw.x, "ec x missing", "ec x is not base64url")?;
    let y = b64_member(&raw.y, "ec y missing", "ec y is not base64url")?;
    if x.len() != len || y.len() != len {
        return Err("ec coordinate length does not match the curve");
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    algs.into_iter()
        .filter(|a| pinned.is_none_or(|p| p == *a))
        .map(|a| {
            ParsedPublicKey::new(verify_alg, &point)
                .map(|k| (a, k))
                .map_err(|_| "ec point invalid")
        })
        .collect()
}

fn okp_key(
    raw: &RawJwk,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, &'static str> {
    let crv = opt_str(&raw.crv, "crv is not a string")?.ok_or("okp crv missing")?;
    if crv != "Ed25519" {
        return Err("unsupported curve");
    }
    // A key with `alg` serves that name only; without, both EdDSA and RFC 9864 Ed25519.
    const ED_ALGS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::Ed25519];
    if pinned.is_some_and(|a| !ED_ALGS.contains(&a)) {
        return Err("alg inconsistent with crv");
    }
    let x = b64_member(&raw.x, "okp x missing", "okp x is not base64url")?;
    let x: [u8; 32] = x
        .try_into()
        .map_err(|_| "ed25519 key length is not 32 bytes")?;
    if !is_canonical_ed25519(&x) {
        return Err("ed25519 key is not canonical");
    }
    if is_small_order_ed25519(&x) {
        return Err("ed25519 key has small order");
    }
    ED_ALGS
        .into_iter()
        .filter(|a| pinned.is_none_or(|p| p == *a))
        .map(|a| {
            ParsedPublicKey::new(&signature::ED25519, x)
                .map(|k| (a, k))
                .map_err(|_| "ed25519 key invalid")
        })
        .collect()
}

/// RFC 8032 §5.1.3: the encoded y (the low 255 bits, little-endian) must be below
/// p = 2^255 - 19.
fn is_canonical_ed25519(x: &[u8; 32]) -> bool {
    let top = x[31] & 0x7f;
    // y >= p only when y = 2^255 - 19 + k for k in 0..19: bytes ed..ff, ff × 30, 7f.
    !(top == 0x7f && x[1..31].iter().all(|&b| b == 0xff) && x[0] >= 0xed)
}

/// The y coordinates (little-endian, sign bit clear) of the eight points of small order on
/// Curve25519 in Edwards form: the identity (y = 1, order 1), y = -1 (order 2), y = 0 (the two
/// points of order 4) and the two y values of the four points of order 8. Checked against exact
/// Edwards arithmetic ([8]P = O for both signs of x).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [0; 32],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// True for an encoding of a small-order point, whatever its sign bit. (Non-canonical encodings
/// of them, y = p and y = p + 1, are refused by [`is_canonical_ed25519`] first.) Under such a key,
/// signatures verify without the private key: with the identity, R = identity, S = 0 verifies
/// every message.
fn is_small_order_ed25519(x: &[u8; 32]) -> bool {
    let mut y = *x;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// ROCA (CVE-2017-15361) fingerprint test of Nemec et al.: the modulus of a vulnerable key lies,
/// modulo each small prime below, in the subgroup generated by 65537. A random modulus passes all
/// of these with negligible probability.
fn is_roca_modulus(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        // The subgroup generated by 65537 modulo p.
        let g = 65537 % p;
        let mut x = 1u32;
        loop {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                return false;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::KeyPair as _;
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn rsa_jwk(kp: &aws_lc_rs::rsa::KeyPair, extra: Value) -> Value {
        let pk = kp.public_key();
        let mut v = json!({
            "kty": "RSA",
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        });
        if let (Some(o), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                o.insert(k.clone(), val.clone());
            }
        }
        v
    }

    fn rsa2048() -> aws_lc_rs::rsa::KeyPair {
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()
    }

    fn parse(keys: Vec<Value>) -> Result<KeySet, JwkError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn rsa_key_serves_all_rsa_algs_and_verifies() {
        let kp = rsa2048();
        let set = parse(vec![rsa_jwk(&kp, json!({"kid": "a"}))]).unwrap();
        assert_eq!(set.len(), 1);
        let msg = b"header.payload";
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            msg,
            &mut sig,
        )
        .unwrap();
        let KeyLookup::Found(keys) = set.find(Some("a"), Algorithm::RS256) else {
            panic!("not found")
        };
        assert!(keys[0].verify(Algorithm::RS256, msg, &sig).is_ok());
        assert!(keys[0].verify(Algorithm::RS384, msg, &sig).is_err());
        assert!(keys[0].verify(Algorithm::RS256, b"other", &sig).is_err());
        for a in RSA_ALGS {
            assert!(keys[0].accepts(a));
        }
        assert!(!keys[0].accepts(Algorithm::ES256));
        assert!(matches!(
            set.find(Some("a"), Algorithm::ES256),
            KeyLookup::NoCompatibleKey
        ));
        assert!(matches!(
            set.find(Some("b"), Algorithm::RS256),
            KeyLookup::UnknownKid
        ));
        assert!(matches!(set.find(None, Algorithm::PS512), KeyLookup::Found(v) if v.len() == 1));
        assert!(matches!(
            set.find(None, Algorithm::EdDSA),
            KeyLookup::NoCompatibleKey
        ));
    }

    #[test]
    fn pinned_alg_restricts() {
        let kp = rsa2048();
        let set = parse(vec![rsa_jwk(&kp, json!({"kid": "a", "alg": "PS256"}))]).unwrap();
        let k = &set.keys()[0];
        assert!(k.accepts(Algorithm::PS256));
        assert!(!k.accepts(Algorithm::RS256));
    }

    #[test]
    fn hygiene_drops_bad_keys_and_keeps_good_ones() {
        let kp = rsa2048();
        let ec =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pt = ec.public_key().as_ref().to_vec();
        let (x, y) = (b64(&pt[1..33]), b64(&pt[33..65]));
        let good = rsa_jwk(
            &kp,
            json!({"kid": "good", "use": "sig", "key_ops": ["verify"]}),
        );
        let cases: Vec<(Value, &str)> = vec![
            (
                rsa_jwk(&kp, json!({"kid": "enc", "use": "enc"})),
                "use is not sig",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "ops", "key_ops": ["encrypt"]})),
                "key_ops lacks verify",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "hs", "alg": "HS256"})),
                "alg not supported",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "es", "alg": "ES256"})),
                "alg inconsistent with kty RSA",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "e1", "e": "AQ"})),
                "rsa exponent invalid",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "e2", "e": "Ag"})),
                "rsa exponent invalid",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "epad", "e": "AQAB="})),
                "rsa e is not base64url",
            ),
            (
                rsa_jwk(&kp, json!({"kid": "small", "n": b64(&[0xffu8; 128])})),
                "rsa modulus under 2048 bits",
            ),
            (
                json!({"kty": "oct", "kid": "oct", "k": "AAAA"}),
                "symmetric key (kty oct)",
            ),
            (json!({"kty": "XYZ", "kid": "xyz"}), "unsupported kty"),
            (json!({"kid": "nokty"}), "kty missing"),
            (
                json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": x, "y": y}),
                "unsupported curve",
            ),
            (
                json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": x, "y": y}),
                "ec coordinate length does not match the curve",
            ),
            (
                json!({"kty": "EC", "kid": "nocrv", "x": x, "y": y}),
                "ec crv missing",
            ),
            (
                json!({"kty": "EC", "kid": "alg", "crv": "P-256", "alg": "ES384", "x": x, "y": y}),
                "alg inconsistent with crv",
            ),
            (
                json!({"kty": "EC", "kid": "pt", "crv": "P-256", "x": x, "y": b64(&[1u8; 32])}),
                "ec point invalid",
            ),
            (
                json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(&[1u8; 32])}),
                "unsupported curve",
            ),
            (
                json!({"kty": "OKP", "kid": "edlen", "crv": "Ed25519", "x": b64(&[1u8; 31])}),
                "ed25519 key length is not 32 bytes",
            ),
            (json!({"kty": "RSA", "kid": 7}), "kid is not a string"),
            (json!(42), "not a JWK object"),
        ];
        for (bad, reason) in cases {
            let set = parse(vec![good.clone(), bad.clone()]).unwrap();
            assert_eq!(set.len(), 1, "{bad}");
            assert_eq!(set.dropped().len(), 1, "{bad}");
            assert_eq!(set.dropped()[0].reason, reason, "{bad}");
            // Alone, the bad key leaves nothing usable.
            assert_eq!(
                parse(vec![bad.clone()]).unwrap_err(),
                JwkError::NoUsableKeys,
                "{bad}"
            );
        }
    }

    #[test]
    fn ec_and_okp_keys() {
        let ec =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let pt = ec.public_key().as_ref().to_vec();
        let ed = signature::Ed25519KeyPair::generate().unwrap();
        let set = parse(vec![
            json!({"kty": "EC", "kid": "ec", "crv": "P-384", "x": b64(&pt[1..49]), "y": b64(&pt[49..97]),
                   "d": "c2VjcmV0"}),
            json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())}),
        ])
        .unwrap();
        assert_eq!(set.len(), 2);
        let msg = b"m";
        let sig = ec.sign(&SystemRandom::new(), msg).unwrap();
        let KeyLookup::Found(k) = set.find(Some("ec"), Algorithm::ES384) else {
            panic!()
        };
        assert!(k[0].verify(Algorithm::ES384, msg, sig.as_ref()).is_ok());
        let KeyLookup::Found(k) = set.find(Some("ed"), Algorithm::EdDSA) else {
            panic!()
        };
        assert!(
            k[0].verify(Algorithm::EdDSA, msg, ed.sign(msg).as_ref())
                .is_ok()
        );
        assert!(!format!("{:?}", set).contains("c2VjcmV0"));
    }

    #[test]
    fn duplicate_kid_drops_all() {
        let (a, b, c) = (rsa2048(), rsa2048(), rsa2048());
        let set = parse(vec![
            rsa_jwk(&a, json!({"kid": "dup"})),
            rsa_jwk(&b, json!({"kid": "dup"})),
            rsa_jwk(&c, json!({"kid": "ok"})),
        ])
        .unwrap();
        assert_eq!(set.len(), 1);
        assert!(matches!(
            set.find(Some("dup"), Algorithm::RS256),
            KeyLookup::UnknownKid
        ));
        assert_eq!(
            set.dropped()
                .iter()
                .filter(|d| d.reason == "duplicate kid")
                .count(),
            2
        );
    }

    /// The identity key: R = identity, S = 0 verifies every message (what aws-lc-rs accepts).
    const IDENTITY: [u8; 32] = {
        let mut x = [0u8; 32];
        x[0] = 1;
        x
    };

    #[test]
    fn aws_lc_accepts_the_identity_forgery_so_small_order_keys_are_dropped() {
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let raw = ParsedPublicKey::new(&signature::ED25519, IDENTITY)
            .expect("aws-lc-rs parses the identity point as a key");
        for msg in [&b"any message"[..], b"another one", b""] {
            assert!(
                raw.verify_sig(msg, &forged).is_ok(),
                "the forgery verifies under the raw identity key"
            );
        }
        let weak = |x: [u8; 32]| json!({"kty": "OKP", "kid": "w", "crv": "Ed25519", "x": b64(&x)});
        let good = signature::Ed25519KeyPair::generate().unwrap();
        let good = json!({"kty": "OKP", "kid": "g", "crv": "Ed25519", "x": b64(good.public_key().as_ref())});
        let mut encodings: Vec<([u8; 32], &str)> = Vec::new();
        for y in SMALL_ORDER_Y {
            let mut signed = y;
            signed[31] |= 0x80;
            encodings.push((y, "ed25519 key has small order"));
            encodings.push((signed, "ed25519 key has small order"));
        }
        // y = p (≡ 0) and y = p + 1 (≡ 1): non-canonical encodings of small-order points.
        for low in [0xed, 0xee, 0xff] {
            let mut y = [0xffu8; 32];
            y[0] = low;
            y[31] = 0x7f;
            encodings.push((y, "ed25519 key is not canonical"));
            y[31] = 0xff;
            encodings.push((y, "ed25519 key is not canonical"));
        }
        for (x, reason) in encodings {
            let set = parse(vec![good.clone(), weak(x)]).unwrap();
            assert_eq!(set.len(), 1, "{}", hex::encode(x));
            assert_eq!(set.dropped()[0].reason, reason, "{}", hex::encode(x));
            assert_eq!(
                set.dropped()[0].label(),
                if reason.contains("small") {
                    "weak_key"
                } else {
                    "invalid"
                }
            );
        }
        // The largest canonical y (p - 1, the point of order 2) is caught as small order, and
        // p - 2 is canonical (whether or not it is on the curve is aws-lc-rs's call).
        let mut below = [0xffu8; 32];
        below[0] = 0xeb;
        below[31] = 0x7f;
        assert!(is_canonical_ed25519(&below));
        assert!(!is_small_order_ed25519(&below));
    }

    #[test]
    fn one_kid_may_name_keys_of_different_types_or_algs() {
        let kp = rsa2048();
        let ec =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pt = ec.public_key().as_ref().to_vec();
        let ec_jwk = json!({"kty": "EC", "kid": "k", "crv": "P-256", "x": b64(&pt[1..33]), "y": b64(&pt[33..65])});
        let set = parse(vec![rsa_jwk(&kp, json!({"kid": "k"})), ec_jwk.clone()]).unwrap();
        assert_eq!(set.len(), 2);
        let KeyLookup::Found(k) = set.find(Some("k"), Algorithm::ES256) else {
            panic!()
        };
        assert!(k[0].accepts(Algorithm::ES256) && !k[0].accepts(Algorithm::RS256));
        let KeyLookup::Found(k) = set.find(Some("k"), Algorithm::PS256) else {
            panic!()
        };
        assert!(k[0].accepts(Algorithm::PS256));
        assert!(matches!(
            set.find(Some("k"), Algorithm::EdDSA),
            KeyLookup::NoCompatibleKey
        ));
        // Two RSA keys pinned to different algs share a kid; an unpinned one would overlap both.
        let (a, b) = (rsa2048(), rsa2048());
        let set = parse(vec![
            rsa_jwk(&a, json!({"kid": "r", "alg": "RS256"})),
            rsa_jwk(&b, json!({"kid": "r", "alg": "PS256"})),
        ])
        .unwrap();
        assert_eq!(set.len(), 2);
        let set = parse(vec![
            rsa_jwk(&a, json!({"kid": "r", "alg": "RS256"})),
            rsa_jwk(&b, json!({"kid": "r"})),
            ec_jwk,
        ])
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.dropped().len(), 2);
        assert!(set.dropped().iter().all(|d| d.label() == "duplicate_kid"));
    }

    #[test]
    fn rfc9864_fully_specified_names() {
        let ed = signature::Ed25519KeyPair::generate().unwrap();
        let x = b64(ed.public_key().as_ref());
        let ec =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pt = ec.public_key().as_ref().to_vec();
        let (ex, ey) = (b64(&pt[1..33]), b64(&pt[33..65]));
        let algs = |v: Value| -> Vec<Algorithm> {
            let set = parse(vec![v]).unwrap();
            set.keys()[0].algorithms().collect()
        };
        let okp = |alg: Option<&str>| {
            let mut v = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
            if let Some(a) = alg {
                v["alg"] = json!(a);
            }
            v
        };
        let p256 = |alg: Option<&str>| {
            let mut v = json!({"kty": "EC", "crv": "P-256", "x": ex, "y": ey});
            if let Some(a) = alg {
                v["alg"] = json!(a);
            }
            v
        };
        assert_eq!(algs(okp(None)), [Algorithm::EdDSA, Algorithm::Ed25519]);
        assert_eq!(algs(okp(Some("EdDSA"))), [Algorithm::EdDSA]);
        assert_eq!(algs(okp(Some("Ed25519"))), [Algorithm::Ed25519]);
        assert_eq!(algs(p256(None)), [Algorithm::ES256, Algorithm::ESP256]);
        assert_eq!(algs(p256(Some("ESP256"))), [Algorithm::ESP256]);
        for (bad, reason) in [
            (okp(Some("ESP256")), "alg inconsistent with crv"),
            (p256(Some("ESP384")), "alg inconsistent with crv"),
            (p256(Some("Ed25519")), "alg inconsistent with crv"),
            (
                rsa_jwk(&rsa2048(), json!({"alg": "ESP256"})),
                "alg inconsistent with kty RSA",
            ),
            (okp(Some("Ed448")), "alg not supported"),
        ] {
            let set = parse(vec![okp(None), bad.clone()]).unwrap();
            assert_eq!(set.dropped()[0].reason, reason, "{bad}");
        }
        let msg = b"m";
        let set = parse(vec![okp(None), p256(None)]).unwrap();
        let sig = ed.sign(msg);
        let KeyLookup::Found(k) = set.find(None, Algorithm::Ed25519) else {
            panic!()
        };
        assert!(k[0].verify(Algorithm::Ed25519, msg, sig.as_ref()).is_ok());
        let sig = ec.sign(&SystemRandom::new(), msg).unwrap();
        let KeyLookup::Found(k) = set.find(None, Algorithm::ESP256) else {
            panic!()
        };
        assert!(k[0].verify(Algorithm::ESP256, msg, sig.as_ref()).is_ok());
    }

    #[test]
    fn fingerprints_follow_kid_material_and_algs() {
        let (a, b) = (rsa2048(), rsa2048());
        let fp = |v: Value| parse(vec![v]).unwrap().keys()[0].fingerprint();
        let base = fp(rsa_jwk(&a, json!({"kid": "k"})));
        assert_eq!(base, fp(rsa_jwk(&a, json!({"kid": "k", "use": "sig"}))));
        assert_ne!(base, fp(rsa_jwk(&b, json!({"kid": "k"}))));
        assert_ne!(base, fp(rsa_jwk(&a, json!({"kid": "k2"}))));
        assert_ne!(base, fp(rsa_jwk(&a, json!({}))));
        assert_ne!(base, fp(rsa_jwk(&a, json!({"kid": "k", "alg": "RS256"}))));
        let set = parse(vec![rsa_jwk(&a, json!({"kid": "k"}))]).unwrap();
        assert!(set.holds(base));
        assert!(!set.holds(base ^ 1));
    }

    #[test]
    fn parse_reporting_says_why_nothing_is_usable() {
        let kp = rsa2048();
        let json = json!({"keys": [rsa_jwk(&kp, json!({"kid": "e", "use": "enc"})),
                                   rsa_jwk(&kp, json!({"kid": "s", "n": b64(&[0xffu8; 128])}))]});
        let (result, dropped) = KeySet::parse_reporting(json.to_string().as_bytes());
        assert_eq!(result.unwrap_err(), JwkError::NoUsableKeys);
        let shown: Vec<String> = dropped.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"key 0 (kid "e"): use is not sig"#,
                r#"key 1 (kid "s"): rsa modulus under 2048 bits"#
            ]
        );
        assert_eq!(dropped[0].label(), "not_for_signing");
        assert_eq!(dropped[1].label(), "weak_key");
    }

    #[test]
    fn document_errors() {
        assert!(matches!(KeySet::parse(b""), Err(JwkError::Malformed(_))));
        assert!(matches!(
            KeySet::parse(b"not json"),
            Err(JwkError::Malformed(_))
        ));
        assert!(matches!(KeySet::parse(b"{}"), Err(JwkError::Malformed(_))));
        assert!(matches!(KeySet::parse(b"[]"), Err(JwkError::Malformed(_))));
        assert!(matches!(
            KeySet::parse(br#"{"keys": 123}"#),
            Err(JwkError::Malformed(_))
        ));
        assert_eq!(
            KeySet::parse(br#"{"keys": []}"#).unwrap_err(),
            JwkError::NoUsableKeys
        );
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            KeySet::parse(&big).unwrap_err(),
            JwkError::TooLarge(MAX_JWKS_BYTES)
        );
    }

    #[test]
    fn roca_detector() {
        // A freshly generated modulus is not flagged.
        let kp = rsa2048();
        assert!(!is_roca_modulus(
            kp.public_key().modulus().big_endian_without_leading_zero()
        ));
        // 65537^k mod every test prime is in the subgroup: n = 65537 itself has the fingerprint.
        assert!(is_roca_modulus(&[0x01, 0x00, 0x01]));
    }
}
