//! Bearer extraction over an arbitrary `authorization` value: never panics, and a token it
//! returns is a non-empty RFC 7235 token68 that is a suffix of the header value.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mesh_authz_core::token::extract;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data).into_owned();
    let mut headers = HashMap::new();
    headers.insert("authorization".to_string(), value.clone());
    if let Ok(Some(token)) = extract::bearer(&headers) {
        assert!(!token.is_empty());
        assert!(value.ends_with(token));
        assert!(
            value
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        );
        assert!(
            !value.contains(','),
            "a joined header must never yield a token"
        );
        let body = token.trim_end_matches('=');
        assert!(!body.is_empty());
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
            "not a token68"
        );
    }
});
