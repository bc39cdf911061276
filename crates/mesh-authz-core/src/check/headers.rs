//! Which headers an allow sets and removes upstream.
//!
//! Every header name mesh-authz can inject is either overwritten with our value or removed, so a
//! client can never smuggle, say, `x-auth-subject` past us.

use std::collections::BTreeMap;

use smol_str::SmolStr;

use crate::config::Config;
use crate::token::verified::{VerifiedToken, safe_header_value};

/// A verified token together with its provider's `claims_to_headers` mapping.
pub(crate) type ClaimsMapping<'a> = (&'a VerifiedToken, &'a BTreeMap<String, String>);

/// The header names of one config, computed once.
#[derive(Debug, Clone)]
pub(crate) struct HeaderPlan {
    /// Every name we may inject: the SPIFFE ID header and all `claims_to_headers` targets.
    injectable: Vec<SmolStr>,
    spiffe_id_header: SmolStr,
}

impl HeaderPlan {
    /// Collects the injectable names of `config`.
    pub(crate) fn new(config: &Config) -> Self {
        let mut injectable: Vec<SmolStr> = config
            .providers
            .iter()
            .flat_map(|p| p.claims_to_headers.values().map(SmolStr::new))
            .collect();
        injectable.push(SmolStr::new(&config.identity.spiffe_id_header));
        injectable.sort();
        injectable.dedup();
        Self {
            injectable,
            spiffe_id_header: SmolStr::new(&config.identity.spiffe_id_header),
        }
    }

    /// Every name an allow can set or remove: the injectable names and `authorization`.
    pub(crate) fn written(&self) -> Vec<String> {
        let mut names: Vec<String> = self.injectable.iter().map(SmolStr::to_string).collect();
        if !names
            .iter()
            .any(|n| n == crate::request::AUTHORIZATION_HEADER)
        {
            names.push(crate::request::AUTHORIZATION_HEADER.to_string());
        }
        names
    }

    /// Headers to set and to remove, from the peer's SPIFFE ID and the token's claims mapped by
    /// its provider's `claims_to_headers`.
    pub(crate) fn build(
        &self,
        spiffe_id: Option<&str>,
        claims: Option<ClaimsMapping<'_>>,
    ) -> (Vec<(SmolStr, SmolStr)>, Vec<SmolStr>) {
        let mut set: Vec<(SmolStr, SmolStr)> = Vec::with_capacity(self.injectable.len());
        if let Some(id) = spiffe_id.filter(|v| safe_header_value(v)) {
            set.push((self.spiffe_id_header.clone(), SmolStr::new(id)));
        }
        if let Some((token, mapping)) = claims {
            // Values were rendered (and checked) when the token was verified, in mapping order.
            for (header, value) in mapping.values().zip(token.header_values()) {
                let Some(value) = value else { continue };
                if set.iter().any(|(h, _)| h == header) {
                    continue;
                }
                set.push((SmolStr::new(header), SmolStr::new(value)));
            }
        }
        // Room for `authorization`, which the checker adds unless the token is forwarded.
        let mut remove = Vec::with_capacity(self.injectable.len() + 1);
        remove.extend(
            self.injectable
                .iter()
                .filter(|name| !set.iter().any(|(h, _)| h == *name))
                .cloned(),
        );
        (set, remove)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::token::Algorithm;
    use crate::token::claims::parse_claims;
    use crate::token::verified::KeptClaims;
    use crate::token::verified::tests::mapping;

    fn plan() -> HeaderPlan {
        let config = crate::config::from_str_with_env(
            "providers:\n  - name: a\n    issuer: https://a\n    audiences: [api]\n    jwks: { file: Cargo.toml }\n    claims_to_headers: { sub: x-auth-subject, scope: x-auth-scope, org.id: x-org }\n",
            Vec::new(),
        );
        // The file is only checked for readability; Cargo.toml exists in the crate root.
        HeaderPlan::new(&config.expect("valid config"))
    }

    fn token(claims: serde_json::Value) -> VerifiedToken {
        let claims = parse_claims(claims.to_string().as_bytes()).unwrap();
        VerifiedToken::new(
            0,
            Algorithm::RS256,
            claims,
            &mapping(),
            &KeptClaims::Only(vec![]),
        )
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
        let t = token(json!({"iss": "i", "exp": 1, "sub": "alice", "org": {"id": 42}}));
        let (set, remove) = plan().build(Some("spiffe://td/ns/a"), Some((&t, &mapping())));
        assert!(set.contains(&("x-auth-subject".into(), "alice".into())));
        assert!(set.contains(&("x-org".into(), "42".into())));
        assert!(set.contains(&("x-auth-spiffe-id".into(), "spiffe://td/ns/a".into())));
        assert_eq!(remove, vec!["x-auth-scope"]);
    }

    #[test]
    fn control_characters_in_claims_never_reach_a_header() {
        let t = token(json!({
            "iss": "i", "exp": 1, "sub": "alice\r\nx-admin: true", "scope": "a b"
        }));
        let (set, remove) = plan().build(None, Some((&t, &mapping())));
        assert_eq!(set, vec![("x-auth-scope".into(), "a b".into())]);
        assert!(remove.contains(&"x-auth-subject".into()));
    }

    #[test]
    fn a_spiffe_id_with_control_characters_is_not_set() {
        let (set, remove) = plan().build(Some("spiffe://td/x\r\ny: z"), None);
        assert!(set.is_empty());
        assert!(remove.contains(&"x-auth-spiffe-id".into()));
    }
}
