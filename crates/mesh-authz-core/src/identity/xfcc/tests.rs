//! Unit tests of `xfcc`.

use super::*;

fn pairs(h: &str) -> Vec<Vec<(&'static str, String)>> {
    parse_pairs(h)
        .unwrap()
        .into_iter()
        .map(|e| e.into_iter().map(|(k, v)| (k.as_str(), v)).collect())
        .collect()
}

#[test]
fn typed_fields() {
    let h = "By=spiffe://td/gw;By=http://b;Hash=aa;Cert=\"c%3D\";Chain=\"ch\";\
             Subject=\"CN=x, O=y\";URI=spiffe://td/a;URI=;DNS=a.example;DNS=b.example";
    let els = parse(h).unwrap();
    assert_eq!(els.len(), 1);
    let e = &els[0];
    assert_eq!(e.by, ["spiffe://td/gw", "http://b"]);
    assert_eq!(e.hash.as_deref(), Some("aa"));
    assert_eq!(e.cert.as_deref(), Some("c%3D"));
    assert_eq!(e.chain.as_deref(), Some("ch"));
    assert_eq!(e.subject.as_deref(), Some("CN=x, O=y"));
    assert_eq!(e.uris, ["spiffe://td/a", ""]);
    assert_eq!(e.dns, ["a.example", "b.example"]);
}

#[test]
fn escapes() {
    assert_eq!(
        pairs(r#"Subject="a\"b\\c\,d""#),
        [[("subject", r#"a"b\c\,d"#.to_string())]]
    );
    // `\\` ends before the closing quote.
    assert_eq!(
        pairs(r#"Subject="a\\""#),
        [[("subject", r"a\".to_string())]]
    );
    assert_eq!(pairs(r#"Subject="""#), [[("subject", String::new())]]);
    assert_eq!(pairs("Subject=\"é,ü\""), [[("subject", "é,ü".to_string())]]);
    assert_eq!(
        parse_pairs(r#"Subject="a\""#),
        Err(XfccError::UnterminatedQuote)
    );
    assert_eq!(
        parse_pairs(r#"Subject="a\"#),
        Err(XfccError::UnterminatedQuote)
    );
    assert_eq!(
        parse_pairs("Subject=\"a\\\tb\""),
        Err(XfccError::ControlChar(11))
    );
}

#[test]
fn unknown_keys_ignored_but_checked() {
    assert_eq!(
        pairs("Foo=bar;URI=spiffe://td/a"),
        [[("uri", "spiffe://td/a".to_string())]]
    );
    assert_eq!(pairs("X-New_1=\"v;v\""), [Vec::<(&str, String)>::new()]);
    assert_eq!(parse_pairs("Fo o=bar"), Err(XfccError::InvalidKey(2)));
    assert_eq!(parse_pairs("Fo.o=bar"), Err(XfccError::InvalidKey(2)));
}

#[test]
fn malformed() {
    let cases: &[(&str, XfccError)] = &[
        ("Hash", XfccError::MissingEquals(4)),
        ("Hash;URI=x", XfccError::MissingEquals(4)),
        ("=abc", XfccError::EmptyKey(0)),
        (",URI=x", XfccError::EmptyPair(0)),
        (";URI=x", XfccError::EmptyPair(0)),
        ("URI=x,,URI=y", XfccError::EmptyPair(6)),
        ("URI=x;;URI=y", XfccError::EmptyPair(6)),
        ("URI=x;", XfccError::EmptyPair(6)),
        ("URI=x,", XfccError::EmptyPair(6)),
        ("URI=x;,", XfccError::EmptyPair(6)),
        ("URI=a b", XfccError::InvalidUnquoted(5)),
        ("URI=a\"b", XfccError::InvalidUnquoted(5)),
        ("URI=a\\b", XfccError::InvalidUnquoted(5)),
        ("Hash=a=b", XfccError::InvalidUnquoted(6)),
        ("URI=é", XfccError::InvalidUnquoted(4)),
        ("URI=a\tb", XfccError::ControlChar(5)),
        ("URI=a\0b", XfccError::ControlChar(5)),
        ("URI=a\x7fb", XfccError::ControlChar(5)),
        ("URI\0=a", XfccError::ControlChar(3)),
        ("Subject=\"a\nb\"", XfccError::ControlChar(10)),
        ("Subject=\"ab\"c", XfccError::AfterQuote(12)),
        ("Subject=\"ab\" ;URI=x", XfccError::AfterQuote(12)),
        ("Subject=\"ab", XfccError::UnterminatedQuote),
        ("Subject=\"", XfccError::UnterminatedQuote),
        (" URI=x", XfccError::InvalidKey(0)),
        ("URI =x", XfccError::InvalidKey(3)),
    ];
    for (h, want) in cases {
        assert_eq!(parse_pairs(h).unwrap_err(), *want, "{h:?}");
        assert!(parse(h).is_err(), "{h:?}");
    }
}

#[test]
fn duplicate_single_keys() {
    for k in ["Hash", "Cert", "Chain", "Subject"] {
        let h = format!("{k}=a;{}=b", k.to_lowercase());
        assert!(matches!(parse(&h), Err(XfccError::DuplicateKey(_))), "{h}");
    }
    // Repeats across elements are fine.
    assert_eq!(parse("Hash=a,Hash=b").unwrap().len(), 2);
}

#[test]
fn bounds() {
    assert_eq!(parse(""), Ok(vec![]));
    let el = "URI=spiffe://td/a";
    let max = vec![el; MAX_XFCC_ELEMENTS].join(",");
    assert_eq!(parse(&max).unwrap().len(), MAX_XFCC_ELEMENTS);
    let over = vec![el; MAX_XFCC_ELEMENTS + 1].join(",");
    assert_eq!(parse(&over), Err(XfccError::TooManyElements));
    let big = format!("Subject=\"{}\"", "a".repeat(MAX_XFCC_LEN));
    assert_eq!(parse(&big), Err(XfccError::TooLong));
    let fits = format!("Subject=\"{}\"", "a".repeat(MAX_XFCC_LEN - 10));
    assert_eq!(fits.len(), MAX_XFCC_LEN);
    assert_eq!(parse(&fits).unwrap().len(), 1);
}

#[test]
fn last_element_is_the_nearest_proxy() {
    let h = "URI=spiffe://td/ns/admin/sa/admin,By=spiffe://td/app;URI=spiffe://td/ns/c/sa/c";
    let last = last_element(h).unwrap().unwrap();
    assert_eq!(last.uris, ["spiffe://td/ns/c/sa/c"]);
    assert_eq!(last_element("").unwrap(), None);
}

#[test]
fn error_messages_do_not_quote_the_header() {
    let secret = "Cert=\"SECRET";
    let msg = parse(secret).unwrap_err().to_string();
    assert!(!msg.contains("SECRET"), "{msg}");
}
