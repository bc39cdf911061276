//! Unit tests of `issuer`.

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
