//! SPIFFE ID parsing and validation (SPIFFE-ID spec §2): a leaf that config, identity and policy
//! share.
//!
//! A hand-written validator: `spiffe://` (lowercase), a trust domain of `[a-z0-9._-]`, then a path
//! of `/segment` parts made of `[a-zA-Z0-9._-]`, segments neither empty nor `.`/`..`. No port,
//! userinfo, query, fragment, percent-encoding or trailing slash; at most 2048 bytes.

use std::fmt;
use std::str::FromStr;

/// Longest SPIFFE ID accepted, in bytes (SPIFFE-ID spec §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

const SCHEME: &str = "spiffe://";

/// A SPIFFE ID failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpiffeIdError(pub &'static str);

/// A valid SPIFFE ID: `spiffe://<trust-domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The whole ID, validated.
    id: String,
    /// Byte offset where the path starts (= end of the trust domain).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates.
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError("empty"));
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError("longer than 2048 bytes"));
        }
        let rest = match s.strip_prefix(SCHEME) {
            Some(rest) => rest,
            None => {
                let lower_scheme = s
                    .get(..SCHEME.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(SCHEME));
                return Err(SpiffeIdError(if lower_scheme {
                    "scheme must be lowercase spiffe://"
                } else {
                    "scheme must be spiffe://"
                }));
            }
        };
        // Query and fragment are checked first so their error is the precise one.
        if rest.contains('?') {
            return Err(SpiffeIdError("query not allowed"));
        }
        if rest.contains('#') {
            return Err(SpiffeIdError("fragment not allowed"));
        }
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(SpiffeId {
            id: s.to_owned(),
            path_start: SCHEME.len() + td.len(),
        })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        self.id.get(SCHEME.len()..self.path_start).unwrap_or("")
    }

    /// The path (empty or starting with `/`).
    pub fn path(&self) -> &str {
        self.id.get(self.path_start..).unwrap_or("")
    }

    /// Whether the ID belongs to `trust_domain` (a bare name such as `cluster.local`; exact match).
    pub fn is_member_of(&self, trust_domain: &str) -> bool {
        !trust_domain.is_empty() && self.trust_domain() == trust_domain
    }
}

/// Longest trust domain name accepted, in bytes (SPIFFE-ID spec §2.1 follows DNS).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The one trust-domain syntax check (SPIFFE-ID spec §2.1): `[a-z0-9._-]`, 1 to 255 bytes. Used
/// for the trust domain inside an ID and for every configured trust domain name, so that a
/// configured name that could never match (`Cluster.Local`) is refused.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError("trust domain is empty"));
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError("trust domain is longer than 255 bytes"));
    }
    for b in td.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {}
            b'A'..=b'Z' => return Err(SpiffeIdError("trust domain must be lowercase")),
            b':' => return Err(SpiffeIdError("port not allowed in trust domain")),
            b'@' => return Err(SpiffeIdError("userinfo not allowed in trust domain")),
            _ => return Err(SpiffeIdError("invalid character in trust domain")),
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/' (split at the first one); skip it and check each segment.
    let Some(segments) = path.strip_prefix('/') else {
        return Err(SpiffeIdError("path must start with /"));
    };
    for seg in segments.split('/') {
        match seg {
            "" => return Err(SpiffeIdError("empty path segment or trailing slash")),
            "." | ".." => return Err(SpiffeIdError("path segment . or .. not allowed")),
            _ => {}
        }
        if let Some(b) = seg
            .bytes()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
        {
            return Err(SpiffeIdError(if b == b'%' {
                "percent-encoding not allowed in path"
            } else {
                "invalid character in path"
            }));
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        let long_path = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 12));
        assert_eq!(long_path.len(), MAX_SPIFFE_ID_LEN);
        let cases: &[(&str, &str, &str)] = &[
            ("spiffe://td", "td", ""),
            ("spiffe://cluster.local", "cluster.local", ""),
            (
                "spiffe://cluster.local/ns/default/sa/default",
                "cluster.local",
                "/ns/default/sa/default",
            ),
            ("spiffe://example.org/a", "example.org", "/a"),
            ("spiffe://a-b_c.0-9/x", "a-b_c.0-9", "/x"),
            (
                "spiffe://td/Path.With-Mixed_Case09",
                "td",
                "/Path.With-Mixed_Case09",
            ),
            ("spiffe://td/...", "td", "/..."),
            ("spiffe://td/.a/a./..b", "td", "/.a/a./..b"),
            ("spiffe://td/-/_/9", "td", "/-/_/9"),
            ("spiffe://1.2.3.4/x", "1.2.3.4", "/x"),
            ("spiffe://_/x", "_", "/x"),
            (&long_path, "td", &long_path[11..]),
        ];
        for (input, td, path) in cases {
            let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.as_str(), *input);
            assert_eq!(id.trust_domain(), *td, "{input}");
            assert_eq!(id.path(), *path, "{input}");
            assert_eq!(id.to_string(), *input);
            assert_eq!(input.parse::<SpiffeId>().unwrap(), id);
        }
    }

    #[test]
    fn invalid_ids() {
        let too_long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 11));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("spiffe://", "trust domain is empty"),
            ("spiffe:///path", "trust domain is empty"),
            ("SPIFFE://td/x", "scheme must be lowercase spiffe://"),
            ("Spiffe://td/x", "scheme must be lowercase spiffe://"),
            ("spiffe:/td/x", "scheme must be spiffe://"),
            ("spiffe:td", "scheme must be spiffe://"),
            ("http://td/x", "scheme must be spiffe://"),
            ("td/x", "scheme must be spiffe://"),
            (" spiffe://td/x", "scheme must be spiffe://"),
            ("spiffe://TD/x", "trust domain must be lowercase"),
            ("spiffe://Cluster.local", "trust domain must be lowercase"),
            ("spiffe://td:8080/x", "port not allowed in trust domain"),
            ("spiffe://user@td/x", "userinfo not allowed in trust domain"),
            ("spiffe://user:pw@td/x", "port not allowed in trust domain"),
            ("spiffe://t d/x", "invalid character in trust domain"),
            ("spiffe://t%41d/x", "invalid character in trust domain"),
            ("spiffe://tø/x", "invalid character in trust domain"),
            ("spiffe://[::1]/x", "invalid character in trust domain"),
            ("spiffe://td/", "empty path segment or trailing slash"),
            ("spiffe://td/a/", "empty path segment or trailing slash"),
            ("spiffe://td//a", "empty path segment or trailing slash"),
            ("spiffe://td/a//b", "empty path segment or trailing slash"),
            ("spiffe://td/.", "path segment . or .. not allowed"),
            ("spiffe://td/..", "path segment . or .. not allowed"),
            ("spiffe://td/a/./b", "path segment . or .. not allowed"),
            ("spiffe://td/a/../b", "path segment . or .. not allowed"),
            ("spiffe://td/a%20b", "percent-encoding not allowed in path"),
            ("spiffe://td/a b", "invalid character in path"),
            ("spiffe://td/a:b", "invalid character in path"),
            ("spiffe://td/a@b", "invalid character in path"),
            ("spiffe://td/a+b", "invalid character in path"),
            ("spiffe://td/a,b", "invalid character in path"),
            ("spiffe://td/a;b", "invalid character in path"),
            ("spiffe://td/é", "invalid character in path"),
            ("spiffe://td/a\0b", "invalid character in path"),
            ("spiffe://td/a\nb", "invalid character in path"),
            ("spiffe://td/a\\b", "invalid character in path"),
            ("spiffe://td/x?q=1", "query not allowed"),
            ("spiffe://td?q", "query not allowed"),
            ("spiffe://td/x#frag", "fragment not allowed"),
            ("spiffe://td#", "fragment not allowed"),
            (&too_long, "longer than 2048 bytes"),
        ];
        for (input, msg) in cases {
            let err = SpiffeId::parse(input).expect_err(input);
            assert_eq!(err.0, *msg, "{input:?}");
        }
    }

    #[test]
    fn membership() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/b").unwrap();
        assert!(id.is_member_of("cluster.local"));
        assert!(!id.is_member_of("cluster.loca"));
        assert!(!id.is_member_of("local"));
        assert!(!id.is_member_of("Cluster.local"));
        assert!(!id.is_member_of(""));
        assert!(!id.is_member_of("spiffe://cluster.local"));
    }
}
