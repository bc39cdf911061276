//! Bearer token extraction from the `authorization` header (RFC 6750 §2.1).

use crate::request::Headers;

/// The header the token is read from.
pub const AUTHORIZATION: &str = crate::request::AUTHORIZATION_HEADER;

/// Why the `authorization` header could not be read as one Bearer token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Not `Bearer <token68>`, or another scheme.
    #[error("authorization header is not a single Bearer token")]
    Malformed,
    /// More than one token (Envoy joins repeated headers with `,`).
    #[error("more than one bearer token")]
    Multiple,
}

/// The auth scheme, matched case-insensitively (RFC 7235 §2.1).
const SCHEME: &str = "bearer";

/// Returns the Bearer token, `None` when there is no `authorization` header.
///
/// Grammar (RFC 6750 §2.1, RFC 7235 token68): `Bearer` (any case), one or more spaces, then
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. Anything else is refused,
/// including a second credential joined in by a proxy (`Bearer a,Bearer b`).
pub fn bearer<H: Headers + ?Sized>(headers: &H) -> Result<Option<&str>, ExtractError> {
    bearer_known(headers, |_| false)
}

/// [`bearer`], with `known` naming tokens this host verified before: those passed the whole
/// grammar then, so the byte-by-byte scans of a kilobyte token are skipped for them. Returns
/// exactly what [`bearer`] returns, for every input.
pub fn bearer_known<H: Headers + ?Sized>(
    headers: &H,
    known: impl FnOnce(&str) -> bool,
) -> Result<Option<&str>, ExtractError> {
    let Some(value) = headers.header(AUTHORIZATION) else {
        return Ok(None);
    };
    if let Some(token) = after_scheme(value)
        && known(token)
    {
        return Ok(Some(token));
    }
    // Envoy joins repeated headers with ","; a comma is never part of a token68.
    if value.contains(',') {
        return Err(if looks_like_many(value) {
            ExtractError::Multiple
        } else {
            ExtractError::Malformed
        });
    }
    let (Some(scheme), Some(rest)) = (value.get(..SCHEME.len()), value.get(SCHEME.len()..)) else {
        return Err(ExtractError::Malformed);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(ExtractError::Malformed);
    }
    let token = rest.trim_start_matches(' ');
    // At least one space must separate scheme and token.
    if token.len() == rest.len() || token.is_empty() {
        return Err(ExtractError::Malformed);
    }
    if !is_token68(token) {
        return Err(ExtractError::Malformed);
    }
    Ok(Some(token))
}

/// The part after `Bearer` and its spaces, when the value starts that way.
fn after_scheme(value: &str) -> Option<&str> {
    let scheme = value.get(..SCHEME.len())?;
    let rest = value.get(SCHEME.len()..)?;
    let token = rest.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case(SCHEME) && token.len() < rest.len() && !token.is_empty())
        .then_some(token)
}

/// True when a comma-joined value holds two or more credentials (each element non-empty).
fn looks_like_many(value: &str) -> bool {
    value.split(',').filter(|p| !p.trim().is_empty()).count() >= 2
}

/// RFC 7235 `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    // Every check reads its whole token here (often a kilobyte): the test is branch-free per
    // byte and folded over blocks, so it compiles to vector compares instead of a branch a byte.
    !body.is_empty()
        && body
            .as_bytes()
            .chunks(64)
            .all(|block| block.iter().fold(true, |ok, &b| ok & token68_char(b)))
}

/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, without branches.
#[inline(always)]
fn token68_char(b: u8) -> bool {
    // `| 0x20` folds `A-Z` onto `a-z` and moves no other byte into that range.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn headers(v: Option<&str>) -> HashMap<String, String> {
        let mut h = HashMap::new();
        h.insert("x-other".to_string(), "Bearer nope".to_string());
        if let Some(v) = v {
            h.insert("authorization".to_string(), v.to_string());
        }
        h
    }

    #[test]
    fn the_branch_free_character_test_is_the_grammar() {
        for b in 0..=255u8 {
            let grammar =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(token68_char(b), grammar, "byte {b:#04x}");
        }
        let long = "a".repeat(200);
        assert!(is_token68(&long));
        for at in [0, 63, 64, 65, 199] {
            let mut bad = long.clone().into_bytes();
            bad[at] = b'!';
            assert!(!is_token68(std::str::from_utf8(&bad).unwrap()), "{at}");
        }
    }

    #[test]
    fn table() {
        use ExtractError::*;
        type Case<'a> = (Option<&'a str>, Result<Option<&'a str>, ExtractError>);
        let cases: &[Case] = &[
            (None, Ok(None)),
            (Some("Bearer abc.def.ghi"), Ok(Some("abc.def.ghi"))),
            (Some("bearer abc"), Ok(Some("abc"))),
            (Some("BEARER abc"), Ok(Some("abc"))),
            (Some("BeArEr abc"), Ok(Some("abc"))),
            (Some("Bearer    abc"), Ok(Some("abc"))),
            (Some("Bearer a-b_c~d+e/f.g"), Ok(Some("a-b_c~d+e/f.g"))),
            (Some("Bearer abc=="), Ok(Some("abc=="))),
            (Some(""), Err(Malformed)),
            (Some("Bearer"), Err(Malformed)),
            (Some("Bearer "), Err(Malformed)),
            (Some("Bearer    "), Err(Malformed)),
            (Some("Bearerabc"), Err(Malformed)),
            (Some("Bearer\tabc"), Err(Malformed)),
            (Some(" Bearer abc"), Err(Malformed)),
            (Some("Basic dXNlcjpwYXNz"), Err(Malformed)),
            (Some("Token abc"), Err(Malformed)),
            (Some("Bearer abc def"), Err(Malformed)),
            (Some("Bearer abc "), Err(Malformed)),
            (Some("Bearer abc\n"), Err(Malformed)),
            (Some("Bearer a=b"), Err(Malformed)),
            (Some("Bearer ==="), Err(Malformed)),
            (Some("Bearer abc!"), Err(Malformed)),
            (Some("Bearer \"abc\""), Err(Malformed)),
            (Some("Bearer é"), Err(Malformed)),
            (Some("Bearer a,Bearer b"), Err(Multiple)),
            (Some("Bearer a, Bearer b"), Err(Multiple)),
            (Some("Bearer a,"), Err(Malformed)),
            (Some("Bearer a,b"), Err(Multiple)),
            (Some(","), Err(Malformed)),
        ];
        for (input, want) in cases {
            let h = headers(*input);
            assert_eq!(&bearer(&h), want, "input {input:?}");
        }
    }
}
