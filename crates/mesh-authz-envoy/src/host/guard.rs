//! The module-side objects handed to Envoy as opaque pointers, and the panic guard every stream
//! hook runs behind.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::headers::envoy_slice;
use super::scheduler::Scheduler;
use super::stream::Stream;
use super::{LogLevel, log};
use crate::abi;
use crate::filter::{Filter, FilterConfig, RouteConfig};

/// Behind `envoy_dynamic_module_type_http_filter_config_module_ptr`.
pub(super) struct ConfigSlot {
    pub(super) config: Arc<dyn FilterConfig>,
    /// The config's main-thread schedulers, deleted before the config is dropped.
    pub(super) schedulers: Vec<super::scheduler::ConfigScheduler>,
}

impl Drop for ConfigSlot {
    fn drop(&mut self) {
        for s in &self.schedulers {
            s.delete();
        }
    }
}

/// Behind `envoy_dynamic_module_type_http_filter_per_route_config_module_ptr`.
pub(super) struct RouteConfigSlot {
    pub(super) magic: u64,
    pub(super) value: RouteConfig,
}

pub(super) const ROUTE_CONFIG_MAGIC: u64 = 0x6d65_7368_5f72_7463; // "mesh_rtc"

/// Behind `envoy_dynamic_module_type_http_filter_module_ptr`. Only ever reached through a shared
/// reference: Envoy can re-enter the module while a hook runs (a local reply or
/// `continue_decoding` synchronously drives other filters, whose replies pass through this
/// filter's encode hooks), so a `&mut` to the slot could alias. The filter sits in a `RefCell`; a
/// re-entrant hook finds it borrowed and skips the filter.
pub(super) struct FilterSlot {
    pub(super) filter: RefCell<Box<dyn Filter>>,
    pub(super) scheduler: RefCell<Option<Scheduler>>,
    /// Set after a hook panicked: the filter is not called again for this stream.
    pub(super) poisoned: Cell<bool>,
    /// `on_stream_complete` arrived while another hook ran; delivered when that hook returns.
    pub(super) complete_pending: Cell<bool>,
}

/// Details of the local reply sent when a stream hook panics (`%RESPONSE_CODE_DETAILS%`).
pub const PANIC_DETAILS: &str = "mesh_authz_module_panic";

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string panic payload"
    }
}

/// How a guarded stream hook ended.
pub(super) enum Outcome<R> {
    /// The filter ran and returned.
    Ran(R),
    /// The filter was not called (null pointer, or poisoned by an earlier panic).
    Skipped,
    /// The filter was not called: Envoy re-entered the module from inside another hook of this
    /// filter, which is still running.
    Reentered,
    /// The filter panicked now; it is poisoned and, where asked, a 503 was sent.
    Panicked,
}

/// Runs `body` for one stream hook with the filter; on a panic logs it, marks the filter poisoned
/// and (when `reply` is set) answers 503.
pub(super) fn with_filter<R>(
    hook: &str,
    envoy: abi::HttpFilterEnvoyPtr,
    module: abi::HttpFilterModulePtr,
    reply: bool,
    body: impl FnOnce(&mut dyn Filter, &mut Stream<'_>) -> R,
) -> Outcome<R> {
    if module.is_null() {
        return Outcome::Skipped;
    }
    // SAFETY: `module` is the pointer this module returned from `on_http_filter_new` (a leaked
    // `Box<FilterSlot>`); Envoy passes it to hooks on the stream's worker only and never after
    // `on_http_filter_destroy` (which Envoy defers, so it can not run inside a hook). Only a
    // shared reference is formed; mutation goes through the slot's cells.
    let slot = unsafe { &*module.cast::<FilterSlot>() };
    if slot.poisoned.get() {
        return Outcome::Skipped;
    }
    let Ok(mut filter) = slot.filter.try_borrow_mut() else {
        // Re-entered from inside another hook of this filter (for example a later filter's local
        // reply, sent synchronously while we resume the request, travelling our encode path).
        log(
            LogLevel::Debug,
            &format!("mesh-authz-envoy: {hook} re-entered while the filter runs; skipped"),
        );
        return Outcome::Reentered;
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut stream = Stream {
            envoy,
            scheduler: &slot.scheduler,
        };
        body(filter.as_mut(), &mut stream)
    }));
    drop(filter);
    let outcome = guard_outcome(hook, envoy, slot, reply, result);
    // A stream completion that arrived re-entrantly is delivered now that the filter is free.
    if slot.complete_pending.replace(false) {
        deliver_stream_complete(envoy, module);
    }
    outcome
}

/// Runs the filter's `on_stream_complete` (a plain function, so that `with_filter` calling it
/// does not instantiate itself recursively).
pub(super) fn deliver_stream_complete(
    envoy: abi::HttpFilterEnvoyPtr,
    module: abi::HttpFilterModulePtr,
) {
    let outcome = with_filter("on_stream_complete", envoy, module, false, |f, s| {
        f.on_stream_complete(s)
    });
    if let Outcome::Reentered = outcome {
        // SAFETY: non-null (else the outcome is Skipped) and the live slot, as in `with_filter`.
        let slot = unsafe { &*module.cast::<FilterSlot>() };
        slot.complete_pending.set(true);
        log(
            LogLevel::Debug,
            "mesh-authz-envoy: on_stream_complete deferred until the running hook returns",
        );
    }
}

/// Turns a hook's `catch_unwind` result into an [`Outcome`], handling a panic.
fn guard_outcome<R>(
    hook: &str,
    envoy: abi::HttpFilterEnvoyPtr,
    slot: &FilterSlot,
    reply: bool,
    result: std::thread::Result<R>,
) -> Outcome<R> {
    match result {
        Ok(r) => Outcome::Ran(r),
        Err(payload) => {
            slot.poisoned.set(true);
            log(
                LogLevel::Error,
                &format!(
                    "mesh-authz-envoy: panic in {hook}: {}; answering 503",
                    panic_message(payload.as_ref())
                ),
            );
            if reply {
                // The reply itself must not unwind either.
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let mut stream = Stream {
                        envoy,
                        scheduler: &slot.scheduler,
                    };
                    stream.send_local_reply(
                        503,
                        &[],
                        b"mesh-authz: internal error\n",
                        PANIC_DETAILS,
                    );
                }));
            }
            Outcome::Panicked
        }
    }
}

pub(super) fn buffer_bytes<'a>(buf: abi::EnvoyBuffer) -> &'a [u8] {
    // SAFETY: only used on the `name`/`config` buffers of a config hook, which Envoy keeps valid
    // for the duration of that hook; the returned slice is not kept past it.
    unsafe { envoy_slice(buf.ptr, buf.length) }
}
