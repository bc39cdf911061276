//! Compact JWS (RFC 7515 §7.1) parsing and signature verification against a [`KeySet`].
//!
//! Only the key set decides which key verifies: `jku`, `x5u`, `jwk`, `x5c` and `x5t` headers are
//! never read. Any `crit` header is refused, since no extension is understood.

use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::MapAccess;
use serde_json::Value;

use super::Algorithm;
use super::json::{Members, Skip, Text, read_object};
use super::jwk::{KeyLookup, KeySet, VerifyingKey};
use super::verify::TokenError;

/// By default, at most this many keys are tried for a token without `kid` (bounds the work per
/// token); a provider's `jwks.max_keys_without_kid` overrides it.
pub const MAX_KEYS_TRIED: usize = crate::config::DEFAULT_MAX_KEYS_WITHOUT_KID;

/// The protected header members mesh-authz uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`, parsed exactly (`none`, HMAC and casing variants are refused).
    pub alg: Algorithm,
    /// `kid`, when present.
    pub kid: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct CompactJws<'a> {
    /// The protected header.
    pub header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature (never empty).
    pub signature: Vec<u8>,
}

/// Strict base64url: no padding, no `+`/`/`, canonical trailing bits.
pub(crate) fn b64url_decode(s: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed(what))
}

/// Parses a compact JWS: three strict base64url segments, a header object with a supported `alg`.
pub fn parse(token: &str) -> Result<CompactJws<'_>, TokenError> {
    if !token.is_empty() && !token.contains('.') {
        return Err(TokenError::Opaque);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(if token.split('.').count() == 5 {
            "jwe not accepted"
        } else {
            "not a compact jws"
        }));
    };
    let header_bytes = b64url_decode(h, "header base64")?;
    let header = parse_header(&header_bytes)?;
    let payload = b64url_decode(p, "payload base64")?;
    let signature = b64url_decode(s, "signature base64")?;
    if signature.is_empty() {
        return Err(TokenError::Malformed("empty signature"));
    }
    // h and p are ASCII (they decoded as base64url), so the signing input is exactly token[..h.len()+1+p.len()].
    let signing_input = token
        .as_bytes()
        .get(..h.len() + 1 + p.len())
        .ok_or(TokenError::Malformed("not a compact jws"))?;
    Ok(CompactJws {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// The header members read, as found; checked once the whole header is read.
#[derive(Default)]
struct HeaderMembers<'de> {
    alg: Option<Text<'de>>,
    kid: Option<Text<'de>>,
    crit: Option<Value>,
    b64: Option<Value>,
}

impl<'de> Members<'de> for HeaderMembers<'de> {
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "alg" => self.alg = Some(map.next_value()?),
            "kid" => self.kid = Some(map.next_value()?),
            "crit" => self.crit = Some(map.next_value()?),
            "b64" => self.b64 = Some(map.next_value()?),
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// Parses and checks the protected header: a JSON object with unique members.
fn parse_header(bytes: &[u8]) -> Result<Header, TokenError> {
    let mut h = HeaderMembers::default();
    if !read_object(bytes, &mut h) {
        return Err(TokenError::Malformed("header json"));
    }
    // crit first: an extension we do not understand may change how everything else is read.
    if let Some(crit) = h.crit {
        let names = crit.as_array().ok_or(TokenError::Malformed("crit"))?;
        if names.is_empty() || !names.iter().all(Value::is_string) {
            return Err(TokenError::Malformed("crit"));
        }
        return Err(TokenError::UnsupportedCrit);
    }
    let alg = match h.alg.as_ref().and_then(Text::as_str) {
        Some(a) => Algorithm::from_str(a).map_err(|_| TokenError::UnsupportedAlgorithm)?,
        None => return Err(TokenError::Malformed("alg")),
    };
    let kid = match &h.kid {
        None => None,
        Some(Text::Str(k)) => Some(k.to_string()),
        Some(Text::Other) => return Err(TokenError::Malformed("kid")),
    };
    // RFC 7797 unencoded payloads are not supported (b64 must also be listed in crit, refused above).
    match h.b64 {
        None | Some(Value::Bool(true)) => {}
        Some(_) => return Err(TokenError::Malformed("b64")),
    }
    Ok(Header { alg, kid })
}

/// Why [`verify_signature`] refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The `kid` is not in the set (a caller may refetch keys and retry).
    UnknownKid,
    /// No key fits the token's `alg`.
    NoCompatibleKey,
    /// Keys were tried; none verified the signature.
    BadSignature,
}

impl From<KeyOutcome> for TokenError {
    fn from(o: KeyOutcome) -> Self {
        match o {
            KeyOutcome::UnknownKid => TokenError::UnknownKid,
            KeyOutcome::NoCompatibleKey => TokenError::KeyMismatch,
            KeyOutcome::BadSignature => TokenError::BadSignature,
        }
    }
}

/// Verifies the signature with the key chosen by `kid` and `alg` (or, without `kid`, each key
/// that accepts `alg`, at most [`MAX_KEYS_TRIED`]).
pub fn verify_signature(jws: &CompactJws<'_>, keys: &KeySet) -> Result<(), KeyOutcome> {
    verify_signature_with(jws, keys, MAX_KEYS_TRIED).map(|_| ())
}

/// Like [`verify_signature`], trying at most `max_without_kid` keys (at least one) for a token
/// without `kid`; returns the key that verified.
pub fn verify_signature_with<'k>(
    jws: &CompactJws<'_>,
    keys: &'k KeySet,
    max_without_kid: usize,
) -> Result<&'k Arc<VerifyingKey>, KeyOutcome> {
    match keys.find(jws.header.kid.as_deref(), jws.header.alg) {
        KeyLookup::UnknownKid => Err(KeyOutcome::UnknownKid),
        KeyLookup::NoCompatibleKey => Err(KeyOutcome::NoCompatibleKey),
        KeyLookup::Found(candidates) => candidates
            .into_iter()
            .take(max_without_kid.max(1))
            .find(|k| {
                k.verify(jws.header.alg, jws.signing_input, &jws.signature)
                    .is_ok()
            })
            .ok_or(KeyOutcome::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(header: &str) -> String {
        format!("{}.{}.{}", enc(header), enc("{}"), enc("sig"))
    }

    #[test]
    fn header_table() {
        use TokenError::*;
        let cases: &[(&str, Result<Header, TokenError>)] = &[
            (
                r#"{"alg":"RS256"}"#,
                Ok(Header {
                    alg: Algorithm::RS256,
                    kid: None,
                }),
            ),
            (
                r#"{"alg":"ES256","kid":"k","typ":"JWT","jku":"https://evil","x5u":"https://evil","jwk":{}}"#,
                Ok(Header {
                    alg: Algorithm::ES256,
                    kid: Some("k".into()),
                }),
            ),
            (
                r#"{"alg":"RS256","b64":true}"#,
                Ok(Header {
                    alg: Algorithm::RS256,
                    kid: None,
                }),
            ),
            (r#"{"alg":"none"}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":"None"}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":"HS256"}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":"rs256"}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":"ES512"}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":""}"#, Err(UnsupportedAlgorithm)),
            (r#"{"alg":256}"#, Err(Malformed("alg"))),
            (r#"{"typ":"JWT"}"#, Err(Malformed("alg"))),
            (r#"{"alg":"RS256","kid":1}"#, Err(Malformed("kid"))),
            (
                r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
                Err(UnsupportedCrit),
            ),
            (
                r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#,
                Err(UnsupportedCrit),
            ),
            (r#"{"alg":"RS256","crit":[]}"#, Err(Malformed("crit"))),
            (r#"{"alg":"RS256","crit":"b64"}"#, Err(Malformed("crit"))),
            (r#"{"alg":"RS256","b64":false}"#, Err(Malformed("b64"))),
            (
                r#"{"alg":"RS256","alg":"none"}"#,
                Err(Malformed("header json")),
            ),
            (r#"["alg","RS256"]"#, Err(Malformed("header json"))),
            (r#"{"alg":"RS256"} x"#, Err(Malformed("header json"))),
        ];
        for (h, want) in cases {
            let got = parse(&tok(h)).map(|j| j.header);
            assert_eq!(&got, want, "{h}");
        }
    }

    #[test]
    fn structure_table() {
        let h = enc(r#"{"alg":"RS256"}"#);
        let p = enc("{}");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "not a compact jws"),
            ("a.b".into(), "not a compact jws"),
            (".".into(), "not a compact jws"),
            ("a.b.c.d".into(), "not a compact jws"),
            ("a.b.c.d.e".into(), "jwe not accepted"),
            (format!("{h}.{p}."), "empty signature"),
            (format!("{h}=.{p}.c2ln"), "header base64"),
            (format!("{h}.{p}=.c2ln"), "payload base64"),
            (format!("{h}.{p}.c2ln="), "signature base64"),
            (format!("{h}.{p}.c2l+"), "signature base64"),
            (format!("{h}.{p}.c2l/"), "signature base64"),
            // "c2lo" decodes; "c2lp" differs only in non-canonical trailing bits of a 2-char tail.
            (format!("{h}.{p}.YR"), "signature base64"),
            (format!("{h} .{p}.c2ln"), "header base64"),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t).unwrap_err(), TokenError::Malformed(want), "{t}");
        }
        for opaque in ["opaque", "2YotnFZFEjr1zCsicMWpAA", "a+b/c=="] {
            assert_eq!(parse(opaque).unwrap_err(), TokenError::Opaque, "{opaque}");
        }
        let ok = format!("{h}.{p}.YQ");
        let j = parse(&ok).unwrap();
        assert_eq!(j.signing_input, format!("{h}.{p}").as_bytes());
        assert_eq!(j.signature, b"a");
    }
}
