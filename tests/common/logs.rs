//! Log lines written on the test's own thread while a [`CaptureGuard`] lives (a current-thread
//! runtime: the code under test runs there too, so a thread-default subscriber sees its events).
//!
//! Capturing tests take turns, and each capture rebuilds tracing's global callsite-interest cache:
//! a callsite that a parallel test registers for the first time while our subscriber is being
//! installed can otherwise be cached as "never" and miss our events.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The captured bytes (plain text, no colour codes).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

/// Keeps the subscriber installed and this test's turn held.
pub struct CaptureGuard {
    _subscriber: tracing::subscriber::DefaultGuard,
    _turn: MutexGuard<'static, ()>,
}

static CAPTURE_TURN: Mutex<()> = Mutex::new(());

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Every log line of this test binary, one JSON object per line, from one global subscriber
    /// installed on first use: mesh-authz's crates at trace, dependencies at debug (their trace
    /// output is per frame and slow). A thread's [`Logs::capture`] takes precedence on its thread.
    pub fn global() -> &'static Logs {
        static GLOBAL: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug,mesh_authz=trace"))
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            tracing::callsite::rebuild_interest_cache();
            logs
        })
    }

    /// The shared buffer the lines are written to.
    pub fn buffer(&self) -> Arc<Mutex<Vec<u8>>> {
        self.0.clone()
    }

    /// Captures events up to `level` on this thread until the guard is dropped.
    pub fn capture(level: tracing::Level) -> (Logs, CaptureGuard) {
        let turn = CAPTURE_TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        let guard = CaptureGuard {
            _subscriber: tracing::subscriber::set_default(subscriber),
            _turn: turn,
        };
        Logs::settle();
        (logs, guard)
    }

    /// Recomputes every registered callsite's interest with the capturing subscriber installed;
    /// call it again right before the events that matter if callsites may register meanwhile.
    pub fn settle() {
        tracing::callsite::rebuild_interest_cache();
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// The captured lines at WARN.
    pub fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN "))
            .map(str::to_string)
            .collect()
    }
}
