//! `tracing` events of the core and of the server's I/O stack (JWKS, Redis) written to Envoy's log
//! (component `dynamic_modules`), one line per event, at the event's level. The core logs denials
//! with their precise reason, rule, method, host, path and request id: never a token, key or
//! certificate.

use std::io::Write;
use std::sync::Once;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use crate::host::{self, LogLevel};

fn envoy_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Installs the subscriber once per process (the module's own `tracing` statics: Envoy's log is
/// not affected otherwise). Envoy's current level for `dynamic_modules` filters every event.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_writer(EnvoyLog)
            // Asked at every event (never cached per callsite): Envoy's level can change at
            // run time (admin `/logging`).
            .with_filter(
                tracing_subscriber::filter::DynFilterFn::new(|meta, _| {
                    host::log_enabled(envoy_level(meta.level()))
                })
                .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes()),
            );
        // Fails only if a subscriber is already set in this module, which then keeps working.
        let _ = tracing::subscriber::set_global_default(Registry::default().with(layer));
    });
}

/// Makes one [`EnvoyLine`] per event.
struct EnvoyLog;

/// One formatted event, written to Envoy's log when dropped.
struct EnvoyLine {
    level: LogLevel,
    buf: Vec<u8>,
}

impl Write for EnvoyLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EnvoyLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            host::log(self.level, &format!("mesh-authz: {text}"));
        }
    }
}

impl<'a> MakeWriter<'a> for EnvoyLog {
    type Writer = EnvoyLine;

    fn make_writer(&'a self) -> EnvoyLine {
        EnvoyLine {
            level: LogLevel::Info,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EnvoyLine {
        EnvoyLine {
            level: envoy_level(meta.level()),
            buf: Vec::new(),
        }
    }
}
