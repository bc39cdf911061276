//! The token attack suite: every row goes through `Verifier::verify` against JWKS files and must
//! be refused with the expected `TokenError` (positive rows prove the suite can fail).

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use aws_lc_rs::{hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::config::{LimitsConfig, ProviderConfig};
use mesh_authz_core::token::verify::{TokenError, Verifier};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ISS: &str = "https://issuer.example";
const ISS_STRICT: &str = "https://strict.example";
const ISS_ONE: &str = "https://one-key.example";
const ISS_BOUNDED: &str = "https://bounded.example";
const ISS_MANY: &str = "https://many-keys.example";
const ISS_NOAUD: &str = "https://no-audiences.example";
const NOW: i64 = 1_700_000_000;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// One key of each family.
struct Keys {
    rsa: rsa::KeyPair,
    ec256: EcdsaKeyPair,
    ec384: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

impl Keys {
    fn generate() -> Self {
        Keys {
            rsa: rsa::KeyPair::generate(rsa::KeySize::Rsa2048).unwrap(),
            ec256: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            ec384: EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            ed: Ed25519KeyPair::generate().unwrap(),
        }
    }

    fn rsa_jwk(&self, kid: &str) -> Value {
        let pk = self.rsa.public_key();
        json!({"kty": "RSA", "kid": kid, "use": "sig",
               "n": b64(pk.modulus().big_endian_without_leading_zero()),
               "e": b64(pk.exponent().big_endian_without_leading_zero())})
    }

    fn jwks(&self) -> Value {
        let p256 = self.ec256.public_key().as_ref();
        let p384 = self.ec384.public_key().as_ref();
        json!({"keys": [
            self.rsa_jwk("rsa"),
            {"kty": "EC", "kid": "ec256", "crv": "P-256", "alg": "ES256",
             "x": b64(&p256[1..33]), "y": b64(&p256[33..65])},
            {"kty": "EC", "kid": "ec384", "crv": "P-384",
             "x": b64(&p384[1..49]), "y": b64(&p384[49..97])},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(self.ed.public_key().as_ref())},
            // The same keys again, pinned to RFC 9864 fully-specified or polymorphic names.
            {"kty": "OKP", "kid": "ed-full", "crv": "Ed25519", "alg": "Ed25519",
             "x": b64(self.ed.public_key().as_ref())},
            {"kty": "OKP", "kid": "ed-poly", "crv": "Ed25519", "alg": "EdDSA",
             "x": b64(self.ed.public_key().as_ref())},
            {"kty": "EC", "kid": "esp256", "crv": "P-256", "alg": "ESP256",
             "x": b64(&p256[1..33]), "y": b64(&p256[33..65])},
            // RFC 7517 §4.5: one kid, two key types.
            self.rsa_jwk("shared"),
            {"kty": "EC", "kid": "shared", "crv": "P-256",
             "x": b64(&p256[1..33]), "y": b64(&p256[33..65])},
            // One kid, two keys of the same type: ambiguous, both dropped.
            self.rsa_jwk("dup"),
            {"kty": "RSA", "kid": "dup", "n": self.rsa_jwk("x")["n"], "e": "AQAB", "alg": "RS256"},
        ]})
    }

    /// `jwks()` plus Ed25519 keys of small order, one per encoding in [`small_order_points`].
    fn jwks_with_small_order(&self) -> Value {
        let mut v = self.jwks();
        let keys = v["keys"].as_array_mut().unwrap();
        for (i, pt) in small_order_points().iter().enumerate() {
            keys.push(
                json!({"kty": "OKP", "kid": format!("weak-{i}"), "crv": "Ed25519", "x": b64(pt)}),
            );
        }
        v
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let rsa_enc: Option<&'static dyn signature::RsaEncoding> = match alg {
            "RS256" => Some(&signature::RSA_PKCS1_SHA256),
            "RS384" => Some(&signature::RSA_PKCS1_SHA384),
            "RS512" => Some(&signature::RSA_PKCS1_SHA512),
            "PS256" => Some(&signature::RSA_PSS_SHA256),
            "PS384" => Some(&signature::RSA_PSS_SHA384),
            "PS512" => Some(&signature::RSA_PSS_SHA512),
            _ => None,
        };
        if let Some(enc) = rsa_enc {
            let mut sig = vec![0; self.rsa.public_modulus_len()];
            self.rsa.sign(enc, &rng, msg, &mut sig).unwrap();
            return sig;
        }
        match alg {
            "ES256" | "ESP256" => self.ec256.sign(&rng, msg).unwrap().as_ref().to_vec(),
            "ES384" | "ESP384" => self.ec384.sign(&rng, msg).unwrap().as_ref().to_vec(),
            "EdDSA" | "Ed25519" => self.ed.sign(msg).as_ref().to_vec(),
            other => panic!("no key for {other}"),
        }
    }

    /// header.payload.signature, signed with the key matching the header's `alg`.
    fn mint(&self, header: Value, claims: Value) -> String {
        let alg = header["alg"].as_str().unwrap().to_string();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(&alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// The Ed25519 public keys of small order (the identity, the point of order 2, the two of order
/// 4 and the four of order 8), canonical and with the sign bit flipped, plus the non-canonical
/// encodings y = p and y = p + 1 of two of them. Derived and checked ([8]P = O) with exact
/// Edwards arithmetic.
fn small_order_points() -> Vec<[u8; 32]> {
    let hex32 = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    let mut ys = vec![
        hex32("0100000000000000000000000000000000000000000000000000000000000000"),
        hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex32("0000000000000000000000000000000000000000000000000000000000000000"),
        hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ];
    let flipped: Vec<[u8; 32]> = ys
        .iter()
        .map(|y| {
            let mut f = *y;
            f[31] |= 0x80;
            f
        })
        .collect();
    ys.extend(flipped);
    ys
}

/// A signature that verifies under the identity key for every message: R = O, S = 0.
fn identity_forgery() -> Vec<u8> {
    let mut sig = vec![0u8; 64];
    sig[0] = 1;
    sig
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "api", "exp": NOW + 600, "iat": NOW - 10, "jti": "j1"})
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn unsigned(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

fn provider(name: &str, issuer: &str, jwks: &Path, algs: &[&str]) -> ProviderConfig {
    serde_json::from_value(json!({
        "name": name, "issuer": issuer, "audiences": ["api", "other-api"],
        "jwks": {"file": jwks}, "algorithms": algs,
    }))
    .unwrap()
}

struct Fixture {
    verifier: Verifier,
    keys: Keys,
    attacker: Keys,
    metrics: Metrics,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let keys = Keys::generate();
    let attacker = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("jwks.json");
    std::fs::write(&all, keys.jwks().to_string()).unwrap();
    let one = dir.path().join("one.json");
    std::fs::write(&one, json!({"keys": [keys.rsa_jwk("only")]}).to_string()).unwrap();
    let weak = dir.path().join("weak.json");
    std::fs::write(&weak, keys.jwks_with_small_order().to_string()).unwrap();
    // 20 P-256 keys without kid; the signer's is the last.
    let many = dir.path().join("many.json");
    let mut many_keys: Vec<Value> = (0..19)
        .map(|_| {
            let k = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let pt = k.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})
        })
        .collect();
    let p256 = keys.ec256.public_key().as_ref();
    many_keys.push(
        json!({"kty": "EC", "crv": "P-256", "x": b64(&p256[1..33]), "y": b64(&p256[33..65])}),
    );
    std::fs::write(&many, json!({ "keys": many_keys }).to_string()).unwrap();
    let every = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "Ed25519",
        "ESP256", "ESP384",
    ];
    let mut bounded = provider("bounded", ISS_BOUNDED, &all, &["RS256"]);
    bounded.max_token_lifetime = Some(std::time::Duration::from_secs(3600));
    let mut no_aud = provider("no-aud", ISS_NOAUD, &all, &["RS256"]);
    no_aud.audiences.clear();
    let providers = vec![
        provider("main", ISS, &weak, &every),
        provider("strict", ISS_STRICT, &all, &["RS256"]),
        provider("one", ISS_ONE, &one, &["RS256"]),
        bounded,
        provider("many", ISS_MANY, &many, &["ES256"]),
        // Built without config validation: no audiences and no opt-out must fail closed.
        no_aud,
    ];
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let (verifier, _caches) = mesh_authz::jwks::start_verifier(
        &providers,
        &LimitsConfig::default(),
        &metrics,
        cancel.clone(),
    )
    .await
    .unwrap();
    assert!(verifier.ready());
    Fixture {
        verifier,
        keys,
        attacker,
        metrics,
        cancel,
        _dir: dir,
    }
}

fn rsa_public_pem_and_der(k: &Keys) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let spki = k.rsa.public_key().as_der().unwrap().as_ref().to_vec();
    let pkcs1 = k.rsa.public_key().as_ref().to_vec();
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.clone())).into_bytes();
    (pem, spki, pkcs1)
}

fn hs256(secret: &[u8], header: Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test]
async fn attack_table() {
    use TokenError::*;
    let f = fixture().await;
    let k = &f.keys;
    let c = claims();
    let h = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let good = k.mint(h("RS256", "rsa"), c.clone());
    let parts: Vec<&str> = good.split('.').collect();

    let mut rows: Vec<(String, String, Result<(), TokenError>)> = Vec::new();
    let mut row = |name: &str, token: String, want: Result<(), TokenError>| {
        rows.push((name.to_string(), token, want));
    };

    // --- positive rows (the suite must be able to fail) ---
    for (alg, kid) in [
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("PS384", "rsa"),
        ("PS512", "rsa"),
        ("ES256", "ec256"),
        ("ES384", "ec384"),
        ("EdDSA", "ed"),
    ] {
        row(&format!("ok {alg}"), k.mint(h(alg, kid), c.clone()), Ok(()));
    }
    row(
        "ok aud array",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "aud", json!(["x", "other-api"])),
        ),
        Ok(()),
    );
    row(
        "ok no kid, one key",
        k.mint(
            json!({"alg": "RS256"}),
            with(c.clone(), "iss", json!(ISS_ONE)),
        ),
        Ok(()),
    );
    row(
        "ok no kid, key set",
        k.mint(json!({"alg": "ES384"}), c.clone()),
        Ok(()),
    );
    row(
        "ok fractional exp",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "exp", json!(NOW as f64 + 60.5)),
        ),
        Ok(()),
    );

    // --- alg none, every casing, with and without a signature ---
    for alg in ["none", "None", "NONE", "nOnE"] {
        let hdr = json!({"alg": alg, "typ": "JWT"});
        let empty = format!(
            "{}.",
            parts_of(&unsigned(hdr.clone(), &c, b"x"))[..2].join(".")
        );
        row(
            &format!("alg {alg} empty sig"),
            empty,
            Err(UnsupportedAlgorithm),
        );
        row(
            &format!("alg {alg} with sig"),
            unsigned(hdr, &c, b"signature"),
            Err(UnsupportedAlgorithm),
        );
        row(
            &format!("alg {alg} with kid and real sig bytes"),
            format!(
                "{}.{}.{}",
                b64(json!({"alg": alg, "kid": "rsa"}).to_string().as_bytes()),
                parts[1],
                parts[2]
            ),
            Err(UnsupportedAlgorithm),
        );
    }

    // --- HMAC with the RSA public key as secret (key confusion) ---
    let (pem, spki, pkcs1) = rsa_public_pem_and_der(k);
    for (what, secret) in [("pem", &pem), ("spki der", &spki), ("pkcs1 der", &pkcs1)] {
        row(
            &format!("HS256 with public key {what}"),
            hs256(secret, h("HS256", "rsa"), &c),
            Err(UnsupportedAlgorithm),
        );
        row(
            &format!("HS256 no kid with public key {what}"),
            hs256(secret, json!({"alg": "HS256"}), &c),
            Err(UnsupportedAlgorithm),
        );
    }
    for alg in [
        "HS384", "HS512", "hs256", "rs256", "Rs256", "ES512", "RSA1_5", "",
    ] {
        row(
            &format!("alg {alg:?}"),
            unsigned(h(alg, "rsa"), &c, b"sig"),
            Err(UnsupportedAlgorithm),
        );
    }

    // --- key selection attacks ---
    let a = &f.attacker;
    row(
        "attacker key under known kid",
        a.mint(h("RS256", "rsa"), c.clone()),
        Err(BadSignature),
    );
    row(
        "unknown kid",
        a.mint(h("RS256", "attacker"), c.clone()),
        Err(UnknownKid),
    );
    row(
        "path-like kid",
        a.mint(h("RS256", "../../dev/null"), c.clone()),
        Err(UnknownKid),
    );
    row(
        "empty kid",
        a.mint(h("RS256", ""), c.clone()),
        Err(UnknownKid),
    );
    row(
        "jku elsewhere, attacker kid",
        a.mint(
            json!({"alg": "RS256", "kid": "attacker", "jku": "https://evil.example/jwks.json"}),
            c.clone(),
        ),
        Err(UnknownKid),
    );
    row(
        "jku elsewhere, known kid",
        a.mint(
            json!({"alg": "RS256", "kid": "rsa", "jku": "https://evil.example/jwks.json"}),
            c.clone(),
        ),
        Err(BadSignature),
    );
    row(
        "x5u elsewhere",
        a.mint(
            json!({"alg": "RS256", "x5u": "https://evil.example/cert.pem"}),
            c.clone(),
        ),
        Err(BadSignature),
    );
    row(
        "embedded jwk",
        a.mint(
            json!({"alg": "RS256", "jwk": a.rsa_jwk("attacker")}),
            c.clone(),
        ),
        Err(BadSignature),
    );
    row(
        "embedded jwk with its kid",
        a.mint(
            json!({"alg": "RS256", "kid": "attacker", "jwk": a.rsa_jwk("attacker")}),
            c.clone(),
        ),
        Err(UnknownKid),
    );
    row(
        "ES256 r=s=0",
        unsigned(h("ES256", "ec256"), &c, &[0u8; 64]),
        Err(BadSignature),
    );
    row(
        "ES256 r=s=0 no kid",
        unsigned(json!({"alg": "ES256"}), &c, &[0u8; 64]),
        Err(BadSignature),
    );
    {
        // A valid ES256 signature in DER (ASN.1) form is not a JWS signature.
        let hdr = h("ES256", "ec256");
        let input = format!(
            "{}.{}",
            b64(hdr.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        );
        let der_key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            k.ec256.to_pkcs8v1().unwrap().as_ref(),
        )
        .unwrap();
        let der_sig = der_key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        row(
            "ES256 DER signature",
            format!("{input}.{}", b64(der_sig.as_ref())),
            Err(BadSignature),
        );
    }
    row(
        "RS256 token, EC kid",
        k.mint(h("RS256", "ec256"), c.clone()),
        Err(KeyMismatch),
    );
    row(
        "ES384 token, P-256 kid",
        k.mint(h("ES384", "ec384"), c.clone()).replace(
            &b64(h("ES384", "ec384").to_string().as_bytes()),
            &b64(h("ES384", "ec256").to_string().as_bytes()),
        ),
        Err(KeyMismatch),
    );
    row(
        "EdDSA token, RSA kid",
        unsigned(h("EdDSA", "rsa"), &c, &[1u8; 64]),
        Err(KeyMismatch),
    );
    row(
        "PS256 not in allow-list",
        k.mint(h("PS256", "rsa"), with(c.clone(), "iss", json!(ISS_STRICT))),
        Err(AlgorithmNotAllowed),
    );
    row(
        "ES256 not in allow-list",
        k.mint(
            h("ES256", "ec256"),
            with(c.clone(), "iss", json!(ISS_STRICT)),
        ),
        Err(AlgorithmNotAllowed),
    );

    // --- structure and encoding ---
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
        "a",
        "b",
        "c",
        "d"
    );
    row("JWE (5 segments)", jwe, Err(Malformed("jwe not accepted")));
    row("opaque token", "garbage".into(), Err(Opaque));
    row(
        "opaque reference token",
        "2YotnFZFEjr1zCsicMWpAA".into(),
        Err(Opaque),
    );
    row(
        "opaque token of the JWT alphabet",
        parts[2].to_string(),
        Err(Opaque),
    );
    row("empty", String::new(), Err(Malformed("not a compact jws")));
    row(
        "two segments",
        format!("{}.{}", parts[0], parts[1]),
        Err(Malformed("not a compact jws")),
    );
    row(
        "four segments",
        format!("{good}.x"),
        Err(Malformed("not a compact jws")),
    );
    row(
        "padded signature",
        format!("{good}="),
        Err(Malformed("signature base64")),
    );
    row(
        "padded header",
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        Err(Malformed("header base64")),
    );
    row(
        "plus in signature",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            parts[2].replacen(|ch: char| ch.is_ascii_alphanumeric(), "+", 1)
        ),
        Err(Malformed("signature base64")),
    );
    row(
        "slash in payload",
        format!("{}.{}/.{}", parts[0], parts[1], parts[2]),
        Err(Malformed("payload base64")),
    );
    row(
        "whitespace",
        format!(" {good}"),
        Err(Malformed("header base64")),
    );
    row(
        "oversized",
        format!("{good}{}", "A".repeat(8193 - good.len())),
        Err(TooLarge),
    );
    row(
        "stripped signature",
        format!("{}.{}.", parts[0], parts[1]),
        Err(Malformed("empty signature")),
    );
    row(
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(with(c.clone(), "sub", json!("admin"))
                .to_string()
                .as_bytes()),
            parts[2]
        ),
        Err(BadSignature),
    );
    row(
        "truncated signature",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            b64(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()[..250])
        ),
        Err(BadSignature),
    );
    row(
        "header not an object",
        format!("{}.{}.{}", b64(b"\"RS256\""), parts[1], parts[2]),
        Err(Malformed("header json")),
    );
    row(
        "duplicate alg member",
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","alg":"none"}"#),
            parts[1],
            parts[2]
        ),
        Err(Malformed("header json")),
    );
    row(
        "unknown crit",
        k.mint(
            json!({"alg": "RS256", "kid": "rsa", "crit": ["exp"], "exp": 1}),
            c.clone(),
        ),
        Err(UnsupportedCrit),
    );
    row(
        "b64 false crit",
        k.mint(
            json!({"alg": "RS256", "kid": "rsa", "b64": false, "crit": ["b64"]}),
            c.clone(),
        ),
        Err(UnsupportedCrit),
    );
    row(
        "kid not a string",
        k.mint(json!({"alg": "RS256", "kid": 1}), c.clone()),
        Err(Malformed("kid")),
    );

    // --- claims ---
    row(
        "expired",
        k.mint(h("RS256", "rsa"), with(c.clone(), "exp", json!(NOW - 31))),
        Err(Expired),
    );
    row(
        "not yet valid",
        k.mint(h("RS256", "rsa"), with(c.clone(), "nbf", json!(NOW + 31))),
        Err(NotYetValid),
    );
    row(
        "issued in the future",
        k.mint(h("RS256", "rsa"), with(c.clone(), "iat", json!(NOW + 31))),
        Err(NotYetValid),
    );
    row(
        "wrong iss",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "iss", json!("https://evil.example")),
        ),
        Err(UnknownIssuer),
    );
    row(
        "iss with trailing slash",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "iss", json!(format!("{ISS}/"))),
        ),
        Err(UnknownIssuer),
    );
    row(
        "missing iss",
        k.mint(h("RS256", "rsa"), without(c.clone(), "iss")),
        Err(Malformed("iss")),
    );
    row(
        "wrong aud",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "aud", json!("someone-else")),
        ),
        Err(WrongAudience),
    );
    row(
        "wrong aud array",
        k.mint(h("RS256", "rsa"), with(c.clone(), "aud", json!(["a", "b"]))),
        Err(WrongAudience),
    );
    row(
        "no aud",
        k.mint(h("RS256", "rsa"), without(c.clone(), "aud")),
        Err(WrongAudience),
    );
    row(
        "numeric jti",
        k.mint(h("RS256", "rsa"), with(c.clone(), "jti", json!(12345))),
        Err(Malformed("jti")),
    );
    row(
        "exp as string",
        k.mint(
            h("RS256", "rsa"),
            with(c.clone(), "exp", json!((NOW + 600).to_string())),
        ),
        Err(Malformed("exp")),
    );
    row(
        "missing exp",
        k.mint(h("RS256", "rsa"), without(c.clone(), "exp")),
        Err(MissingClaim),
    );
    row(
        "negative exp",
        k.mint(h("RS256", "rsa"), with(c.clone(), "exp", json!(-1))),
        Err(Malformed("exp")),
    );
    row(
        "claims not an object",
        k.mint(h("RS256", "rsa"), json!(["iss", ISS])),
        Err(Malformed("claims json")),
    );

    // --- small-order Ed25519 keys: R = identity, S = 0 verifies under the identity key ---
    for i in 0..small_order_points().len() {
        let kid = format!("weak-{i}");
        row(
            &format!("small-order ed25519 key {kid}, forged"),
            unsigned(h("EdDSA", &kid), &c, &identity_forgery()),
            Err(UnknownKid),
        );
        row(
            &format!("small-order ed25519 key {kid}, attacker-signed"),
            a.mint(h("EdDSA", &kid), c.clone()),
            Err(UnknownKid),
        );
    }
    row(
        "small-order ed25519 keys, forged, no kid",
        unsigned(json!({"alg": "EdDSA"}), &c, &identity_forgery()),
        Err(BadSignature),
    );

    // --- one kid shared by keys of different types (RFC 7517 §4.5) ---
    row(
        "ok shared kid, RS256",
        k.mint(h("RS256", "shared"), c.clone()),
        Ok(()),
    );
    row(
        "ok shared kid, PS384",
        k.mint(h("PS384", "shared"), c.clone()),
        Ok(()),
    );
    row(
        "ok shared kid, ES256",
        k.mint(h("ES256", "shared"), c.clone()),
        Ok(()),
    );
    row(
        "shared kid, attacker ES256",
        a.mint(h("ES256", "shared"), c.clone()),
        Err(BadSignature),
    );
    row(
        "shared kid, attacker RS256",
        a.mint(h("RS256", "shared"), c.clone()),
        Err(BadSignature),
    );
    row(
        "shared kid, RSA signature under ES256",
        unsigned(h("ES256", "shared"), &c, &k.sign("RS256", b"x")),
        Err(BadSignature),
    );
    row(
        "shared kid, EdDSA",
        k.mint(h("EdDSA", "shared"), c.clone()),
        Err(KeyMismatch),
    );
    row(
        "shared kid, ES384",
        k.mint(h("ES384", "shared"), c.clone()),
        Err(KeyMismatch),
    );
    row(
        "duplicate kid, same key type",
        k.mint(h("RS256", "dup"), c.clone()),
        Err(UnknownKid),
    );

    // --- no kid: every compatible key is tried ---
    row(
        "ok no kid, signer is the 20th key",
        k.mint(
            json!({"alg": "ES256"}),
            with(c.clone(), "iss", json!(ISS_MANY)),
        ),
        Ok(()),
    );
    row(
        "no kid, 20 keys, attacker",
        a.mint(
            json!({"alg": "ES256"}),
            with(c.clone(), "iss", json!(ISS_MANY)),
        ),
        Err(BadSignature),
    );

    // --- RFC 9864 fully-specified names against key types and pinned algs ---
    for (alg, kid) in [
        ("Ed25519", "ed"),
        ("Ed25519", "ed-full"),
        ("EdDSA", "ed-poly"),
        ("ESP256", "esp256"),
        ("ESP384", "ec384"),
        ("ES256", "ec256"),
    ] {
        row(
            &format!("ok {alg} kid {kid}"),
            k.mint(h(alg, kid), c.clone()),
            Ok(()),
        );
    }
    row(
        "ok Ed25519 no kid",
        k.mint(json!({"alg": "Ed25519"}), c.clone()),
        Ok(()),
    );
    for (alg, kid) in [
        ("EdDSA", "ed-full"),
        ("Ed25519", "ed-poly"),
        ("ES256", "esp256"),
        ("ESP256", "ec256"),
        ("ESP256", "ec384"),
        ("ESP384", "ec256"),
        ("Ed25519", "rsa"),
        ("ESP256", "rsa"),
        ("Ed25519", "ec256"),
        ("ESP256", "ed"),
    ] {
        row(
            &format!("{alg} token, key {kid}"),
            k.mint(h(alg, kid), c.clone()),
            Err(KeyMismatch),
        );
    }
    row(
        "Ed25519 attacker-signed",
        a.mint(h("Ed25519", "ed"), c.clone()),
        Err(BadSignature),
    );
    row(
        "Ed25519 with the identity forgery",
        unsigned(h("Ed25519", "weak-0"), &c, &identity_forgery()),
        Err(UnknownKid),
    );
    row(
        "Ed25519 not in allow-list",
        k.mint(
            h("Ed25519", "ed"),
            with(c.clone(), "iss", json!(ISS_STRICT)),
        ),
        Err(AlgorithmNotAllowed),
    );
    for alg in ["ed25519", "ED25519", "esp256", "ESP512", "Ed448", "ESB256"] {
        row(
            &format!("alg {alg:?}"),
            unsigned(h(alg, "ed"), &c, b"sig"),
            Err(UnsupportedAlgorithm),
        );
    }

    // --- NumericDates beyond 64 bits are far future, not malformed ---
    for (what, exp) in [
        ("1e20", json!(1e20)),
        ("2^63", json!(9_223_372_036_854_775_808u64)),
        ("u64::MAX", json!(u64::MAX)),
        ("2.001e206", json!(2.001e206)),
    ] {
        row(
            &format!("ok huge exp {what}"),
            k.mint(h("RS256", "rsa"), with(c.clone(), "exp", exp.clone())),
            Ok(()),
        );
        row(
            &format!("huge exp {what}, max_token_lifetime"),
            k.mint(
                h("RS256", "rsa"),
                with(
                    with(c.clone(), "exp", exp.clone()),
                    "iss",
                    json!(ISS_BOUNDED),
                ),
            ),
            Err(LifetimeTooLong),
        );
        row(
            &format!("huge nbf {what}"),
            k.mint(h("RS256", "rsa"), with(c.clone(), "nbf", exp.clone())),
            Err(NotYetValid),
        );
        row(
            &format!("huge iat {what}"),
            k.mint(h("RS256", "rsa"), with(c.clone(), "iat", exp)),
            Err(NotYetValid),
        );
    }
    row(
        "huge exp as a 40-digit integer",
        {
            let payload = format!(
                r#"{{"iss":"{ISS}","aud":"api","exp":1000000000000000000000000000000000000000}}"#
            );
            let input = format!(
                "{}.{}",
                b64(h("RS256", "rsa").to_string().as_bytes()),
                b64(payload.as_bytes())
            );
            format!("{input}.{}", b64(&k.sign("RS256", input.as_bytes())))
        },
        Ok(()),
    );

    // --- audience: checked unless the provider opts out ---
    row(
        "provider without audiences, token with aud",
        k.mint(h("RS256", "rsa"), with(c.clone(), "iss", json!(ISS_NOAUD))),
        Err(WrongAudience),
    );
    row(
        "provider without audiences, token without aud",
        k.mint(
            h("RS256", "rsa"),
            without(with(c.clone(), "iss", json!(ISS_NOAUD)), "aud"),
        ),
        Err(WrongAudience),
    );
    row(
        "empty aud array",
        k.mint(h("RS256", "rsa"), with(c.clone(), "aud", json!([]))),
        Err(WrongAudience),
    );
    row(
        "aud of another case",
        k.mint(h("RS256", "rsa"), with(c.clone(), "aud", json!("API"))),
        Err(WrongAudience),
    );

    let mut failures = Vec::new();
    for (name, token, want) in &rows {
        let got = f.verifier.verify(token, NOW).await.map(|_| ());
        if &got != want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(rows.len() > 80, "{} rows", rows.len());
    f.cancel.cancel();
}

fn parts_of(t: &str) -> Vec<&str> {
    t.split('.').collect()
}

#[tokio::test]
async fn jsonwebtoken_minted_tokens_verify() {
    let f = fixture().await;
    let pkcs8 = f.keys.rsa.as_der().unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa".into());
    let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    let v = f.verifier.verify(&token, NOW).await.unwrap();
    assert_eq!(v.sub(), Some("alice"));
    assert_eq!(v.alg(), mesh_authz_core::token::Algorithm::RS256);
    assert_eq!(
        f.verifier.provider_name(v.provider()).map(|n| &**n),
        Some("main")
    );
    assert_eq!(v.jti(), Some("j1"));
    f.cancel.cancel();
}

#[tokio::test]
async fn skew_edges_and_cache() {
    let f = fixture().await;
    let exp = NOW + 100;
    let token = f.keys.mint(
        json!({"alg": "RS256", "kid": "rsa"}),
        with(with(claims(), "exp", json!(exp)), "nbf", json!(NOW)),
    );
    let hits = || f.metrics.token_cache.with_label_values(&["hit"]).get();
    let misses = || f.metrics.token_cache.with_label_values(&["miss"]).get();
    // nbf edge: valid from nbf - skew (30 s).
    assert_eq!(
        f.verifier.verify(&token, NOW - 31).await.unwrap_err(),
        TokenError::NotYetValid
    );
    assert_eq!(misses(), 1);
    f.verifier.verify(&token, NOW - 30).await.unwrap();
    assert_eq!(misses(), 2);
    // Cached now; a hit still re-checks time against the given clock.
    f.verifier.verify(&token, exp + 29).await.unwrap();
    assert_eq!(hits(), 1);
    assert_eq!(
        f.verifier.verify(&token, exp + 30).await.unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(
        f.verifier.verify(&token, NOW - 31).await.unwrap_err(),
        TokenError::NotYetValid
    );
    assert_eq!(hits(), 3);
    let again = f.verifier.verify(&token, NOW).await.unwrap();
    assert_eq!(again.times().exp, exp);
    // A refused token is never cached.
    let bad = format!("{token}A");
    for _ in 0..2 {
        assert!(f.verifier.verify(&bad, NOW).await.is_err());
    }
    assert_eq!(hits(), 4);
    f.cancel.cancel();
}

#[tokio::test]
async fn missing_keys_fail_closed() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let p = provider("gone", ISS, &dir.path().join("absent.json"), &["RS256"]);
    let cancel = CancellationToken::new();
    let (verifier, _caches) = mesh_authz::jwks::start_verifier(
        &[p],
        &LimitsConfig::default(),
        &Metrics::new(),
        cancel.clone(),
    )
    .await
    .unwrap();
    assert!(!verifier.ready());
    let token = keys.mint(json!({"alg": "RS256", "kid": "rsa"}), claims());
    let err = verifier.verify(&token, NOW).await.unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable);
    assert!(err.is_dependency_failure());
    assert_eq!(err.reason(), "jwks_unavailable");
    cancel.cancel();
}

#[tokio::test]
async fn verified_token_is_shared() {
    let f = fixture().await;
    let token = f.keys.mint(json!({"alg": "EdDSA", "kid": "ed"}), claims());
    let a = f.verifier.verify(&token, NOW).await.unwrap();
    let b = f.verifier.verify(&token, NOW).await.unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "second verification is served from the cache"
    );
    assert_eq!(f.verifier.provider(a.provider()).unwrap().issuer, ISS);
    f.cancel.cancel();
}

#[tokio::test]
async fn verify_here_answers_from_this_threads_front_exactly_as_verify_does() {
    let f = fixture().await;
    let exp = NOW + 100;
    let token = f.keys.mint(
        json!({"alg": "RS256", "kid": "rsa"}),
        with(claims(), "exp", json!(exp)),
    );
    assert!(f.verifier.verify_here(&token, NOW).is_none(), "never seen");
    f.verifier.verify(&token, NOW).await.unwrap();
    // The front takes a token on a shared-cache hit only (seen twice).
    assert!(f.verifier.verify_here(&token, NOW).is_none());
    f.verifier.verify(&token, NOW).await.unwrap();
    let here = f.verifier.verify_here(&token, NOW).unwrap().unwrap();
    let full = f.verifier.verify(&token, NOW).await.unwrap();
    assert!(Arc::ptr_eq(&here, &full), "the same front entry answers");
    // Time is re-checked on every answer, as a shared hit re-checks it.
    for now in [exp + 30, exp + 3600] {
        assert_eq!(
            f.verifier.verify_here(&token, now).unwrap().unwrap_err(),
            f.verifier.verify(&token, now).await.unwrap_err()
        );
    }
    // Past the entry's cache lifetime: no answer here, and the stale entry leaves the front;
    // past the front, the shared cache answers and puts the token back.
    assert!(f.verifier.verify_here(&token, i64::MAX - 1).is_none());
    assert!(
        f.verifier.verify_here(&token, NOW).is_none(),
        "stale entry dropped"
    );
    f.verifier.verify_beyond_front(&token, NOW).await.unwrap();
    assert!(f.verifier.verify_here(&token, NOW).is_some());
    assert_eq!(
        f.verifier
            .verify_beyond_front(&"a".repeat(1 << 20), NOW)
            .await
            .unwrap_err(),
        TokenError::TooLarge
    );
    // Only the exact token: one more byte, or one less, is not found.
    assert!(f.verifier.verify_here(&format!("{token}A"), NOW).is_none());
    assert!(
        f.verifier
            .verify_here(&token[..token.len() - 1], NOW)
            .is_none()
    );
    f.cancel.cancel();
}

#[tokio::test]
async fn verify_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture().await;
    let fut = f.verifier.verify("a.b.c", NOW);
    assert_send(&fut);
    assert!(fut.await.is_err());
    f.cancel.cancel();
}

#[tokio::test]
async fn the_token_cache_never_holds_more_than_its_capacity() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, keys.jwks().to_string()).unwrap();
    let limits = LimitsConfig {
        token_cache_capacity: 64,
        ..LimitsConfig::default()
    };
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let (verifier, _caches) = mesh_authz::jwks::start_verifier(
        &[provider("main", ISS, &jwks, &["EdDSA"])],
        &limits,
        &metrics,
        cancel.clone(),
    )
    .await
    .unwrap();
    let tokens: Vec<String> = (0..500)
        .map(|n| {
            keys.mint(
                json!({"alg": "EdDSA", "kid": "ed"}),
                with(claims(), "jti", json!(format!("j{n}"))),
            )
        })
        .collect();
    for t in &tokens {
        verifier.verify(t, NOW).await.unwrap();
        assert!(verifier.cached_tokens() <= 64);
    }
    let held = verifier.cached_tokens();
    assert!(held > 0 && held <= 64, "{held}");
    assert_eq!(metrics.token_cache_entries.get(), held as i64);
    // Whatever was evicted still verifies (again, from scratch).
    for t in &tokens {
        verifier.verify(t, NOW).await.unwrap();
    }
    assert!(verifier.cached_tokens() <= 64);
    cancel.cancel();
}

/// Item: removing a key removes its tokens. A token verified (and cached) before its key left the
/// JWKS is refused after the refresh that dropped the key; tokens of the keys still there keep
/// being served from the cache.
#[tokio::test]
async fn a_removed_key_takes_its_cached_tokens_with_it() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, keys.jwks().to_string()).unwrap();
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let (verifier, caches) = mesh_authz::jwks::start_verifier(
        &[provider("main", ISS, &path, &["RS256", "ES256", "EdDSA"])],
        &LimitsConfig::default(),
        &metrics,
        cancel.clone(),
    )
    .await
    .unwrap();
    let hits = || metrics.token_cache.with_label_values(&["hit"]).get();

    let by_ec = keys.mint(json!({"alg": "ES256", "kid": "ec256"}), claims());
    let by_ec_no_kid = keys.mint(json!({"alg": "ES256"}), with(claims(), "jti", json!("j2")));
    let by_ed = keys.mint(json!({"alg": "EdDSA", "kid": "ed"}), claims());
    let by_rsa = keys.mint(json!({"alg": "RS256", "kid": "rsa"}), claims());
    for t in [&by_ec, &by_ec_no_kid, &by_ed, &by_rsa] {
        verifier.verify(t, NOW).await.unwrap();
        verifier.verify(t, NOW).await.unwrap();
    }
    assert_eq!(hits(), 4, "all four are cached");

    // The next JWKS drops every key with the EC key's material, and replaces the Ed25519 key
    // under the same kid with another one.
    let other_ed = Ed25519KeyPair::generate().unwrap();
    let mut next = keys.jwks();
    let list = next["keys"].as_array_mut().unwrap();
    list.retain(|k| k["kty"] != "EC");
    for k in list.iter_mut() {
        if k["kid"] == "ed" {
            k["x"] = json!(b64(other_ed.public_key().as_ref()));
        }
    }
    std::fs::write(&path, next.to_string()).unwrap();
    caches[0].refresh_now().await.unwrap();

    assert_eq!(
        verifier.verify(&by_ec, NOW).await.unwrap_err(),
        TokenError::UnknownKid
    );
    assert_eq!(
        verifier.verify(&by_ec_no_kid, NOW).await.unwrap_err(),
        TokenError::KeyMismatch
    );
    assert_eq!(
        verifier.verify(&by_ed, NOW).await.unwrap_err(),
        TokenError::BadSignature
    );
    let before = hits();
    verifier.verify(&by_rsa, NOW).await.unwrap();
    assert_eq!(
        hits(),
        before + 1,
        "a token of a kept key is still a cache hit"
    );

    // The key comes back: its tokens verify again.
    std::fs::write(&path, keys.jwks().to_string()).unwrap();
    caches[0].refresh_now().await.unwrap();
    verifier.verify(&by_ec, NOW).await.unwrap();
    cancel.cancel();
}

/// `allow_any_audience: true` is the explicit opt-out: `aud` is then not checked at all.
#[tokio::test]
async fn allow_any_audience_is_the_only_way_to_skip_the_aud_check() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, keys.jwks().to_string()).unwrap();
    let mut any = provider("any", ISS, &jwks, &["RS256"]);
    any.audiences.clear();
    any.allow_any_audience = true;
    let cancel = CancellationToken::new();
    let (verifier, _caches) = mesh_authz::jwks::start_verifier(
        &[any],
        &LimitsConfig::default(),
        &Metrics::new(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let h = json!({"alg": "RS256", "kid": "rsa"});
    for c in [
        claims(),
        without(claims(), "aud"),
        with(claims(), "aud", json!(["someone-else"])),
    ] {
        verifier
            .verify(&keys.mint(h.clone(), c), NOW)
            .await
            .unwrap();
    }
    cancel.cancel();
}

/// A token without `kid` is tried against at most `jwks.max_keys_without_kid` keys.
#[tokio::test]
async fn the_keys_tried_without_kid_are_bounded_by_config() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let mut list: Vec<Value> = (0..5)
        .map(|_| {
            let k = Ed25519KeyPair::generate().unwrap();
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
        })
        .collect();
    list.push(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(keys.ed.public_key().as_ref())}));
    std::fs::write(&jwks, json!({ "keys": list }).to_string()).unwrap();
    let token = keys.mint(json!({"alg": "EdDSA"}), claims());
    for (max, want) in [
        (6, Ok(())),
        (32, Ok(())),
        (5, Err(TokenError::BadSignature)),
        (1, Err(TokenError::BadSignature)),
    ] {
        let mut p = provider("bounded", ISS, &jwks, &["EdDSA"]);
        p.jwks.max_keys_without_kid = max;
        let cancel = CancellationToken::new();
        let (verifier, _caches) = mesh_authz::jwks::start_verifier(
            &[p],
            &LimitsConfig::default(),
            &Metrics::new(),
            cancel.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            verifier.verify(&token, NOW).await.map(|_| ()),
            want,
            "max {max}"
        );
        cancel.cancel();
    }
}
