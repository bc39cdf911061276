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

/// A parsed JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, usize>,
    dropped: Vec<DroppedKey>,
}

impl KeySet {
    /// Parses a JWKS document; keys failing hygiene are dropped, not fatal.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwkError> {
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

        // A kid held by two usable keys is ambiguous: neither is used.
        let mut kid_count: HashMap<&str, usize> = HashMap::new();
        for (_, k) in &candidates {
            if let Some(kid) = k.kid() {
                *kid_count.entry(kid).or_default() += 1;
            }
        }
        let duplicated: Vec<String> = kid_count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(kid, _)| kid.to_string())
            .collect();

        let mut set = KeySet::default();
        for (index, key) in candidates {
            if key
                .kid()
                .is_some_and(|kid| duplicated.iter().any(|d| d == kid))
            {
                set.dropped.push(DroppedKey {
                    index,
                    kid: key.kid.clone(),
                    reason: "duplicate kid",
                });
                continue;
            }
            if let Some(kid) = key.kid() {
                set.by_kid.insert(kid.to_string(), set.keys.len());
            }
            set.keys.push(Arc::new(key));
        }
        set.dropped.extend(dropped);
        set.dropped.sort_by_key(|d| d.index);
        if set.keys.is_empty() {
            return Err(JwkError::NoUsableKeys);
        }
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

    /// Looks up the key(s) for a token header.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid).and_then(|&i| self.keys.get(i)) {
                None => KeyLookup::UnknownKid,
                Some(key) if key.accepts(alg) => KeyLookup::Found(vec![key]),
                Some(_) => KeyLookup::NoCompatibleKey,
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
    Ok(VerifyingKey { kid, parsed })
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
    let (alg, len, verify_alg): (_, usize, &'static signature::EcdsaVerificationAlgorithm) =
        match crv {
            // JWS ES256/ES384 signatures are raw r||s (IEEE P1363), never DER.
            "P-256" => (Algorithm::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
            "P-384" => (Algorithm::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
            _ => return Err("unsupported curve"),
        };
    if pinned.is_some_and(|a| a != alg) {
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
    let key = ParsedPublicKey::new(verify_alg, &point).map_err(|_| "ec point invalid")?;
    Ok(vec![(alg, key)])
}

fn okp_key(
    raw: &RawJwk,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, &'static str> {
    let crv = opt_str(&raw.crv, "crv is not a string")?.ok_or("okp crv missing")?;
    if crv != "Ed25519" {
        return Err("unsupported curve");
    }
    if pinned.is_some_and(|a| a != Algorithm::EdDSA) {
        return Err("alg inconsistent with crv");
    }
    let x = b64_member(&raw.x, "okp x missing", "okp x is not base64url")?;
    if x.len() != 32 {
        return Err("ed25519 key length is not 32 bytes");
    }
    let key = ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| "ed25519 key invalid")?;
    Ok(vec![(Algorithm::EdDSA, key)])
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
