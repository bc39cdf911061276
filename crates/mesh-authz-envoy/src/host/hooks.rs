//! The exported event hooks.

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::guard::{
    ConfigSlot, FilterSlot, Outcome, ROUTE_CONFIG_MAGIC, RouteConfigSlot, buffer_bytes,
    deliver_stream_complete, panic_message, with_filter,
};
use super::metrics::{ConfigContext, MainThread};
use super::{LogLevel, log};
use crate::abi;
use crate::filter::{self, HeadersStatus};

// =============================================================================================
// Exported event hooks (abi.h "Common Event Hooks" and "HTTP Filter Event Hooks").
// Checked against Envoy 1.40.0, ABI v0.2.0: the parameter lists match both the header and the
// function-pointer types the 1.40.0 loader resolves them with. Envoy 1.40 refuses a module that
// lacks any of the stream/callout/scheduler/watermark hooks below, so all are exported even where
// this module has nothing to do.
// =============================================================================================

/// `envoy_dynamic_module_type_abi_version_module_ptr envoy_dynamic_module_on_program_init(void)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr().cast()
}

/// `envoy_dynamic_module_on_http_filter_config_new(http_filter_config_envoy_ptr,
/// envoy_buffer name, envoy_buffer config)`: null refuses the configuration.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr,
    name: abi::EnvoyBuffer,
    config: abi::EnvoyBuffer,
) -> abi::HttpFilterConfigModulePtr {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let name = String::from_utf8_lossy(buffer_bytes(name)).into_owned();
        let mut ctx = ConfigContext {
            envoy: filter_config_envoy_ptr,
            schedulers: Vec::new(),
            _borrow: PhantomData,
        };
        let made = filter::new_filter_config(&name, buffer_bytes(config), &mut ctx)
            .map_err(|e| format!("filter config {name:?} rejected: {e}"));
        let schedulers = std::mem::take(&mut ctx.schedulers);
        match made {
            Ok(config) => Ok(ConfigSlot { config, schedulers }),
            Err(e) => {
                // A refused config's schedulers never deliver anything.
                for s in &schedulers {
                    s.delete();
                }
                Err(e)
            }
        }
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "panic in on_http_filter_config_new: {}",
            panic_message(payload.as_ref())
        )),
    };
    match outcome {
        Ok(slot) => Box::into_raw(Box::new(slot)) as abi::HttpFilterConfigModulePtr,
        Err(e) => {
            log(LogLevel::Error, &format!("mesh-authz-envoy: {e}"));
            std::ptr::null()
        }
    }
}

/// `void envoy_dynamic_module_on_http_filter_config_destroy(http_filter_config_module_ptr)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: abi::HttpFilterConfigModulePtr,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    // SAFETY: the pointer is a `Box<ConfigSlot>` leaked by `on_http_filter_config_new`, and Envoy
    // destroys each config exactly once.
    let slot = unsafe { Box::from_raw(filter_config_ptr.cast_mut().cast::<ConfigSlot>()) };
    if catch_unwind(AssertUnwindSafe(|| drop(slot))).is_err() {
        log(
            LogLevel::Error,
            "mesh-authz-envoy: panic while dropping a filter config",
        );
    }
}

/// `void envoy_dynamic_module_on_http_filter_config_scheduled(http_filter_config_envoy_ptr,
/// http_filter_config_module_ptr, uint64_t event_id)`: on the main thread, for an event committed
/// through the config's scheduler.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr,
    filter_config_ptr: abi::HttpFilterConfigModulePtr,
    event_id: u64,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    // SAFETY: a live `Box<ConfigSlot>` from `on_http_filter_config_new` (Envoy delivers scheduled
    // events only while the config lives); only shared access, and `FilterConfig: Sync`.
    let slot = unsafe { &*filter_config_ptr.cast::<ConfigSlot>() };
    let mut main = MainThread {
        envoy: filter_config_envoy_ptr,
        _borrow: PhantomData,
    };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
        slot.config.on_scheduled(&mut main, event_id);
    })) {
        log(
            LogLevel::Error,
            &format!(
                "mesh-authz-envoy: panic in on_http_filter_config_scheduled: {}",
                panic_message(payload.as_ref())
            ),
        );
    }
}

/// `envoy_dynamic_module_on_http_filter_per_route_config_new(envoy_buffer name,
/// envoy_buffer config)`: null refuses the per-route configuration.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    name: abi::EnvoyBuffer,
    config: abi::EnvoyBuffer,
) -> abi::HttpFilterPerRouteConfigModulePtr {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let name = String::from_utf8_lossy(buffer_bytes(name)).into_owned();
        filter::new_route_config(&name, buffer_bytes(config))
            .map_err(|e| format!("per-route config {name:?} rejected: {e}"))
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "panic in on_http_filter_per_route_config_new: {}",
            panic_message(payload.as_ref())
        )),
    };
    match outcome {
        Ok(value) => Box::into_raw(Box::new(RouteConfigSlot {
            magic: ROUTE_CONFIG_MAGIC,
            value,
        })) as abi::HttpFilterPerRouteConfigModulePtr,
        Err(e) => {
            log(LogLevel::Error, &format!("mesh-authz-envoy: {e}"));
            std::ptr::null()
        }
    }
}

/// `void envoy_dynamic_module_on_http_filter_per_route_config_destroy(
/// http_filter_per_route_config_module_ptr)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    filter_config_ptr: abi::HttpFilterPerRouteConfigModulePtr,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    // SAFETY: a `Box<RouteConfigSlot>` leaked by `on_http_filter_per_route_config_new`, destroyed
    // once by Envoy. Streams hold their own `Arc` clones of the value.
    let slot = unsafe { Box::from_raw(filter_config_ptr.cast_mut().cast::<RouteConfigSlot>()) };
    if catch_unwind(AssertUnwindSafe(|| drop(slot))).is_err() {
        log(
            LogLevel::Error,
            "mesh-authz-envoy: panic while dropping a per-route config",
        );
    }
}

/// `http_filter_module_ptr envoy_dynamic_module_on_http_filter_new(http_filter_config_module_ptr,
/// http_filter_envoy_ptr)`: null closes the stream.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: abi::HttpFilterConfigModulePtr,
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
) -> abi::HttpFilterModulePtr {
    if filter_config_ptr.is_null() {
        return std::ptr::null();
    }
    // SAFETY: a live `Box<ConfigSlot>` from `on_http_filter_config_new` (Envoy destroys the config
    // only after its filters); only shared access, and `FilterConfig: Sync`.
    let slot = unsafe { &*filter_config_ptr.cast::<ConfigSlot>() };
    match catch_unwind(AssertUnwindSafe(|| slot.config.new_filter())) {
        Ok(filter) => Box::into_raw(Box::new(FilterSlot {
            filter: RefCell::new(filter),
            scheduler: RefCell::new(None),
            poisoned: Cell::new(false),
            complete_pending: Cell::new(false),
        })) as abi::HttpFilterModulePtr,
        Err(payload) => {
            log(
                LogLevel::Error,
                &format!(
                    "mesh-authz-envoy: panic in on_http_filter_new: {}",
                    panic_message(payload.as_ref())
                ),
            );
            std::ptr::null()
        }
    }
}

fn headers_status(s: HeadersStatus) -> abi::RequestHeadersStatus {
    match s {
        HeadersStatus::Continue => abi::RequestHeadersStatus::Continue,
        HeadersStatus::StopIteration => abi::RequestHeadersStatus::StopIteration,
        HeadersStatus::StopAllIterationAndBuffer => {
            abi::RequestHeadersStatus::StopAllIterationAndBuffer
        }
    }
}

/// `..._on_http_filter_request_headers(http_filter_envoy_ptr, http_filter_module_ptr,
/// bool end_of_stream)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    filter_module_ptr: abi::HttpFilterModulePtr,
    end_of_stream: bool,
) -> abi::RequestHeadersStatus {
    match with_filter(
        "on_request_headers",
        filter_envoy_ptr,
        filter_module_ptr,
        true,
        |f, s| f.on_request_headers(s, end_of_stream),
    ) {
        Outcome::Ran(status) => headers_status(status),
        // A 503 is on its way: hold the request.
        Outcome::Panicked => abi::RequestHeadersStatus::StopIteration,
        Outcome::Skipped | Outcome::Reentered => abi::RequestHeadersStatus::Continue,
    }
}

/// `..._on_http_filter_request_body(http_filter_envoy_ptr, http_filter_module_ptr,
/// bool end_of_stream)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::RequestBodyStatus {
    abi::RequestBodyStatus::Continue
}

/// `..._on_http_filter_request_trailers(http_filter_envoy_ptr, http_filter_module_ptr)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
) -> abi::RequestTrailersStatus {
    abi::RequestTrailersStatus::Continue
}

/// `..._on_http_filter_response_headers(http_filter_envoy_ptr, http_filter_module_ptr,
/// bool end_of_stream)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    filter_module_ptr: abi::HttpFilterModulePtr,
    end_of_stream: bool,
) -> abi::ResponseHeadersStatus {
    match with_filter(
        "on_response_headers",
        filter_envoy_ptr,
        filter_module_ptr,
        true,
        |f, s| f.on_response_headers(s, end_of_stream),
    ) {
        Outcome::Ran(status) => match headers_status(status) {
            abi::RequestHeadersStatus::Continue => abi::ResponseHeadersStatus::Continue,
            abi::RequestHeadersStatus::StopIteration => abi::ResponseHeadersStatus::StopIteration,
            _ => abi::ResponseHeadersStatus::StopAllIterationAndBuffer,
        },
        Outcome::Panicked => abi::ResponseHeadersStatus::StopIteration,
        Outcome::Skipped | Outcome::Reentered => abi::ResponseHeadersStatus::Continue,
    }
}

/// `..._on_http_filter_response_body(http_filter_envoy_ptr, http_filter_module_ptr,
/// bool end_of_stream)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::ResponseBodyStatus {
    abi::ResponseBodyStatus::Continue
}

/// `..._on_http_filter_response_trailers(http_filter_envoy_ptr, http_filter_module_ptr)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
) -> abi::ResponseTrailersStatus {
    abi::ResponseTrailersStatus::Continue
}

/// `void envoy_dynamic_module_on_http_filter_stream_complete(http_filter_envoy_ptr,
/// http_filter_module_ptr)`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    filter_module_ptr: abi::HttpFilterModulePtr,
) {
    deliver_stream_complete(filter_envoy_ptr, filter_module_ptr);
}

/// `void envoy_dynamic_module_on_http_filter_destroy(http_filter_module_ptr)`: deletes the
/// stream's scheduler (under its mutex, so a racing foreign commit is serialised) and drops the
/// filter.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter_module_ptr: abi::HttpFilterModulePtr,
) {
    if filter_module_ptr.is_null() {
        return;
    }
    // SAFETY: a `Box<FilterSlot>` leaked by `on_http_filter_new`; Envoy destroys it exactly once,
    // on its worker, after every other hook of the stream.
    let slot = unsafe { Box::from_raw(filter_module_ptr.cast_mut().cast::<FilterSlot>()) };
    if let Some(s) = slot.scheduler.borrow().as_ref() {
        s.delete();
    }
    if catch_unwind(AssertUnwindSafe(|| drop(slot))).is_err() {
        log(
            LogLevel::Error,
            "mesh-authz-envoy: panic while dropping a filter",
        );
    }
}

/// `void envoy_dynamic_module_on_http_filter_scheduled(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t event_id)`: on the stream's worker.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    filter_module_ptr: abi::HttpFilterModulePtr,
    event_id: u64,
) {
    let _ = with_filter(
        "on_scheduled",
        filter_envoy_ptr,
        filter_module_ptr,
        true,
        |f, s| f.on_scheduled(s, event_id),
    );
}

/// `void envoy_dynamic_module_on_http_filter_http_callout_done(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t callout_id, http_callout_result result,
/// envoy_http_header* headers, size_t headers_size, envoy_buffer* body_chunks,
/// size_t body_chunks_size)`. Unused: this module starts no callouts.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _callout_id: u64,
    _result: abi::HttpCalloutResult,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut abi::EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

/// `void envoy_dynamic_module_on_http_filter_http_stream_headers(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t stream_id, envoy_http_header* headers, size_t headers_size,
/// bool end_stream)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// `void envoy_dynamic_module_on_http_filter_http_stream_data(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t stream_id, const envoy_buffer* data, size_t data_count,
/// bool end_stream)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _data: *const abi::EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// `void envoy_dynamic_module_on_http_filter_http_stream_trailers(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t stream_id, envoy_http_header* trailers,
/// size_t trailers_size)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _trailers: *mut abi::EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// `void envoy_dynamic_module_on_http_filter_http_stream_complete(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t stream_id)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _stream_id: u64,
) {
}

/// `void envoy_dynamic_module_on_http_filter_http_stream_reset(http_filter_envoy_ptr,
/// http_filter_module_ptr, uint64_t stream_id, http_stream_reset_reason reason)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _reason: abi::HttpStreamResetReason,
) {
}

/// `void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
/// http_filter_envoy_ptr, http_filter_module_ptr)`. Unused (only terminal filters stream).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
) {
}

/// `void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
/// http_filter_envoy_ptr, http_filter_module_ptr)`. Unused.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    _filter_module_ptr: abi::HttpFilterModulePtr,
) {
}
