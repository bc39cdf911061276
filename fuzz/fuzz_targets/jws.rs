//! Compact JWS and claims parsing: never panics; whatever parses obeys the security contract
//! (no `none`/HMAC algorithm, a non-empty signature, typed registered claims).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_authz_core::token::claims::parse_claims;
use mesh_authz_core::token::jws;

fuzz_target!(|data: &[u8]| {
    // Claims parser on raw bytes (the payload after base64url decoding).
    if let Ok(claims) = parse_claims(data) {
        assert!(claims.raw.contains_key("iss"));
        assert!(claims.raw.get("iss").is_some_and(|v| v.is_string()));
        assert!(claims.raw.get("exp").is_some_and(|v| v.is_number()));
    }
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = jws::parse(token) {
        assert!(!parsed.signature.is_empty());
        let alg = format!("{:?}", parsed.header.alg).to_ascii_lowercase();
        assert!(!alg.starts_with("hs") && alg != "none", "alg {alg}");
        assert_eq!(token.split('.').count(), 3);
        assert!(token.as_bytes().starts_with(parsed.signing_input));
        let _ = parse_claims(&parsed.payload);
    }
});
