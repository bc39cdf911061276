//! Fetching a JWKS or discovery document: the HTTP client (rustls, bounded redirects), size and
//! time limits, and readable TLS errors.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use reqwest::redirect;
use tokio::io::AsyncReadExt;
use url::Url;

use mesh_authz_core::config::{JwksConfig, ProviderConfig, parse_http_url};

use super::{JwksError, MAX_DOCUMENT_BYTES, MAX_REDIRECTS};

/// Validates an OIDC discovery document (§4.3: `issuer` must equal the configured issuer) and
/// returns its `jwks_uri`. An `https` discovery endpoint may not point to a plain `http` JWKS.
pub(super) fn parse_discovery(
    doc: &[u8],
    issuer: &str,
    discovery_url: &Url,
) -> Result<Url, JwksError> {
    let value: serde_json::Value = serde_json::from_slice(doc)
        .map_err(|_| JwksError::Discovery("not valid JSON".to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| JwksError::Discovery("not a JSON object".to_string()))?;
    match obj.get("issuer") {
        Some(serde_json::Value::String(s)) if s == issuer => {}
        Some(serde_json::Value::String(found)) => {
            // Both values, quoted (the found one cut short: it comes from the network).
            let found: String = found.chars().take(200).collect();
            return Err(JwksError::Discovery(format!(
                "issuer {found:?} does not equal the configured issuer {issuer:?} \
                 (compared exactly, trailing slash included)"
            )));
        }
        _ => {
            return Err(JwksError::Discovery(
                "issuer is missing or not a string".to_string(),
            ));
        }
    }
    let jwks_uri = match obj.get("jwks_uri") {
        Some(serde_json::Value::String(s)) => s,
        _ => {
            return Err(JwksError::Discovery(
                "jwks_uri is missing or not a string".to_string(),
            ));
        }
    };
    let url =
        parse_http_url(jwks_uri).map_err(|e| JwksError::Discovery(format!("jwks_uri: {e}")))?;
    if discovery_url.scheme() == "https" && url.scheme() != "https" {
        return Err(JwksError::Discovery(
            "jwks_uri downgrades https to http".to_string(),
        ));
    }
    Ok(url)
}

/// The HTTP client for one provider: rustls, the system roots plus `ca_file`, a bounded redirect
/// policy that never leaves http(s) or downgrades https, per-request timeouts and a User-Agent.
pub(super) fn build_client(
    provider: &ProviderConfig,
    cfg: &JwksConfig,
) -> Result<reqwest::Client, JwksError> {
    let policy = redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let scheme = attempt.url().scheme();
        if !matches!(scheme, "http" | "https") {
            return attempt.error("redirect to a non-http(s) scheme refused");
        }
        let was_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if was_https && scheme != "https" {
            return attempt.error("redirect from https to http refused");
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mesh-authz/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .timeout(cfg.fetch_timeout)
        .connect_timeout(cfg.fetch_timeout)
        .tls_backend_rustls();
    if let Some(ca_file) = &cfg.ca_file {
        builder = builder.tls_certs_merge(load_ca_bundle(provider, ca_file)?);
    }
    builder
        .build()
        .map_err(|e| config_err(provider, &format!("HTTP client: {}", error_chain(&e))))
}

/// Reads a PEM CA bundle; at least one certificate is required.
fn load_ca_bundle(
    provider: &ProviderConfig,
    path: &Path,
) -> Result<Vec<reqwest::Certificate>, JwksError> {
    let pem = std::fs::read(path)
        .map_err(|e| config_err(provider, &format!("jwks.ca_file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
        config_err(
            provider,
            &format!(
                "jwks.ca_file {}: not a PEM certificate bundle",
                path.display()
            ),
        )
    })?;
    if certs.is_empty() {
        return Err(config_err(
            provider,
            &format!("jwks.ca_file {}: no certificate found", path.display()),
        ));
    }
    Ok(certs)
}

/// GET with a whole-request deadline, 2xx required, and the body capped at
/// [`MAX_DOCUMENT_BYTES`] (checked against `Content-Length` and while streaming).
pub(super) async fn get_limited(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    accept: &str,
) -> Result<Vec<u8>, JwksError> {
    let shown = display_url(url);
    let fetch = async {
        let mut resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| JwksError::Fetch(format!("{shown}: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(JwksError::Fetch(format!("{shown}: HTTP status {status}")));
        }
        if resp
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(JwksError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| JwksError::Fetch(format!("{shown}: {}", error_chain(&e))))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    // reqwest's timeout covers the body too; this outer deadline is the guarantee.
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| {
            Err(JwksError::Fetch(format!(
                "{shown}: timed out after {timeout:?}"
            )))
        })
}

/// Reads a local JWKS file, refusing more than [`MAX_DOCUMENT_BYTES`].
pub(super) async fn read_file_limited(path: &Path) -> Result<Vec<u8>, JwksError> {
    let io_err = |e: std::io::Error| JwksError::Fetch(format!("{}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let meta = file.metadata().await.map_err(io_err)?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(JwksError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    // The file may grow between stat and read (or be a special file): cap the read too.
    let mut body = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(io_err)?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(JwksError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(body)
}

/// A URL for messages: scheme, host, port and path only (no credentials, query or fragment).
pub(super) fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// A reqwest error with its causes (TLS and I/O details live in the source chain), without the URL.
/// A TLS certificate problem is also said in words first ([`tls_words`]).
pub(super) fn error_chain(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_redirect() {
        "redirect refused".to_string()
    } else if e.is_connect() {
        "connect error".to_string()
    } else {
        "request error".to_string()
    };
    let mut words = None;
    let mut source = e.source();
    while let Some(cause) = source {
        if words.is_none() {
            words = rustls_error(cause).and_then(tls_words);
        }
        let text = cause.to_string();
        // hyper and reqwest repeat causes at several levels; keep each once.
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    match words {
        Some(words) => format!("TLS: {words} ({msg})"),
        None => msg,
    }
}

/// The rustls error in `cause`, directly or inside (possibly nested) `io::Error`s, whose
/// `source()` skips the error they wrap, so a walk of the chain alone never meets it.
fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = cause.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let mut io = cause.downcast_ref::<std::io::Error>()?;
    // hyper-util wraps tokio-rustls's io::Error in another one; a few levels at most.
    for _ in 0..4 {
        let inner = io.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
    None
}

/// What a TLS failure to a JWKS or discovery endpoint means, in words, with the usual fix.
fn tls_words(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let words = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (unknown issuer); \
                 set jwks.ca_file to the CA that issued it"
            }
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host of the URL"
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the server's certificate is not for TLS server authentication (extended key usage)"
            }
            C::BadSignature => "the server's certificate has a bad signature",
            C::Revoked => "the server's certificate is revoked",
            C::BadEncoding => "the server's certificate is not valid DER",
            C::UnhandledCriticalExtension => {
                "the server's certificate has an unsupported critical extension"
            }
            C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                "the server presented a CA certificate as its own certificate; a server needs a \
                 leaf certificate issued by a CA (trust that CA with jwks.ca_file)"
            }
            _ => "the server's certificate was refused",
        },
        rustls::Error::NoCertificatesPresented => "the server presented no certificate",
        rustls::Error::AlertReceived(alert) => {
            return Some(format!(
                "the server refused the TLS handshake (alert {alert:?})"
            ));
        }
        rustls::Error::PeerIncompatible(_) => {
            "the server supports no TLS version or cipher suite in common with mesh-authz"
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => {
            "the server does not speak TLS correctly (is it plain HTTP?)"
        }
        _ => return None,
    };
    Some(words.to_string())
}

fn config_err(provider: &ProviderConfig, msg: &str) -> JwksError {
    JwksError::Config(format!("provider {:?}: {msg}", provider.name))
}
