//! Reading a JWKS document: each member checked by hand for a precise drop reason, each key
//! pre-parsed once.

use std::str::FromStr;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::Algorithm;
use super::hygiene::*;
use super::*;

/// The JWKS document: only `keys` is read.
#[derive(Deserialize)]
pub(super) struct JwksDoc {
    pub(super) keys: Option<Vec<Entry>>,
}

/// One element of `keys`: a JWK object, or anything else (dropped, not fatal).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Entry {
    Key(Box<RawJwk>),
    Other(serde::de::IgnoredAny),
}

/// The public members we read. Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`, `oth`) are
/// not fields, so they are never stored. Types are checked by hand for precise drop reasons.
#[derive(Deserialize)]
pub(super) struct RawJwk {
    kty: Option<Value>,
    pub(super) kid: Option<Value>,
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
pub(super) fn opt_str<'a>(
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
pub(super) fn b64_member(
    v: &Option<Value>,
    missing: &'static str,
    bad: &'static str,
) -> Result<Vec<u8>, &'static str> {
    let s = opt_str(v, bad)?.ok_or(missing)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| bad)
}

/// Applies hygiene and builds the pre-parsed key, or says why it is dropped.
pub(super) fn build_key(raw: &RawJwk) -> Result<VerifyingKey, &'static str> {
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
pub(super) fn fingerprint(
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

pub(super) const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

pub(super) fn rsa_params(alg: Algorithm) -> Option<&'static signature::RsaParameters> {
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

pub(super) fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

pub(super) fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

pub(super) fn rsa_keys(
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

pub(super) fn ec_key(
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

pub(super) fn okp_key(
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
