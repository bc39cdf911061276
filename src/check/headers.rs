//! Which headers an allow sets and removes upstream.
//!
//! Every header name mesh-authz can inject is either overwritten with our value or removed, so a
//! client can never smuggle, say, `x-auth-subject` past us.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::Config;

/// A token's claims together with its provider's `claims_to_headers` mapping.
pub type ClaimsMapping<'a> = (&'a Map<String, Value>, &'a BTreeMap<String, String>);

/// The header names of one config, computed once.
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    /// Every name we may inject: the SPIFFE ID header and all `claims_to_headers` targets.
    injectable: Vec<String>,
    spiffe_id_header: String,
}

/// Longest header value we inject; longer claim values are dropped (and the header removed).
const MAX_VALUE_BYTES: usize = 4096;

impl HeaderPlan {
    /// Collects the injectable names of `config`.
    pub fn new(config: &Config) -> Self {
        let mut injectable: Vec<String> = config
            .providers
            .iter()
            .flat_map(|p| p.claims_to_headers.values().cloned())
            .collect();
        injectable.push(config.identity.spiffe_id_header.clone());
        injectable.sort();
        injectable.dedup();
        Self {
            injectable,
            spiffe_id_header: config.identity.spiffe_id_header.clone(),
        }
    }

    /// Headers to set and to remove, from the peer's SPIFFE ID and the token's claims mapped by
    /// its provider's `claims_to_headers`.
    pub fn build(
        &self,
        spiffe_id: Option<&str>,
        claims: Option<ClaimsMapping<'_>>,
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut set: Vec<(String, String)> = Vec::new();
        if let Some(id) = spiffe_id.filter(|v| safe_value(v)) {
            set.push((self.spiffe_id_header.clone(), id.to_string()));
        }
        if let Some((raw, mapping)) = claims {
            for (claim, header) in mapping {
                if set.iter().any(|(h, _)| h == header) {
                    continue;
                }
                if let Some(value) = lookup(raw, claim).and_then(header_value) {
                    set.push((header.clone(), value));
                }
            }
        }
        let remove = self
            .injectable
            .iter()
            .filter(|name| !set.iter().any(|(h, _)| h == *name))
            .cloned()
            .collect();
        (set, remove)
    }
}

/// Looks a dotted claim path up (`realm_access.roles`); a literal key containing dots wins.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut node = claims.get(parts.next()?)?;
    for part in parts {
        node = node.as_object()?.get(part)?;
    }
    Some(node)
}

/// A claim rendered as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays of those joined with `,`. Objects, nulls and anything with control or non-ASCII
/// characters yield nothing.
fn header_value(v: &Value) -> Option<String> {
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
    safe_value(&text).then_some(text)
}

/// Visible ASCII, space and tab only (no CR/LF header injection, no obs-text), bounded length.
fn safe_value(s: &str) -> bool {
    s.len() <= MAX_VALUE_BYTES && s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan() -> HeaderPlan {
        let config = crate::config::from_str_with_env(
            "providers:\n  - name: a\n    issuer: https://a\n    jwks: { file: Cargo.toml }\n    claims_to_headers: { sub: x-auth-subject, scope: x-auth-scope, org.id: x-org }\n",
            Vec::new(),
        );
        // The file is only checked for readability; Cargo.toml exists in the crate root.
        HeaderPlan::new(&config.expect("valid config"))
    }

    fn mapping() -> BTreeMap<String, String> {
        [
            ("sub", "x-auth-subject"),
            ("scope", "x-auth-scope"),
            ("org.id", "x-org"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn absent_values_are_removed_so_clients_cannot_smuggle_them() {
        let (set, remove) = plan().build(None, None);
        assert!(set.is_empty());
        assert_eq!(
            remove,
            vec![
                "x-auth-scope",
                "x-auth-spiffe-id",
                "x-auth-subject",
                "x-org"
            ]
        );
    }

    #[test]
    fn claims_and_spiffe_id_are_set_and_the_rest_removed() {
        let claims = json!({"sub": "alice", "org": {"id": 42}})
            .as_object()
            .cloned()
            .unwrap();
        let (set, remove) = plan().build(Some("spiffe://td/ns/a"), Some((&claims, &mapping())));
        assert!(set.contains(&("x-auth-subject".into(), "alice".into())));
        assert!(set.contains(&("x-org".into(), "42".into())));
        assert!(set.contains(&("x-auth-spiffe-id".into(), "spiffe://td/ns/a".into())));
        assert_eq!(remove, vec!["x-auth-scope"]);
    }

    #[test]
    fn control_characters_in_claims_never_reach_a_header() {
        let claims = json!({"sub": "alice\r\nx-admin: true", "scope": ["a", "b"]})
            .as_object()
            .cloned()
            .unwrap();
        let (set, remove) = plan().build(None, Some((&claims, &mapping())));
        assert_eq!(set, vec![("x-auth-scope".to_string(), "a,b".to_string())]);
        assert!(remove.contains(&"x-auth-subject".to_string()));
    }

    #[test]
    fn objects_and_non_ascii_are_not_rendered() {
        assert_eq!(header_value(&json!({"a": 1})), None);
        assert_eq!(header_value(&json!("caf\u{e9}")), None);
        assert_eq!(header_value(&json!(true)), Some("true".into()));
        assert_eq!(header_value(&json!([1, [2]])), None);
    }

    #[test]
    fn dotted_lookup_prefers_literal_keys() {
        let claims = json!({"a.b": 1, "a": {"b": 2}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(lookup(&claims, "a.b"), Some(&json!(1)));
        let claims = json!({"a": {"b": 2}}).as_object().cloned().unwrap();
        assert_eq!(lookup(&claims, "a.b"), Some(&json!(2)));
        assert_eq!(lookup(&claims, "a.c"), None);
    }
}
