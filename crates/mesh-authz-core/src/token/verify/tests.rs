//! Unit tests of `verify`.

use super::*;

#[test]
fn reasons_are_distinct_and_only_keys_unavailable_is_a_dependency_failure() {
    use TokenError::*;
    let all = [
        TooLarge,
        Malformed("x"),
        Opaque,
        UnsupportedAlgorithm,
        AlgorithmNotAllowed,
        UnsupportedCrit,
        UnknownIssuer,
        UnknownKid,
        KeyMismatch,
        BadSignature,
        Expired,
        NotYetValid,
        LifetimeTooLong,
        WrongAudience,
        MissingClaim,
        KeysUnavailable,
    ];
    let reasons: std::collections::HashSet<_> = all.iter().map(TokenError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    for e in &all {
        assert_eq!(e.is_dependency_failure(), *e == KeysUnavailable);
    }
}

#[test]
fn verify_with_keys_checks_issuer_and_size() {
    let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
        "name": "p", "issuer": "https://i", "jwks": {"file": "/nonexistent"}}))
    .unwrap();
    let keys = KeySet::default();
    let t = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL28iLCJleHAiOjF9.c2ln";
    assert_eq!(
        verify_with_keys(t, &keys, &provider, 8192, 0).unwrap_err(),
        TokenError::UnknownIssuer
    );
    assert_eq!(
        verify_with_keys(t, &keys, &provider, 10, 0).unwrap_err(),
        TokenError::TooLarge
    );
}
