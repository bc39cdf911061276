//! `x-forwarded-client-cert` parsing (Envoy's grammar).
//!
//! ```text
//! header  = element *("," element)
//! element = pair *(";" pair)
//! pair    = key "=" value
//! value   = quoted / *unquoted-char
//! ```
//!
//! Keys are case-insensitive (`By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`; `By`, `URI`
//! and `DNS` may repeat). This parser is strict where Envoy's output is regular:
//!
//! * no whitespace around separators, no empty element or pair, no trailing separator;
//! * an unquoted value is visible ASCII without `"`, `\`, `=`, `,` or `;` (Envoy quotes any value
//!   that needs them); a quoted value may hold anything but control characters;
//! * inside quotes `\"` is a quote and `\\` a backslash; any other `\x` pair is kept verbatim, so
//!   RFC 4514 DN escapes such as `Acme\, Inc.` pass through unchanged;
//! * unknown keys (syntactically valid) are ignored, for forward compatibility;
//! * `Hash`, `Cert`, `Chain`, `Subject` at most once per element;
//! * at most [`MAX_XFCC_LEN`] bytes and [`MAX_XFCC_ELEMENTS`] elements; linear time.
//!
//! Values are returned as written (after unquoting): `Cert`/`Chain` stay URL-encoded PEM.
//!
//! Identity comes only from the LAST element: under `APPEND_FORWARD` (Istio's sidecar inbound)
//! the proxy in front of us appended it, while earlier elements are whatever the client sent.
//!
//! Envoy writes `URI` and `DNS` values unquoted and unescaped, so a certificate SAN holding `;`
//! adds fields to the element Envoy writes, and one holding `,` splits it in two. The grammar
//! cannot see that; [`crate::identity`] refuses what a split or an injection leaves behind (see
//! [`XfccElement::envoy_order`]). Envoy 1.40's `JSON` format ([`parse_json`]) escapes every value.

/// Longest header accepted, in bytes.
pub const MAX_XFCC_LEN: usize = 64 * 1024;
/// Most elements accepted in one header.
pub const MAX_XFCC_ELEMENTS: usize = 100;

/// The header is malformed or too large. Messages never quote the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// Over [`MAX_XFCC_LEN`] bytes.
    #[error("header longer than {MAX_XFCC_LEN} bytes")]
    TooLong,
    /// Over [`MAX_XFCC_ELEMENTS`] elements.
    #[error("more than {MAX_XFCC_ELEMENTS} elements")]
    TooManyElements,
    /// `,,`, `;;`, a leading or trailing separator.
    #[error("empty element or pair at byte {0}")]
    EmptyPair(usize),
    /// A key without `=`.
    #[error("missing '=' at byte {0}")]
    MissingEquals(usize),
    /// `=value`.
    #[error("empty key at byte {0}")]
    EmptyKey(usize),
    /// A key with characters other than ASCII letters, digits, `-`, `_`.
    #[error("invalid character in key at byte {0}")]
    InvalidKey(usize),
    /// A quoted value without its closing quote.
    #[error("unterminated quoted value")]
    UnterminatedQuote,
    /// Something other than `;`, `,` or the end right after a closing quote.
    #[error("unexpected character after quoted value at byte {0}")]
    AfterQuote(usize),
    /// An unquoted value with a character that needs quoting (or never appears), e.g. whitespace.
    #[error("invalid character in unquoted value at byte {0}")]
    InvalidUnquoted(usize),
    /// A control character anywhere.
    #[error("control character at byte {0}")]
    ControlChar(usize),
    /// `Hash`, `Cert`, `Chain` or `Subject` twice in one element.
    #[error("duplicate {0} in one element")]
    DuplicateKey(&'static str),
    /// The JSON format: not a JSON array of objects with Envoy's keys, or a key given twice.
    #[error("not a JSON array of XFCC objects")]
    Json,
}

/// A key this parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XfccKey {
    /// `By`: the SAN (URI) of the proxy that wrote the element.
    By,
    /// `Hash`: hex SHA-256 of the client certificate's DER.
    Hash,
    /// `Cert`: the client certificate, URL-encoded PEM.
    Cert,
    /// `Chain`: the client certificate chain, URL-encoded PEM.
    Chain,
    /// `Subject`: the client certificate's subject DN.
    Subject,
    /// `URI`: a URI SAN of the client certificate.
    Uri,
    /// `DNS`: a DNS SAN of the client certificate.
    Dns,
}

impl XfccKey {
    /// Lower-case canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            XfccKey::By => "by",
            XfccKey::Hash => "hash",
            XfccKey::Cert => "cert",
            XfccKey::Chain => "chain",
            XfccKey::Subject => "subject",
            XfccKey::Uri => "uri",
            XfccKey::Dns => "dns",
        }
    }

    /// Case-insensitive lookup; `None` for an unknown key.
    pub fn from_name(name: &str) -> Option<XfccKey> {
        [
            XfccKey::By,
            XfccKey::Hash,
            XfccKey::Cert,
            XfccKey::Chain,
            XfccKey::Subject,
            XfccKey::Uri,
            XfccKey::Dns,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

/// One element (one hop's client certificate), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfccElement {
    /// `By` values, in order.
    pub by: Vec<String>,
    /// `Hash` (hex SHA-256 of the DER, not validated here).
    pub hash: Option<String>,
    /// `Cert` (URL-encoded PEM, not decoded here).
    pub cert: Option<String>,
    /// `Chain` (URL-encoded PEM, not decoded here).
    pub chain: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `URI` values, in order (may include an empty one).
    pub uris: Vec<String>,
    /// `DNS` values, in order.
    pub dns: Vec<String>,
    /// The known keys came in the order Envoy writes them (`By`, `Hash`, `Cert`, `Chain`,
    /// `Subject`, `URI`, `DNS`). A SAN that smuggles in `;URI=…` after a `DNS` field, or a
    /// `Subject` after a `URI`, breaks it. Always true for the JSON format.
    pub envoy_order: bool,
    /// Only `Cert`, `Chain` and `Subject` values were quoted, as Envoy writes them. A URI SAN
    /// `"spiffe://…"` (quotes included) would otherwise read as the unquoted ID. Always true for
    /// the JSON format.
    pub envoy_quoting: bool,
}

impl Default for XfccElement {
    /// An element without fields (trivially in Envoy's order).
    fn default() -> Self {
        XfccElement {
            by: Vec::new(),
            hash: None,
            cert: None,
            chain: None,
            subject: None,
            uris: Vec::new(),
            dns: Vec::new(),
            envoy_order: true,
            envoy_quoting: true,
        }
    }
}

/// Envoy's position of a key in an element it writes.
fn envoy_rank(key: XfccKey) -> u8 {
    match key {
        XfccKey::By => 0,
        XfccKey::Hash => 1,
        XfccKey::Cert => 2,
        XfccKey::Chain => 3,
        XfccKey::Subject => 4,
        XfccKey::Uri => 5,
        XfccKey::Dns => 6,
    }
}

impl XfccElement {
    fn from_pairs(pairs: Vec<RawPair>) -> Result<XfccElement, XfccError> {
        let mut el = XfccElement {
            envoy_order: pairs
                .windows(2)
                .all(|w| envoy_rank(w[0].0) <= envoy_rank(w[1].0)),
            // Envoy quotes only Cert, Chain and Subject; a quoted URI means a SAN that began and
            // ended with '"', which the grammar would otherwise unquote into another value.
            envoy_quoting: pairs.iter().all(|(k, _, quoted)| {
                !quoted || matches!(k, XfccKey::Cert | XfccKey::Chain | XfccKey::Subject)
            }),
            ..XfccElement::default()
        };
        for (key, value, _) in pairs {
            let single = match key {
                XfccKey::By => {
                    el.by.push(value);
                    continue;
                }
                XfccKey::Uri => {
                    el.uris.push(value);
                    continue;
                }
                XfccKey::Dns => {
                    el.dns.push(value);
                    continue;
                }
                XfccKey::Hash => &mut el.hash,
                XfccKey::Cert => &mut el.cert,
                XfccKey::Chain => &mut el.chain,
                XfccKey::Subject => &mut el.subject,
            };
            if single.is_some() {
                return Err(XfccError::DuplicateKey(key.as_str()));
            }
            *single = Some(value);
        }
        Ok(el)
    }
}

/// Parses the header into typed elements. An empty header is no elements (treated as absent).
pub fn parse(header: &str) -> Result<Vec<XfccElement>, XfccError> {
    parse_raw(header)?
        .into_iter()
        .map(XfccElement::from_pairs)
        .collect()
}

/// One element of Envoy's JSON format (`set_current_client_cert_details.format: JSON`). Unknown
/// keys and repeated keys are refused: every byte of the header is accounted for.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonElement {
    #[serde(default)]
    by: Vec<String>,
    hash: Option<String>,
    cert: Option<String>,
    #[serde(default)]
    chain: Vec<String>,
    subject: Option<String>,
    #[serde(default)]
    uri: Vec<String>,
    #[serde(default)]
    dns: Vec<String>,
    #[allow(dead_code)]
    issuer: Option<String>,
}

/// Parses Envoy's JSON format: `[{"hash":…,"cert":…,"uri":[…],…}, …]`. `Cert` and `Chain` are
/// plain PEM there. An empty header is no elements; anything but a JSON array of objects with
/// Envoy's keys (each at most once) is an error, including the text format Envoy falls back to
/// when the client's header was not JSON.
pub fn parse_json(header: &str) -> Result<Vec<XfccElement>, XfccError> {
    if header.len() > MAX_XFCC_LEN {
        return Err(XfccError::TooLong);
    }
    if header.is_empty() {
        return Ok(Vec::new());
    }
    // The parse error is not passed on: it could quote the header.
    let elements: Vec<JsonElement> = serde_json::from_str(header).map_err(|_| XfccError::Json)?;
    if elements.len() > MAX_XFCC_ELEMENTS {
        return Err(XfccError::TooManyElements);
    }
    Ok(elements
        .into_iter()
        .map(|e| XfccElement {
            by: e.by,
            hash: e.hash,
            cert: e.cert,
            chain: (!e.chain.is_empty()).then(|| e.chain.concat()),
            subject: e.subject,
            uris: e.uri,
            dns: e.dns,
            envoy_order: true,
            envoy_quoting: true,
        })
        .collect())
}

/// Parses the header and returns its last element (the one the nearest proxy wrote), if any.
pub fn last_element(header: &str) -> Result<Option<XfccElement>, XfccError> {
    Ok(parse(header)?.pop())
}

/// Parses the header into elements of `(key, value)` pairs in header order, unknown keys dropped.
/// Grammar-level only: repeated single-valued keys are not rejected here (see [`parse`]).
pub fn parse_pairs(header: &str) -> Result<Vec<Vec<(XfccKey, String)>>, XfccError> {
    Ok(parse_raw(header)?
        .into_iter()
        .map(|el| el.into_iter().map(|(k, v, _)| (k, v)).collect())
        .collect())
}

/// `(key, value, value was quoted)`.
type RawPair = (XfccKey, String, bool);

fn parse_raw(header: &str) -> Result<Vec<Vec<RawPair>>, XfccError> {
    if header.len() > MAX_XFCC_LEN {
        return Err(XfccError::TooLong);
    }
    let b = header.as_bytes();
    let len = b.len();
    let mut elements = Vec::new();
    if len == 0 {
        return Ok(elements);
    }
    let mut current = Vec::new();
    let mut pos = 0;
    loop {
        // Key.
        let key_start = pos;
        while pos < len && is_key_byte(b, pos) {
            pos += 1;
        }
        let next = b.get(pos).copied();
        if pos == key_start {
            return Err(match next {
                None | Some(b',' | b';') => XfccError::EmptyPair(pos),
                Some(b'=') => XfccError::EmptyKey(pos),
                Some(c) if is_control(c) => XfccError::ControlChar(pos),
                Some(_) => XfccError::InvalidKey(pos),
            });
        }
        match next {
            Some(b'=') => {}
            None | Some(b',' | b';') => return Err(XfccError::MissingEquals(pos)),
            Some(c) if is_control(c) => return Err(XfccError::ControlChar(pos)),
            Some(_) => return Err(XfccError::InvalidKey(pos)),
        }
        let key = header.get(key_start..pos).unwrap_or("");
        pos += 1; // '='

        // Value.
        let quoted = b.get(pos) == Some(&b'"');
        let value = if quoted {
            let (value, end) = quoted_value(b, pos + 1)?;
            pos = end;
            value
        } else {
            let start = pos;
            while let Some(&c) = b.get(pos) {
                match c {
                    b',' | b';' => break,
                    c if is_control(c) => return Err(XfccError::ControlChar(pos)),
                    b'!'..=b'~' if !matches!(c, b'"' | b'\\' | b'=') => pos += 1,
                    _ => return Err(XfccError::InvalidUnquoted(pos)),
                }
            }
            header.get(start..pos).unwrap_or("").to_owned()
        };
        if let Some(k) = XfccKey::from_name(key) {
            current.push((k, value, quoted));
        }

        // Separator.
        match b.get(pos) {
            None => {
                push_element(&mut elements, std::mem::take(&mut current))?;
                return Ok(elements);
            }
            Some(b';') => {}
            Some(b',') => push_element(&mut elements, std::mem::take(&mut current))?,
            Some(_) => return Err(XfccError::AfterQuote(pos)),
        }
        pos += 1;
        if pos == len {
            return Err(XfccError::EmptyPair(pos));
        }
    }
}

fn push_element<T>(elements: &mut Vec<Vec<T>>, element: Vec<T>) -> Result<(), XfccError> {
    if elements.len() >= MAX_XFCC_ELEMENTS {
        return Err(XfccError::TooManyElements);
    }
    elements.push(element);
    Ok(())
}

/// Reads a quoted value starting just after the opening quote; returns it unescaped and the
/// position just after the closing quote.
fn quoted_value(b: &[u8], mut pos: usize) -> Result<(String, usize), XfccError> {
    let mut out = Vec::new();
    loop {
        match b.get(pos).copied() {
            None => return Err(XfccError::UnterminatedQuote),
            Some(b'"') => break,
            Some(b'\\') => match b.get(pos + 1).copied() {
                None => return Err(XfccError::UnterminatedQuote),
                Some(c @ (b'"' | b'\\')) => {
                    out.push(c);
                    pos += 2;
                }
                Some(c) if is_control(c) => return Err(XfccError::ControlChar(pos + 1)),
                // Not an XFCC escape: keep both bytes (e.g. an RFC 4514 `\,` inside a Subject).
                Some(c) => {
                    out.extend_from_slice(&[b'\\', c]);
                    pos += 2;
                }
            },
            Some(c) if is_control(c) => return Err(XfccError::ControlChar(pos)),
            Some(c) => {
                out.push(c);
                pos += 1;
            }
        }
    }
    // Only ASCII bytes were removed from valid UTF-8 input, so this cannot fail; still no panic.
    let value = String::from_utf8(out).map_err(|_| XfccError::InvalidUnquoted(pos))?;
    Ok((value, pos + 1))
}

fn is_key_byte(b: &[u8], pos: usize) -> bool {
    b.get(pos)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

fn is_control(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

#[cfg(test)]
mod tests;
