//! Issuer tools for operators and tests: key generation (`keygen`) and token minting (`mint`).
//!
//! Keys are generated with aws-lc-rs and written as PKCS#8 PEM (`PRIVATE KEY`) plus a public JWKS;
//! tokens are signed with `jsonwebtoken`. Nothing here logs or returns key material in an error.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use mesh_authz_core::token::Algorithm;

/// Key generation or minting failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// RSA keys are 2048, 3072 or 4096 bits.
    #[error("unsupported RSA key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedRsaBits(usize),
    /// The crypto library could not generate a key.
    #[error("key generation failed")]
    KeyGeneration,
    /// The PEM is not an unencrypted RSA, P-256, P-384 or Ed25519 private key.
    #[error("invalid private key: {0}")]
    InvalidKey(&'static str),
    /// The requested algorithm does not fit the key type.
    #[error("algorithm {alg} does not fit a {key} key")]
    AlgorithmMismatch {
        /// The requested algorithm.
        alg: Algorithm,
        /// The key type found.
        key: &'static str,
    },
    /// A caller-supplied option is unusable.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// Signing or serialization failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A freshly generated signing key.
#[derive(Clone)]
pub struct GeneratedKey {
    /// Key id, in the JWKS and in tokens' `kid`.
    pub kid: String,
    /// The algorithm the key is for.
    pub alg: Algorithm,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`). Secret.
    pub private_pem: String,
    /// `{"keys":[…]}` with the public JWK (`kid`, `alg`, `use: sig`, `kty`, key parameters).
    pub jwks_json: String,
}

impl std::fmt::Debug for GeneratedKey {
    // The private key never goes into debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_pem", &"<redacted>")
            .field("jwks_json", &self.jwks_json)
            .finish()
    }
}

/// What kind of private key a PEM holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "P-256",
            KeyKind::P384 => "P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }

    fn default_alg(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self == KeyKind::Rsa,
            Algorithm::ES256 => self == KeyKind::P256,
            Algorithm::ES384 => self == KeyKind::P384,
            Algorithm::EdDSA => self == KeyKind::Ed25519,
            // The issuer signs through jsonwebtoken, which has no RFC 9864 names.
            Algorithm::Ed25519 | Algorithm::ESP256 | Algorithm::ESP384 => false,
        }
    }
}

/// A parsed private key with its public JWK parameters.
struct ParsedKey {
    kind: KeyKind,
    /// The one PEM block holding the key, re-encoded on its own for `jsonwebtoken`.
    pem: String,
    /// Public JWK members (`kty` and key parameters).
    public: Map<String, Value>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn encode_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn rsa_public(key: &RsaKeyPair) -> Map<String, Value> {
    let public = key.public_key();
    let mut m = Map::new();
    m.insert("kty".into(), json!("RSA"));
    m.insert(
        "n".into(),
        json!(b64(public.modulus().big_endian_without_leading_zero())),
    );
    m.insert(
        "e".into(),
        json!(b64(public.exponent().big_endian_without_leading_zero())),
    );
    m
}

fn ec_public(
    key: &EcdsaKeyPair,
    crv: &str,
    coord_len: usize,
) -> Result<Map<String, Value>, IssuerError> {
    // Uncompressed point: 0x04 || x || y.
    let point = key.public_key().as_ref();
    if point.len() != 1 + 2 * coord_len || point.first() != Some(&0x04) {
        return Err(IssuerError::InvalidKey("unexpected EC public key encoding"));
    }
    let x = point.get(1..1 + coord_len).unwrap_or_default();
    let y = point.get(1 + coord_len..).unwrap_or_default();
    let mut m = Map::new();
    m.insert("kty".into(), json!("EC"));
    m.insert("crv".into(), json!(crv));
    m.insert("x".into(), json!(b64(x)));
    m.insert("y".into(), json!(b64(y)));
    Ok(m)
}

fn ed_public(key: &Ed25519KeyPair) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kty".into(), json!("OKP"));
    m.insert("crv".into(), json!("Ed25519"));
    m.insert("x".into(), json!(b64(key.public_key().as_ref())));
    m
}

/// Finds the private key in `private_pem` (the first `PRIVATE KEY` or `RSA PRIVATE KEY` block) and
/// identifies its type.
fn parse_private_pem(private_pem: &str) -> Result<ParsedKey, IssuerError> {
    let blocks = pem::parse_many(private_pem).map_err(|_| IssuerError::InvalidKey("not PEM"))?;
    let block = blocks
        .iter()
        .find(|b| {
            matches!(
                b.tag(),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
            )
        })
        .ok_or(IssuerError::InvalidKey("no PRIVATE KEY block"))?;
    let der = block.contents();
    match block.tag() {
        "RSA PRIVATE KEY" => {
            let key = RsaKeyPair::from_der(der)
                .map_err(|_| IssuerError::InvalidKey("unusable PKCS#1 RSA key"))?;
            Ok(ParsedKey {
                kind: KeyKind::Rsa,
                pem: encode_pem("RSA PRIVATE KEY", der),
                public: rsa_public(&key),
            })
        }
        "EC PRIVATE KEY" => Err(IssuerError::InvalidKey(
            "SEC1 EC key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)",
        )),
        _ => {
            let pem = encode_pem("PRIVATE KEY", der);
            if let Ok(key) = RsaKeyPair::from_pkcs8(der) {
                return Ok(ParsedKey {
                    kind: KeyKind::Rsa,
                    pem,
                    public: rsa_public(&key),
                });
            }
            if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                return Ok(ParsedKey {
                    kind: KeyKind::P256,
                    pem,
                    public: ec_public(&key, "P-256", 32)?,
                });
            }
            if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
                return Ok(ParsedKey {
                    kind: KeyKind::P384,
                    pem,
                    public: ec_public(&key, "P-384", 48)?,
                });
            }
            if let Ok(key) = Ed25519KeyPair::from_pkcs8(der) {
                return Ok(ParsedKey {
                    kind: KeyKind::Ed25519,
                    pem,
                    public: ed_public(&key),
                });
            }
            Err(IssuerError::InvalidKey(
                "not an RSA (2048+ bits), P-256, P-384 or Ed25519 PKCS#8 key",
            ))
        }
    }
}

/// `{"keys":[jwk]}` for a public key.
fn jwks_json(
    mut public: Map<String, Value>,
    alg: Algorithm,
    kid: &str,
) -> Result<String, IssuerError> {
    public.insert("kid".into(), json!(kid));
    public.insert("alg".into(), json!(alg.as_str()));
    public.insert("use".into(), json!("sig"));
    serde_json::to_string_pretty(&json!({ "keys": [public] }))
        .map_err(|e| IssuerError::Signing(e.to_string()))
}

fn check_kid(kid: &str) -> Result<(), IssuerError> {
    if kid.is_empty() || kid.chars().any(char::is_control) {
        return Err(IssuerError::InvalidOption(
            "kid must be non-empty printable text".into(),
        ));
    }
    Ok(())
}

/// Generates a signing key for `alg`: RSA (`rsa_bits` 2048, 3072 or 4096) for RS*/PS*, P-256 for
/// ES256, P-384 for ES384, Ed25519 for EdDSA (`rsa_bits` is ignored for those).
pub fn generate_key(
    alg: Algorithm,
    rsa_bits: usize,
    kid: &str,
) -> Result<GeneratedKey, IssuerError> {
    check_kid(kid)?;
    let (private_der, public): (Vec<u8>, Map<String, Value>) = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let size = match rsa_bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                other => return Err(IssuerError::UnsupportedRsaBits(other)),
            };
            let key = RsaKeyPair::generate(size).map_err(|_| IssuerError::KeyGeneration)?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                .map_err(|_| IssuerError::KeyGeneration)?;
            (der.as_ref().to_vec(), rsa_public(&key))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (signing, crv, len) = if alg == Algorithm::ES256 {
                (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
            } else {
                (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
            };
            let key = EcdsaKeyPair::generate(signing).map_err(|_| IssuerError::KeyGeneration)?;
            let der = key.to_pkcs8v1().map_err(|_| IssuerError::KeyGeneration)?;
            (der.as_ref().to_vec(), ec_public(&key, crv, len)?)
        }
        Algorithm::EdDSA => {
            let key = Ed25519KeyPair::generate().map_err(|_| IssuerError::KeyGeneration)?;
            // PKCS#8 v1, the form `openssl genpkey` writes and every PEM reader accepts.
            let der = key.to_pkcs8v1().map_err(|_| IssuerError::KeyGeneration)?;
            (der.as_ref().to_vec(), ed_public(&key))
        }
        Algorithm::Ed25519 | Algorithm::ESP256 | Algorithm::ESP384 => {
            return Err(IssuerError::InvalidOption(format!(
                "keygen and mint do not use the fully-specified name {alg}; use {}",
                match alg {
                    Algorithm::ESP256 => "ES256",
                    Algorithm::ESP384 => "ES384",
                    _ => "EdDSA",
                }
            )));
        }
    };
    Ok(GeneratedKey {
        kid: kid.to_string(),
        alg,
        private_pem: encode_pem("PRIVATE KEY", &private_der),
        jwks_json: jwks_json(public, alg, kid)?,
    })
}

/// The public JWKS (`{"keys":[…]}`) of a private key PEM, for `alg` and `kid`.
pub fn public_jwks_from_private_pem(
    pem: &str,
    alg: Algorithm,
    kid: &str,
) -> Result<String, IssuerError> {
    check_kid(kid)?;
    let key = parse_private_pem(pem)?;
    if !key.kind.fits(alg) {
        return Err(IssuerError::AlgorithmMismatch {
            alg,
            key: key.kind.name(),
        });
    }
    jwks_json(key.public, alg, kid)
}

/// What to put into a minted token.
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: String,
    /// `aud`: a string if one, an array if more, omitted if none.
    pub aud: Vec<String>,
    /// Lifetime: `exp = now + ttl`.
    pub ttl: Duration,
    /// Issue time (unix seconds): `iat` and `nbf`.
    pub now: i64,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Signature algorithm; `None` infers it from the key (RSA → RS256, P-256 → ES256,
    /// P-384 → ES384, Ed25519 → EdDSA).
    pub alg: Option<Algorithm>,
    /// `scope` (space-separated).
    pub scope: Option<String>,
    /// `jti`; `None` generates a random 128-bit hex id.
    pub jti: Option<String>,
    /// `parent_jti` (revocation cascade).
    pub parent_jti: Option<String>,
    /// RFC 8705 `cnf.x5t#S256` (base64url SHA-256 of the client certificate DER).
    pub cnf_x5t_s256: Option<String>,
    /// Further claims; one that the options above already set is an error.
    pub extra: Map<String, Value>,
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
        Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
        Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
        Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
        Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        // Never reached: `KeyKind::fits` refuses these before signing.
        Algorithm::Ed25519 => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::ESP256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ESP384 => jsonwebtoken::Algorithm::ES384,
    }
}

/// A random 128-bit id as 32 hex digits.
fn random_jti() -> Result<String, IssuerError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IssuerError::Random)?;
    Ok(hex::encode(bytes))
}

/// The claims set of a token minted with `opts`.
fn build_claims(opts: &MintOptions) -> Result<Map<String, Value>, IssuerError> {
    let ttl = i64::try_from(opts.ttl.as_secs())
        .map_err(|_| IssuerError::InvalidOption("ttl too large".into()))?;
    let exp = opts
        .now
        .checked_add(ttl)
        .ok_or_else(|| IssuerError::InvalidOption("now + ttl overflows".into()))?;

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(opts.iss));
    claims.insert("sub".into(), json!(opts.sub));
    match opts.aud.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    claims.insert("iat".into(), json!(opts.now));
    claims.insert("nbf".into(), json!(opts.now));
    claims.insert("exp".into(), json!(exp));
    let jti = match &opts.jti {
        Some(j) => j.clone(),
        None => random_jti()?,
    };
    claims.insert("jti".into(), json!(jti));
    if let Some(scope) = &opts.scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some(parent) = &opts.parent_jti {
        claims.insert("parent_jti".into(), json!(parent));
    }
    if let Some(thumb) = &opts.cnf_x5t_s256 {
        claims.insert("cnf".into(), json!({ "x5t#S256": thumb }));
    }
    for (name, value) in &opts.extra {
        if claims.contains_key(name) {
            return Err(IssuerError::InvalidOption(format!(
                "extra claim {name:?} conflicts with a claim the options set"
            )));
        }
        claims.insert(name.clone(), value.clone());
    }
    Ok(claims)
}

/// Signs a token with the private key in `private_pem` (PKCS#8 `PRIVATE KEY`, or PKCS#1
/// `RSA PRIVATE KEY`). Claims: `iss`, `sub`, `aud`, `iat` = `nbf` = `now`, `exp` = `now + ttl`,
/// `jti`, and `scope`, `parent_jti`, `cnf` and `extra` when given.
pub fn mint(private_pem: &str, opts: &MintOptions) -> Result<String, IssuerError> {
    let key = parse_private_pem(private_pem)?;
    let alg = opts.alg.unwrap_or(key.kind.default_alg());
    if !key.kind.fits(alg) {
        return Err(IssuerError::AlgorithmMismatch {
            alg,
            key: key.kind.name(),
        });
    }
    if let Some(kid) = &opts.kid {
        check_kid(kid)?;
    }
    let claims = build_claims(opts)?;

    // jsonwebtoken's errors describe the failure, never the key bytes.
    let sign_err = |e: jsonwebtoken::errors::Error| IssuerError::Signing(e.to_string());
    let encoding_key = match key.kind {
        KeyKind::Rsa => jsonwebtoken::EncodingKey::from_rsa_pem(key.pem.as_bytes()),
        KeyKind::P256 | KeyKind::P384 => jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()),
        KeyKind::Ed25519 => jsonwebtoken::EncodingKey::from_ed_pem(key.pem.as_bytes()),
    }
    .map_err(sign_err)?;

    let mut header = jsonwebtoken::Header::new(jwt_alg(alg));
    header.kid = opts.kid.clone();
    jsonwebtoken::encode(&header, &claims, &encoding_key).map_err(sign_err)
}

#[cfg(test)]
mod tests;
