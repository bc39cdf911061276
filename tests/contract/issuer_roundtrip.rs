//! Operator tools end to end through the public API: keygen → mint → verify with the JWKS, and
//! the minted revocation facts fed to the memory store.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode};
use mesh_authz::tools::issuer::{MintOptions, generate_key, mint};
use mesh_authz_core::revocation::MemoryStore;
use mesh_authz_core::revocation::{RevocationStore, RevokedBy, Status, TokenRef};
use mesh_authz_core::token::Algorithm;
use serde_json::{Map, Value};

#[tokio::test]
async fn mint_verify_and_revoke() {
    let key = generate_key(Algorithm::ES256, 0, "dev-1").unwrap();
    let opts = MintOptions {
        iss: "https://dev.mesh-authz.local".into(),
        sub: "spiffe://cluster.local/ns/a/sa/b".into(),
        aud: vec!["api".into()],
        ttl: Duration::from_secs(900),
        now: 1_800_000_000,
        kid: Some("dev-1".into()),
        parent_jti: Some("session-1".into()),
        ..MintOptions::default()
    };
    let token = mint(&key.private_pem, &opts).unwrap();

    let set: JwkSet = serde_json::from_str(&key.jwks_json).unwrap();
    let dk = DecodingKey::from_jwk(set.find("dev-1").unwrap()).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["api"]);
    v.set_issuer(&["https://dev.mesh-authz.local"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    let claims = decode::<Map<String, Value>>(&token, &dk, &v)
        .unwrap()
        .claims;
    let jti = claims["jti"].as_str().unwrap();
    let sub = claims["sub"].as_str().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(exp - iat, 900);

    let store = MemoryStore::new();
    let facts = TokenRef {
        jti: Some(jti),
        sub: Some(sub),
        iat: Some(iat),
        parent_jti: claims["parent_jti"].as_str(),
    };
    assert_eq!(store.status(facts).await.unwrap(), Status::Active);
    store.revoke_jti("session-1", exp).await.unwrap();
    assert_eq!(
        store.status(facts).await.unwrap(),
        Status::Revoked(RevokedBy::Parent)
    );
    store.revoke_jti(jti, exp).await.unwrap();
    assert_eq!(
        store.status(facts).await.unwrap(),
        Status::Revoked(RevokedBy::Jti)
    );
    assert_eq!(store.list_recent(10).len(), 2);
}
