//! Per-route rules: the first rule that matches a request says what it requires.

use crate::check::Request;
use crate::config::{Action, RuleConfig};
use crate::identity::PeerIdentity;
use crate::token::verify::VerifiedToken;

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
    /// `bound_token`: no `cnf.x5t#S256`, no client certificate, or they differ.
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

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    _private: (),
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        todo!()
    }
    /// `allow_anonymous`.
    pub fn allow_anonymous(&self) -> bool {
        todo!()
    }
    /// Whether a valid token is needed.
    pub fn requires_token(&self) -> bool {
        todo!()
    }
    /// Whether a transport identity is needed.
    pub fn requires_peer(&self) -> bool {
        todo!()
    }
    /// Checks the rule's requirements against what the caller proved. Token and peer (if present)
    /// are already verified.
    pub fn evaluate(
        &self,
        peer: Option<&PeerIdentity>,
        token: Option<&VerifiedToken>,
    ) -> Result<(), Unmet> {
        let _ = (peer, token);
        todo!()
    }
}

/// The compiled rule list.
#[derive(Debug, Clone)]
pub struct Policy {
    _private: (),
}

impl Policy {
    /// Compiles and validates the rules (every problem reported with its path).
    pub fn new(rules: &[RuleConfig], default_action: Action) -> Result<Policy, Vec<PolicyError>> {
        let _ = (rules, default_action);
        todo!()
    }
    /// The first rule matching `req`, if any.
    pub fn select(&self, req: &Request) -> Option<&Rule> {
        let _ = req;
        todo!()
    }
    /// What happens when no rule matches.
    pub fn default_action(&self) -> Action {
        todo!()
    }
}
