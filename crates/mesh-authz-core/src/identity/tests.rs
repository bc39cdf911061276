//! Unit tests of `identity`.

use std::collections::HashMap;

use super::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

const ALICE: &str = "spiffe://cluster.local/ns/a/sa/alice";
const BOB: &str = "spiffe://cluster.local/ns/b/sa/bob";

/// Returns (URL-encoded PEM, DER SHA-256).
fn cert(uris: &[&str], dns: &[&str]) -> (String, [u8; 32]) {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .chain(
            dns.iter()
                .map(|d| SanType::DnsName((*d).try_into().unwrap())),
        )
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "workload");
    params.distinguished_name = dn;
    let c = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let enc = utf8_percent_encode(&c.pem(), NON_ALPHANUMERIC).to_string();
    (enc, certificate::sha256(c.der()))
}

fn cfg(sources: &[IdentitySource], trust_xfcc: bool) -> IdentityConfig {
    IdentityConfig {
        sources: sources.to_vec(),
        trust_xfcc,
        ..IdentityConfig::default()
    }
}

/// Trusted XFCC only, with `identity.xfcc` as given.
fn xcfg(proxy_mode: XfccProxyMode, require_cert: bool, format: XfccFormat) -> IdentityConfig {
    IdentityConfig {
        xfcc: XfccConfig {
            proxy_mode,
            require_cert,
            format,
        },
        ..cfg(&[X], true)
    }
}

/// A certificate with arbitrary (IA5) URI and DNS SAN text: (URL-encoded PEM, PEM, SHA-256).
fn raw_cert(uris: &[&str], dns: &[&str]) -> (String, String, [u8; 32]) {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI(rcgen::string::Ia5String::try_from(*u).unwrap()))
        .chain(
            dns.iter()
                .map(|d| SanType::DnsName(rcgen::string::Ia5String::try_from(*d).unwrap())),
        )
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "workload");
    params.distinguished_name = dn;
    let c = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let pem = c.pem();
    let enc = utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string();
    (enc, pem, certificate::sha256(c.der()))
}

/// The element Envoy 1.40 writes (text format) with `cert`, `subject`, `uri`, `dns` set:
/// SAN values verbatim, whatever they hold.
fn envoy_element(uris: &[&str], dns: &[&str]) -> (String, [u8; 32]) {
    let (enc, _, sha) = raw_cert(uris, dns);
    let mut el = format!(
        "Hash={};Cert=\"{enc}\";Subject=\"CN=workload\"",
        hex::encode(sha)
    );
    if uris.is_empty() {
        el.push_str(";URI=");
    }
    for u in uris {
        el.push_str(&format!(";URI={u}"));
    }
    for d in dns {
        el.push_str(&format!(";DNS={d}"));
    }
    (el, sha)
}

const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";

#[test]
fn sanitize_set_reads_exactly_one_element() {
    let c = cfg(&[X], true);
    let h = xfcc(&format!("URI={BOB},Hash={H64};URI={ALICE}"));
    let err = resolve(&c, &peer("", ""), &h).unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_xfcc");
    // A comma in a SAN splits Envoy's element: two elements, refused.
    let (el, _) = envoy_element(&[&format!("urn:x,Hash={H64};URI={ADMIN}")], &[]);
    for mode in [false, true] {
        let c = xcfg(XfccProxyMode::SanitizeSet, mode, XfccFormat::Text);
        assert!(resolve(&c, &peer("", ""), &xfcc(&el)).is_err(), "{mode}");
    }
}

#[test]
fn text_without_cert_refuses_injected_fields() {
    let c = cfg(&[X], true);
    let cases = [
        // URI SAN `urn:x;URI=<admin>`: a second URI.
        format!("Hash={H64};URI=urn:x;URI={ADMIN}"),
        // DNS SAN `a.example;URI=<admin>` with uri: false: a URI after a DNS.
        format!("Hash={H64};DNS=a.example;URI={ADMIN}"),
        format!("Hash={H64};URI=;DNS=a.example;URI={ADMIN}"),
        // A Subject or Hash after the SANs.
        format!("Hash={H64};URI={ALICE};Subject=\"CN=x\""),
        format!("URI={ALICE};Hash={H64}"),
        // URI SAN `urn:x;Hash=<victim>`: a second Hash.
        format!("Hash={H64};URI=urn:x;Hash={H64}"),
        // URI SAN `"<admin>"`, quotes included: Envoy never quotes a URI.
        format!("Hash={H64};URI=\"{ADMIN}\""),
        format!("Hash=\"{H64}\";URI={ALICE}"),
    ];
    for h in &cases {
        let err = resolve(&c, &peer("", ""), &xfcc(h)).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_xfcc", "{h}");
    }
    // URI SAN `urn:x;Cert=<victim>` where the proxy writes no Cert: the victim's Cert
    // disagrees with the Hash Envoy wrote from the real certificate.
    let (victim, _, _) = raw_cert(&[ADMIN], &[]);
    let h = format!("Hash={H64};URI=urn:x;Cert=\"{victim}\"");
    assert!(resolve(&c, &peer("", ""), &xfcc(&h)).is_err());
}

#[test]
fn cert_is_the_identity_and_every_field_must_agree_with_it() {
    let c = xcfg(XfccProxyMode::SanitizeSet, true, XfccFormat::Text);
    let (el, sha) = envoy_element(&[ALICE, "urn:other"], &["a.example", "b.example"]);
    let got = resolve(&c, &peer("", ""), &xfcc(&el)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.cert_sha256, Some(sha));
    assert_eq!(got.dns_sans, ["a.example", "b.example"]);
    assert_eq!(got.subject.as_deref(), Some("CN=workload"));
    // No SANs: Envoy writes `URI=`.
    let (el, _) = envoy_element(&[], &[]);
    let got = resolve(&c, &peer("", ""), &xfcc(&el)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, None);

    // `;` injected into a URI or DNS SAN: the fields no longer equal the certificate's SANs.
    for (uris, dns) in [
        (vec![format!("urn:x;URI={ADMIN}")], vec![]),
        (
            vec![ALICE.to_owned()],
            vec![format!("a.example;URI={ADMIN}")],
        ),
        (
            vec![ALICE.to_owned()],
            vec![format!("a.example;DNS=b.example")],
        ),
        (vec![format!(";URI={ADMIN}")], vec![]),
    ] {
        let u: Vec<&str> = uris.iter().map(String::as_str).collect();
        let d: Vec<&str> = dns.iter().map(String::as_str).collect();
        let (el, _) = envoy_element(&u, &d);
        let err = resolve(&c, &peer("", ""), &xfcc(&el)).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_xfcc", "{uris:?} {dns:?}");
    }
    // require_cert: an element without Cert is refused.
    let h = xfcc(&format!("Hash={H64};URI={ALICE}"));
    assert!(resolve(&c, &peer("", ""), &h).is_err());
}

#[test]
fn append_forward_split_with_a_replayed_victim_cert_is_refused() {
    let c = xcfg(XfccProxyMode::AppendForward, true, XfccFormat::Text);
    // The victim's certificate is public; the attacker's SAN carries it in a forged tail.
    let (victim_enc, _, victim_sha) = raw_cert(&[ADMIN], &[]);
    let tail = format!(
        "Hash={};Cert={victim_enc};URI={ADMIN}",
        hex::encode(victim_sha)
    );
    let (el, _) = envoy_element(&[&format!("urn:y,{tail}")], &[]);
    let h = format!("By=spiffe://td/gw;URI={BOB},{el}");
    let err = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_xfcc");
    // The same tail sent by the client alone (no split) is the client's element, not last.
    let (mine, sha) = envoy_element(&[ALICE], &[]);
    let h = format!("{tail},{mine}");
    let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.cert_sha256, Some(sha));
    // Without a Cert in the last element: refused.
    let h = format!("{mine},Hash={H64};URI={ADMIN}");
    assert!(resolve(&c, &peer("", ""), &xfcc(&h)).is_err());
    // An earlier element whose Cert disagrees with its fields: refused.
    let (bad, _) = envoy_element(&[BOB], &[]);
    let bad = bad.replace(&format!("URI={BOB}"), &format!("URI={ADMIN}"));
    let h = format!("{bad},{mine}");
    assert!(resolve(&c, &peer("", ""), &xfcc(&h)).is_err());
}

#[test]
fn json_format() {
    let c = xcfg(XfccProxyMode::SanitizeSet, false, XfccFormat::Json);
    let (_, pem, sha) = raw_cert(&[&format!("urn:x;URI={ADMIN}")], &[]);
    // Envoy's JSON keeps the SAN whole: no SPIFFE ID, thumbprint from the certificate.
    let el = serde_json::json!({
        "hash": hex::encode(sha), "cert": pem, "subject": "CN=workload",
        "uri": [format!("urn:x;URI={ADMIN}")]
    });
    let h = serde_json::to_string(&[&el]).unwrap();
    let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, None);
    assert_eq!(got.cert_sha256, Some(sha));
    // Without Cert: the fields.
    let h = format!(r#"[{{"hash":"{H64}","uri":["{ALICE}"],"dns":["a.example"]}}]"#);
    let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.dns_sans, ["a.example"]);
    // Refused: text (Envoy's fallback when the client's header is not JSON), a repeated or
    // unknown key, a non-object, `[,{…}]` (Envoy appending to `[]`), two elements.
    for bad in [
        format!("Hash={H64};URI={ALICE}"),
        format!(r#"[{{"uri":["{ALICE}"],"uri":["{BOB}"]}}]"#),
        format!(r#"[{{"uri":["{ALICE}"],"x":1}}]"#),
        format!(r#"[1,{{"uri":["{ALICE}"]}}]"#),
        format!(r#"[,{{"uri":["{ALICE}"]}}]"#),
        format!(r#"[{{"uri":["{BOB}"]}},{{"uri":["{ALICE}"]}}]"#),
        format!(r#"{{"uri":["{ALICE}"]}}"#),
    ] {
        let err = resolve(&c, &peer("", ""), &xfcc(&bad)).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_xfcc", "{bad}");
    }
    // append_forward + require_cert: the last element's Cert, every Cert checked.
    let c = xcfg(XfccProxyMode::AppendForward, true, XfccFormat::Json);
    let (_, alice_pem, alice_sha) = raw_cert(&[ALICE], &[]);
    let mine =
        serde_json::json!({"hash": hex::encode(alice_sha), "cert": alice_pem, "uri": [ALICE]});
    let forged = serde_json::json!({"uri": [ADMIN]});
    let h = serde_json::to_string(&[&forged, &mine]).unwrap();
    let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    let h = serde_json::to_string(&[&mine, &forged]).unwrap();
    assert!(resolve(&c, &peer("", ""), &xfcc(&h)).is_err());
    let lying =
        serde_json::json!({"hash": hex::encode(alice_sha), "cert": alice_pem, "uri": [ADMIN]});
    let h = serde_json::to_string(&[&lying]).unwrap();
    assert!(resolve(&c, &peer("", ""), &xfcc(&h)).is_err());
}

fn peer(principal: &str, certificate: &str) -> PeerInfo {
    PeerInfo {
        principal: principal.to_owned(),
        certificate: certificate.to_owned(),
        connection: None,
    }
}

fn xfcc(h: &str) -> HashMap<String, String> {
    HashMap::from([(XFCC_HEADER.to_owned(), h.to_owned())])
}

fn id(s: &str) -> Option<SpiffeId> {
    Some(SpiffeId::parse(s).unwrap())
}

use IdentitySource::{Certificate as C, Principal as P, Xfcc as X};
const ALL: &[IdentitySource] = &[P, C, X];
const H64: &str = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688";

#[test]
fn nothing_is_none() {
    let none = HashMap::new();
    assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &none), Ok(None));
    assert_eq!(
        resolve(
            &cfg(&[], true),
            &peer(ALICE, ""),
            &xfcc("URI=spiffe://td/x")
        ),
        Ok(None)
    );
    assert_eq!(
        resolve(&IdentityConfig::default(), &peer("", ""), &none),
        Ok(None)
    );
    // An empty XFCC header is absent.
    assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &xfcc("")), Ok(None));
    // An element with nothing usable (By only, empty URI) is no identity.
    let h = xfcc("By=spiffe://td/gw;URI=");
    assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &h), Ok(None));
}

#[test]
fn principal_spiffe() {
    let got = resolve(
        &IdentityConfig::default(),
        &peer(ALICE, ""),
        &HashMap::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        got,
        PeerIdentity {
            spiffe_id: id(ALICE),
            source: Source::Principal,
            cert_sha256: None,
            dns_sans: vec![],
            subject: None,
        }
    );
}

#[test]
fn principal_invalid_spiffe_is_error() {
    for bad in [
        "spiffe://cluster.local/ns/../x",
        "SPIFFE://td/x",
        "spiffe://TD/x",
        "spiffe:",
    ] {
        let err = resolve(&IdentityConfig::default(), &peer(bad, ""), &HashMap::new()).unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidSpiffeId(_)),
            "{bad}: {err}"
        );
        assert_eq!(err.reason(), "peer_invalid_spiffe_id");
    }
}

#[test]
fn principal_subject_dn() {
    let dn = "CN=client,O=Acme";
    let got = resolve(&IdentityConfig::default(), &peer(dn, ""), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, None);
    assert_eq!(got.source, Source::Principal);
    assert_eq!(got.subject.as_deref(), Some(dn));
}

#[test]
fn certificate_source() {
    let (pem, sha) = cert(&[ALICE], &["a.example"]);
    let got = resolve(&IdentityConfig::default(), &peer("", &pem), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.source, Source::Certificate);
    assert_eq!(got.cert_sha256, Some(sha));
    assert_eq!(got.dns_sans, ["a.example"]);
    assert_eq!(got.subject.as_deref(), Some("CN=workload"));
}

#[test]
fn principal_and_certificate_agree() {
    let (pem, sha) = cert(&[ALICE], &[]);
    let got = resolve(
        &IdentityConfig::default(),
        &peer(ALICE, &pem),
        &HashMap::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.source, Source::Principal);
    assert_eq!(got.cert_sha256, Some(sha));
    assert_eq!(got.subject.as_deref(), Some("CN=workload"));
    // Reversed order: the certificate is the source.
    let got = resolve(&cfg(&[C, P], false), &peer(ALICE, &pem), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(got.source, Source::Certificate);
}

#[test]
fn principal_and_certificate_disagree_is_error() {
    let (pem, _) = cert(&[BOB], &[]);
    for order in [&[P, C][..], &[C, P][..]] {
        let err = resolve(&cfg(order, false), &peer(ALICE, &pem), &HashMap::new()).unwrap_err();
        assert_eq!(
            err,
            IdentityError::InvalidCertificate("principal and certificate disagree".into())
        );
    }
}

#[test]
fn subject_principal_with_spiffe_certificate() {
    let (pem, sha) = cert(&[ALICE], &[]);
    let got = resolve(
        &IdentityConfig::default(),
        &peer("CN=x", &pem),
        &HashMap::new(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.source, Source::Certificate);
    assert_eq!(got.cert_sha256, Some(sha));
    // The first source with a subject wins.
    assert_eq!(got.subject.as_deref(), Some("CN=x"));
}

#[test]
fn invalid_certificate_is_error_even_with_a_good_principal() {
    let err = resolve(
        &IdentityConfig::default(),
        &peer(ALICE, "garbage"),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_certificate");
    let (two, _) = cert(&[ALICE, BOB], &[]);
    let err = resolve(
        &IdentityConfig::default(),
        &peer(ALICE, &two),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_certificate");
}

#[test]
fn unlisted_source_is_not_read() {
    // Principal only: a garbage certificate is never looked at.
    let got = resolve(&cfg(&[P], false), &peer(ALICE, "garbage"), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    // Certificate only: the principal is never looked at.
    assert_eq!(
        resolve(&cfg(&[C], false), &peer(ALICE, ""), &HashMap::new()),
        Ok(None)
    );
}

#[test]
fn untrusted_xfcc_ignored() {
    let spoof = xfcc(&format!("URI={BOB};Hash={H64}"));
    // Listed as a source, but trust_xfcc is false: ignored, even when malformed.
    assert_eq!(resolve(&cfg(&[X], false), &peer("", ""), &spoof), Ok(None));
    assert_eq!(
        resolve(&cfg(&[X], false), &peer("", ""), &xfcc("Hash=\"")),
        Ok(None)
    );
    let got = resolve(&cfg(&[X, P], false), &peer(ALICE, ""), &spoof)
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.cert_sha256, None);
    // trust_xfcc true but xfcc not listed: ignored too.
    assert_eq!(
        resolve(&cfg(&[P, C], true), &peer("", ""), &spoof),
        Ok(None)
    );
}

#[test]
fn trusted_xfcc_reads_its_one_element() {
    let h = xfcc(&format!(
        "By=spiffe://td/ns/app/sa/app;Hash={H64};Subject=\"\";URI={ALICE};DNS=a.example"
    ));
    let got = resolve(&cfg(&[X], true), &peer("", ""), &h)
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.source, Source::Xfcc);
    assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
    assert_eq!(got.dns_sans, ["a.example"]);
    assert_eq!(got.subject, None);
    // Upper-case hex is accepted.
    let h = xfcc(&format!("Hash={};URI={ALICE}", H64.to_uppercase()));
    let got = resolve(&cfg(&[X], true), &peer("", ""), &h)
        .unwrap()
        .unwrap();
    assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
}

#[test]
fn trusted_xfcc_errors() {
    let c = cfg(&[X], true);
    let cases = [
        "Hash=abcdefg".to_owned(),
        "Hash=".to_owned(),
        format!("Hash={}0", H64),
        format!("Hash={}", &H64[..62]),
        format!("Hash={}zz", &H64[..62]),
        "URI=spiffe://td/a;URI=spiffe://td/b".to_owned(),
        "URI=spiffe://td/a;".to_owned(),
        "URI=spiffe://td/a b".to_owned(),
        "Subject=\"x".to_owned(),
        "Hash=a;Hash=b".to_owned(),
    ];
    for h in &cases {
        let err = resolve(&c, &peer("", ""), &xfcc(h)).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_xfcc", "{h}: {err}");
    }
    let err = resolve(&c, &peer("", ""), &xfcc("URI=spiffe://td/a/")).unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_spiffe_id");
    let err = resolve(&c, &peer("", ""), &xfcc("Cert=\"junk\"")).unwrap_err();
    assert_eq!(err.reason(), "peer_invalid_certificate");
}

#[test]
fn trusted_xfcc_cert_field() {
    let c = cfg(&[X], true);
    let (pem, sha) = cert(&[ALICE], &["w.example"]);
    // Cert alone: SHA-256, SPIFFE ID, DNS and subject from the certificate.
    let got = resolve(&c, &peer("", ""), &xfcc(&format!("Cert=\"{pem}\"")))
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.cert_sha256, Some(sha));
    assert_eq!(got.dns_sans, ["w.example"]);
    assert_eq!(got.subject.as_deref(), Some("CN=workload"));
    // Consistent Hash and URI.
    let h = format!("Hash={};URI={ALICE};Cert=\"{pem}\"", hex::encode(sha));
    let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
    assert_eq!(got.cert_sha256, Some(sha));
    // Inconsistent Hash or URI: error.
    let h = format!("Hash={H64};Cert=\"{pem}\"");
    assert_eq!(
        resolve(&c, &peer("", ""), &xfcc(&h)),
        Err(xfcc_err("Hash does not match Cert"))
    );
    let h = format!("URI={BOB};Cert=\"{pem}\"");
    assert_eq!(
        resolve(&c, &peer("", ""), &xfcc(&h)),
        Err(xfcc_err("URI does not match Cert"))
    );
}

#[test]
fn merge_order_and_fill() {
    let (pem, sha) = cert(&[ALICE], &[]);
    let h = xfcc(&format!(
        "Hash={H64};Subject=\"CN=x\";URI={BOB};DNS=x.example"
    ));
    // Principal first: its ID wins over XFCC's; the rest is filled from the certificate,
    // then XFCC for what the certificate lacks (DNS).
    let got = resolve(&cfg(ALL, true), &peer(ALICE, &pem), &h)
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(ALICE));
    assert_eq!(got.source, Source::Principal);
    assert_eq!(got.cert_sha256, Some(sha));
    assert_eq!(got.subject.as_deref(), Some("CN=workload"));
    assert_eq!(got.dns_sans, ["x.example"]);
    // XFCC first.
    let got = resolve(&cfg(&[X, P, C], true), &peer(ALICE, &pem), &h)
        .unwrap()
        .unwrap();
    assert_eq!(got.spiffe_id, id(BOB));
    assert_eq!(got.source, Source::Xfcc);
    assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
    // XFCC with DNS only, then a principal with a SPIFFE ID: source follows the SPIFFE ID.
    let got = resolve(
        &cfg(&[X, P], true),
        &peer(ALICE, ""),
        &xfcc("DNS=d.example"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(got.source, Source::Principal);
    assert_eq!(got.dns_sans, ["d.example"]);
    // Without any SPIFFE ID, the source is the first that said anything.
    let got = resolve(
        &cfg(&[X, P], true),
        &peer("CN=p", ""),
        &xfcc("DNS=d.example"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(got.spiffe_id, None);
    assert_eq!(got.source, Source::Xfcc);
    assert_eq!(got.subject.as_deref(), Some("CN=p"));
}

#[test]
fn trust_domains() {
    let alice = SpiffeId::parse(ALICE).unwrap();
    let mut c = IdentityConfig::default();
    assert!(trust_domain_allowed(&c, &alice));
    c.trust_domains = vec!["other".into(), "cluster.local".into()];
    assert!(trust_domain_allowed(&c, &alice));
    c.trust_domains = vec!["cluster.local.evil".into(), "local".into()];
    assert!(!trust_domain_allowed(&c, &alice));
}

#[test]
fn reasons_are_fixed() {
    let e = IdentityError::InvalidXfcc("x".into());
    assert_eq!(e.reason(), "peer_invalid_xfcc");
}

#[test]
fn connection_facts_stand_in_for_a_missing_pem() {
    let cfg = IdentityConfig {
        sources: vec![IdentitySource::Certificate],
        ..IdentityConfig::default()
    };
    let with = |uri: Option<&str>| PeerInfo {
        connection: Some(ConnectionPeer {
            uri_san: uri.map(str::to_owned),
            dns_sans: vec!["a.example".into()],
            subject: Some("CN=a".into()),
            sha256: Some([7; 32]),
        }),
        ..PeerInfo::default()
    };
    let id = resolve(&cfg, &with(Some("spiffe://td/ns/a")), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(id.spiffe_id.unwrap().as_str(), "spiffe://td/ns/a");
    assert_eq!(id.cert_sha256, Some([7; 32]));
    assert_eq!(id.source, Source::Certificate);
    // A non-SPIFFE URI is not an identity; a malformed SPIFFE one is an error, in any case.
    let id = resolve(&cfg, &with(Some("https://a.example")), &HashMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(id.spiffe_id, None);
    for bad in ["SPIFFE://td/x", "spiffe://td/../x", "spiffe://TD/x"] {
        assert!(
            resolve(&cfg, &with(Some(bad)), &HashMap::new()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_certificate_cache_answers_exactly_and_parses_once() {
    let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
    let cache = certificate::CertificateCache::new(1);
    let pa = cache.parse(&a.cert.pem()).unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &pa,
        &cache.parse(&a.cert.pem()).unwrap().unwrap()
    ));
    assert_eq!(pa.dns_sans, vec!["a.example".to_string()]);
    // Another certificate evicts (capacity 1) and is answered with its own facts.
    let pb = cache.parse(&b.cert.pem()).unwrap().unwrap();
    assert_eq!(pb.dns_sans, vec!["b.example".to_string()]);
    assert!(cache.len() <= 1);
    assert!(cache.parse("").unwrap().is_none());
    assert!(cache.parse("not a pem").is_err());
}
