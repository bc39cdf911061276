//! `server`: listener addresses, TLS, the admin API, shutdown and watch settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// Listener addresses and TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// ext_authz v3 and grpc.health.v1.
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    /// Optional TLS / mTLS on the gRPC listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Optional revocation admin API (its own listener, mTLS).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// How long in-flight checks may take to finish after SIGTERM.
    #[serde(default = "default_shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long health and readiness report NOT_SERVING while the listeners still
    /// answer, so health checkers (Envoy, Kubernetes) stop sending before they close.
    #[serde(default = "default_drain_delay", with = "duration")]
    pub drain_delay: Duration,
    /// Describe each allow in Envoy's dynamic metadata (`mesh_authz`: rule, provider, SPIFFE ID),
    /// for access logs and later filters. Off by default: every allow response stays small, and
    /// Envoy spends less per request. Denials always carry their reason and rule.
    #[serde(default)]
    pub allow_metadata: bool,
    /// The most connections each listener (gRPC, HTTP) holds open at once; further clients wait
    /// in the kernel's accept queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a new connection may take to send its first complete request (TLS handshake and
    /// headers included; for HTTP/1, each request's headers) before it is closed.
    #[serde(default = "default_header_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress before it is closed
    /// (HTTP/2: GOAWAY).
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// How often `serve --config` reads the config file and its JWKS `file:` sources to see
    /// whether their bytes changed (a change is reloaded as on SIGHUP). Follows symlinks, so a
    /// Kubernetes ConfigMap's `..data` swap is seen. `0s` turns watching off. Fixed at start.
    #[serde(default = "default_watch_interval", with = "duration")]
    pub watch_interval: Duration,
    /// Threads of the async runtime that serves checks (`serve` only; fixed at start, a reload
    /// does not change it). Absent: the CPUs this process may use
    /// ([`std::thread::available_parallelism`]: the affinity mask, capped by a cgroup CPU quota
    /// rounded down, at least 1). Set it to the CPUs the container may use: more threads than
    /// CPUs only adds context switches and cross-core traffic, fewer leaves CPUs idle under load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

/// The most `server.worker_threads` accepted.
pub const MAX_WORKER_THREADS: usize = 1024;

impl ServerConfig {
    /// The runtime threads `serve` starts: `worker_threads`, or the CPUs this process may use.
    pub fn effective_worker_threads(&self) -> usize {
        self.worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: default_grpc_addr(),
            http_addr: default_http_addr(),
            tls: None,
            admin: None,
            shutdown_grace: default_shutdown_grace(),
            drain_delay: default_drain_delay(),
            allow_metadata: false,
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            watch_interval: default_watch_interval(),
            worker_threads: None,
        }
    }
}

fn default_grpc_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9001))
}
fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9002))
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_drain_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Server-side TLS; with `client_ca_file`, client certificates are required.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The revocation admin API listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// SPIFFE IDs allowed to call the admin API.
    #[serde(default)]
    pub allowed_spiffe_ids: Vec<String>,
}
