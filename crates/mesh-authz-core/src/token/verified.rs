//! A verified token in the compact form the cache keeps: only what a check reads afterwards, in
//! two or three allocations, so a cache of a million tokens stays within a few hundred MiB.
//!
//! What is kept: the provider, the times (re-checked on every hit), `sub`, `jti`, `parent_jti`
//! and `cnf.x5t#S256` (revocation, binding), the scopes, the provider's `claims_to_headers`
//! values already rendered, and, only when something reads them, other claims.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Algorithm;
use super::claims::{Times, lookup};
use super::verify::Claims;

/// Which claims a verified token keeps besides the registered ones it always keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptClaims {
    /// Every claim: the provider puts them in dynamic metadata, or the reader is unknown.
    All,
    /// Only these top-level claims (sorted), the ones the rules' `require.claims` can reach.
    /// Empty: none.
    Only(Vec<String>),
}

impl KeptClaims {
    /// The top-level claims that claim paths (`realm_access.roles`, `https://x/roles`) can read:
    /// a path is looked up as a literal top-level name first, then by its first segment.
    pub fn for_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for path in paths {
            names.push(path.to_string());
            if let Some((first, _)) = path.split_once('.') {
                names.push(first.to_string());
            }
        }
        names.sort();
        names.dedup();
        KeptClaims::Only(names)
    }

    /// True when the claim `name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            KeptClaims::All => true,
            KeptClaims::Only(names) => names.binary_search_by(|n| n.as_str().cmp(name)).is_ok(),
        }
    }
}

/// Where one string sits in [`VerifiedToken`]'s text; `ABSENT` when the claim was not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const ABSENT: Span = Span {
        start: u32::MAX,
        len: 0,
    };
}

/// An absent `nbf` or `iat`.
const NO_TIME: i64 = i64::MIN;

/// Fixed slots at the start of `spans`.
const SUB: usize = 0;
const JTI: usize = 1;
const PARENT_JTI: usize = 2;
const CNF: usize = 3;
const FIXED: usize = 4;

/// A token whose signature and claims passed, as the verified-token cache keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    provider: u32,
    alg: Algorithm,
    /// `exp`, `nbf` and `iat`, with [`NO_TIME`] for an absent `nbf` or `iat` (claims are
    /// non-negative, so it cannot collide); two `Option<i64>` would cost 16 bytes a token.
    exp: i64,
    nbf: i64,
    iat: i64,
    /// Every kept string, one after the other.
    text: Box<str>,
    /// `sub`, `jti`, `parent_jti`, `cnf.x5t#S256`, then the scopes, then one per
    /// `claims_to_headers` entry in the mapping's order.
    spans: Box<[Span]>,
    scopes: u32,
    claims: Option<Box<Map<String, Value>>>,
}

impl VerifiedToken {
    /// Packs `claims`, verified for the provider at index `provider`, whose `claims_to_headers`
    /// mapping is `to_headers`; `keep` says which other claims stay readable.
    pub fn new(
        provider: usize,
        alg: Algorithm,
        claims: Claims,
        to_headers: &BTreeMap<String, String>,
        keep: &KeptClaims,
    ) -> Self {
        let mut text = String::new();
        let mut spans = Vec::with_capacity(FIXED + claims.scopes.len() + to_headers.len());
        let mut push = |text: &mut String, s: Option<&str>| match s {
            // Token size is bounded by `limits.max_token_bytes`, far below u32::MAX.
            Some(s) => {
                let start = u32::try_from(text.len()).unwrap_or(u32::MAX);
                text.push_str(s);
                spans.push(Span {
                    start,
                    len: u32::try_from(s.len()).unwrap_or(0),
                });
            }
            None => spans.push(Span::ABSENT),
        };
        push(&mut text, claims.sub.as_deref());
        push(&mut text, claims.jti.as_deref());
        push(&mut text, claims.parent_jti.as_deref());
        push(&mut text, claims.cnf_x5t_s256.as_deref());
        for scope in &claims.scopes {
            push(&mut text, Some(scope));
        }
        for claim in to_headers.keys() {
            let value = lookup(&claims.raw, claim).and_then(header_value);
            push(&mut text, value.as_deref());
        }
        let Times { exp, nbf, iat } = claims.times();
        let scopes = u32::try_from(claims.scopes.len()).unwrap_or(0);
        let kept: Map<String, Value> = match keep {
            KeptClaims::All => claims.raw,
            KeptClaims::Only(names) if names.is_empty() => Map::new(),
            only => claims
                .raw
                .into_iter()
                .filter(|(k, _)| only.keeps(k))
                .collect(),
        };
        Self {
            provider: u32::try_from(provider).unwrap_or(u32::MAX),
            alg,
            exp,
            nbf: nbf.unwrap_or(NO_TIME),
            iat: iat.unwrap_or(NO_TIME),
            text: text.into_boxed_str(),
            scopes,
            spans: spans.into_boxed_slice(),
            claims: (!kept.is_empty()).then(|| Box::new(kept)),
        }
    }

    fn span(&self, span: Span) -> Option<&str> {
        if span == Span::ABSENT {
            return None;
        }
        let start = span.start as usize;
        self.text.get(start..start + span.len as usize)
    }

    fn slot(&self, index: usize) -> Option<&str> {
        self.spans.get(index).and_then(|s| self.span(*s))
    }

    /// Index of the provider in the config.
    pub fn provider(&self) -> usize {
        self.provider as usize
    }

    /// Signature algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// `exp`, `nbf` and `iat`.
    pub fn times(&self) -> Times {
        let opt = |t: i64| (t != NO_TIME).then_some(t);
        Times {
            exp: self.exp,
            nbf: opt(self.nbf),
            iat: opt(self.iat),
        }
    }

    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.slot(SUB)
    }

    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.slot(JTI)
    }

    /// `parent_jti`: the token this one was derived from (revocation cascade).
    pub fn parent_jti(&self) -> Option<&str> {
        self.slot(PARENT_JTI)
    }

    /// RFC 8705 `cnf.x5t#S256`.
    pub fn cnf_x5t_s256(&self) -> Option<&str> {
        self.slot(CNF)
    }

    /// Scopes from `scope` and `scp`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + Clone {
        let end = FIXED + self.scopes as usize;
        self.spans
            .get(FIXED..end)
            .unwrap_or(&[])
            .iter()
            .filter_map(|s| self.span(*s))
    }

    /// The rendered value of each `claims_to_headers` entry, in the mapping's order (`None` where
    /// the claim is absent or cannot be a header value).
    pub fn header_values(&self) -> impl Iterator<Item = Option<&str>> {
        let start = FIXED + self.scopes as usize;
        self.spans
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .map(|s| self.span(*s))
    }

    /// The kept claims (see [`KeptClaims`]); `None` when none were kept.
    pub fn claims(&self) -> Option<&Map<String, Value>> {
        self.claims.as_deref()
    }
}

/// Longest header value injected; a longer claim is not rendered (and its header is removed).
const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// A claim rendered as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays of those joined with `,`. Objects, nulls and anything with control or non-ASCII
/// characters yield nothing.
pub fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    other => header_value(other),
                })
                .collect();
            parts?.join(",")
        }
        Value::Object(_) | Value::Null => return None,
    };
    safe_header_value(&text).then_some(text)
}

/// Visible ASCII, space and tab only (no CR/LF header injection, no obs-text), bounded length.
pub fn safe_header_value(s: &str) -> bool {
    s.len() <= MAX_HEADER_VALUE_BYTES && s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::token::claims::parse_claims;

    /// A `claims_to_headers` mapping with a plain, a multi-word and a nested claim.
    pub(crate) fn mapping() -> BTreeMap<String, String> {
        [
            ("sub", "x-auth-subject"),
            ("scope", "x-auth-scope"),
            ("org.id", "x-org"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn claims(v: Value) -> Claims {
        parse_claims(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn keeps_registered_claims_and_rendered_headers() {
        let c = claims(json!({
            "iss": "https://i", "sub": "alice", "exp": 100, "nbf": 5, "jti": "j1",
            "parent_jti": "p1", "scope": "a b", "scp": ["c"], "org": {"id": 42},
            "cnf": {"x5t#S256": "abc"}, "big": "x".repeat(1000)
        }));
        let t = VerifiedToken::new(
            3,
            Algorithm::ES256,
            c,
            &mapping(),
            &KeptClaims::Only(vec![]),
        );
        assert_eq!(t.provider(), 3);
        assert_eq!(t.alg(), Algorithm::ES256);
        assert_eq!(
            t.times(),
            Times {
                exp: 100,
                nbf: Some(5),
                iat: None
            }
        );
        assert_eq!(t.sub(), Some("alice"));
        assert_eq!(t.jti(), Some("j1"));
        assert_eq!(t.parent_jti(), Some("p1"));
        assert_eq!(t.cnf_x5t_s256(), Some("abc"));
        assert_eq!(t.scopes().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        // Mapping order (BTreeMap): org.id, scope, sub.
        assert_eq!(
            t.header_values().collect::<Vec<_>>(),
            vec![Some("42"), Some("a b"), Some("alice")]
        );
        assert!(t.claims().is_none());
    }

    #[test]
    fn absent_claims_read_as_none_and_empty_strings_stay_empty() {
        let c = claims(json!({"iss": "https://i", "exp": 1, "sub": ""}));
        let t = VerifiedToken::new(0, Algorithm::RS256, c, &mapping(), &KeptClaims::All);
        assert_eq!(t.sub(), Some(""));
        assert_eq!(t.jti(), None);
        assert_eq!(t.parent_jti(), None);
        assert_eq!(t.cnf_x5t_s256(), None);
        assert_eq!(t.scopes().count(), 0);
        assert_eq!(
            t.header_values().collect::<Vec<_>>(),
            vec![None, None, Some("")]
        );
        // `All` keeps every claim.
        assert_eq!(t.claims().map(Map::len), Some(3));
    }

    #[test]
    fn only_the_claims_rule_paths_reach_are_kept() {
        let keep = KeptClaims::for_paths(["realm_access.roles", "https://x/roles", "tier"]);
        assert_eq!(
            keep,
            KeptClaims::Only(vec![
                "https://x/roles".into(),
                "realm_access".into(),
                "realm_access.roles".into(),
                "tier".into()
            ])
        );
        let c = claims(json!({
            "iss": "https://i", "exp": 1, "realm_access": {"roles": ["admin"]},
            "realm_access.roles": "literal", "tier": 1, "other": "dropped"
        }));
        let t = VerifiedToken::new(0, Algorithm::RS256, c, &BTreeMap::new(), &keep);
        let kept = t.claims().unwrap();
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, vec!["realm_access", "realm_access.roles", "tier"]);
        assert_eq!(lookup(kept, "realm_access.roles"), Some(&json!("literal")));
    }

    #[test]
    fn control_characters_in_claims_never_reach_a_header() {
        let c = claims(json!({
            "iss": "https://i", "exp": 1, "sub": "alice\r\nx-admin: true", "scope": "a b"
        }));
        let t = VerifiedToken::new(0, Algorithm::RS256, c, &mapping(), &KeptClaims::All);
        assert_eq!(
            t.header_values().collect::<Vec<_>>(),
            vec![None, Some("a b"), None]
        );
    }

    #[test]
    fn header_rendering() {
        assert_eq!(header_value(&json!({"a": 1})), None);
        assert_eq!(header_value(&json!("caf\u{e9}")), None);
        assert_eq!(header_value(&json!(true)), Some("true".into()));
        assert_eq!(header_value(&json!(["a", 1])), Some("a,1".into()));
        assert_eq!(header_value(&json!([1, [2]])), None);
        assert_eq!(header_value(&json!("x".repeat(4097))), None);
    }

    #[test]
    fn dotted_lookup_prefers_literal_keys() {
        let c = json!({"a.b": 1, "a": {"b": 2}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(lookup(&c, "a.b"), Some(&json!(1)));
        let c = json!({"a": {"b": 2}}).as_object().cloned().unwrap();
        assert_eq!(lookup(&c, "a.b"), Some(&json!(2)));
        assert_eq!(lookup(&c, "a.c"), None);
    }
}
