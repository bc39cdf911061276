//! Per-route rules: the first rule that matches a request says what it requires.
//!
//! `matcher` decides which requests a rule applies to; `require` holds the checks of what the
//! caller must prove. [`Policy::new`] validates the whole rule list and reports every problem.

mod matcher;
mod require;

use std::collections::HashMap;

use crate::config::{Action, RequireConfig, RuleConfig, RuleMode};
use crate::identity::PeerIdentity;
use crate::request::Request;
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
    pub fn matches<H>(&self, req: &Request<H>) -> bool {
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
    pub fn select<H>(&self, req: &Request<H>) -> Option<&Rule> {
        self.rules.iter().find(|r| !r.dry_run && r.matches(req))
    }

    /// The deciding rule (as [`Policy::select`]) and, in order, the `mode: dry_run` rules that
    /// match `req` before it: those are evaluated and reported, then passed over.
    pub fn select_with_dry_runs<'a, H>(
        &'a self,
        req: &Request<H>,
    ) -> (Option<&'a Rule>, Vec<&'a Rule>) {
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
mod tests;
