//! The one rule for where keys and revocations come from: a provider's JWKS source and the Redis
//! endpoints, checked here once and handed to the server already typed (see
//! `compile::Compiled`), so the component that fetches cannot disagree with validation.

use std::path::PathBuf;

use url::Url;

use super::{JwksConfig, RedisConfig, redact_uri};

/// The OIDC discovery document's path under the issuer (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where one provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file, re-read on every refresh.
    File(PathBuf),
    /// A fixed JWKS URL.
    Uri(Url),
    /// `jwks_uri` found through OIDC discovery at `discovery_url`; the document's `issuer` must
    /// equal `issuer` exactly.
    Discovery {
        /// `{issuer}/.well-known/openid-configuration`.
        discovery_url: Url,
        /// The configured issuer.
        issuer: String,
    },
}

/// A problem with a source, relative to the section it was read from (`""` for the section
/// itself, else a key such as `uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// The key under the section, or `""`.
    pub key: &'static str,
    /// What is wrong; never quotes a credential.
    pub message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> SourceProblem {
    SourceProblem {
        key,
        message: message.into(),
    }
}

/// Parses an absolute `http`/`https` URL with a host. The message shows the URL redacted: it may
/// carry credentials in its userinfo or query.
pub fn parse_http_url(s: &str) -> Result<Url, String> {
    match Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(u)
        }
        Ok(_) => Err(format!("{:?} is not an http(s) URL", redact_uri(s))),
        Err(e) => Err(format!("not an http(s) URL: {e}")),
    }
}

impl JwksConfig {
    /// The source this section names: exactly one of `uri`, `discovery` (from `issuer`), `file`.
    pub fn source(&self, issuer: &str) -> Result<JwksSource, Vec<SourceProblem>> {
        let chosen = usize::from(self.uri.is_some())
            + usize::from(self.discovery)
            + usize::from(self.file.is_some());
        if chosen == 0 {
            return Err(vec![problem("", "one of uri, discovery, file is required")]);
        }
        if chosen > 1 {
            return Err(vec![problem(
                "",
                "only one of uri, discovery, file may be set",
            )]);
        }
        if let Some(file) = &self.file {
            if self.ca_file.is_some() {
                return Err(vec![problem("ca_file", "applies only to uri or discovery")]);
            }
            return Ok(JwksSource::File(file.clone()));
        }
        if let Some(uri) = &self.uri {
            return parse_http_url(uri)
                .map(JwksSource::Uri)
                .map_err(|m| vec![problem("uri", m)]);
        }
        let base = parse_http_url(issuer).map_err(|m| vec![problem("discovery (issuer)", m)])?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(vec![problem(
                "discovery (issuer)",
                "the issuer must not carry a query or fragment",
            )]);
        }
        let discovery_url =
            parse_http_url(&format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
                .map_err(|m| vec![problem("discovery (issuer)", m)])?;
        Ok(JwksSource::Discovery {
            discovery_url,
            issuer: issuer.to_string(),
        })
    }
}

/// The Redis endpoints to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisEndpoints {
    /// One server (or a primary behind a proxy): `url`.
    Single(String),
    /// A Redis Cluster, found from these seed nodes.
    Cluster(Vec<String>),
}

impl RedisEndpoints {
    /// The URLs, in config order.
    pub fn urls(&self) -> &[String] {
        match self {
            RedisEndpoints::Single(u) => std::slice::from_ref(u),
            RedisEndpoints::Cluster(nodes) => nodes,
        }
    }

    /// Whether these are cluster seed nodes.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisEndpoints::Cluster(_))
    }
}

impl RedisConfig {
    /// The endpoints: exactly one of `url`, `cluster_nodes`, each a `redis://` or `rediss://` URL
    /// with a host. Problems are keyed by path under `revocation.redis` and never quote a URL.
    pub fn endpoints(&self) -> Result<RedisEndpoints, Vec<(String, String)>> {
        let endpoints = match (&self.url, self.cluster_nodes.is_empty()) {
            (None, true) => {
                return Err(vec![(
                    String::new(),
                    "one of url, cluster_nodes is required".into(),
                )]);
            }
            (Some(_), false) => {
                return Err(vec![(
                    String::new(),
                    "set url or cluster_nodes, not both".into(),
                )]);
            }
            (Some(u), true) => RedisEndpoints::Single(u.clone()),
            (None, false) => RedisEndpoints::Cluster(self.cluster_nodes.clone()),
        };
        let keys: Vec<String> = match &endpoints {
            RedisEndpoints::Single(_) => vec!["url".into()],
            RedisEndpoints::Cluster(nodes) => (0..nodes.len())
                .map(|i| format!("cluster_nodes[{i}]"))
                .collect(),
        };
        let problems: Vec<(String, String)> = keys
            .into_iter()
            .zip(endpoints.urls())
            .filter(|(_, u)| {
                !Url::parse(u).is_ok_and(|p| {
                    matches!(p.scheme(), "redis" | "rediss") && p.host_str().is_some()
                })
            })
            .map(|(key, _)| {
                (
                    key,
                    "must be a redis:// or rediss:// URL with a host".to_string(),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(endpoints)
        } else {
            Err(problems)
        }
    }
}
