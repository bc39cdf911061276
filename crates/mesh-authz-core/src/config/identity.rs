//! `identity`: where the caller's transport identity is read from.

use serde::{Deserialize, Serialize};

/// A source of the caller's transport identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// `attributes.source.principal`.
    Principal,
    /// `attributes.source.certificate` (`include_peer_certificate`).
    Certificate,
    /// `x-forwarded-client-cert`, only with `trust_xfcc: true`.
    Xfcc,
}

/// Transport identity settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Sources in order of preference.
    #[serde(default = "default_sources")]
    pub sources: Vec<IdentitySource>,
    /// Read `x-forwarded-client-cert` (only behind a proxy that sanitizes it).
    #[serde(default)]
    pub trust_xfcc: bool,
    /// Accepted SPIFFE trust domains; empty accepts any. When set, a peer without a SPIFFE ID in
    /// one of them is foreign.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// Header that carries the caller's SPIFFE ID upstream.
    #[serde(default = "default_spiffe_id_header")]
    pub spiffe_id_header: String,
    /// What the proxy in front writes into `x-forwarded-client-cert` (read with `trust_xfcc`).
    #[serde(default)]
    pub xfcc: XfccConfig,
}

/// How the proxy in front of mesh-authz forwards client certificate details
/// (`forward_client_cert_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccProxyMode {
    /// `SANITIZE_SET`: the header holds exactly one element, the one the proxy wrote.
    #[default]
    SanitizeSet,
    /// `APPEND_FORWARD` (Istio sidecars): the proxy appends its element to what the client sent.
    AppendForward,
}

/// The XFCC serialisation the proxy emits (`set_current_client_cert_details.format`, Envoy 1.40).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccFormat {
    /// Envoy's classic `Key=value;…,…` text; URI and DNS values are written unescaped.
    #[default]
    Text,
    /// Envoy's `JSON` format: a JSON array of objects, every value escaped.
    Json,
}

/// `identity.xfcc`: what the trusted proxy writes, so that nothing else is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XfccConfig {
    /// `sanitize_set` (one element) or `append_forward` (several; needs `require_cert`).
    #[serde(default)]
    pub proxy_mode: XfccProxyMode,
    /// The proxy writes `Cert` (`set_current_client_cert_details.cert: true`): identity and
    /// thumbprint come from the certificate, every other field is checked against it.
    #[serde(default)]
    pub require_cert: bool,
    /// `text` or `json`, as the proxy's `set_current_client_cert_details.format`.
    #[serde(default)]
    pub format: XfccFormat,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            trust_xfcc: false,
            trust_domains: Vec::new(),
            spiffe_id_header: default_spiffe_id_header(),
            xfcc: XfccConfig::default(),
        }
    }
}

fn default_sources() -> Vec<IdentitySource> {
    vec![IdentitySource::Principal, IdentitySource::Certificate]
}
fn default_spiffe_id_header() -> String {
    "x-auth-spiffe-id".to_string()
}
