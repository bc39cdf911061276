//! The one prefix matcher, shared by path rules and SPIFFE ID rules.

/// Segment-aware prefix match over `/`-separated text: `/admin` matches `/admin`, `/admin/` and
/// `/admin/x`, but not `/administrator`; `spiffe://td/ns/a` matches `spiffe://td/ns/a/sa/x` but not
/// `spiffe://td/ns/ab`. A prefix that ends in `/` is a plain prefix (`/api/` matches `/api/x`,
/// not `/api`). An empty prefix matches nothing.
pub fn segment_prefix_matches(prefix: &str, text: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    if prefix.ends_with('/') {
        return text.starts_with(prefix);
    }
    match text.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::segment_prefix_matches as m;

    #[test]
    fn segments_not_bytes() {
        assert!(m("/admin", "/admin"));
        assert!(m("/admin", "/admin/"));
        assert!(m("/admin", "/admin/x"));
        assert!(!m("/admin", "/administrator"));
        assert!(m("/api/", "/api/x"));
        assert!(!m("/api/", "/api"));
        assert!(m("spiffe://td/ns/a", "spiffe://td/ns/a/sa/x"));
        assert!(!m("spiffe://td/ns/a", "spiffe://td/ns/ab"));
        assert!(!m("", "/x"));
    }
}
