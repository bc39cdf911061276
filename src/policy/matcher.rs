//! Request matching: hosts, path prefix / exact path, methods, Envoy's per-route context.
//!
//! Paths are compared exactly as given. Envoy normalizes the path before ext_authz sees it
//! (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action` in the HTTP connection
//! manager), so `..` segments and `%2F` are NOT decoded or resolved here: doing it a second time,
//! differently, would make the rule we pick differ from the route Envoy picks.

use std::collections::HashMap;

use crate::check::Request;
use crate::config::MatchConfig;

use super::PolicyError;

/// The HTTP method tokens a rule may name (RFC 9110 §9 plus PATCH).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The most `match.context` entries one rule may list.
pub(crate) const MAX_CONTEXT_ENTRIES: usize = 16;
/// The longest `match.context` key, in bytes.
const MAX_CONTEXT_KEY_BYTES: usize = 128;
/// The longest `match.context` value, in bytes.
const MAX_CONTEXT_VALUE_BYTES: usize = 1024;

/// One compiled host condition (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `api.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Subdomains(String),
}

/// The compiled path condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    /// Segment-aware prefix (see [`prefix_matches`]).
    Prefix(String),
    /// Exact path.
    Exact(String),
}

/// A compiled `match` block; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    hosts: Vec<HostPattern>,
    path: Option<PathMatch>,
    methods: Vec<String>,
    /// `(key, value)` pairs every one of which `context_extensions` must hold exactly.
    context: Vec<(String, String)>,
}

impl Matcher {
    /// Compiles `cfg`; problems are pushed to `errors` with paths under `base` (e.g. `rules[0].match`).
    pub(crate) fn compile(cfg: &MatchConfig, base: &str, errors: &mut Vec<PolicyError>) -> Matcher {
        let mut m = Matcher::default();

        for (i, host) in cfg.hosts.iter().enumerate() {
            match compile_host(host) {
                Ok(p) => m.hosts.push(p),
                Err(msg) => errors.push(PolicyError::new(format!("{base}.hosts[{i}]"), msg)),
            }
        }

        match (&cfg.path_prefix, &cfg.path_exact) {
            (Some(_), Some(_)) => errors.push(PolicyError::new(
                base.to_string(),
                "path_prefix and path_exact are exclusive",
            )),
            (Some(p), None) => match check_path(p) {
                Ok(()) => m.path = Some(PathMatch::Prefix(p.clone())),
                Err(msg) => errors.push(PolicyError::new(format!("{base}.path_prefix"), msg)),
            },
            (None, Some(p)) => match check_path(p) {
                Ok(()) => m.path = Some(PathMatch::Exact(p.clone())),
                Err(msg) => errors.push(PolicyError::new(format!("{base}.path_exact"), msg)),
            },
            (None, None) => {}
        }

        for (i, method) in cfg.methods.iter().enumerate() {
            let upper = method.to_ascii_uppercase();
            if KNOWN_METHODS.contains(&upper.as_str()) {
                if !m.methods.contains(&upper) {
                    m.methods.push(upper);
                }
            } else {
                errors.push(PolicyError::new(
                    format!("{base}.methods[{i}]"),
                    format!("unknown HTTP method {method:?}"),
                ));
            }
        }

        if cfg.context.len() > MAX_CONTEXT_ENTRIES {
            errors.push(PolicyError::new(
                format!("{base}.context"),
                format!("at most {MAX_CONTEXT_ENTRIES} entries"),
            ));
        }
        for (key, value) in &cfg.context {
            let checked = match check_context_text(key, MAX_CONTEXT_KEY_BYTES, false) {
                Err(msg) => Err((format!("{base}.context"), format!("key {key:?}: {msg}"))),
                Ok(()) => check_context_text(value, MAX_CONTEXT_VALUE_BYTES, true)
                    .map_err(|msg| (format!("{base}.context.{key}"), msg)),
            };
            match checked {
                Ok(()) => m.context.push((key.clone(), value.clone())),
                Err((at, msg)) => errors.push(PolicyError::new(at, msg)),
            }
        }
        m
    }

    /// True when `req` satisfies every condition.
    pub(crate) fn matches(&self, req: &Request) -> bool {
        self.matches_parts(&req.method, &req.host, &req.path)
            && self.context_matches(&req.context_extensions)
    }

    /// Every `match.context` key is present with exactly its value. A request without context
    /// extensions (a route that sets none, or the HTTP door, which cannot carry them) never
    /// matches a rule that names one.
    fn context_matches(&self, extensions: &HashMap<String, String>) -> bool {
        self.context
            .iter()
            .all(|(k, v)| extensions.get(k).is_some_and(|got| got == v))
    }

    /// [`Matcher::matches`] on the three facts it looks at.
    pub(crate) fn matches_parts(&self, method: &str, host: &str, path: &str) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return false;
        }
        if let Some(p) = &self.path {
            let ok = match p {
                PathMatch::Prefix(prefix) => prefix_matches(prefix, path),
                PathMatch::Exact(exact) => exact == path,
            };
            if !ok {
                return false;
            }
        }
        if !self.hosts.is_empty() {
            let host = normalize_request_host(host);
            if !self.hosts.iter().any(|p| host_matches(p, &host)) {
                return false;
            }
        }
        true
    }
}

/// Validates a `match.context` key or value: not empty, at most `max` bytes, no control
/// characters; a key has no whitespace either.
fn check_context_text(text: &str, max: usize, spaces_ok: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > max {
        return Err(format!("longer than {max} bytes"));
    }
    if text.chars().any(char::is_control) || (!spaces_ok && text.chars().any(char::is_whitespace)) {
        return Err(if spaces_ok {
            "must not contain control characters".into()
        } else {
            "must not contain whitespace or control characters".into()
        });
    }
    Ok(())
}

/// Validates a configured path (prefix or exact).
fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must start with /");
    }
    if p.contains(['?', '#']) {
        return Err("must not contain a query or fragment");
    }
    if p.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace");
    }
    Ok(())
}

/// Segment-aware prefix match: `/admin` matches `/admin`, `/admin/` and `/admin/x`, but not
/// `/administrator`. A prefix ending in `/` is a plain prefix; `/` matches every path (also the
/// odd ones such as `*` of `OPTIONS *`, so a catch-all rule really catches all).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Validates and lower-cases a configured host.
fn compile_host(host: &str) -> Result<HostPattern, &'static str> {
    let h = host.to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h);
    if h.is_empty() {
        return Err("must not be empty");
    }
    if h.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("not a host name");
    }
    if let Some(suffix) = h.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') || suffix.split('.').any(str::is_empty) {
            return Err("a wildcard must look like *.example.com");
        }
        return Ok(HostPattern::Subdomains(format!(".{suffix}")));
    }
    if h.contains('*') {
        return Err("a wildcard must look like *.example.com");
    }
    if h.contains(':') && !h.starts_with('[') {
        return Err("must not carry a port (the request port is ignored)");
    }
    Ok(HostPattern::Exact(h.to_string()))
}

/// Lower-cases the request host and drops its `:port` and a trailing dot. IPv6 literals keep their
/// brackets (`[::1]:8080` → `[::1]`).
pub(crate) fn normalize_request_host(host: &str) -> String {
    let h = host.trim();
    let without_port = if h.starts_with('[') {
        match h.find(']') {
            Some(end) => &h[..=end],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    let without_dot = without_port.strip_suffix('.').unwrap_or(without_port);
    without_dot.to_ascii_lowercase()
}

/// Matches a normalized request host against one pattern.
fn host_matches(p: &HostPattern, host: &str) -> bool {
    match p {
        HostPattern::Exact(h) => h == host,
        HostPattern::Subdomains(suffix) => match host.strip_suffix(suffix.as_str()) {
            // One or more non-empty labels in front of the suffix.
            Some(labels) => !labels.is_empty() && labels.split('.').all(|l| !l.is_empty()),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(
        hosts: &[&str],
        prefix: Option<&str>,
        exact: Option<&str>,
        methods: &[&str],
    ) -> Matcher {
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
        let req = Request {
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
            [
                "rules[0].match.context: key \"a b\": must not contain whitespace or control characters"
            ]
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
}
