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

use crate::token::Algorithm;

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
mod tests {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn opts(kid: &str) -> MintOptions {
        MintOptions {
            iss: "https://issuer.test".into(),
            sub: "alice".into(),
            aud: vec!["api".into()],
            ttl: Duration::from_secs(600),
            now: NOW,
            kid: Some(kid.into()),
            ..MintOptions::default()
        }
    }

    /// Verifies `token` with the JWKS the way a relying party would and returns the claims.
    fn verify(token: &str, jwks_json: &str, alg: Algorithm, aud: &[&str]) -> Map<String, Value> {
        let set: JwkSet = serde_json::from_str(jwks_json).unwrap();
        assert_eq!(set.keys.len(), 1);
        let header = decode_header(token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(jwt_alg(alg));
        v.set_audience(aud);
        v.set_issuer(&["https://issuer.test"]);
        // The tokens are minted at a fixed past time; the signature is what matters here.
        v.validate_exp = false;
        v.validate_nbf = false;
        decode::<Map<String, Value>>(token, &key, &v)
            .unwrap()
            .claims
    }

    fn round_trip(alg: Algorithm, bits: usize) {
        let kid = format!("k-{alg}");
        let key = generate_key(alg, bits, &kid).unwrap();
        assert_eq!(key.alg, alg);
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!key.private_pem.contains('\r'));
        assert!(!format!("{key:?}").contains("BEGIN"));

        let jwks: Value = serde_json::from_str(&key.jwks_json).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
        assert!(
            jwk.get("d").is_none(),
            "private parameter in the public JWK"
        );

        let mut o = opts(&kid);
        o.alg = Some(alg);
        o.scope = Some("read write".into());
        let token = mint(&key.private_pem, &o).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, jwt_alg(alg));
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));

        let claims = verify(&token, &key.jwks_json, alg, &["api"]);
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "api");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["nbf"], NOW);
        assert_eq!(claims["exp"], NOW + 600);
        assert_eq!(claims["scope"], "read write");
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 32);
        assert!(jti.bytes().all(|b| b.is_ascii_hexdigit()));

        // The public JWKS can be rebuilt from the private key alone.
        let again = public_jwks_from_private_pem(&key.private_pem, alg, &kid).unwrap();
        assert_eq!(again, key.jwks_json);

        // A token signed by another key of the same type does not verify against this JWKS.
        let other = generate_key(alg, bits, &kid).unwrap();
        let forged = mint(&other.private_pem, &o).unwrap();
        let set: JwkSet = serde_json::from_str(&key.jwks_json).unwrap();
        let dk = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let mut v = Validation::new(jwt_alg(alg));
        v.set_audience(&["api"]);
        v.validate_exp = false;
        assert!(decode::<Map<String, Value>>(&forged, &dk, &v).is_err());
    }

    #[test]
    fn round_trip_rs256() {
        round_trip(Algorithm::RS256, 2048);
    }
    #[test]
    fn round_trip_rs384() {
        round_trip(Algorithm::RS384, 2048);
    }
    #[test]
    fn round_trip_rs512() {
        round_trip(Algorithm::RS512, 3072);
    }
    #[test]
    fn round_trip_ps256() {
        round_trip(Algorithm::PS256, 2048);
    }
    #[test]
    fn round_trip_ps384() {
        round_trip(Algorithm::PS384, 2048);
    }
    #[test]
    fn round_trip_ps512() {
        round_trip(Algorithm::PS512, 2048);
    }
    #[test]
    fn round_trip_es256() {
        round_trip(Algorithm::ES256, 0);
    }
    #[test]
    fn round_trip_es384() {
        round_trip(Algorithm::ES384, 0);
    }
    #[test]
    fn round_trip_eddsa() {
        round_trip(Algorithm::EdDSA, 0);
    }

    #[test]
    fn rsa_4096() {
        let key = generate_key(Algorithm::RS256, 4096, "big").unwrap();
        let jwks: Value = serde_json::from_str(&key.jwks_json).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(n.len(), 512);
        let token = mint(&key.private_pem, &opts("big")).unwrap();
        verify(&token, &key.jwks_json, Algorithm::RS256, &["api"]);
    }

    #[test]
    fn rejects_bad_rsa_bits_and_kid() {
        for bits in [0, 1024, 2047, 2049, 8192] {
            assert_eq!(
                generate_key(Algorithm::RS256, bits, "k").unwrap_err(),
                IssuerError::UnsupportedRsaBits(bits)
            );
        }
        assert!(matches!(
            generate_key(Algorithm::EdDSA, 0, ""),
            Err(IssuerError::InvalidOption(_))
        ));
    }

    #[test]
    fn infers_alg_and_rejects_mismatch() {
        let cases = [
            (Algorithm::PS256, 2048, Algorithm::RS256),
            (Algorithm::ES256, 0, Algorithm::ES256),
            (Algorithm::ES384, 0, Algorithm::ES384),
            (Algorithm::EdDSA, 0, Algorithm::EdDSA),
        ];
        for (gen_alg, bits, inferred) in cases {
            let key = generate_key(gen_alg, bits, "k").unwrap();
            let token = mint(&key.private_pem, &opts("k")).unwrap();
            assert_eq!(
                decode_header(&token).unwrap().alg,
                jwt_alg(inferred),
                "{gen_alg}"
            );
        }

        let ec = generate_key(Algorithm::ES256, 0, "k").unwrap();
        for wrong in [Algorithm::RS256, Algorithm::ES384, Algorithm::EdDSA] {
            let mut o = opts("k");
            o.alg = Some(wrong);
            assert_eq!(
                mint(&ec.private_pem, &o).unwrap_err(),
                IssuerError::AlgorithmMismatch {
                    alg: wrong,
                    key: "P-256"
                }
            );
            assert!(public_jwks_from_private_pem(&ec.private_pem, wrong, "k").is_err());
        }
    }

    #[test]
    fn claims_shapes() {
        let key = generate_key(Algorithm::ES256, 0, "k").unwrap();
        let mut o = opts("k");
        o.aud = vec!["a".into(), "b".into()];
        o.jti = Some("fixed".into());
        o.parent_jti = Some("parent".into());
        o.cnf_x5t_s256 = Some("thumb".into());
        o.extra.insert("role".into(), json!(["admin"]));
        o.extra.insert("org".into(), json!({"id": 7}));
        let token = mint(&key.private_pem, &o).unwrap();
        let claims = verify(&token, &key.jwks_json, Algorithm::ES256, &["b"]);
        assert_eq!(claims["aud"], json!(["a", "b"]));
        assert_eq!(claims["jti"], "fixed");
        assert_eq!(claims["parent_jti"], "parent");
        assert_eq!(claims["cnf"], json!({"x5t#S256": "thumb"}));
        assert_eq!(claims["role"], json!(["admin"]));
        assert_eq!(claims["org"]["id"], 7);
        assert!(claims.get("scope").is_none());

        // No audience: no aud claim.
        o.aud.clear();
        let claims = build_claims(&o).unwrap();
        assert!(claims.get("aud").is_none());

        // Two random jtis differ.
        o.jti = None;
        let a = build_claims(&o).unwrap()["jti"].clone();
        let b = build_claims(&o).unwrap()["jti"].clone();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_bad_options() {
        let key = generate_key(Algorithm::EdDSA, 0, "k").unwrap();
        let mut o = opts("k");
        o.extra.insert("exp".into(), json!(1));
        assert!(matches!(
            mint(&key.private_pem, &o),
            Err(IssuerError::InvalidOption(_))
        ));

        let mut o = opts("k");
        o.now = i64::MAX;
        assert!(matches!(
            mint(&key.private_pem, &o),
            Err(IssuerError::InvalidOption(_))
        ));

        let mut o = opts("k");
        o.kid = Some(String::new());
        assert!(matches!(
            mint(&key.private_pem, &o),
            Err(IssuerError::InvalidOption(_))
        ));
    }

    #[test]
    fn rejects_bad_keys() {
        let o = opts("k");
        assert_eq!(
            mint("garbage", &o).unwrap_err(),
            IssuerError::InvalidKey("no PRIVATE KEY block")
        );
        let public_only = encode_pem("PUBLIC KEY", &[1, 2, 3]);
        assert!(matches!(
            mint(&public_only, &o),
            Err(IssuerError::InvalidKey(_))
        ));
        let junk = encode_pem("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(mint(&junk, &o), Err(IssuerError::InvalidKey(_))));
        let sec1 = encode_pem("EC PRIVATE KEY", &[0x30, 0x00]);
        assert!(matches!(mint(&sec1, &o), Err(IssuerError::InvalidKey(_))));
        // Error messages never echo the key.
        let err = mint(&junk, &o).unwrap_err().to_string();
        assert!(!err.contains("MAMC"), "{err}");
    }

    /// Reads one DER TLV at `pos`: (tag, content range).
    fn der_tlv(der: &[u8], pos: usize) -> (u8, std::ops::Range<usize>) {
        let tag = der[pos];
        let first = der[pos + 1] as usize;
        let (len, start) = if first < 0x80 {
            (first, pos + 2)
        } else {
            let n = first & 0x7f;
            let len = der[pos + 2..pos + 2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, pos + 2 + n)
        };
        (tag, start..start + len)
    }

    #[test]
    fn accepts_pkcs1_rsa_and_extra_pem_blocks() {
        let key = generate_key(Algorithm::RS256, 2048, "k").unwrap();
        let pkcs8 = pem::parse(&key.private_pem).unwrap().into_contents();
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (PKCS#1) }
        let (_, outer) = der_tlv(&pkcs8, 0);
        let (_, version) = der_tlv(&pkcs8, outer.start);
        let (_, alg) = der_tlv(&pkcs8, version.end);
        let (tag, pkcs1) = der_tlv(&pkcs8, alg.end);
        assert_eq!(tag, 0x04);
        let pkcs1_pem = encode_pem("RSA PRIVATE KEY", &pkcs8[pkcs1]);

        let bundle = format!("{}{}", encode_pem("CERTIFICATE", &[0x30, 0x00]), pkcs1_pem);
        let token = mint(&bundle, &opts("k")).unwrap();
        verify(&token, &key.jwks_json, Algorithm::RS256, &["api"]);
        assert_eq!(
            public_jwks_from_private_pem(&bundle, Algorithm::RS256, "k").unwrap(),
            key.jwks_json
        );
    }
}
