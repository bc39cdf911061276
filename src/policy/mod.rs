//! Per-route rules: the first rule that matches a request says what it requires.
//!
//! `matcher` decides which requests a rule applies to; `require` holds the checks of what the
//! caller must prove. [`Policy::new`] validates the whole rule list and reports every problem.

mod matcher;
mod require;

use std::collections::HashMap;

use crate::check::Request;
use crate::config::{Action, RequireConfig, RuleConfig, RuleMode};
use crate::identity::PeerIdentity;
use crate::token::verify::VerifiedToken;

use matcher::Matcher;
use require::Requirements;

/// A requirement of the matched rule that the caller did not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    /// The rule needs a transport identity and there is none.
    #[error("peer identity required")]
    PeerRequired,
    /// The peer's SPIFFE ID is not among `spiffe_ids` / `spiffe_id_prefixes`.
    #[error("SPIFFE ID not allowed")]
    SpiffeIdNotAllowed,
    /// The peer's trust domain is not among the rule's `trust_domains`.
    #[error("trust domain not allowed")]
    TrustDomainNotAllowed,
    /// The rule needs a token and there is none.
    #[error("token required")]
    TokenRequired,
    /// A required scope is missing.
    #[error("insufficient scope")]
    InsufficientScope,
    /// A claim is absent or has a value outside the accepted set.
    #[error("claim not accepted")]
    ClaimMismatch,
    /// `bound_token`: the token carries no `cnf.x5t#S256` (a confirmation that does not match the
    /// client certificate is refused earlier, as an invalid token, on every rule).
    #[error("token not bound to the client certificate")]
    BoundTokenMismatch,
}

impl Unmet {
    /// Fixed label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Unmet::PeerRequired => "peer_required",
            Unmet::SpiffeIdNotAllowed => "spiffe_id_not_allowed",
            Unmet::TrustDomainNotAllowed => "trust_domain_not_allowed",
            Unmet::TokenRequired => "token_missing",
            Unmet::InsufficientScope => "insufficient_scope",
            Unmet::ClaimMismatch => "claim_mismatch",
            Unmet::BoundTokenMismatch => "bound_token_mismatch",
        }
    }
}

/// A rule set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Config path, e.g. `rules[2].require.spiffe_ids[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
        PolicyError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: String,
    matcher: Matcher,
    allow_anonymous: bool,
    require: Requirements,
    dry_run: bool,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `allow_anonymous`.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// `mode: dry_run`: the rule is evaluated and reported but never decides.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether a valid token is needed.
    pub fn requires_token(&self) -> bool {
        let r = &self.require;
        !self.allow_anonymous && (r.token || r.has_token_conditions() || r.bound_token)
    }

    /// Whether a transport identity is needed.
    pub fn requires_peer(&self) -> bool {
        let r = &self.require;
        !self.allow_anonymous && (r.peer || r.has_identity_conditions() || r.bound_token)
    }

    /// Whether this rule applies to `req` (host, path, method and context conditions).
    pub fn matches(&self, req: &Request) -> bool {
        self.matcher.matches(req)
    }

    /// Checks the rule's requirements against what the caller proved. Token and peer (if present)
    /// are already verified.
    ///
    /// Order: peer presence, token presence, identity checks, token checks. An anonymous rule
    /// accepts everything.
    pub fn evaluate(
        &self,
        peer: Option<&PeerIdentity>,
        token: Option<&VerifiedToken>,
    ) -> Result<(), Unmet> {
        if self.allow_anonymous {
            return Ok(());
        }
        if self.requires_peer() && peer.is_none() {
            return Err(Unmet::PeerRequired);
        }
        if self.requires_token() && token.is_none() {
            return Err(Unmet::TokenRequired);
        }
        let r = &self.require;
        let spiffe_id = peer.and_then(|p| p.spiffe_id.as_ref());

        if !r.spiffe_ids.is_empty() || !r.spiffe_id_prefixes.is_empty() {
            // A peer without a SPIFFE ID cannot be on an allow-list of SPIFFE IDs.
            let ok = spiffe_id.is_some_and(|id| {
                require::spiffe_id_allowed(id.as_str(), &r.spiffe_ids, &r.spiffe_id_prefixes)
            });
            if !ok {
                return Err(Unmet::SpiffeIdNotAllowed);
            }
        }
        if !r.trust_domains.is_empty() {
            let ok = spiffe_id.is_some_and(|id| {
                require::trust_domain_allowed(id.trust_domain(), &r.trust_domains)
            });
            if !ok {
                return Err(Unmet::TrustDomainNotAllowed);
            }
        }

        // Token conditions are only reached with a token: each one makes `requires_token` true.
        if !r.scopes.is_empty() {
            let ok = token.is_some_and(|t| require::scopes_satisfied(&r.scopes, t.scopes()));
            if !ok {
                return Err(Unmet::InsufficientScope);
            }
        }
        if !r.claims.is_empty() {
            let ok = token
                .and_then(VerifiedToken::claims)
                .is_some_and(|c| require::claims_satisfied(&r.claims, c));
            if !ok {
                return Err(Unmet::ClaimMismatch);
            }
        }
        if r.bound_token {
            let ok = require::bound_token_ok(
                token.and_then(VerifiedToken::cnf_x5t_s256),
                peer.and_then(|p| p.cert_sha256.as_ref()),
            );
            if !ok {
                return Err(Unmet::BoundTokenMismatch);
            }
        }
        Ok(())
    }
}

/// RFC 8705 §3: whether a token's certificate confirmation holds for `peer`. `None` when the token
/// carries no `cnf.x5t#S256`; `Some(false)` when it does and the peer has no certificate thumbprint
/// or a different one.
pub fn certificate_binding(token: &VerifiedToken, peer: Option<&PeerIdentity>) -> Option<bool> {
    let cnf = token.cnf_x5t_s256()?;
    Some(require::bound_token_ok(
        Some(cnf),
        peer.and_then(|p| p.cert_sha256.as_ref()),
    ))
}

/// The compiled rule list.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    default_action: Action,
}

impl Policy {
    /// Compiles and validates the rules (every problem reported with its path).
    pub fn new(rules: &[RuleConfig], default_action: Action) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();

        for (i, cfg) in rules.iter().enumerate() {
            let base = format!("rules[{i}]");
            if cfg.name.trim().is_empty() {
                errors.push(PolicyError::new(
                    format!("{base}.name"),
                    "must not be empty",
                ));
            } else if let Some(first) = seen.get(cfg.name.as_str()) {
                errors.push(PolicyError::new(
                    format!("{base}.name"),
                    format!("duplicate rule name {:?} (also rules[{first}])", cfg.name),
                ));
            } else {
                seen.insert(&cfg.name, i);
            }

            let matcher = Matcher::compile(&cfg.matcher, &format!("{base}.match"), &mut errors);
            if cfg.allow_anonymous && !require_is_default(&cfg.require) {
                errors.push(PolicyError::new(
                    format!("{base}.require"),
                    "allow_anonymous excludes require",
                ));
            }
            let require =
                Requirements::compile(&cfg.require, &format!("{base}.require"), &mut errors);
            let dry_run = cfg.mode == RuleMode::DryRun;
            if dry_run && cfg.allow_anonymous {
                // An anonymous rule never denies: in dry run it would report nothing, ever.
                errors.push(PolicyError::new(
                    format!("{base}.mode"),
                    "dry_run has no effect on an allow_anonymous rule (it never denies)",
                ));
            }

            compiled.push(Rule {
                name: cfg.name.clone(),
                matcher,
                allow_anonymous: cfg.allow_anonymous,
                require,
                dry_run,
            });
        }

        if errors.is_empty() {
            Ok(Policy {
                rules: compiled,
                default_action,
            })
        } else {
            Err(errors)
        }
    }

    /// The rule that decides `req`: the first matching rule that is not `mode: dry_run`.
    pub fn select(&self, req: &Request) -> Option<&Rule> {
        self.rules.iter().find(|r| !r.dry_run && r.matches(req))
    }

    /// The deciding rule (as [`Policy::select`]) and, in order, the `mode: dry_run` rules that
    /// match `req` before it: those are evaluated and reported, then passed over.
    pub fn select_with_dry_runs<'a>(&'a self, req: &Request) -> (Option<&'a Rule>, Vec<&'a Rule>) {
        let mut dry_runs = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(req)) {
            if rule.dry_run {
                dry_runs.push(rule);
            } else {
                return (Some(rule), dry_runs);
            }
        }
        (None, dry_runs)
    }

    /// What happens when no rule matches.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// Every rule, in order (for `--explain` and `check-config`).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// True when `require` is exactly the default block (what an anonymous rule may carry).
fn require_is_default(r: &RequireConfig) -> bool {
    let d = RequireConfig::default();
    r.token == d.token
        && r.peer == d.peer
        && r.spiffe_ids.is_empty()
        && r.spiffe_id_prefixes.is_empty()
        && r.trust_domains.is_empty()
        && r.scopes.is_empty()
        && r.claims.is_empty()
        && r.bound_token == d.bound_token
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::config::MatchConfig;
    use crate::identity::Source;
    use crate::token::Algorithm;
    use crate::token::verify::{Claims, KeptClaims};

    fn rule(name: &str, prefix: Option<&str>, require: RequireConfig) -> RuleConfig {
        RuleConfig {
            name: name.to_string(),
            matcher: MatchConfig {
                path_prefix: prefix.map(str::to_string),
                ..MatchConfig::default()
            },
            allow_anonymous: false,
            require,
            mode: RuleMode::Enforce,
        }
    }

    fn compile_one(require: RequireConfig) -> Rule {
        let policy = Policy::new(&[rule("r", None, require)], Action::Deny).unwrap();
        policy.rules()[0].clone()
    }

    fn token(scopes: &[&str], raw: Value, cnf: Option<String>) -> VerifiedToken {
        let raw: Map<String, Value> = raw.as_object().cloned().unwrap_or_default();
        let claims = Claims {
            iss: "https://issuer".into(),
            sub: Some("alice".into()),
            aud: vec!["api".into()],
            exp: 2_000_000_000,
            nbf: None,
            iat: None,
            jti: None,
            parent_jti: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            cnf_x5t_s256: cnf,
            raw,
        };
        VerifiedToken::new(
            0,
            Algorithm::RS256,
            claims,
            &Default::default(),
            &KeptClaims::All,
        )
    }

    /// A peer without a SPIFFE ID (`SpiffeId` cannot be built until identity lands).
    fn peer(cert: Option<[u8; 32]>) -> PeerIdentity {
        PeerIdentity {
            spiffe_id: None,
            source: Source::Certificate,
            cert_sha256: cert,
            dns_sans: vec![],
            subject: Some("CN=client".into()),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            Unmet::PeerRequired,
            Unmet::SpiffeIdNotAllowed,
            Unmet::TrustDomainNotAllowed,
            Unmet::TokenRequired,
            Unmet::InsufficientScope,
            Unmet::ClaimMismatch,
            Unmet::BoundTokenMismatch,
        ];
        let set: std::collections::HashSet<_> = all.iter().map(Unmet::reason).collect();
        assert_eq!(set.len(), all.len());
    }

    #[test]
    fn requires_flags() {
        let none = RequireConfig {
            token: false,
            ..RequireConfig::default()
        };
        let cases: &[(RequireConfig, bool, bool)] = &[
            (RequireConfig::default(), true, false),
            (none.clone(), false, false),
            (
                RequireConfig {
                    peer: true,
                    ..none.clone()
                },
                false,
                true,
            ),
            (
                RequireConfig {
                    scopes: strings(&["a"]),
                    ..none.clone()
                },
                true,
                false,
            ),
            (
                RequireConfig {
                    claims: BTreeMap::from([("r".to_string(), strings(&["x"]))]),
                    ..none.clone()
                },
                true,
                false,
            ),
            (
                RequireConfig {
                    bound_token: true,
                    ..none.clone()
                },
                true,
                true,
            ),
            (
                RequireConfig {
                    spiffe_ids: strings(&["spiffe://td/a"]),
                    ..none.clone()
                },
                false,
                true,
            ),
            (
                RequireConfig {
                    spiffe_id_prefixes: strings(&["spiffe://td/"]),
                    ..none.clone()
                },
                false,
                true,
            ),
            (
                RequireConfig {
                    trust_domains: strings(&["td"]),
                    ..none.clone()
                },
                false,
                true,
            ),
        ];
        for (i, (req, want_token, want_peer)) in cases.iter().enumerate() {
            let r = compile_one(req.clone());
            assert_eq!(r.requires_token(), *want_token, "case {i} token");
            assert_eq!(r.requires_peer(), *want_peer, "case {i} peer");
            assert!(!r.allow_anonymous());
        }

        let mut anon = rule("anon", Some("/healthz"), RequireConfig::default());
        anon.allow_anonymous = true;
        let p = Policy::new(&[anon], Action::Deny).unwrap();
        let r = &p.rules()[0];
        assert!(r.allow_anonymous());
        assert!(!r.requires_token());
        assert!(!r.requires_peer());
        assert_eq!(r.evaluate(None, None), Ok(()));
    }

    #[test]
    fn evaluate_every_unmet() {
        let hash = [9u8; 32];
        let thumb = URL_SAFE_NO_PAD.encode(hash);
        let tok = token(
            &["read"],
            json!({"role": "dev", "groups": ["a", "b"]}),
            Some(thumb.clone()),
        );
        let p = peer(Some(hash));

        // PeerRequired comes before TokenRequired.
        let r = compile_one(RequireConfig {
            peer: true,
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, None), Err(Unmet::PeerRequired));
        assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
        assert_eq!(r.evaluate(Some(&p), Some(&tok)), Ok(()));

        // Token only.
        let r = compile_one(RequireConfig::default());
        assert_eq!(r.evaluate(None, None), Err(Unmet::TokenRequired));
        assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));

        // Nothing required.
        let r = compile_one(RequireConfig {
            token: false,
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, None), Ok(()));

        // SPIFFE allow-list: a peer without a SPIFFE ID fails.
        let r = compile_one(RequireConfig {
            spiffe_ids: strings(&["spiffe://cluster.local/ns/a/sa/b"]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::PeerRequired));
        assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
        assert_eq!(
            r.evaluate(Some(&p), Some(&tok)),
            Err(Unmet::SpiffeIdNotAllowed)
        );
        let r = compile_one(RequireConfig {
            spiffe_id_prefixes: strings(&["spiffe://cluster.local/ns/a"]),
            ..RequireConfig::default()
        });
        assert_eq!(
            r.evaluate(Some(&p), Some(&tok)),
            Err(Unmet::SpiffeIdNotAllowed)
        );

        // Trust domains.
        let r = compile_one(RequireConfig {
            trust_domains: strings(&["cluster.local"]),
            ..RequireConfig::default()
        });
        assert_eq!(
            r.evaluate(Some(&p), Some(&tok)),
            Err(Unmet::TrustDomainNotAllowed)
        );

        // Identity checks come before token checks.
        let r = compile_one(RequireConfig {
            spiffe_ids: strings(&["spiffe://cluster.local/x"]),
            scopes: strings(&["admin"]),
            ..RequireConfig::default()
        });
        assert_eq!(
            r.evaluate(Some(&p), Some(&tok)),
            Err(Unmet::SpiffeIdNotAllowed)
        );

        // Scopes.
        let r = compile_one(RequireConfig {
            scopes: strings(&["read", "admin"]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));
        let r = compile_one(RequireConfig {
            scopes: strings(&["read"]),
            token: false,
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, None), Err(Unmet::TokenRequired));
        assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));

        // Claims.
        let claims = |path: &str, vals: &[&str]| RequireConfig {
            claims: BTreeMap::from([(path.to_string(), strings(vals))]),
            ..RequireConfig::default()
        };
        assert_eq!(
            compile_one(claims("role", &["dev"])).evaluate(None, Some(&tok)),
            Ok(())
        );
        assert_eq!(
            compile_one(claims("groups", &["b"])).evaluate(None, Some(&tok)),
            Ok(())
        );
        assert_eq!(
            compile_one(claims("role", &["admin"])).evaluate(None, Some(&tok)),
            Err(Unmet::ClaimMismatch)
        );
        assert_eq!(
            compile_one(claims("absent", &["x"])).evaluate(None, Some(&tok)),
            Err(Unmet::ClaimMismatch)
        );
        // Scopes are checked before claims.
        let r = compile_one(RequireConfig {
            scopes: strings(&["admin"]),
            claims: BTreeMap::from([("absent".to_string(), strings(&["x"]))]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));

        // Bound token.
        let r = compile_one(RequireConfig {
            bound_token: true,
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::PeerRequired));
        assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
        assert_eq!(r.evaluate(Some(&p), Some(&tok)), Ok(()));
        let other_peer = peer(Some([1u8; 32]));
        assert_eq!(
            r.evaluate(Some(&other_peer), Some(&tok)),
            Err(Unmet::BoundTokenMismatch)
        );
        let certless = peer(None);
        assert_eq!(
            r.evaluate(Some(&certless), Some(&tok)),
            Err(Unmet::BoundTokenMismatch)
        );
        let unbound = token(&["read"], json!({}), None);
        assert_eq!(
            r.evaluate(Some(&p), Some(&unbound)),
            Err(Unmet::BoundTokenMismatch)
        );
    }

    #[test]
    fn select_first_match_and_default() {
        let mut health = rule("health", Some("/healthz"), RequireConfig::default());
        health.allow_anonymous = true;
        let mut admin = rule("admin", Some("/admin"), RequireConfig::default());
        admin.matcher.methods = strings(&["post", "DELETE"]);
        let api = rule("api", Some("/api"), RequireConfig::default());
        let policy = Policy::new(&[health, admin, api], Action::Allow).unwrap();
        assert_eq!(policy.default_action(), Action::Allow);

        let req = |method: &str, path: &str| Request {
            method: method.into(),
            host: "h".into(),
            path: path.into(),
            ..Request::default()
        };
        let pick = |r: Request| policy.select(&r).map(|r| r.name().to_string());
        assert_eq!(pick(req("GET", "/healthz")).as_deref(), Some("health"));
        assert_eq!(pick(req("POST", "/admin/x")).as_deref(), Some("admin"));
        assert_eq!(pick(req("GET", "/admin/x")), None);
        assert_eq!(pick(req("GET", "/api")).as_deref(), Some("api"));
        assert_eq!(pick(req("GET", "/apix")), None);
        assert_eq!(pick(req("GET", "/")), None);

        let empty = Policy::new(&[], Action::Deny).unwrap();
        assert!(empty.select(&req("GET", "/")).is_none());
        assert_eq!(empty.default_action(), Action::Deny);
    }

    #[test]
    fn new_collects_every_error() {
        let mut r0 = rule("", Some("/a"), RequireConfig::default());
        r0.matcher.methods = strings(&["GETT"]);
        let mut r1 = rule("dup", Some("/b"), RequireConfig::default());
        r1.matcher.path_exact = Some("/b".into());
        let r2 = rule(
            "dup",
            Some("nope"),
            RequireConfig {
                spiffe_ids: strings(&["cluster.local/ns/x"]),
                ..RequireConfig::default()
            },
        );
        let mut r3 = rule(
            "anon",
            None,
            RequireConfig {
                scopes: strings(&["a"]),
                ..RequireConfig::default()
            },
        );
        r3.allow_anonymous = true;
        let mut r4 = rule(
            "anon2",
            None,
            RequireConfig {
                token: false,
                ..RequireConfig::default()
            },
        );
        r4.allow_anonymous = true;

        let errors = Policy::new(&[r0, r1, r2, r3, r4], Action::Deny).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "rules[0].name: must not be empty",
                "rules[0].match.methods[0]: unknown HTTP method \"GETT\"",
                "rules[1].match: path_prefix and path_exact are exclusive",
                "rules[2].name: duplicate rule name \"dup\" (also rules[1])",
                "rules[2].match.path_prefix: must start with /",
                "rules[2].require.spiffe_ids[0]: not a SPIFFE ID",
                "rules[3].require: allow_anonymous excludes require",
                "rules[4].require: allow_anonymous excludes require",
            ]
        );
    }

    /// `tests/vectors/`, in the repository (provenance and licences in its README).
    fn vectors_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
    }

    /// Envoy jwt_authn's NestedGoodToken / GoodTokenWithSpaces payloads drive the claim and scope
    /// checks (payloads decoded without verification: only the claim shapes matter here).
    #[test]
    fn envoy_vector_claims() {
        let path = vectors_dir().join("envoy_jwt_authn/test_common_tokens.json");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        let payload = |name: &str| -> Map<String, Value> {
            let case = cases.iter().find(|c| c["name"] == name).unwrap();
            let tok = case["token"].as_str().unwrap();
            let body = tok.split('.').nth(1).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
        };

        let nested = payload("NestedGoodToken");
        let tok = token(&[], Value::Object(nested), None);
        let table: &[(&str, &[&str], bool)] = &[
            ("nested.key-1", &["value1"], true),
            ("nested.nested-2.key-2", &["value2"], true),
            ("nested.nested-2.key-3", &["true"], true),
            ("nested.nested-2.key-4", &["9999"], true),
            ("nested.nested-2.key-5", &["str2"], true),
            ("nested.nested-2.key-5", &["str3"], false),
            ("nested.nested-2", &["value2"], false),
            ("nested.key-2", &["value2"], false),
            ("sub", &["test@example.com"], true),
        ];
        for (path, vals, want) in table {
            let r = compile_one(RequireConfig {
                claims: BTreeMap::from([(path.to_string(), strings(vals))]),
                ..RequireConfig::default()
            });
            let got = r.evaluate(None, Some(&tok));
            assert_eq!(got.is_ok(), *want, "{path} {vals:?}: {got:?}");
        }

        let spaces = payload("GoodTokenWithSpaces");
        let scope = spaces["scope"].as_str().unwrap();
        let scopes: Vec<&str> = scope.split(' ').collect();
        let tok = token(&scopes, Value::Object(spaces.clone()), None);
        let r = compile_one(RequireConfig {
            scopes: strings(&["read", "write"]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));
        let r = compile_one(RequireConfig {
            scopes: strings(&["admin"]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));
        let r = compile_one(RequireConfig {
            claims: BTreeMap::from([("test_num".to_string(), strings(&["1337"]))]),
            ..RequireConfig::default()
        });
        assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));
    }

    #[test]
    fn certificate_binding_is_checked_whenever_the_token_has_one() {
        let hash = [7u8; 32];
        let cnf = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, hash);
        let bound = token(&[], serde_json::json!({}), Some(cnf));
        let unbound = token(&[], serde_json::json!({}), None);
        assert_eq!(
            certificate_binding(&bound, Some(&peer(Some(hash)))),
            Some(true)
        );
        assert_eq!(
            certificate_binding(&bound, Some(&peer(Some([8u8; 32])))),
            Some(false)
        );
        assert_eq!(certificate_binding(&bound, Some(&peer(None))), Some(false));
        assert_eq!(certificate_binding(&bound, None), Some(false));
        assert_eq!(certificate_binding(&unbound, Some(&peer(Some(hash)))), None);
        assert_eq!(certificate_binding(&unbound, None), None);
    }

    #[test]
    fn dry_run_rules_are_passed_over_by_select_and_listed_before_the_deciding_rule() {
        let mut shadow = rule("orders-v2", Some("/orders"), RequireConfig::default());
        shadow.mode = RuleMode::DryRun;
        let mut shadow2 = rule("all-v2", Some("/"), RequireConfig::default());
        shadow2.mode = RuleMode::DryRun;
        let orders = rule("orders", Some("/orders"), RequireConfig::default());
        let policy = Policy::new(&[shadow, shadow2, orders], Action::Deny).unwrap();
        assert!(policy.rules()[0].dry_run() && !policy.rules()[2].dry_run());
        let req = |path: &str| Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        };
        let names = |(rule, dry): (Option<&Rule>, Vec<&Rule>)| {
            (
                rule.map(|r| r.name().to_string()),
                dry.iter().map(|r| r.name().to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            policy.select(&req("/orders/1")).map(Rule::name),
            Some("orders")
        );
        assert_eq!(
            names(policy.select_with_dry_runs(&req("/orders/1"))),
            (
                Some("orders".into()),
                vec!["orders-v2".into(), "all-v2".into()]
            )
        );
        // Only dry-run rules match: nothing decides (the default action does).
        assert_eq!(policy.select(&req("/other")).map(Rule::name), None);
        assert_eq!(
            names(policy.select_with_dry_runs(&req("/other"))),
            (None, vec!["all-v2".into()])
        );
    }

    #[test]
    fn dry_run_on_an_anonymous_rule_is_refused() {
        let mut r = rule("open", Some("/"), RequireConfig::default());
        r.allow_anonymous = true;
        r.mode = RuleMode::DryRun;
        let errors = Policy::new(&[r], Action::Deny).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "rules[0].mode: dry_run has no effect on an allow_anonymous rule (it never denies)"
        );
    }

    #[test]
    fn mode_and_context_parse_and_unknown_values_are_refused() {
        let ok: Vec<RuleConfig> = serde_saphyr::from_str(
            "- name: a\n  mode: dry_run\n  match: { context: { route: orders } }\n",
        )
        .unwrap();
        assert_eq!(ok[0].mode, RuleMode::DryRun);
        assert_eq!(ok[0].matcher.context["route"], "orders");
        let default: Vec<RuleConfig> = serde_saphyr::from_str("- name: a\n").unwrap();
        assert_eq!(default[0].mode, RuleMode::Enforce);
        for bad in [
            "- name: a\n  mode: shadow\n",
            "- name: a\n  match: { context: { route: [a, b] } }\n",
            "- name: a\n  match: { contexts: { route: a } }\n",
        ] {
            assert!(
                serde_saphyr::from_str::<Vec<RuleConfig>>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
