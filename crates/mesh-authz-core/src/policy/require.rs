//! What a matched rule requires: identity checks on the SPIFFE ID string, token checks on claims.
//!
//! The checks are pure functions over strings and JSON so they are testable without the identity and
//! token modules; [`super::Rule::evaluate`] wires them to `PeerIdentity` and `VerifiedToken`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::config::RequireConfig;
use crate::token::claims::lookup;

use super::PolicyError;

/// A compiled `require` block.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requirements {
    pub(crate) token: bool,
    pub(crate) peer: bool,
    pub(crate) spiffe_ids: Vec<String>,
    pub(crate) spiffe_id_prefixes: Vec<String>,
    pub(crate) trust_domains: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) claims: Vec<ClaimRequirement>,
    pub(crate) bound_token: bool,
}

/// One `claims` entry.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRequirement {
    /// The dotted path as configured.
    pub(crate) path: String,
    /// Accepted values (JSON text for numbers and booleans).
    pub(crate) accepted: Vec<String>,
}

impl Requirements {
    /// Compiles `cfg`; problems are pushed to `errors` with paths under `base`
    /// (e.g. `rules[2].require`). `token`/`peer` are stored as configured.
    pub(crate) fn compile(
        cfg: &RequireConfig,
        base: &str,
        errors: &mut Vec<PolicyError>,
    ) -> Requirements {
        for (i, id) in cfg.spiffe_ids.iter().enumerate() {
            if let Err(msg) = check_spiffe_id_text(id) {
                errors.push(PolicyError::new(format!("{base}.spiffe_ids[{i}]"), msg));
            }
        }
        for (i, id) in cfg.spiffe_id_prefixes.iter().enumerate() {
            if let Err(msg) = check_spiffe_id_text(id) {
                errors.push(PolicyError::new(
                    format!("{base}.spiffe_id_prefixes[{i}]"),
                    msg,
                ));
            }
        }
        for (i, td) in cfg.trust_domains.iter().enumerate() {
            if let Err(msg) = check_trust_domain_text(td) {
                errors.push(PolicyError::new(format!("{base}.trust_domains[{i}]"), msg));
            }
        }
        for (i, s) in cfg.scopes.iter().enumerate() {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                errors.push(PolicyError::new(
                    format!("{base}.scopes[{i}]"),
                    "a scope is one non-empty word",
                ));
            }
        }
        let mut claims = Vec::with_capacity(cfg.claims.len());
        for (path, accepted) in &cfg.claims {
            let at = format!("{base}.claims.{path}");
            if path.is_empty() || path.split('.').any(str::is_empty) {
                errors.push(PolicyError::new(at, "empty claim path segment"));
                continue;
            }
            if accepted.is_empty() {
                errors.push(PolicyError::new(
                    at,
                    "must list at least one accepted value",
                ));
                continue;
            }
            claims.push(ClaimRequirement {
                path: path.clone(),
                accepted: accepted.clone(),
            });
        }
        Requirements {
            token: cfg.token,
            peer: cfg.peer,
            spiffe_ids: cfg.spiffe_ids.clone(),
            spiffe_id_prefixes: cfg.spiffe_id_prefixes.clone(),
            trust_domains: cfg.trust_domains.clone(),
            scopes: cfg.scopes.clone(),
            claims,
            bound_token: cfg.bound_token,
        }
    }

    /// Whether any identity condition is set.
    pub(crate) fn has_identity_conditions(&self) -> bool {
        !self.spiffe_ids.is_empty()
            || !self.spiffe_id_prefixes.is_empty()
            || !self.trust_domains.is_empty()
    }

    /// Whether any token condition is set.
    pub(crate) fn has_token_conditions(&self) -> bool {
        !self.scopes.is_empty() || !self.claims.is_empty()
    }
}

/// Basic config check of a SPIFFE ID (or ID prefix): `spiffe://`, a trust domain, no whitespace.
/// Full validation happens when peers present IDs; a typo here can only make a rule stricter.
fn check_spiffe_id_text(id: &str) -> Result<(), &'static str> {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err("not a SPIFFE ID");
    };
    if id.chars().any(char::is_whitespace) {
        return Err("not a SPIFFE ID");
    }
    let td = rest.split('/').next().unwrap_or_default();
    if td.is_empty() {
        return Err("not a SPIFFE ID (empty trust domain)");
    }
    Ok(())
}

/// Config check of a trust domain name (not a SPIFFE ID).
fn check_trust_domain_text(td: &str) -> Result<(), &'static str> {
    if td.is_empty() {
        return Err("must not be empty");
    }
    if td.contains("://") || td.contains('/') {
        return Err("a trust domain name such as cluster.local, not a SPIFFE ID");
    }
    crate::spiffe::validate_trust_domain(td).map_err(|e| e.0)
}

/// `spiffe_ids` / `spiffe_id_prefixes` as one "any of" check. `id` is the peer's SPIFFE ID.
/// Prefixes are segment-aware: `spiffe://td/ns/a` admits `spiffe://td/ns/a` and
/// `spiffe://td/ns/a/x`, not `spiffe://td/ns/ab`; a prefix ending in `/` is a plain prefix.
pub(crate) fn spiffe_id_allowed(id: &str, ids: &[String], prefixes: &[String]) -> bool {
    ids.iter().any(|allowed| allowed == id) || prefixes.iter().any(|p| spiffe_prefix_matches(p, id))
}

/// Segment-aware SPIFFE ID prefix match.
pub(crate) fn spiffe_prefix_matches(prefix: &str, id: &str) -> bool {
    crate::prefix::segment_prefix_matches(prefix, id)
}

/// `trust_domains`: exact, case-sensitive (SPIFFE trust domains are lower case by spec).
pub(crate) fn trust_domain_allowed(trust_domain: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|td| td == trust_domain)
}

/// `scopes`: every required scope is among the token's scopes.
pub(crate) fn scopes_satisfied<'a>(
    required: &[String],
    have: impl Iterator<Item = &'a str> + Clone,
) -> bool {
    required.iter().all(|r| have.clone().any(|h| h == r))
}

/// Whether a claim value is accepted: a string must be in the set, a number or boolean is compared
/// by its JSON text, an array matches when one of its (scalar) elements does. Null, objects and
/// nested arrays never match.
pub(crate) fn claim_value_accepted(value: &Value, accepted: &[String]) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| scalar_accepted(v, accepted)),
        v => scalar_accepted(v, accepted),
    }
}

fn scalar_accepted(value: &Value, accepted: &[String]) -> bool {
    match value {
        Value::String(s) => accepted.iter().any(|a| a == s),
        Value::Number(n) => {
            let text = n.to_string();
            accepted.contains(&text)
        }
        Value::Bool(b) => {
            let text = if *b { "true" } else { "false" };
            accepted.iter().any(|a| a == text)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Every `claims` requirement holds.
pub(crate) fn claims_satisfied(required: &[ClaimRequirement], claims: &Map<String, Value>) -> bool {
    required.iter().all(|req| {
        lookup(claims, &req.path).is_some_and(|v| claim_value_accepted(v, &req.accepted))
    })
}

/// RFC 8705 §3.1: `cnf.x5t#S256` must equal base64url-no-pad(SHA-256(client cert DER)). Compared in
/// constant time; a missing side fails.
pub(crate) fn bound_token_ok(cnf_x5t_s256: Option<&str>, cert_sha256: Option<&[u8; 32]>) -> bool {
    let (Some(cnf), Some(hash)) = (cnf_x5t_s256, cert_sha256) else {
        return false;
    };
    let expected = URL_SAFE_NO_PAD.encode(hash);
    aws_lc_rs::constant_time::verify_slices_are_equal(cnf.as_bytes(), expected.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spiffe_table() {
        let ids = strings(&["spiffe://cluster.local/ns/ops/sa/admin"]);
        let prefixes = strings(&["spiffe://cluster.local/ns/team", "spiffe://other.td/"]);
        let cases: &[(&str, bool)] = &[
            ("spiffe://cluster.local/ns/ops/sa/admin", true),
            ("spiffe://cluster.local/ns/ops/sa/admin2", false),
            ("spiffe://cluster.local/ns/ops/sa/admin/x", false),
            ("spiffe://cluster.local/ns/ops/sa", false),
            ("spiffe://cluster.local/ns/team", true),
            ("spiffe://cluster.local/ns/team/sa/x", true),
            ("spiffe://cluster.local/ns/teamx/sa/x", false),
            ("spiffe://cluster.local/ns/tea", false),
            ("spiffe://other.td/anything", true),
            ("spiffe://other.td", false),
            ("spiffe://other.tdx/a", false),
            ("SPIFFE://cluster.local/ns/ops/sa/admin", false),
            ("", false),
        ];
        for (id, want) in cases {
            assert_eq!(spiffe_id_allowed(id, &ids, &prefixes), *want, "{id}");
        }
        // Trust-domain-only prefix is segment-aware too.
        assert!(spiffe_prefix_matches("spiffe://td", "spiffe://td/x"));
        assert!(!spiffe_prefix_matches("spiffe://td", "spiffe://td.evil/x"));
        assert!(!spiffe_id_allowed("spiffe://td/x", &[], &[]));
    }

    #[test]
    fn trust_domain_table() {
        let allowed = strings(&["cluster.local", "prod.example"]);
        assert!(trust_domain_allowed("cluster.local", &allowed));
        assert!(trust_domain_allowed("prod.example", &allowed));
        assert!(!trust_domain_allowed("cluster.loca", &allowed));
        assert!(!trust_domain_allowed("evil.cluster.local", &allowed));
        assert!(!trust_domain_allowed("", &allowed));
    }

    #[test]
    fn scopes() {
        let have = ["read", "write"];
        let sat =
            |req: &[&str], have: &[&str]| scopes_satisfied(&strings(req), have.iter().copied());
        assert!(sat(&["read"], &have));
        assert!(sat(&["read", "write"], &have));
        assert!(sat(&[], &have));
        assert!(!sat(&["admin"], &have));
        assert!(!sat(&["read", "admin"], &have));
        assert!(!sat(&["rea"], &have));
        assert!(!sat(&["read"], &[]));
    }

    #[test]
    fn claim_lookup_and_values() {
        let raw = json!({
            "role": "admin",
            "roles": ["a", "b"],
            "level": 3,
            "ratio": 1.5,
            "active": true,
            "none": null,
            "org": {"id": "o-1", "tier": {"name": "gold", "n": 2}},
            "https://example.com/groups": ["eng"],
            "nested_arr": [["x"]],
            "obj": {"k": "v"}
        });
        let raw = raw.as_object().unwrap().clone();
        let cases: &[(&str, &[&str], bool)] = &[
            ("role", &["admin"], true),
            ("role", &["user", "admin"], true),
            ("role", &["Admin"], false),
            ("roles", &["b"], true),
            ("roles", &["c"], false),
            ("level", &["3"], true),
            ("level", &["3.0"], false),
            ("ratio", &["1.5"], true),
            ("active", &["true"], true),
            ("active", &["false"], false),
            ("none", &["null"], false),
            ("org.id", &["o-1"], true),
            ("org.tier.name", &["gold"], true),
            ("org.tier.n", &["2"], true),
            ("org.tier", &["gold"], false),
            ("org.missing", &["x"], false),
            ("role.x", &["admin"], false),
            ("absent", &["x"], false),
            ("https://example.com/groups", &["eng"], true),
            ("nested_arr", &["x"], false),
            ("obj", &["v"], false),
        ];
        for (path, accepted, want) in cases {
            let req = ClaimRequirement {
                path: path.to_string(),
                accepted: strings(accepted),
            };
            assert_eq!(claims_satisfied(&[req], &raw), *want, "{path} {accepted:?}");
        }
    }

    #[test]
    fn bound_token() {
        let hash = [7u8; 32];
        let good = URL_SAFE_NO_PAD.encode(hash);
        assert!(bound_token_ok(Some(&good), Some(&hash)));
        assert!(!bound_token_ok(Some(&good), Some(&[8u8; 32])));
        assert!(!bound_token_ok(None, Some(&hash)));
        assert!(!bound_token_ok(Some(&good), None));
        // Padded or standard-alphabet encodings are not the RFC 8705 form.
        let padded = base64::engine::general_purpose::URL_SAFE.encode(hash);
        assert!(!bound_token_ok(Some(&padded), Some(&hash)));
        assert!(!bound_token_ok(Some(""), Some(&hash)));
    }

    #[test]
    fn compile_errors() {
        let cfg = RequireConfig {
            spiffe_ids: strings(&["spiffe://ok/x", "http://x", "spiffe://a b", "spiffe:///x"]),
            spiffe_id_prefixes: strings(&["ns/x"]),
            trust_domains: strings(&["cluster.local", "spiffe://cluster.local", ""]),
            scopes: strings(&["ok", "two words"]),
            claims: [
                ("a..b".to_string(), strings(&["x"])),
                ("role".to_string(), vec![]),
                ("ok".to_string(), strings(&["y"])),
            ]
            .into_iter()
            .collect(),
            ..RequireConfig::default()
        };
        let mut errors = Vec::new();
        let r = Requirements::compile(&cfg, "rules[2].require", &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text.iter()
                .map(|t| t.split(':').next().unwrap())
                .collect::<Vec<_>>(),
            [
                "rules[2].require.spiffe_ids[1]",
                "rules[2].require.spiffe_ids[2]",
                "rules[2].require.spiffe_ids[3]",
                "rules[2].require.spiffe_id_prefixes[0]",
                "rules[2].require.trust_domains[1]",
                "rules[2].require.trust_domains[2]",
                "rules[2].require.scopes[1]",
                "rules[2].require.claims.a..b",
                "rules[2].require.claims.role",
            ],
            "{text:?}"
        );
        assert_eq!(text[0], "rules[2].require.spiffe_ids[1]: not a SPIFFE ID");
        assert_eq!(r.claims.len(), 1);
    }
}
