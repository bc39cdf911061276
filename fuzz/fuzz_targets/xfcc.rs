//! XFCC parser: never panics; `last_element` is the last of `parse`; and printing the parsed
//! pairs (every value quoted, with the parser's escapes) parses back to the same pairs.
//!
//! The crate has no XFCC printer, so a minimal one lives here: `key="value"` with `"` and `\`
//! escaped, pairs joined by `;`, elements by `,`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_authz_core::identity::xfcc::{self, MAX_XFCC_ELEMENTS, MAX_XFCC_LEN, XfccKey};

fn print(elements: &[Vec<(XfccKey, String)>]) -> String {
    elements
        .iter()
        .map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| {
                    let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("{}=\"{escaped}\"", k.as_str())
                })
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = xfcc::parse(header);
    let last = xfcc::last_element(header);
    match (&parsed, &last) {
        (Ok(all), Ok(l)) => assert_eq!(all.last(), l.as_ref()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("parse and last_element disagree"),
    }
    let Ok(all) = parsed else {
        return;
    };
    assert!(header.len() <= MAX_XFCC_LEN);
    assert!(all.len() <= MAX_XFCC_ELEMENTS);
    let Ok(pairs) = xfcc::parse_pairs(header) else {
        panic!("parse accepted what parse_pairs refused");
    };
    // Elements whose pairs were all unknown keys print as nothing; skip those inputs.
    if pairs.iter().any(Vec::is_empty) {
        return;
    }
    let printed = print(&pairs);
    if printed.len() > MAX_XFCC_LEN {
        return;
    }
    let again = xfcc::parse_pairs(&printed)
        .unwrap_or_else(|e| panic!("printed form refused: {e}: {printed:?}"));
    assert_eq!(again, pairs, "round trip changed the pairs: {printed:?}");
    // The printer quotes every value, so only the content must survive: `envoy_quoting` records
    // the text form (whether By/Hash/URI/DNS came quoted, which Envoy never does), not a value.
    let content = |els: Vec<xfcc::XfccElement>| {
        els.into_iter()
            .map(|mut e| {
                e.envoy_quoting = true;
                e
            })
            .collect::<Vec<_>>()
    };
    let reparsed = xfcc::parse(&printed).unwrap_or_else(|e| panic!("printed form refused: {e}"));
    assert_eq!(
        content(reparsed),
        content(all),
        "round trip changed an element"
    );
    // And the quoted form of a value Envoy writes bare is flagged, so a reader without `Cert`
    // can refuse it.
    if let Ok(again) = xfcc::parse(&printed) {
        for el in again {
            let bare =
                el.by.is_empty() && el.hash.is_none() && el.uris.is_empty() && el.dns.is_empty();
            assert!(
                bare || !el.envoy_quoting,
                "quoted By/Hash/URI/DNS not flagged: {printed:?}"
            );
        }
    }
});
