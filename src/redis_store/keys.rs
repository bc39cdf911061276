//! Key names, hash slots and reply parsing of the Redis data model.

use redis::Value;

use mesh_authz_core::revocation::RevocationEntry;

/// Seconds a `jti` key outlives the token's `exp` (the largest clock skew a provider may allow).
pub const JTI_GRACE_SECS: i64 = 300;
/// Shortest TTL given to a `jti` key, even for a token that has already expired.
pub const MIN_JTI_TTL_SECS: i64 = 60;
/// Longest TTL given to a `jti` key (100 years; Redis refuses expiries that overflow).
pub const MAX_JTI_TTL_SECS: i64 = 100 * 365 * 24 * 3600;

/// TTL of a `jti` key: to the token's expiry plus the grace, never below the minimum.
pub fn jti_ttl(expires_at: i64, now: i64) -> i64 {
    expires_at
        .saturating_add(JTI_GRACE_SECS)
        .saturating_sub(now)
        .clamp(MIN_JTI_TTL_SECS, MAX_JTI_TTL_SECS)
}

/// The `{hash tag}` of a key, if it has one (the bytes between the first `{` and the next `}`,
/// when not empty).
pub(super) fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = key.get(open + 1..)?;
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| rest.get(..close)).flatten()
}

/// Redis Cluster hash slot of a key (CRC16/XMODEM of the key or its `{hash tag}`, mod 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % 16384
}

pub(super) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

pub(super) fn as_exists(v: &Value) -> Option<bool> {
    match v {
        Value::Int(n) => Some(*n > 0),
        Value::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// `None`: malformed. `Some(None)`: no cut-off.
pub(super) fn as_cutoff(v: &Value) -> Option<Option<i64>> {
    let text = match v {
        Value::Nil => return Some(None),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        Value::SimpleString(s) => s.as_str(),
        Value::Int(n) => return Some(Some(*n)),
        _ => return None,
    };
    text.trim().parse::<i64>().ok().map(Some)
}

/// A string reply (`None` for nil); `Err` for anything else.
pub(super) fn as_opt_string(v: &Value) -> Result<Option<String>, ()> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        _ => Err(()),
    }
}

pub(super) fn entry_json(entry: &RevocationEntry) -> serde_json::Value {
    match entry {
        RevocationEntry::Jti {
            jti,
            expires_at,
            revoked_at,
        } => {
            serde_json::json!({"kind": "jti", "jti": jti, "expires_at": expires_at, "revoked_at": revoked_at})
        }
        RevocationEntry::Subject {
            sub,
            before,
            revoked_at,
        } => {
            serde_json::json!({"kind": "sub", "sub": sub, "before": before, "revoked_at": revoked_at})
        }
    }
}

pub(super) fn parse_entry(raw: &str) -> Option<RevocationEntry> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let revoked_at = v.get("revoked_at")?.as_i64()?;
    match v.get("kind")?.as_str()? {
        "jti" => Some(RevocationEntry::Jti {
            jti: v.get("jti")?.as_str()?.to_string(),
            expires_at: v.get("expires_at")?.as_i64()?,
            revoked_at,
        }),
        "sub" => Some(RevocationEntry::Subject {
            sub: v.get("sub")?.as_str()?.to_string(),
            before: v.get("before")?.as_i64()?,
            revoked_at,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn ttl_covers_expiry_and_grace() {
        assert_eq!(jti_ttl(1_000, 0), 1_000 + JTI_GRACE_SECS);
        assert_eq!(jti_ttl(0, 1_000_000), MIN_JTI_TTL_SECS);
        assert_eq!(jti_ttl(i64::MAX, 0), MAX_JTI_TTL_SECS);
        assert_eq!(jti_ttl(i64::MIN, i64::MAX), MIN_JTI_TTL_SECS);
    }

    #[test]
    fn replies_parse_fail_closed() {
        assert_eq!(as_exists(&Value::Int(1)), Some(true));
        assert_eq!(as_exists(&Value::Int(0)), Some(false));
        assert_eq!(as_exists(&Value::Nil), None);
        assert_eq!(as_cutoff(&Value::Nil), Some(None));
        assert_eq!(
            as_cutoff(&Value::BulkString(b"42".to_vec())),
            Some(Some(42))
        );
        assert_eq!(as_cutoff(&Value::BulkString(b"soon".to_vec())), None);
        assert_eq!(as_opt_string(&Value::Nil), Ok(None));
        assert_eq!(as_opt_string(&Value::Int(1)), Err(()));
    }

    #[test]
    fn recent_entries_round_trip() {
        let e = RevocationEntry::Subject {
            sub: "alice".into(),
            before: 5,
            revoked_at: 6,
        };
        assert_eq!(parse_entry(&entry_json(&e).to_string()), Some(e));
        assert_eq!(parse_entry("{}"), None);
        assert_eq!(parse_entry("not json"), None);
    }
}
