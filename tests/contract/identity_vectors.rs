//! Table-driven identity tests against the conformance vectors in `tests/vectors/` (`xfcc/xfcc_cases.json`), through the
//! public API only.

use std::collections::HashMap;
use std::path::PathBuf;

use mesh_authz_core::check::PeerInfo;
use mesh_authz_core::config::{IdentityConfig, IdentitySource, XfccConfig, XfccProxyMode};
use mesh_authz_core::identity::xfcc::{self, XfccElement};
use mesh_authz_core::identity::{self, Source, SpiffeId};
use mesh_authz_core::prefix::segment_prefix_matches;
use serde_json::Value;

/// `tests/vectors/`, in the repository (provenance and licences in its README). A missing file
/// fails the test: never skip silently.
fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn xfcc_cases() -> Value {
    let path = vectors_dir().join("xfcc/xfcc_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Our pinned choices for the cases the vectors leave open.
fn pinned(id: &str, expect: &str) -> &'static str {
    match (id, expect) {
        // Unknown keys are ignored (forward compatible; they never carry identity).
        ("xfccparser-err-unknown-key", "error_or_ignore") => "ignore",
        // Strict: Envoy never emits whitespace, trailing separators or an unquoted '='.
        ("ours-whitespace" | "ours-trailing-separators" | "ours-unquoted-equals", "policy") => {
            "error"
        }
        _ => panic!("case {id}: no pinned choice for expect {expect:?}"),
    }
}

fn header_of(case: &Value) -> String {
    if let Some(h) = case["header"].as_str() {
        return h.to_owned();
    }
    let spec = case["header_spec"].as_str().expect("header or header_spec");
    assert!(
        spec.starts_with("200 elements of"),
        "unknown header_spec {spec}"
    );
    vec!["By=spiffe://td/ns/a/sa/a;URI=spiffe://td/ns/b/sa/b"; 200].join(",")
}

fn as_lists(elements: Vec<Vec<(xfcc::XfccKey, String)>>) -> Vec<Vec<(String, String)>> {
    elements
        .into_iter()
        .map(|e| {
            e.into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect()
        })
        .collect()
}

fn expected_lists(expect: &Value) -> Vec<Vec<(String, String)>> {
    expect
        .as_array()
        .unwrap()
        .iter()
        .map(|el| {
            el.as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    let kv = kv.as_array().unwrap();
                    assert_eq!(kv.len(), 2);
                    (
                        kv[0].as_str().unwrap().to_owned(),
                        kv[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The typed element must hold exactly the pairs, by field.
fn assert_typed_matches(el: &XfccElement, pairs: &[(String, String)], id: &str) {
    let all = |k: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let one = |k: &str| all(k).into_iter().next();
    assert_eq!(el.by, all("by"), "{id}");
    assert_eq!(el.uris, all("uri"), "{id}");
    assert_eq!(el.dns, all("dns"), "{id}");
    assert_eq!(el.hash, one("hash"), "{id}");
    assert_eq!(el.cert, one("cert"), "{id}");
    assert_eq!(el.chain, one("chain"), "{id}");
    assert_eq!(el.subject, one("subject"), "{id}");
}

fn trusting_xfcc() -> IdentityConfig {
    IdentityConfig {
        sources: vec![IdentitySource::Xfcc],
        trust_xfcc: true,
        ..IdentityConfig::default()
    }
}

fn trusting_append_forward() -> IdentityConfig {
    IdentityConfig {
        xfcc: XfccConfig {
            proxy_mode: XfccProxyMode::AppendForward,
            require_cert: true,
            ..XfccConfig::default()
        },
        ..trusting_xfcc()
    }
}

#[test]
fn xfcc_parse_cases() {
    let doc = xfcc_cases();
    let cases = doc["parse_cases"].as_array().expect("parse_cases");
    assert!(
        cases.len() >= 28,
        "expected at least 28 parse cases, got {}",
        cases.len()
    );
    let (mut lists, mut errors, mut ignored) = (0, 0, 0);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let header = header_of(case);
        let expect = &case["expect"];
        let mode = match expect.as_str() {
            None => "list",
            Some("error") => "error",
            Some(other) => pinned(id, other),
        };
        match mode {
            "list" => {
                let want = expected_lists(expect);
                let got = xfcc::parse_pairs(&header).unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(as_lists(got), want, "{id}");
                let typed = xfcc::parse(&header).unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(typed.len(), want.len(), "{id}");
                for (el, pairs) in typed.iter().zip(&want) {
                    assert_typed_matches(el, pairs, id);
                }
                // Identity is read from the last element only.
                assert_eq!(
                    xfcc::last_element(&header).unwrap().as_ref(),
                    typed.last(),
                    "{id}"
                );
                lists += 1;
            }
            "error" => {
                assert!(xfcc::parse(&header).is_err(), "{id}: expected an error");
                // An error in the header is an error of the identity, never "no identity".
                let err = identity::resolve(&trusting_xfcc(), &PeerInfo::default(), &hdr(&header))
                    .expect_err(id);
                assert_eq!(err.reason(), "peer_invalid_xfcc", "{id}");
                errors += 1;
            }
            "ignore" => {
                let els = xfcc::parse(&header).unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(els, vec![XfccElement::default()], "{id}");
                ignored += 1;
            }
            other => panic!("{id}: unknown mode {other}"),
        }

        if let Some(want) = case.get("identity_expect").and_then(Value::as_str) {
            // The identity is the last element's SPIFFE URI, never the first's.
            let last = xfcc::last_element(&header).unwrap().expect("an element");
            let spiffe: Vec<&String> = last
                .uris
                .iter()
                .filter(|u| u.starts_with("spiffe:"))
                .collect();
            assert_eq!(spiffe, [want], "{id}");
            // Pinned: `resolve` also validates `Hash` as a 64-hex SHA-256, which the vector's
            // placeholder (`ab12`) is not, so the whole identity is refused (fail closed).
            let err = identity::resolve(&trusting_xfcc(), &PeerInfo::default(), &hdr(&header))
                .expect_err(id);
            assert_eq!(err.reason(), "peer_invalid_xfcc", "{id}");
            // With a well-formed Hash the same (multi-element, Cert-less) header is still refused:
            // behind SANITIZE_SET (the default) a second element can only come from a SAN that
            // split the proxy's element, and behind APPEND_FORWARD only a Cert tells the proxy's
            // element from a forged one.
            let fixed = header.replace("Hash=ab12", &format!("Hash={}", "ab".repeat(32)));
            assert_ne!(fixed, header, "{id}");
            for cfg in [trusting_xfcc(), trusting_append_forward()] {
                let err =
                    identity::resolve(&cfg, &PeerInfo::default(), &hdr(&fixed)).expect_err(id);
                assert_eq!(err.reason(), "peer_invalid_xfcc", "{id}");
            }
            // Its last element alone (what SANITIZE_SET would have sent) is the identity.
            let last_only = fixed.rsplit(',').next().unwrap();
            let got = identity::resolve(&trusting_xfcc(), &PeerInfo::default(), &hdr(last_only))
                .unwrap_or_else(|e| panic!("{id}: {e}"))
                .expect("identity");
            assert_eq!(
                got.spiffe_id.as_ref().map(SpiffeId::as_str),
                Some(want),
                "{id}"
            );
            assert_eq!(got.source, Source::Xfcc);
            assert_eq!(got.cert_sha256, Some([0xab; 32]));
        }
    }
    assert_eq!(
        (lists, errors, ignored),
        (19, 8, 1),
        "case mix changed: review the pins"
    );
}

fn hdr(h: &str) -> HashMap<String, String> {
    HashMap::from([("x-forwarded-client-cert".to_owned(), h.to_owned())])
}

#[test]
fn xfcc_mode_cases() {
    let doc = xfcc_cases();
    let cases = doc["mode_cases"].as_array().expect("mode_cases");
    assert!(cases.len() >= 9);
    let mut appended = 0;
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let incoming = case["incoming"].as_str().unwrap();
        let incoming_els = xfcc::parse(incoming).unwrap_or_else(|e| panic!("{id}: {e}"));
        let Some(outgoing) = case["outgoing"].as_str() else {
            // The proxy removed the header: nothing to read, no identity from XFCC.
            let got = identity::resolve(&trusting_xfcc(), &PeerInfo::default(), &HashMap::new());
            assert_eq!(got, Ok(None), "{id}");
            continue;
        };
        let out_els = xfcc::parse(outgoing).unwrap_or_else(|e| panic!("{id}: {e}"));
        let last = xfcc::last_element(outgoing).unwrap().expect("an element");
        match case["mode"].as_str().unwrap() {
            "APPEND_FORWARD" => {
                // The proxy kept the client's elements and appended its own: the last one.
                let own = outgoing
                    .strip_prefix(incoming)
                    .and_then(|s| s.strip_prefix(','))
                    .unwrap_or_else(|| panic!("{id}: outgoing does not extend incoming"));
                let own_els = xfcc::parse(own).unwrap();
                assert_eq!(own_els.len(), 1, "{id}");
                assert_eq!(last, own_els[0], "{id}");
                assert_eq!(out_els.len(), incoming_els.len() + 1, "{id}");
                assert_ne!(
                    Some(&last),
                    incoming_els.first(),
                    "{id}: read the first element"
                );
                appended += 1;
            }
            "SANITIZE_SET" => {
                assert_eq!(out_els.len(), 1, "{id}");
                assert_ne!(out_els, incoming_els, "{id}");
            }
            "FORWARD_ONLY" | "ALWAYS_FORWARD_ONLY" => assert_eq!(outgoing, incoming, "{id}"),
            other => panic!("{id}: unexpected mode {other} with an outgoing header"),
        }
    }
    assert_eq!(appended, 1);
}

#[test]
fn append_forward_spoof_reads_the_last_element() {
    // The client sends an admin URI; the sidecar appends the real caller. Without a Cert the
    // appended element cannot be told from a forged one (a ',' in a SAN makes one): refused in
    // both proxy modes.
    let h = "URI=spiffe://td/ns/admin/sa/admin,By=spiffe://td/ns/app/sa/app;URI=spiffe://td/ns/caller/sa/caller";
    for cfg in [trusting_xfcc(), trusting_append_forward()] {
        let err = identity::resolve(&cfg, &PeerInfo::default(), &hdr(h)).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_xfcc");
    }
    // The sidecar's element with its Cert: that is the identity, not the client's admin URI.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://td/ns/caller/sa/caller".try_into().unwrap(),
    ));
    let cert = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let enc =
        percent_encoding::utf8_percent_encode(&cert.pem(), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let h = format!(
        "URI=spiffe://td/ns/admin/sa/admin,By=spiffe://td/ns/app/sa/app;Cert=\"{enc}\";URI=spiffe://td/ns/caller/sa/caller"
    );
    let got = identity::resolve(&trusting_append_forward(), &PeerInfo::default(), &hdr(&h))
        .unwrap()
        .unwrap();
    assert_eq!(
        got.spiffe_id.unwrap().as_str(),
        "spiffe://td/ns/caller/sa/caller"
    );
    // Not trusted: ignored.
    let cfg = IdentityConfig {
        sources: vec![IdentitySource::Xfcc],
        ..IdentityConfig::default()
    };
    assert_eq!(
        identity::resolve(&cfg, &PeerInfo::default(), &hdr(&h)),
        Ok(None)
    );
}

#[test]
fn spiffe_ids_through_the_public_api() {
    for ok in [
        "spiffe://cluster.local/ns/default/sa/default",
        "spiffe://example.org",
        "spiffe://td/a.b-c_d/E9",
    ] {
        let id = SpiffeId::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(id.to_string(), ok);
    }
    for bad in [
        "spiffe://td/",
        "spiffe://td:443/x",
        "spiffe://u@td/x",
        "spiffe://td/x?y",
        "spiffe://td/x#y",
        "spiffe://td/./x",
        "spiffe://Td/x",
        "Spiffe://td/x",
        "https://td/x",
        "spiffe://td/%41",
    ] {
        assert!(SpiffeId::parse(bad).is_err(), "{bad}");
    }
    let id = SpiffeId::parse("spiffe://td/ns/a/sa/x").unwrap();
    assert_eq!(id.trust_domain(), "td");
    assert_eq!(id.path(), "/ns/a/sa/x");
    assert!(id.is_member_of("td"));
    assert!(segment_prefix_matches("spiffe://td/ns/a", id.as_str()));
    assert!(!segment_prefix_matches(
        "spiffe://td/ns/a",
        SpiffeId::parse("spiffe://td/ns/ab").unwrap().as_str()
    ));
}
