//! SPIFFE ID parser: never panics; a parsed ID round trips through its printed form and its
//! accessors agree with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_authz_core::identity::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = SpiffeId::parse(s) else {
        return;
    };
    // The printed form is the input, and it parses to the same ID.
    assert_eq!(id.as_str(), s);
    let again = SpiffeId::parse(id.as_str()).expect("a printed SPIFFE ID must parse");
    assert_eq!(again, id);
    // The pieces reassemble to the whole, and the spec's character rules hold.
    assert_eq!(
        format!("spiffe://{}{}", id.trust_domain(), id.path()),
        id.as_str()
    );
    assert!(!id.trust_domain().is_empty());
    assert!(s.len() <= 2048);
    assert!(id.is_member_of(id.trust_domain()));
    assert!(mesh_authz_core::prefix::segment_prefix_matches(
        id.as_str(),
        id.as_str()
    ));
    for c in id.as_str().chars() {
        assert!(
            c.is_ascii_alphanumeric() || "-._/:".contains(c),
            "char {c:?}"
        );
    }
    assert!(!id.path().ends_with('/'));
    assert!(
        !id.path()
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    );
});
