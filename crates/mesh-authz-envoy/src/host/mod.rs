//! The safe layer over [`crate::abi`]: handles with lifetimes for what Envoy lends during a hook,
//! a `Send` scheduler for foreign threads, and the exported event hooks, each behind
//! `std::panic::catch_unwind`.
//!
//! Checked against Envoy 1.40.0 (ABI `v0.2.0`).
//!
//! Threading rules (Envoy's, enforced here by types):
//! * config hooks run on the main thread; stream hooks on the stream's worker thread;
//! * [`Stream`] and [`HeaderMap`] are neither `Send` nor `Sync` (they hold raw pointers) and only
//!   live for one hook call;
//! * from any other thread only [`Scheduler::commit`], [`ConfigScheduler::commit`] and [`log`]
//!   may be used; the event comes back on the worker as
//!   [`Filter::on_scheduled`](crate::filter::Filter::on_scheduled), or on the main thread as
//!   [`FilterConfig::on_scheduled`](crate::filter::FilterConfig::on_scheduled) with a
//!   [`MainThread`] for the config's stats;
//! * a module that owns threads must be loaded with `do_not_close: true`.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! Files, by responsibility: logging and attribute ids here; [`metrics`] (defining and recording
//! stats), [`headers`] (borrowed header views), [`scheduler`] (waking a stream from any thread),
//! [`stream`] (what a stream hook may do), `guard` (the module-side objects behind Envoy's
//! opaque pointers and the panic guard) and `hooks` (the exported `extern "C"` event hooks).

mod guard;
pub mod headers;
mod hooks;
pub mod metrics;
pub mod scheduler;
pub mod stream;

pub use guard::PANIC_DETAILS;
pub use headers::HeaderMap;
pub use metrics::{
    ConfigContext, CounterId, GaugeId, HistogramId, MainThread, MetricsError, RecordStats, StatCall,
};
pub use scheduler::{ConfigScheduler, Scheduler};
pub use stream::Stream;

use crate::abi;

// =============================================================================================
// Logging
// =============================================================================================

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `trace`
    Trace = 0,
    /// `debug`
    Debug = 1,
    /// `info`
    Info = 2,
    /// `warning`
    Warn = 3,
    /// `error`
    Error = 4,
    /// `critical`
    Critical = 5,
}

/// Whether Envoy's `dynamic_modules` logger would print `level` (cheap; lets callers skip
/// formatting). Any thread.
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: a plain value argument; Envoy documents the logging callbacks as callable from any
    // thread.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(level as abi::LogLevel) }
}

/// Writes `message` to Envoy's log under the `dynamic_modules` component. Any thread. Never pass
/// tokens, keys or certificates.
pub fn log(level: LogLevel, message: &str) {
    if !log_enabled(level) {
        return;
    }
    // SAFETY: `message` outlives the call, and Envoy only reads `length` bytes from it during the
    // call; logging is callable from any thread.
    unsafe {
        abi::envoy_dynamic_module_callback_log(
            level as abi::LogLevel,
            abi::ModuleBuffer::from_bytes(message.as_bytes()),
        )
    }
}

// =============================================================================================
// Attributes
// =============================================================================================

/// The attributes this module reads (`envoy_dynamic_module_type_attribute_id`; the discriminant
/// is the enum position in Envoy 1.40.0's abi.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// `request.id` (string)
    RequestId = 9,
    /// `source.address` (string, `ip:port`)
    SourceAddress = 24,
    /// `source.port` (int)
    SourcePort = 25,
    /// `destination.address` (string)
    DestinationAddress = 26,
    /// `destination.port` (int)
    DestinationPort = 27,
    /// `connection.id` (int)
    ConnectionId = 28,
    /// `connection.mtls` (bool)
    ConnectionMtls = 29,
    /// `connection.requested_server_name` (string)
    ConnectionRequestedServerName = 30,
    /// `connection.tls_version` (string)
    ConnectionTlsVersion = 31,
    /// `connection.subject_peer_certificate` (string)
    ConnectionSubjectPeerCertificate = 33,
    /// `connection.dns_san_peer_certificate` (string, first DNS SAN)
    ConnectionDnsSanPeerCertificate = 35,
    /// `connection.uri_san_peer_certificate` (string, first URI SAN only)
    ConnectionUriSanPeerCertificate = 37,
    /// `connection.sha256_peer_certificate_digest` (string, hex of the DER)
    ConnectionSha256PeerCertificateDigest = 38,
}
