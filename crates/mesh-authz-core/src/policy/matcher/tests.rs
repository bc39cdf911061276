//! Unit tests of `matcher`.

use super::*;

fn matcher(hosts: &[&str], prefix: Option<&str>, exact: Option<&str>, methods: &[&str]) -> Matcher {
    let cfg = MatchConfig {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        path_prefix: prefix.map(str::to_string),
        path_exact: exact.map(str::to_string),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        context: Default::default(),
    };
    let mut errors = Vec::new();
    let m = Matcher::compile(&cfg, "m", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    m
}

#[test]
fn prefix_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("/admin", "/admin", true),
        ("/admin", "/admin/", true),
        ("/admin", "/admin/x", true),
        ("/admin", "/admin/x/y", true),
        ("/admin", "/administrator", false),
        ("/admin", "/admi", false),
        ("/admin", "/Admin", false),
        ("/admin", "/", false),
        ("/admin", "", false),
        ("/admin", "/x/admin", false),
        ("/admin/", "/admin/", true),
        ("/admin/", "/admin/x", true),
        ("/admin/", "/admin", false),
        ("/adm", "/admin", false),
        ("/", "/", true),
        ("/", "/anything/at/all", true),
        ("/", "", true),
        ("/", "*", true),
        ("/a/b", "/a/b/c", true),
        ("/a/b", "/a/bc", false),
        // No decoding or normalization: Envoy does that before us.
        ("/admin", "/public/../admin", false),
        ("/admin", "/admin%2Fx", false),
        ("/admin", "/admin/%2e%2e/x", true),
    ];
    for (prefix, path, want) in cases {
        assert_eq!(
            prefix_matches(prefix, path),
            *want,
            "prefix {prefix:?} path {path:?}"
        );
    }
}

#[test]
fn host_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("api.example.com", "api.example.com", true),
        ("api.example.com", "API.Example.COM", true),
        ("API.example.com", "api.example.com", true),
        ("api.example.com", "api.example.com:8443", true),
        ("api.example.com", "api.example.com.", true),
        ("api.example.com", "api.example.com.:80", true),
        ("api.example.com", "api.example.co", false),
        ("api.example.com", "xapi.example.com", false),
        ("api.example.com", "api.example.com.evil", false),
        ("api.example.com", "", false),
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        ("*.example.com", "A.EXAMPLE.com:443", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", ".example.com", false),
        ("*.example.com", "a..example.com", false),
        ("*.example.com", "aexample.com", false),
        ("*.example.com", "a.example.com.evil", false),
        ("[::1]", "[::1]:8080", true),
        ("[::1]", "[::1]", true),
        ("[::1]", "[::2]", false),
        ("10.0.0.1", "10.0.0.1:9000", true),
    ];
    for (pattern, host, want) in cases {
        let m = matcher(&[pattern], None, None, &[]);
        assert_eq!(
            m.matches_parts("GET", host, "/"),
            *want,
            "pattern {pattern:?} host {host:?}"
        );
    }
}

#[test]
fn combined_table() {
    // (hosts, prefix, exact, methods, method, host, path, want)
    type Case<'a> = (
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a str,
        bool,
    );
    let cases: &[Case] = &[
        (&[], None, None, &[], "GET", "h", "/x", true),
        (&[], None, None, &[], "BREW", "", "", true),
        (
            &[],
            Some("/admin"),
            None,
            &["POST", "DELETE"],
            "POST",
            "h",
            "/admin/x",
            true,
        ),
        (
            &[],
            Some("/admin"),
            None,
            &["POST", "DELETE"],
            "GET",
            "h",
            "/admin/x",
            false,
        ),
        (
            &[],
            Some("/admin"),
            None,
            &["post"],
            "POST",
            "h",
            "/admin",
            true,
        ),
        (
            &[],
            Some("/admin"),
            None,
            &["POST"],
            "post",
            "h",
            "/admin",
            false,
        ),
        (
            &[],
            None,
            Some("/healthz"),
            &[],
            "GET",
            "h",
            "/healthz",
            true,
        ),
        (
            &[],
            None,
            Some("/healthz"),
            &[],
            "GET",
            "h",
            "/healthz/",
            false,
        ),
        (
            &[],
            None,
            Some("/healthz"),
            &[],
            "GET",
            "h",
            "/healthzz",
            false,
        ),
        (
            &[],
            None,
            Some("/healthz"),
            &[],
            "GET",
            "h",
            "/HEALTHZ",
            false,
        ),
        (
            &["a.com", "*.b.com"],
            Some("/"),
            None,
            &[],
            "GET",
            "x.b.com",
            "/",
            true,
        ),
        (
            &["a.com", "*.b.com"],
            Some("/"),
            None,
            &[],
            "GET",
            "a.com:1",
            "/",
            true,
        ),
        (
            &["a.com", "*.b.com"],
            Some("/"),
            None,
            &[],
            "GET",
            "b.com",
            "/",
            false,
        ),
        (
            &["a.com"],
            Some("/api"),
            None,
            &["GET"],
            "GET",
            "a.com",
            "/apix",
            false,
        ),
        (
            &["a.com"],
            Some("/api"),
            None,
            &["GET"],
            "GET",
            "c.com",
            "/api",
            false,
        ),
    ];
    for (hosts, prefix, exact, methods, method, host, path, want) in cases {
        let m = matcher(hosts, *prefix, *exact, methods);
        assert_eq!(
            m.matches_parts(method, host, path),
            *want,
            "{hosts:?} {prefix:?} {exact:?} {methods:?} vs {method} {host} {path}"
        );
    }
}

#[test]
fn matches_request() {
    let m = matcher(&["api.example.com"], Some("/v1"), None, &["GET"]);
    let req: Request = Request {
        method: "GET".into(),
        host: "api.example.com:443".into(),
        path: "/v1/items".into(),
        ..Request::default()
    };
    assert!(m.matches(&req));
}

#[test]
fn compile_errors() {
    let cfg = MatchConfig {
        hosts: vec![
            "".into(),
            "a*.b.com".into(),
            "*.".into(),
            "h.com:80".into(),
            "ok.com".into(),
        ],
        path_prefix: Some("admin".into()),
        path_exact: None,
        methods: vec!["GET".into(), "FETCH".into()],
        context: Default::default(),
    };
    let mut errors = Vec::new();
    Matcher::compile(&cfg, "rules[0].match", &mut errors);
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rules[0].match.hosts[0]",
            "rules[0].match.hosts[1]",
            "rules[0].match.hosts[2]",
            "rules[0].match.hosts[3]",
            "rules[0].match.path_prefix",
            "rules[0].match.methods[1]",
        ]
    );
}

#[test]
fn prefix_and_exact_exclusive() {
    let cfg = MatchConfig {
        path_prefix: Some("/a".into()),
        path_exact: Some("/a".into()),
        ..MatchConfig::default()
    };
    let mut errors = Vec::new();
    Matcher::compile(&cfg, "rules[1].match", &mut errors);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "rules[1].match: path_prefix and path_exact are exclusive"
    );
}

#[test]
fn path_validation() {
    for (p, ok) in [
        ("/a", true),
        ("/", true),
        ("a", false),
        ("", false),
        ("/a?b", false),
        ("/a b", false),
    ] {
        assert_eq!(check_path(p).is_ok(), ok, "{p:?}");
    }
}

fn context_matcher(pairs: &[(&str, &str)]) -> Result<Matcher, Vec<PolicyError>> {
    let cfg = MatchConfig {
        path_prefix: Some("/api".into()),
        context: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..MatchConfig::default()
    };
    let mut errors = Vec::new();
    let m = Matcher::compile(&cfg, "rules[0].match", &mut errors);
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors)
    }
}

fn with_context(path: &str, pairs: &[(&str, &str)]) -> Request {
    Request {
        method: "GET".into(),
        host: "h".into(),
        path: path.into(),
        context_extensions: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Request::default()
    }
}

#[test]
fn context_requires_every_key_with_exactly_its_value() {
    let m = context_matcher(&[("route", "orders"), ("tier", "gold")]).unwrap();
    let table: &[(&[(&str, &str)], bool)] = &[
        (&[("route", "orders"), ("tier", "gold")], true),
        // Extra keys do not matter.
        (&[("route", "orders"), ("tier", "gold"), ("x", "y")], true),
        // A key missing, a value different by case or by a suffix: no match.
        (&[("route", "orders")], false),
        (&[("route", "Orders"), ("tier", "gold")], false),
        (&[("route", "orders2"), ("tier", "gold")], false),
        (&[("route", "orders"), ("tier", "")], false),
        (&[], false),
    ];
    for (pairs, want) in table {
        assert_eq!(
            m.matches(&with_context("/api/x", pairs)),
            *want,
            "{pairs:?}"
        );
    }
    // The other conditions still hold.
    assert!(!m.matches(&with_context(
        "/other",
        &[("route", "orders"), ("tier", "gold")]
    )));
}

/// An attacker's header named like a context key is not context: only Envoy's
/// `context_extensions` are read.
#[test]
fn a_header_named_like_a_context_key_does_not_match() {
    let m = context_matcher(&[("route", "orders")]).unwrap();
    let mut req = with_context("/api/x", &[]);
    for name in ["route", "x-route", "context-route", "x-envoy-context-route"] {
        req.headers.insert(name.into(), "orders".into());
    }
    assert!(!m.matches(&req));
    // A match without context keys ignores the request's context entirely.
    let plain = context_matcher(&[]).unwrap();
    assert!(plain.matches(&with_context("/api", &[("route", "orders")])));
    assert!(plain.matches(&with_context("/api", &[])));
}

#[test]
fn absurd_context_conditions_are_refused_with_their_path() {
    let errs = |pairs: &[(&str, &str)]| -> Vec<String> {
        context_matcher(pairs)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        errs(&[("", "x")]),
        ["rules[0].match.context: key \"\": must not be empty"]
    );
    assert_eq!(
        errs(&[("route", "")]),
        ["rules[0].match.context.route: must not be empty"]
    );
    assert_eq!(
        errs(&[("a b", "x")]),
        ["rules[0].match.context: key \"a b\": must not contain whitespace or control characters"]
    );
    assert_eq!(
        errs(&[("route", "a\nb")]),
        ["rules[0].match.context.route: must not contain control characters"]
    );
    let long_key = "k".repeat(MAX_CONTEXT_KEY_BYTES + 1);
    assert_eq!(errs(&[(long_key.as_str(), "x")]).len(), 1);
    let long_value = "v".repeat(MAX_CONTEXT_VALUE_BYTES + 1);
    assert_eq!(
        errs(&[("route", long_value.as_str())]),
        [format!(
            "rules[0].match.context.route: longer than {MAX_CONTEXT_VALUE_BYTES} bytes"
        )]
    );
    let many: Vec<(String, String)> = (0..=MAX_CONTEXT_ENTRIES)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        errs(&many),
        [format!(
            "rules[0].match.context: at most {MAX_CONTEXT_ENTRIES} entries"
        )]
    );
    // A value may hold spaces and any printable text.
    assert!(context_matcher(&[("route", "orders v2/ünïcode")]).is_ok());
}
