//! The module's one tokio runtime: created on the first filter config, shared by every config
//! and never shut down (the module is loaded with `do_not_close: true`). It runs JWKS fetches and
//! refreshes, Redis connections and lookups, and checks that could not finish inline.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// Worker threads of the runtime: checks that wait on I/O are few; the rest finish inline on
/// Envoy's workers.
const WORKER_THREADS: usize = 2;
/// Threads for blocking work (file reads of `jwks.file`).
const MAX_BLOCKING_THREADS: usize = 4;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime, built on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .max_blocking_threads(MAX_BLOCKING_THREADS)
                .thread_name("mesh-authz-rt")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the module's tokio runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}
