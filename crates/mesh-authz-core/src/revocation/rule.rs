//! The one revocation rule: which facts revoke a token, in which order. Every store gathers the
//! facts its own way (a map, a Redis round trip, a cache) and asks this.

use super::{RevokedBy, Status, TokenRef};

/// The revocation rule, given the facts: own `jti`, then parent, then subject cut-off (a token
/// without `iat` counts as issued at -inf, so any cut-off of its subject revokes it).
pub fn evaluate(
    token: TokenRef<'_>,
    jti_revoked: bool,
    parent_revoked: bool,
    cutoff: Option<i64>,
) -> Status {
    if jti_revoked {
        return Status::Revoked(RevokedBy::Jti);
    }
    if parent_revoked {
        return Status::Revoked(RevokedBy::Parent);
    }
    if let Some(cut) = cutoff
        && token.sub.is_some()
        && token.iat.is_none_or(|iat| iat <= cut)
    {
        return Status::Revoked(RevokedBy::Subject);
    }
    Status::Active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_rules() {
        let t = |iat| TokenRef {
            jti: Some("j"),
            sub: Some("s"),
            iat,
            parent_jti: Some("p"),
        };
        assert_eq!(evaluate(t(Some(10)), false, false, None), Status::Active);
        assert_eq!(
            evaluate(t(Some(10)), true, true, Some(20)),
            Status::Revoked(RevokedBy::Jti)
        );
        assert_eq!(
            evaluate(t(Some(10)), false, true, Some(20)),
            Status::Revoked(RevokedBy::Parent)
        );
        assert_eq!(
            evaluate(t(Some(10)), false, false, Some(10)),
            Status::Revoked(RevokedBy::Subject)
        );
        assert_eq!(
            evaluate(t(Some(11)), false, false, Some(10)),
            Status::Active
        );
        assert_eq!(
            evaluate(t(None), false, false, Some(i64::MIN)),
            Status::Revoked(RevokedBy::Subject),
            "no iat: any cut-off applies"
        );
    }
}
