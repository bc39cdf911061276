//! Unit tests of `jwk`.

use super::build::*;
use super::hygiene::*;
use super::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    let good =
        json!({"kty": "OKP", "kid": "g", "crv": "Ed25519", "x": b64(good.public_key().as_ref())});
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
