//! XFCC parser: never panics; `last_element` is the last of `parse`; and printing the parsed
//! pairs (every value quoted, with the parser's escapes) parses back to the same pairs.
//!
//! The crate has no XFCC printer, so a minimal one lives here: `key="value"` with `"` and `\`
//! escaped, pairs joined by `;`, elements by `,`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_authz::identity::xfcc::{self, MAX_XFCC_ELEMENTS, MAX_XFCC_LEN, XfccKey};

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
    assert_eq!(xfcc::parse(&printed).ok(), Some(all));
});
