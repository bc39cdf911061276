//! Type-strict claim parsing and the time, lifetime, audience and required-claim checks.

use serde_json::{Map, Value};

use super::jws::parse_object;
use super::verify::{Claims, TokenError};

/// The time claims, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// `exp`.
    pub exp: i64,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `iat`.
    pub iat: Option<i64>,
}

impl Claims {
    /// `exp`, `nbf` and `iat`.
    pub fn times(&self) -> Times {
        Times {
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
        }
    }
}

/// Parses the JWT claims set: a JSON object with unique members and strictly typed registered
/// claims. `iss` and `exp` are required.
///
/// The payload is parsed once into a map (kept as `raw` for header injection and rules), and the
/// registered claims are read from it; a second, typed parse would cost more than it saves.
pub fn parse_claims(payload: &[u8]) -> Result<Claims, TokenError> {
    let raw = parse_object(payload, "claims json")?;
    let iss = opt_string(&raw, "iss")?.ok_or(TokenError::Malformed("iss"))?;
    let sub = opt_string(&raw, "sub")?;
    let jti = opt_string(&raw, "jti")?;
    let parent_jti = opt_string(&raw, "parent_jti")?;
    let aud = match raw.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::Malformed("aud"))?,
        Some(_) => return Err(TokenError::Malformed("aud")),
    };
    // Types first, presence last: a wrongly typed claim is reported as such.
    let exp = numeric_date(&raw, "exp")?;
    let nbf = numeric_date(&raw, "nbf")?;
    let iat = numeric_date(&raw, "iat")?;

    let mut scopes: Vec<String> = Vec::new();
    match raw.get("scope") {
        None => {}
        Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
        Some(_) => return Err(TokenError::Malformed("scope")),
    }
    match raw.get("scp") {
        None => {}
        Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
        Some(Value::Array(items)) => {
            for v in items {
                scopes.push(v.as_str().ok_or(TokenError::Malformed("scp"))?.to_string());
            }
        }
        Some(_) => return Err(TokenError::Malformed("scp")),
    }
    let cnf_x5t_s256 = match raw.get("cnf") {
        None => None,
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(TokenError::Malformed("cnf")),
        },
        Some(_) => return Err(TokenError::Malformed("cnf")),
    };
    let exp = exp.ok_or(TokenError::MissingClaim)?;
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        jti,
        parent_jti,
        scopes,
        cnf_x5t_s256,
        raw,
    })
}

/// An optional string claim; any other JSON type (a numeric `jti`, `null`, …) is malformed.
fn opt_string(raw: &Map<String, Value>, name: &'static str) -> Result<Option<String>, TokenError> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed(name)),
    }
}

/// An optional NumericDate (RFC 7519 §2): a non-negative JSON number within `i64`. Fractions are
/// truncated. Strings, negatives, non-finite or out-of-range values (e.g. `2.001e+206`) are
/// malformed.
fn numeric_date(raw: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    let Some(v) = raw.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(TokenError::Malformed(name));
    };
    if let Some(i) = n.as_i64() {
        return if i >= 0 {
            Ok(Some(i))
        } else {
            Err(TokenError::Malformed(name))
        };
    }
    if n.is_u64() {
        // Above i64::MAX.
        return Err(TokenError::Malformed(name));
    }
    match n.as_f64() {
        // 2^63 as f64 is exactly representable; anything at or above it is out of range.
        Some(f) if (0.0..9_223_372_036_854_775_808.0).contains(&f) => Ok(Some(f as i64)),
        _ => Err(TokenError::Malformed(name)),
    }
}

/// Time rules, with `now` as an input so every boundary is testable (all in unix seconds):
/// valid while `now < exp + skew`; `nbf` and `iat` may be at most `skew` in the future; with
/// `max_lifetime`, `iat` is required and `exp - iat` may not exceed it.
pub fn check_time(
    claims: Times,
    now: i64,
    skew: i64,
    max_lifetime: Option<i64>,
) -> Result<(), TokenError> {
    // i128: no overflow with exp or nbf near i64::MAX.
    let (now, skew) = (i128::from(now), i128::from(skew));
    if i128::from(claims.exp) + skew <= now {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| i128::from(nbf) > now + skew) {
        return Err(TokenError::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| i128::from(iat) > now + skew) {
        return Err(TokenError::NotYetValid);
    }
    if let Some(max) = max_lifetime {
        let iat = claims.iat.ok_or(TokenError::MissingClaim)?;
        if i128::from(claims.exp) - i128::from(iat) > i128::from(max) {
            return Err(TokenError::LifetimeTooLong);
        }
    }
    Ok(())
}

/// With a non-empty `accepted`, the token's `aud` must contain one of them.
pub fn check_audience(claims: &Claims, accepted: &[String]) -> Result<(), TokenError> {
    if accepted.is_empty() || claims.aud.iter().any(|a| accepted.contains(a)) {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// Every name in `required` must be present and not `null`: a top-level claim of that exact
/// name, or else a dotted path into nested objects (`realm.roles`).
pub fn check_required(claims: &Claims, required: &[String]) -> Result<(), TokenError> {
    for name in required {
        if lookup(&claims.raw, name).is_none_or(Value::is_null) {
            return Err(TokenError::MissingClaim);
        }
    }
    Ok(())
}

/// Finds a claim by dotted path (`realm_access.roles`). A top-level claim whose name is the whole
/// path (a namespaced `https://example.com/roles`) wins; otherwise the path walks nested objects.
pub fn lookup<'a>(raw: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = raw.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = raw.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Result<Claims, TokenError> {
        parse_claims(json.as_bytes())
    }

    #[test]
    fn parse_table() {
        use TokenError::*;
        let cases: &[(&str, Option<TokenError>)] = &[
            (r#"{"iss":"i","exp":10}"#, None),
            (r#"{"iss":"i","exp":10.9}"#, None),
            (r#"{"iss":"i","exp":9223372036854775807}"#, None),
            (r#"{"exp":10}"#, Some(Malformed("iss"))),
            (r#"{"iss":1,"exp":10}"#, Some(Malformed("iss"))),
            (r#"{"iss":"i"}"#, Some(MissingClaim)),
            (r#"{"iss":"i","exp":"10"}"#, Some(Malformed("exp"))),
            (r#"{"iss":"i","exp":null}"#, Some(Malformed("exp"))),
            (r#"{"iss":"i","exp":-1}"#, Some(Malformed("exp"))),
            (r#"{"iss":"i","exp":-0.5}"#, Some(Malformed("exp"))),
            (r#"{"iss":"i","exp":2.001e+206}"#, Some(Malformed("exp"))),
            (
                r#"{"iss":"i","exp":9223372036854775808}"#,
                Some(Malformed("exp")),
            ),
            (r#"{"iss":"i","exp":9.3e18}"#, Some(Malformed("exp"))),
            (r#"{"iss":"i","exp":10,"nbf":"1"}"#, Some(Malformed("nbf"))),
            (r#"{"iss":"i","exp":10,"iat":true}"#, Some(Malformed("iat"))),
            (
                r#"{"iss":"i","exp":10,"jti":12345}"#,
                Some(Malformed("jti")),
            ),
            (
                r#"{"iss":"i","exp":10,"parent_jti":1}"#,
                Some(Malformed("parent_jti")),
            ),
            (r#"{"iss":"i","exp":10,"sub":1}"#, Some(Malformed("sub"))),
            (r#"{"iss":"i","exp":10,"aud":1}"#, Some(Malformed("aud"))),
            (
                r#"{"iss":"i","exp":10,"aud":[1,2]}"#,
                Some(Malformed("aud")),
            ),
            (
                r#"{"iss":"i","exp":10,"scope":["a"]}"#,
                Some(Malformed("scope")),
            ),
            (r#"{"iss":"i","exp":10,"scp":[1]}"#, Some(Malformed("scp"))),
            (r#"{"iss":"i","exp":10,"cnf":"x"}"#, Some(Malformed("cnf"))),
            (
                r#"{"iss":"i","exp":10,"cnf":{"x5t#S256":1}}"#,
                Some(Malformed("cnf")),
            ),
            (
                r#"{"iss":"i","exp":10,"exp":99999999999}"#,
                Some(Malformed("claims json")),
            ),
            (r#"[]"#, Some(Malformed("claims json"))),
            (r#"not json"#, Some(Malformed("claims json"))),
        ];
        for (json, want) in cases {
            assert_eq!(claims(json).err(), *want, "{json}");
        }
    }

    #[test]
    fn parse_values() {
        let c = claims(
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10.7,"nbf":1,"iat":2,"jti":"j",
                "parent_jti":"p","scope":"read  write","scp":["admin"],"cnf":{"x5t#S256":"t"},"x":{"y":1}}"#,
        )
        .unwrap();
        assert_eq!(c.iss, "i");
        assert_eq!(c.sub.as_deref(), Some("s"));
        assert_eq!(c.aud, ["a", "b"]);
        assert_eq!((c.exp, c.nbf, c.iat), (10, Some(1), Some(2)));
        assert_eq!(c.jti.as_deref(), Some("j"));
        assert_eq!(c.parent_jti.as_deref(), Some("p"));
        assert_eq!(c.scopes, ["read", "write", "admin"]);
        assert_eq!(c.cnf_x5t_s256.as_deref(), Some("t"));
        assert_eq!(lookup(&c.raw, "x.y"), Some(&Value::from(1)));
        assert!(check_required(&c, &["x.y".into(), "jti".into()]).is_ok());
        assert_eq!(
            check_required(&c, &["x.z".into()]),
            Err(TokenError::MissingClaim)
        );
        assert!(check_audience(&c, &[]).is_ok());
        assert!(check_audience(&c, &["b".into()]).is_ok());
        assert_eq!(
            check_audience(&c, &["c".into()]),
            Err(TokenError::WrongAudience)
        );
        let single = claims(r#"{"iss":"i","exp":1,"aud":"a"}"#).unwrap();
        assert_eq!(single.aud, ["a"]);
        let none = claims(r#"{"iss":"i","exp":1}"#).unwrap();
        assert_eq!(
            check_audience(&none, &["a".into()]),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn time_boundaries() {
        use TokenError::*;
        let c = |exp: i64, nbf: Option<i64>, iat: Option<i64>| {
            let mut c = claims(r#"{"iss":"i","exp":0}"#).unwrap();
            (c.exp, c.nbf, c.iat) = (exp, nbf, iat);
            c.times()
        };
        let skew = 30;
        // exp: valid while now < exp + skew.
        assert_eq!(check_time(c(1000, None, None), 1029, skew, None), Ok(()));
        assert_eq!(
            check_time(c(1000, None, None), 1030, skew, None),
            Err(Expired)
        );
        assert_eq!(check_time(c(1000, None, None), 999, 0, None), Ok(()));
        assert_eq!(check_time(c(1000, None, None), 1000, 0, None), Err(Expired));
        // nbf: valid from nbf - skew.
        assert_eq!(
            check_time(c(5000, Some(1000), None), 970, skew, None),
            Ok(())
        );
        assert_eq!(
            check_time(c(5000, Some(1000), None), 969, skew, None),
            Err(NotYetValid)
        );
        // iat: at most skew in the future.
        assert_eq!(
            check_time(c(5000, None, Some(1000)), 970, skew, None),
            Ok(())
        );
        assert_eq!(
            check_time(c(5000, None, Some(1000)), 969, skew, None),
            Err(NotYetValid)
        );
        // lifetime.
        assert_eq!(
            check_time(c(1600, None, Some(1000)), 1000, skew, Some(600)),
            Ok(())
        );
        assert_eq!(
            check_time(c(1601, None, Some(1000)), 1000, skew, Some(600)),
            Err(LifetimeTooLong)
        );
        assert_eq!(
            check_time(c(1600, None, None), 1000, skew, Some(600)),
            Err(MissingClaim)
        );
        // Extremes do not overflow.
        assert_eq!(
            check_time(c(i64::MAX, Some(i64::MAX), None), i64::MAX, i64::MAX, None),
            Ok(())
        );
        assert_eq!(
            check_time(c(5, Some(i64::MAX), None), 0, skew, None),
            Err(NotYetValid)
        );
    }
}
