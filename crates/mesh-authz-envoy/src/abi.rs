//! Raw, hand-written bindings to the subset of Envoy's dynamic-module C ABI that an HTTP
//! authorization filter needs.
//!
//! **Checked against Envoy 1.40.0** (`envoy --version`:
//! `9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL`), which reports
//! ABI version [`ABI_VERSION`] (`v0.2.0`). Every declaration below was transcribed by hand from
//! `source/extensions/dynamic_modules/abi/abi.h` (function names verbatim; each type's doc
//! comment names its C type, so a `grep` in the header finds each one). The header text read was
//! the stored copy at envoyproxy/envoy commit `0199da4a` (its version define still says
//! `v0.1.0`; the v1.40.0 tag itself could not be fetched), so each declaration was then
//! cross-checked two ways against the 1.40.0 binary itself:
//!
//! * every callback declared here is exported by the binary (`nm -D --defined-only envoy`);
//! * every event hook type matches the function-pointer type the binary's loader resolves it with
//!   (`DynamicModule::getFunctionPointer<T>` instantiations, visible in the binary's strings).
//!
//! The behaviour of each binding is exercised against the real binary by
//! `tests/envoy_module.rs` (Envoy only *warns* on an ABI-version mismatch, so a wrong signature
//! would load and corrupt memory: the tests are the real guard).
//!
//! C mapping used throughout (x86_64 / aarch64 SysV): `size_t` = `usize`, `uint64_t` = `u64`,
//! `uint32_t` = `u32`, `bool` = `bool`, `const char*` = `*const u8`, and a C `enum` = `u32`
//! (all enumerators are small and non-negative, so the compilers give the enum the type
//! `unsigned int`). Enums flowing *from* Envoy are plain `u32` newtypes, never Rust enums, so an
//! unexpected value can not be undefined behaviour. Enums the module *returns* are `#[repr(C)]`
//! Rust enums.
//!
//! Nothing here is safe to call: the safe layer is [`crate::host`].

use std::ffi::{c_char, c_void};

/// The ABI version string this module reports from `envoy_dynamic_module_on_program_init`:
/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION` of Envoy 1.40.0 (the binary logs
/// `Dynamic module ABI version v0.2.0 matched.`). NUL-terminated for C.
pub(crate) const ABI_VERSION: &[u8] = b"v0.2.0\0";

// =============================================================================================
// Common types (abi.h, "Common Types"). Checked against Envoy 1.40.0, ABI v0.2.0.
// =============================================================================================

/// `envoy_dynamic_module_type_envoy_buffer`: a buffer owned by Envoy
/// (`{ envoy_dynamic_module_type_buffer_envoy_ptr ptr; size_t length; }`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnvoyBuffer {
    pub(crate) ptr: *const c_char,
    pub(crate) length: usize,
}

impl EnvoyBuffer {
    /// A null buffer, used as an out-parameter's initial value.
    pub(crate) const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_buffer`: a buffer owned by the module
/// (`{ envoy_dynamic_module_type_buffer_module_ptr ptr; size_t length; }`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModuleBuffer {
    pub(crate) ptr: *const c_char,
    pub(crate) length: usize,
}

impl ModuleBuffer {
    /// A null buffer: what `envoy_dynamic_module_callback_http_set_header` takes as "remove".
    pub(crate) const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// Borrows `bytes` for the duration of one callback.
    pub(crate) fn from_bytes(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header`: a header owned by the module
/// (`{ key_ptr; size_t key_length; value_ptr; size_t value_length; }`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModuleHttpHeader {
    pub(crate) key_ptr: *const c_char,
    pub(crate) key_length: usize,
    pub(crate) value_ptr: *const c_char,
    pub(crate) value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`: a header owned by Envoy's `HeaderMap`
/// (same layout as [`ModuleHttpHeader`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnvoyHttpHeader {
    pub(crate) key_ptr: *const c_char,
    pub(crate) key_length: usize,
    pub(crate) value_ptr: *const c_char,
    pub(crate) value_length: usize,
}

impl EnvoyHttpHeader {
    /// An empty header, used to size an out-array.
    pub(crate) const NULL: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type` (a C enum).
pub(crate) type HttpHeaderType = u32;
/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
pub(crate) const HEADER_TYPE_REQUEST_HEADER: HttpHeaderType = 0;
/// `envoy_dynamic_module_type_http_header_type_ResponseHeader`.
pub(crate) const HEADER_TYPE_RESPONSE_HEADER: HttpHeaderType = 2;

/// `envoy_dynamic_module_type_log_level` (a C enum: Trace, Debug, Info, Warn, Error, Critical,
/// Off).
pub(crate) type LogLevel = u32;

/// `envoy_dynamic_module_type_metrics_result` (a C enum): 0 Success, 1 MetricNotFound,
/// 2 InvalidLabels, 3 Frozen.
pub(crate) type MetricsResult = u32;
/// `envoy_dynamic_module_type_metrics_result_Success`.
pub(crate) const METRICS_SUCCESS: MetricsResult = 0;

/// `envoy_dynamic_module_type_attribute_id` (a C enum; the ids are enum positions).
pub(crate) type AttributeId = u32;

/// `envoy_dynamic_module_type_http_callout_result` (a C enum, Envoy to module).
pub(crate) type HttpCalloutResult = u32;
/// `envoy_dynamic_module_type_http_stream_reset_reason` (a C enum, Envoy to module).
pub(crate) type HttpStreamResetReason = u32;

// =============================================================================================
// HTTP filter types (abi.h, "HTTP Filter Types"). Checked against Envoy 1.40.0, ABI v0.2.0.
// =============================================================================================

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr` (`void*`).
pub(crate) type HttpFilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr` (`const void*`).
pub(crate) type HttpFilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_per_route_config_module_ptr` (`const void*`).
pub(crate) type HttpFilterPerRouteConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr` (`void*`).
pub(crate) type HttpFilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr` (`const void*`).
pub(crate) type HttpFilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr` (`void*`; allocated by Envoy,
/// owned by the module until `..._scheduler_delete`).
pub(crate) type HttpFilterSchedulerModulePtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr` (`void*`; allocated by
/// Envoy, owned by the module until `..._config_scheduler_delete`).
pub(crate) type HttpFilterConfigSchedulerModulePtr = *mut c_void;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h; not every status is returned yet
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestHeadersStatus {
    Continue = 0,
    StopIteration = 1,
    ContinueAndDontEndStream = 2,
    StopAllIterationAndBuffer = 3,
    StopAllIterationAndWatermark = 4,
}

/// `envoy_dynamic_module_type_on_http_filter_request_body_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestBodyStatus {
    Continue = 0,
    StopIterationAndBuffer = 1,
    StopIterationAndWatermark = 2,
    StopIterationNoBuffer = 3,
}

/// `envoy_dynamic_module_type_on_http_filter_request_trailers_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestTrailersStatus {
    Continue = 0,
    StopIteration = 1,
}

/// `envoy_dynamic_module_type_on_http_filter_response_headers_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseHeadersStatus {
    Continue = 0,
    StopIteration = 1,
    ContinueAndDontEndStream = 2,
    StopAllIterationAndBuffer = 3,
    StopAllIterationAndWatermark = 4,
}

/// `envoy_dynamic_module_type_on_http_filter_response_body_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseBodyStatus {
    Continue = 0,
    StopIterationAndBuffer = 1,
    StopIterationAndWatermark = 2,
    StopIterationNoBuffer = 3,
}

/// `envoy_dynamic_module_type_on_http_filter_response_trailers_status`.
#[repr(C)]
#[allow(dead_code)] // the full enum, as in abi.h
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseTrailersStatus {
    Continue = 0,
    StopIteration = 1,
}

// =============================================================================================
// Callbacks: functions Envoy implements and exports (abi.h, "Common Callbacks" and "HTTP Filter
// Callbacks"). Checked against Envoy 1.40.0, ABI v0.2.0; each name is exported by that binary.
// =============================================================================================

unsafe extern "C" {
    // ----------------------------------- Logging ------------------------------------------

    /// `void envoy_dynamic_module_callback_log(envoy_dynamic_module_type_log_level level,
    /// envoy_dynamic_module_type_module_buffer message)`. Any thread.
    pub(crate) fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    /// `bool envoy_dynamic_module_callback_log_enabled(envoy_dynamic_module_type_log_level
    /// level)`. Any thread.
    pub(crate) fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    // ------------------------------- Metrics (config) ---------------------------------------

    /// `envoy_dynamic_module_type_metrics_result
    /// envoy_dynamic_module_callback_http_filter_config_define_counter(
    /// http_filter_config_envoy_ptr, module_buffer name, module_buffer* label_names,
    /// size_t label_names_length, size_t* counter_id_ptr)`. Main thread, in config_new.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> MetricsResult;

    /// `..._http_filter_config_define_gauge(` same parameters as `define_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> MetricsResult;

    /// `..._http_filter_config_define_histogram(` same parameters as `define_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        histogram_id_ptr: *mut usize,
    ) -> MetricsResult;

    // --------------------------- Metrics (config, main thread) -----------------------------
    // Not in the stored header (which is older than 1.40); checked against the 1.40.0 binary's
    // code: the same parameter list as the stream calls below with the config pointer first (the
    // id in the second register, label count in the fourth, value in the fifth), resolved
    // against the config's own stat list. Exercised end to end by the stats tests.

    /// `envoy_dynamic_module_type_metrics_result
    /// envoy_dynamic_module_callback_http_filter_config_increment_counter(
    /// http_filter_config_envoy_ptr, size_t id, module_buffer* label_values,
    /// size_t label_values_length, uint64_t value)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_config_set_gauge(` same parameters as `config_increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_config_record_histogram_value(` same parameters as
    /// `config_increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    // ------------------------------- Metrics (stream) ---------------------------------------

    /// `envoy_dynamic_module_type_metrics_result
    /// envoy_dynamic_module_callback_http_filter_increment_counter(http_filter_envoy_ptr,
    /// size_t id, module_buffer* label_values, size_t label_values_length, uint64_t value)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_increment_gauge(` same parameters as `increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_increment_gauge(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_decrement_gauge(` same parameters as `increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_decrement_gauge(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_set_gauge(` same parameters as `increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// `..._http_filter_record_histogram_value(` same parameters as `increment_counter` `)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    // ------------------------------ Headers -------------------------------------------------

    /// `bool envoy_dynamic_module_callback_http_get_header(http_filter_envoy_ptr,
    /// http_header_type header_type, module_buffer key, envoy_buffer* result_buffer,
    /// size_t index, size_t* optional_size)`. The result stays valid until the end of the
    /// current hook unless a setter is called.
    pub(crate) fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_get_header_values(http_filter_envoy_ptr,
    /// http_header_type header_type, module_buffer key, envoy_buffer* result_buffer)`;
    /// `result_buffer` must hold as many entries as `get_header` reported.
    pub(crate) fn envoy_dynamic_module_callback_http_get_header_values(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
    ) -> bool;

    /// `size_t envoy_dynamic_module_callback_http_get_headers_size(http_filter_envoy_ptr,
    /// http_header_type header_type)`.
    pub(crate) fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
    ) -> usize;

    /// `bool envoy_dynamic_module_callback_http_get_headers(http_filter_envoy_ptr,
    /// http_header_type header_type, envoy_http_header* result_headers)`; `result_headers`
    /// must hold `get_headers_size` entries.
    pub(crate) fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_set_header(http_filter_envoy_ptr,
    /// http_header_type header_type, module_buffer key, module_buffer value)`: replaces every
    /// value; a null `value` removes the header (1.40 has no separate `remove_header` for HTTP
    /// filters).
    pub(crate) fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_add_header(http_filter_envoy_ptr,
    /// http_header_type header_type, module_buffer key, module_buffer value)`: appends a value.
    pub(crate) fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // ---------------------------- Local reply -----------------------------------------------

    /// `void envoy_dynamic_module_callback_http_send_response(http_filter_envoy_ptr,
    /// uint32_t status_code, module_http_header* headers_vector, size_t headers_vector_size,
    /// module_buffer body, module_buffer details)`.
    pub(crate) fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    // ------------------------- Dynamic metadata / filter state ------------------------------

    /// `void envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
    /// http_filter_envoy_ptr, module_buffer ns, module_buffer key, module_buffer value)`.
    pub(crate) fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );

    /// `bool envoy_dynamic_module_callback_http_set_filter_state_bytes(http_filter_envoy_ptr,
    /// module_buffer key, module_buffer value)`.
    pub(crate) fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_get_filter_state_bytes(http_filter_envoy_ptr,
    /// module_buffer key, envoy_buffer* result)`.
    pub(crate) fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;

    // ------------------------------- Attributes ---------------------------------------------

    /// `bool envoy_dynamic_module_callback_http_filter_get_attribute_string(
    /// http_filter_envoy_ptr, attribute_id attribute_id, envoy_buffer* result)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_filter_get_attribute_int(
    /// http_filter_envoy_ptr, attribute_id attribute_id, uint64_t* result)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut u64,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_filter_get_attribute_bool(
    /// http_filter_envoy_ptr, attribute_id attribute_id, bool* result)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut bool,
    ) -> bool;

    // ---------------------------- Flow control ----------------------------------------------

    /// `void envoy_dynamic_module_callback_http_filter_continue_decoding(
    /// http_filter_envoy_ptr)`. Worker thread of the stream only.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
    );

    // ------------------------------ Scheduler -----------------------------------------------

    /// `http_filter_scheduler_module_ptr
    /// envoy_dynamic_module_callback_http_filter_scheduler_new(http_filter_envoy_ptr)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
    ) -> HttpFilterSchedulerModulePtr;

    /// `void envoy_dynamic_module_callback_http_filter_scheduler_commit(
    /// http_filter_scheduler_module_ptr, uint64_t event_id)`. Any thread; a no-op once the
    /// filter is gone (but never after `..._scheduler_delete`).
    pub(crate) fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: HttpFilterSchedulerModulePtr,
        event_id: u64,
    );

    /// `http_filter_config_scheduler_module_ptr
    /// envoy_dynamic_module_callback_http_filter_config_scheduler_new(
    /// http_filter_config_envoy_ptr)`. Its events reach the main thread as
    /// `envoy_dynamic_module_on_http_filter_config_scheduled`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
    ) -> HttpFilterConfigSchedulerModulePtr;

    /// `void envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
    /// http_filter_config_scheduler_module_ptr, uint64_t event_id)`. Any thread; a no-op once
    /// the config is gone (but never after `..._config_scheduler_delete`).
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: HttpFilterConfigSchedulerModulePtr,
        event_id: u64,
    );

    /// `void envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
    /// http_filter_config_scheduler_module_ptr)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: HttpFilterConfigSchedulerModulePtr,
    );

    /// `void envoy_dynamic_module_callback_http_filter_scheduler_delete(
    /// http_filter_scheduler_module_ptr)`.
    pub(crate) fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: HttpFilterSchedulerModulePtr,
    );

    // ------------------------------ Per-route -----------------------------------------------

    /// `http_filter_per_route_config_module_ptr
    /// envoy_dynamic_module_callback_get_most_specific_route_config(http_filter_envoy_ptr)`:
    /// null when no per-route config applies; else a pointer this module returned from
    /// `envoy_dynamic_module_on_http_filter_per_route_config_new`.
    pub(crate) fn envoy_dynamic_module_callback_get_most_specific_route_config(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
    ) -> HttpFilterPerRouteConfigModulePtr;
}
