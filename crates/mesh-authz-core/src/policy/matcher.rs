//! Request matching: hosts, path prefix / exact path, methods, Envoy's per-route context.
//!
//! Paths are compared exactly as given. Envoy normalizes the path before ext_authz sees it
//! (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action` in the HTTP connection
//! manager), so `..` segments and `%2F` are NOT decoded or resolved here: doing it a second time,
//! differently, would make the rule we pick differ from the route Envoy picks.

use std::collections::HashMap;

use crate::config::MatchConfig;
use crate::request::Request;

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
    pub(crate) fn matches<H>(&self, req: &Request<H>) -> bool {
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
    prefix == "/" || crate::prefix::segment_prefix_matches(prefix, path)
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
mod tests;
