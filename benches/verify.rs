//! The cost of one signature verification, per algorithm, three ways:
//! - `raw`: aws-lc-rs `ParsedPublicKey::verify_sig` with a pre-parsed key and pre-decoded
//!   signature — the limit;
//! - `mesh_authz`: `mesh_authz_core::token::verify::verify_with_keys` on the compact token (parse,
//!   base64, claims, key lookup, verify) — mesh-authz's cold path minus the cache;
//! - `jsonwebtoken_naive`: `jsonwebtoken::decode` rebuilding the `DecodingKey` from the JWK on
//!   every call, as a naive integration would.
//!
//! `bench/run` reads the medians from `target/criterion/verify_*/*/new/estimates.json`.

#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use mesh_authz::tools::issuer::{self, MintOptions};
use mesh_authz_core::config::ProviderConfig;
use mesh_authz_core::token::Algorithm;
use mesh_authz_core::token::jwk::KeySet;
use mesh_authz_core::token::verify::verify_with_keys;

const ISS: &str = "https://issuer.bench";

fn now() -> i64 {
    mesh_authz_core::clock::unix_now()
}

fn bench_alg(c: &mut Criterion, name: &str, alg: Algorithm, bits: usize) {
    let key = issuer::generate_key(alg, bits, name).unwrap();
    let token = issuer::mint(
        &key.private_pem,
        &MintOptions {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: vec!["bench".into()],
            ttl: Duration::from_secs(3600),
            now: now(),
            kid: Some(name.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let der = pem::parse(&key.private_pem).unwrap().into_contents();
    let raw_key = match alg {
        Algorithm::RS256 => {
            let kp = RsaKeyPair::from_pkcs8(&der).unwrap();
            ParsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                kp.public_key().as_ref(),
            )
            .unwrap()
        }
        Algorithm::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
            ParsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                kp.public_key().as_ref(),
            )
            .unwrap()
        }
        Algorithm::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(&der).unwrap();
            ParsedPublicKey::new(&signature::ED25519, kp.public_key().as_ref()).unwrap()
        }
        other => panic!("not benchmarked: {other:?}"),
    };
    let (signed, sig_b64) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    assert!(raw_key.verify_sig(signed.as_bytes(), &sig).is_ok());

    let keys = KeySet::parse(key.jwks_json.as_bytes()).unwrap();
    let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
        "name": "bench", "issuer": ISS, "audiences": ["bench"],
        "jwks": {"file": "/nonexistent"}, "algorithms": [alg.as_str()]}))
    .unwrap();
    let t = now();
    assert!(verify_with_keys(&token, &keys, &provider, 8192, t).is_ok());

    let jwks: serde_json::Value = serde_json::from_str(&key.jwks_json).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let jwt_alg = match alg {
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        _ => jsonwebtoken::Algorithm::EdDSA,
    };
    let mut validation = jsonwebtoken::Validation::new(jwt_alg);
    validation.set_audience(&["bench"]);
    validation.set_issuer(&[ISS]);
    let naive = || {
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &dk, &validation).is_ok()
    };
    assert!(naive());

    let mut g = c.benchmark_group(format!("verify_{name}"));
    g.bench_function("raw", |b| {
        b.iter(|| {
            raw_key
                .verify_sig(black_box(signed.as_bytes()), black_box(&sig))
                .is_ok()
        })
    });
    g.bench_function("mesh_authz", |b| {
        b.iter(|| verify_with_keys(black_box(&token), &keys, &provider, 8192, t).is_ok())
    });
    g.bench_function("jsonwebtoken_naive", |b| b.iter(naive));
    g.finish();
}

fn verify(c: &mut Criterion) {
    bench_alg(c, "rs2048", Algorithm::RS256, 2048);
    bench_alg(c, "rs4096", Algorithm::RS256, 4096);
    bench_alg(c, "es256", Algorithm::ES256, 0);
    bench_alg(c, "eddsa", Algorithm::EdDSA, 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = verify
}
criterion_main!(benches);
