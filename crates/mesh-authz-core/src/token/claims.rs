//! Type-strict claim parsing and the time, lifetime, audience and required-claim checks.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, MapAccess};
use serde_json::{Map, Value};

use super::json::{Members, Skip, Text, Texts, read_object};
use super::verified::KeptClaims;
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

/// Parses the JWT claims set, keeping every claim in `raw`: see [`parse_claims_keeping`].
pub fn parse_claims(payload: &[u8]) -> Result<Claims, TokenError> {
    parse_claims_keeping(payload, &KeptClaims::All)
}

/// Parses the JWT claims set: a JSON object with unique members and strictly typed registered
/// claims; `iss` and `exp` are required. Only the claims `keep` names (registered ones included)
/// are built into `raw`; the rest are checked as JSON and skipped, in the same single pass.
pub fn parse_claims_keeping(payload: &[u8], keep: &KeptClaims) -> Result<Claims, TokenError> {
    let mut m = ClaimMembers {
        keep,
        raw: Map::new(),
        iss: None,
        sub: None,
        jti: None,
        parent_jti: None,
        aud: None,
        exp: None,
        nbf: None,
        iat: None,
        scope: None,
        scp: None,
        cnf: None,
    };
    if !read_object(payload, &mut m) {
        return Err(TokenError::Malformed("claims json"));
    }
    // The checks run in a fixed order whatever the members' order, so a token with several faults
    // always gets the same reason.
    let iss = opt_string(m.iss, "iss")?.ok_or(TokenError::Malformed("iss"))?;
    let sub = opt_string(m.sub, "sub")?;
    let jti = opt_string(m.jti, "jti")?;
    let parent_jti = opt_string(m.parent_jti, "parent_jti")?;
    let aud = match m.aud {
        None => Vec::new(),
        Some(Texts::One(s)) => vec![s.into_owned()],
        Some(Texts::Many(items)) => items.into_iter().map(Cow::into_owned).collect(),
        Some(Texts::Other) => return Err(TokenError::Malformed("aud")),
    };
    // Types first, presence last: a wrongly typed claim is reported as such.
    let exp = numeric_date(m.exp.as_ref(), "exp")?;
    let nbf = numeric_date(m.nbf.as_ref(), "nbf")?;
    let iat = numeric_date(m.iat.as_ref(), "iat")?;

    let mut scopes: Vec<String> = Vec::new();
    match &m.scope {
        None => {}
        Some(Text::Str(s)) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
        Some(Text::Other) => return Err(TokenError::Malformed("scope")),
    }
    match m.scp {
        None => {}
        Some(Texts::One(s)) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
        Some(Texts::Many(items)) => scopes.extend(items.into_iter().map(Cow::into_owned)),
        Some(Texts::Other) => return Err(TokenError::Malformed("scp")),
    }
    let cnf_x5t_s256 = match &m.cnf {
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
        raw: m.raw,
    })
}

/// The registered claims as found, typed later; plus the kept claims as JSON.
struct ClaimMembers<'k, 'de> {
    keep: &'k KeptClaims,
    raw: Map<String, Value>,
    iss: Option<Text<'de>>,
    sub: Option<Text<'de>>,
    jti: Option<Text<'de>>,
    parent_jti: Option<Text<'de>>,
    aud: Option<Texts<'de>>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    scope: Option<Text<'de>>,
    scp: Option<Texts<'de>>,
    cnf: Option<Value>,
}

impl<'de> Members<'de> for ClaimMembers<'_, 'de> {
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        if self.keep.keeps(name) {
            // A kept claim is read once, as JSON, and its registered form is taken from that.
            let v: Value = map.next_value()?;
            self.registered(name, &v).map_err(de::Error::custom)?;
            self.raw.insert(name.to_string(), v);
            return Ok(());
        }
        match name {
            "iss" => self.iss = Some(map.next_value()?),
            "sub" => self.sub = Some(map.next_value()?),
            "jti" => self.jti = Some(map.next_value()?),
            "parent_jti" => self.parent_jti = Some(map.next_value()?),
            "aud" => self.aud = Some(map.next_value()?),
            "exp" => self.exp = Some(map.next_value()?),
            "nbf" => self.nbf = Some(map.next_value()?),
            "iat" => self.iat = Some(map.next_value()?),
            "scope" => self.scope = Some(map.next_value()?),
            "scp" => self.scp = Some(map.next_value()?),
            "cnf" => self.cnf = Some(map.next_value()?),
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

impl<'de> ClaimMembers<'_, 'de> {
    /// Sets the registered claim `name` (if it is one) from its JSON value `v`, exactly as
    /// reading it from the input would have.
    fn registered(&mut self, name: &str, v: &Value) -> Result<(), serde_json::Error> {
        // From an owned copy, the strings arrive owned: nothing borrows from `v`.
        let text = || Text::deserialize(v.clone());
        let texts = || Texts::deserialize(v.clone());
        match name {
            "iss" => self.iss = Some(text()?),
            "sub" => self.sub = Some(text()?),
            "jti" => self.jti = Some(text()?),
            "parent_jti" => self.parent_jti = Some(text()?),
            "aud" => self.aud = Some(texts()?),
            "exp" => self.exp = Some(v.clone()),
            "nbf" => self.nbf = Some(v.clone()),
            "iat" => self.iat = Some(v.clone()),
            "scope" => self.scope = Some(text()?),
            "scp" => self.scp = Some(texts()?),
            "cnf" => self.cnf = Some(v.clone()),
            _ => {}
        }
        Ok(())
    }
}

/// An optional string claim; any other JSON type (a numeric `jti`, `null`, …) is malformed.
fn opt_string(v: Option<Text<'_>>, name: &'static str) -> Result<Option<String>, TokenError> {
    match v {
        None => Ok(None),
        Some(Text::Str(s)) => Ok(Some(s.into_owned())),
        Some(Text::Other) => Err(TokenError::Malformed(name)),
    }
}

/// An optional NumericDate (RFC 7519 §2): a non-negative JSON number. Fractions are truncated. A
/// value beyond `i64` (`1e20`, `2^64`, `2.001e+206`) is the far future, read as `i64::MAX`: `exp`
/// then never passes (and `max_token_lifetime` refuses it), `nbf`/`iat` are never reached.
/// Strings, `null`, negatives and non-finite values are malformed. (A number beyond `f64`, such
/// as `1e400`, is refused by the JSON reader, as the whole claims set.)
fn numeric_date(v: Option<&Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    let Some(v) = v else {
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
        return Ok(Some(i64::MAX));
    }
    match n.as_f64() {
        // `as` saturates: 2^63 and above become i64::MAX.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as i64)),
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

/// The token's `aud` must contain one of `accepted`, unless `any` (the provider's explicit
/// `allow_any_audience`). An empty `accepted` without `any` accepts nothing: fail closed.
pub fn check_audience(claims: &Claims, accepted: &[String], any: bool) -> Result<(), TokenError> {
    if any || claims.aud.iter().any(|a| accepted.contains(a)) {
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
mod tests;
