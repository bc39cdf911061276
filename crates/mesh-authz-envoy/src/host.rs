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
//! * from any other thread only [`Scheduler::commit`] and [`log`] may be used; the event comes
//!   back on the worker as [`Filter::on_scheduled`](crate::filter::Filter::on_scheduled);
//! * a module that owns threads must be loaded with `do_not_close: true`.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use crate::abi;
use crate::filter::{self, Filter, FilterConfig, HeadersStatus, RouteConfig};

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
// Metrics
// =============================================================================================

/// A counter defined by [`ConfigContext::define_counter`]; valid with streams of that config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterId(usize);
/// A gauge defined by [`ConfigContext::define_gauge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeId(usize);
/// A histogram defined by [`ConfigContext::define_histogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramId(usize);

/// A metrics call Envoy refused (`envoy_dynamic_module_type_metrics_result` other than
/// `Success`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsError {
    /// `MetricNotFound`: the id does not belong to this stream's config.
    MetricNotFound,
    /// `InvalidLabels`: the label count differs from the definition's.
    InvalidLabels,
    /// `Frozen`: stats can no longer be defined (outside `on_http_filter_config_new`).
    Frozen,
    /// A value the 1.40 header does not define.
    Unknown(u32),
}

impl std::fmt::Display for MetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "envoy metrics call failed: {self:?}")
    }
}

impl std::error::Error for MetricsError {}

fn metrics_result(r: abi::MetricsResult) -> Result<(), MetricsError> {
    match r {
        abi::METRICS_SUCCESS => Ok(()),
        1 => Err(MetricsError::MetricNotFound),
        2 => Err(MetricsError::InvalidLabels),
        3 => Err(MetricsError::Frozen),
        other => Err(MetricsError::Unknown(other)),
    }
}

fn buffers(strings: &[&str]) -> Vec<abi::ModuleBuffer> {
    strings
        .iter()
        .map(|s| abi::ModuleBuffer::from_bytes(s.as_bytes()))
        .collect()
}

/// What Envoy lends during `on_http_filter_config_new` (main thread): defining metrics.
pub struct ConfigContext<'a> {
    envoy: abi::HttpFilterConfigEnvoyPtr,
    _borrow: PhantomData<&'a mut ()>,
}

type DefineFn = unsafe extern "C" fn(
    abi::HttpFilterConfigEnvoyPtr,
    abi::ModuleBuffer,
    *mut abi::ModuleBuffer,
    usize,
    *mut usize,
) -> abi::MetricsResult;

impl ConfigContext<'_> {
    fn define(&mut self, f: DefineFn, name: &str, labels: &[&str]) -> Result<usize, MetricsError> {
        let mut labels = buffers(labels);
        let mut id = 0usize;
        // SAFETY: `self.envoy` is the config pointer Envoy passed to the running
        // `on_http_filter_config_new` (ConfigContext can not outlive it); `name` and `labels`
        // outlive the call and are only read; `id` is a valid out-pointer.
        let r = unsafe {
            f(
                self.envoy,
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                labels.as_mut_ptr(),
                labels.len(),
                &mut id,
            )
        };
        metrics_result(r).map(|()| id)
    }

    /// Defines a counter `name` with `labels` (names of labels; may be empty).
    pub fn define_counter(
        &mut self,
        name: &str,
        labels: &[&str],
    ) -> Result<CounterId, MetricsError> {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
            name,
            labels,
        )
        .map(CounterId)
    }

    /// Defines a gauge.
    pub fn define_gauge(&mut self, name: &str, labels: &[&str]) -> Result<GaugeId, MetricsError> {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
            name,
            labels,
        )
        .map(GaugeId)
    }

    /// Defines a histogram.
    pub fn define_histogram(
        &mut self,
        name: &str,
        labels: &[&str],
    ) -> Result<HistogramId, MetricsError> {
        self.define(
            abi::envoy_dynamic_module_callback_http_filter_config_define_histogram,
            name,
            labels,
        )
        .map(HistogramId)
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

// =============================================================================================
// Headers
// =============================================================================================

/// Which of the stream's header maps a [`HeaderMap`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderKind {
    Request,
    Response,
}

impl HeaderKind {
    fn abi(self) -> abi::HttpHeaderType {
        match self {
            HeaderKind::Request => abi::HEADER_TYPE_REQUEST_HEADER,
            HeaderKind::Response => abi::HEADER_TYPE_RESPONSE_HEADER,
        }
    }
}

/// Turns an Envoy-owned buffer into a slice borrowed for `'a`.
///
/// # Safety
/// `buf` must be null/empty or point to `length` initialised bytes that stay valid and unchanged
/// for `'a`.
unsafe fn envoy_slice<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: non-null, and the caller guarantees `length` valid bytes for `'a`.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}

/// A borrowed, read-only view of one of the stream's header maps. Nothing is copied: values
/// borrow Envoy's memory, which stays valid while this view (and so the `&Stream` it borrows)
/// lives, because every setter needs `&mut Stream`.
pub struct HeaderMap<'a> {
    envoy: abi::HttpFilterEnvoyPtr,
    kind: HeaderKind,
    _stream: PhantomData<&'a Stream<'a>>,
}

impl<'a> HeaderMap<'a> {
    /// The number of values of `name` (case-insensitive, as Envoy stores names lower-case).
    pub fn count(&self, name: &str) -> usize {
        let mut out = abi::EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: `self.envoy` is the live filter pointer of the current hook; `name` outlives the
        // call; `out` and `count` are valid out-pointers.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.envoy,
                self.kind.abi(),
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if ok { count } else { 0 }
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        let mut out = abi::EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: as in `count`.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.envoy,
                self.kind.abi(),
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if !ok || count == 0 || out.ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy keeps the value valid until the hook ends or a setter runs; neither can
        // happen while `'a` (a shared borrow of the Stream) lives.
        Some(unsafe { envoy_slice(out.ptr, out.length) })
    }

    /// The first value of `name` as UTF-8, if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&'a [u8]> {
        let count = self.count(name);
        if count == 0 {
            return Vec::new();
        }
        let mut out = vec![abi::EnvoyBuffer::NULL; count];
        // SAFETY: `out` holds `count` entries, the number Envoy just reported for `name` (nothing
        // can change the map in between: we hold `&Stream`); `name` outlives the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header_values(
                self.envoy,
                self.kind.abi(),
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                out.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        out.iter()
            // SAFETY: as in `get`.
            .map(|b| unsafe { envoy_slice(b.ptr, b.length) })
            .collect()
    }

    /// The number of header entries.
    pub fn len(&self) -> usize {
        // SAFETY: `self.envoy` is the live filter pointer of the current hook.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.envoy, self.kind.abi())
        }
    }

    /// Whether the map is empty (or not available in this phase).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every `(name, value)` entry, borrowed (only the small pointer array is allocated).
    pub fn entries(&self) -> Vec<(&'a [u8], &'a [u8])> {
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        let mut out = vec![abi::EnvoyHttpHeader::NULL; n];
        // SAFETY: `out` holds `get_headers_size` entries, as the header requires; the map can not
        // change in between (we hold `&Stream`).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.envoy,
                self.kind.abi(),
                out.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        out.iter()
            .map(|h| {
                // SAFETY: as in `get`.
                unsafe {
                    (
                        envoy_slice(h.key_ptr, h.key_length),
                        envoy_slice(h.value_ptr, h.value_length),
                    )
                }
            })
            .collect()
    }
}

// =============================================================================================
// Scheduler
// =============================================================================================

/// Envoy's scheduler pointer. Only dereferenced by Envoy, and only under [`Scheduler`]'s mutex.
struct SchedulerPtr(NonNull<c_void>);

// SAFETY: Envoy documents `envoy_dynamic_module_callback_http_filter_scheduler_commit` as callable
// from any thread; the pointer is only used by commit and delete, which the mutex serialises.
unsafe impl Send for SchedulerPtr {}

/// A handle that wakes one stream's filter on its worker thread from any thread: `Send + Sync +
/// Clone`. [`Scheduler::commit`] after the stream is gone is a harmless no-op that returns `false`
/// (the Envoy scheduler is deleted in the filter's destroy hook under the same mutex, so commit
/// and delete never race).
#[derive(Clone)]
pub struct Scheduler {
    slot: Arc<Mutex<Option<SchedulerPtr>>>,
}

impl Scheduler {
    /// Schedules `on_scheduled(event_id)` on the stream's worker. Returns `false` when the stream
    /// is already destroyed (nothing happens then).
    pub fn commit(&self, event_id: u64) -> bool {
        let guard = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(p) => {
                // SAFETY: the pointer came from `scheduler_new` and is not deleted while we hold
                // the mutex (delete takes it under the same lock); commit is thread-safe.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(
                        p.0.as_ptr(),
                        event_id,
                    )
                };
                true
            }
            None => false,
        }
    }

    /// Deletes the Envoy scheduler (filter destroy hook, worker thread); later commits are no-ops.
    fn delete(&self) {
        let mut guard = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = guard.take() {
            // SAFETY: the pointer came from `scheduler_new`, was not deleted before (taken out of
            // the slot exactly once), and no commit can run concurrently (we hold the lock).
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(p.0.as_ptr())
            };
        }
    }
}

// =============================================================================================
// Stream
// =============================================================================================

/// What Envoy lends to one stream hook: header access, replies, metadata, metrics, attributes.
/// Lives only for the hook call; neither `Send` nor `Sync`.
pub struct Stream<'a> {
    envoy: abi::HttpFilterEnvoyPtr,
    scheduler: &'a RefCell<Option<Scheduler>>,
}

impl<'a> Stream<'a> {
    fn headers(&self, kind: HeaderKind) -> HeaderMap<'_> {
        HeaderMap {
            envoy: self.envoy,
            kind,
            _stream: PhantomData,
        }
    }

    /// The request headers (borrowed view).
    pub fn request_headers(&self) -> HeaderMap<'_> {
        self.headers(HeaderKind::Request)
    }

    /// The response headers (borrowed view; empty before the response phase).
    pub fn response_headers(&self) -> HeaderMap<'_> {
        self.headers(HeaderKind::Response)
    }

    fn set(&mut self, kind: HeaderKind, name: &str, value: abi::ModuleBuffer) -> bool {
        // SAFETY: `self.envoy` is the live filter pointer of the current hook; `name` and `value`
        // outlive the call. `&mut self` guarantees no borrowed header value is alive.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.envoy,
                kind.abi(),
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                value,
            )
        }
    }

    /// Replaces every value of request header `name` with `value`.
    pub fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.set(
            HeaderKind::Request,
            name,
            abi::ModuleBuffer::from_bytes(value),
        )
    }

    /// Appends a value to request header `name`.
    pub fn add_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        // SAFETY: as in `set`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.envoy,
                abi::HEADER_TYPE_REQUEST_HEADER,
                abi::ModuleBuffer::from_bytes(name.as_bytes()),
                abi::ModuleBuffer::from_bytes(value),
            )
        }
    }

    /// Removes request header `name` (every value).
    pub fn remove_request_header(&mut self, name: &str) -> bool {
        self.set(HeaderKind::Request, name, abi::ModuleBuffer::NULL)
    }

    /// Replaces every value of response header `name` (response phase only).
    pub fn set_response_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.set(
            HeaderKind::Response,
            name,
            abi::ModuleBuffer::from_bytes(value),
        )
    }

    /// Answers the request locally: `status`, extra `headers`, `body`, and `details` (what
    /// `%RESPONSE_CODE_DETAILS%` logs; use a short token without spaces). Stop iteration after.
    pub fn send_local_reply(
        &mut self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        let mut hs: Vec<abi::ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| abi::ModuleHttpHeader {
                key_ptr: k.as_ptr().cast(),
                key_length: k.len(),
                value_ptr: v.as_ptr().cast(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: `self.envoy` is the live filter pointer; `hs`, `body` and `details` (and the
        // strings `hs` points into) outlive the call, and Envoy copies what it keeps.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.envoy,
                status,
                hs.as_mut_ptr(),
                hs.len(),
                abi::ModuleBuffer::from_bytes(body),
                abi::ModuleBuffer::from_bytes(details.as_bytes()),
            )
        }
    }

    /// Sets the string `value` under `key` in dynamic metadata namespace `ns`.
    pub fn set_dynamic_metadata(&mut self, ns: &str, key: &str, value: &str) {
        // SAFETY: `self.envoy` is the live filter pointer; the buffers outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.envoy,
                abi::ModuleBuffer::from_bytes(ns.as_bytes()),
                abi::ModuleBuffer::from_bytes(key.as_bytes()),
                abi::ModuleBuffer::from_bytes(value.as_bytes()),
            )
        }
    }

    /// Stores `value` as bytes filter state under `key`; `false` if Envoy refused (for example
    /// a read-only object already under that key).
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        // SAFETY: `self.envoy` is the live filter pointer; the buffers outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.envoy,
                abi::ModuleBuffer::from_bytes(key.as_bytes()),
                abi::ModuleBuffer::from_bytes(value),
            )
        }
    }

    /// The bytes filter state under `key`, copied.
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        let mut out = abi::EnvoyBuffer::NULL;
        // SAFETY: `self.envoy` is the live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.envoy,
                abi::ModuleBuffer::from_bytes(key.as_bytes()),
                &mut out,
            )
        };
        // SAFETY: on success Envoy's buffer is valid until the hook ends; copied at once.
        ok.then(|| unsafe { envoy_slice(out.ptr, out.length) }.to_vec())
    }

    /// A string attribute, copied (`None` when Envoy has no value, for example no peer
    /// certificate).
    pub fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut out = abi::EnvoyBuffer::NULL;
        // SAFETY: `self.envoy` is the live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.envoy,
                attribute as abi::AttributeId,
                &mut out,
            )
        };
        // SAFETY: on success Envoy's buffer is valid at least until the hook ends; copied at once.
        ok.then(|| unsafe { envoy_slice(out.ptr, out.length) }.to_vec())
    }

    /// An integer attribute.
    pub fn attribute_int(&self, attribute: Attribute) -> Option<u64> {
        let mut out = 0u64;
        // SAFETY: `self.envoy` is the live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.envoy,
                attribute as abi::AttributeId,
                &mut out,
            )
        };
        ok.then_some(out)
    }

    /// A boolean attribute.
    pub fn attribute_bool(&self, attribute: Attribute) -> Option<bool> {
        let mut out = false;
        // SAFETY: `self.envoy` is the live filter pointer; `out` is a valid out-pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                self.envoy,
                attribute as abi::AttributeId,
                &mut out,
            )
        };
        ok.then_some(out)
    }

    /// Resumes a request held by [`HeadersStatus::StopIteration`] or
    /// [`HeadersStatus::StopAllIterationAndBuffer`].
    pub fn continue_decoding(&mut self) {
        // SAFETY: `self.envoy` is the live filter pointer, on its worker thread (Stream is !Send).
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.envoy) }
    }

    /// This stream's scheduler (created on first use, deleted with the filter).
    pub fn scheduler(&mut self) -> Option<Scheduler> {
        if let Some(s) = self.scheduler.borrow().as_ref() {
            return Some(s.clone());
        }
        // SAFETY: `self.envoy` is the live filter pointer on its worker thread.
        let raw =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.envoy) };
        let ptr = NonNull::new(raw)?;
        let s = Scheduler {
            slot: Arc::new(Mutex::new(Some(SchedulerPtr(ptr)))),
        };
        *self.scheduler.borrow_mut() = Some(s.clone());
        Some(s)
    }

    /// The most specific per-route configuration for this stream, if it is a `T`.
    pub fn route_config<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        // SAFETY: `self.envoy` is the live filter pointer.
        let raw = unsafe {
            abi::envoy_dynamic_module_callback_get_most_specific_route_config(self.envoy)
        };
        if raw.is_null() {
            return None;
        }
        // SAFETY: Envoy returns a pointer this module produced in
        // `envoy_dynamic_module_on_http_filter_per_route_config_new` (a leaked
        // `Box<RouteConfigSlot>`), alive while the route that holds it is in use by this stream.
        // The magic check guards against a per-route entry configured for another module.
        let slot = unsafe { &*raw.cast::<RouteConfigSlot>() };
        if slot.magic != ROUTE_CONFIG_MAGIC {
            return None;
        }
        slot.value.clone().downcast::<T>().ok()
    }

    fn metric(
        &mut self,
        f: unsafe extern "C" fn(
            abi::HttpFilterEnvoyPtr,
            usize,
            *mut abi::ModuleBuffer,
            usize,
            u64,
        ) -> abi::MetricsResult,
        id: usize,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        let mut labels = buffers(labels);
        // SAFETY: `self.envoy` is the live filter pointer; `labels` outlives the call and is only
        // read.
        let r = unsafe { f(self.envoy, id, labels.as_mut_ptr(), labels.len(), value) };
        metrics_result(r)
    }

    /// Adds `value` to a counter (label values in definition order).
    pub fn increment_counter(
        &mut self,
        id: CounterId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.metric(
            abi::envoy_dynamic_module_callback_http_filter_increment_counter,
            id.0,
            labels,
            value,
        )
    }

    /// Sets a gauge.
    pub fn set_gauge(
        &mut self,
        id: GaugeId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.metric(
            abi::envoy_dynamic_module_callback_http_filter_set_gauge,
            id.0,
            labels,
            value,
        )
    }

    /// Raises a gauge.
    pub fn increment_gauge(
        &mut self,
        id: GaugeId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.metric(
            abi::envoy_dynamic_module_callback_http_filter_increment_gauge,
            id.0,
            labels,
            value,
        )
    }

    /// Lowers a gauge.
    pub fn decrement_gauge(
        &mut self,
        id: GaugeId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.metric(
            abi::envoy_dynamic_module_callback_http_filter_decrement_gauge,
            id.0,
            labels,
            value,
        )
    }

    /// Records a histogram value.
    pub fn record_histogram(
        &mut self,
        id: HistogramId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.metric(
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value,
            id.0,
            labels,
            value,
        )
    }
}

// =============================================================================================
// Module-side objects handed to Envoy as opaque pointers
// =============================================================================================

/// Behind `envoy_dynamic_module_type_http_filter_config_module_ptr`.
struct ConfigSlot {
    config: Arc<dyn FilterConfig>,
}

/// Behind `envoy_dynamic_module_type_http_filter_per_route_config_module_ptr`.
struct RouteConfigSlot {
    magic: u64,
    value: RouteConfig,
}

const ROUTE_CONFIG_MAGIC: u64 = 0x6d65_7368_5f72_7463; // "mesh_rtc"

/// Behind `envoy_dynamic_module_type_http_filter_module_ptr`. Only ever reached through a shared
/// reference: Envoy can re-enter the module while a hook runs (a local reply or
/// `continue_decoding` synchronously drives other filters, whose replies pass through this
/// filter's encode hooks), so a `&mut` to the slot could alias. The filter sits in a `RefCell`; a
/// re-entrant hook finds it borrowed and skips the filter.
struct FilterSlot {
    filter: RefCell<Box<dyn Filter>>,
    scheduler: RefCell<Option<Scheduler>>,
    /// Set after a hook panicked: the filter is not called again for this stream.
    poisoned: Cell<bool>,
    /// `on_stream_complete` arrived while another hook ran; delivered when that hook returns.
    complete_pending: Cell<bool>,
}

/// Details of the local reply sent when a stream hook panics (`%RESPONSE_CODE_DETAILS%`).
pub const PANIC_DETAILS: &str = "mesh_authz_module_panic";

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string panic payload"
    }
}

/// How a guarded stream hook ended.
enum Outcome<R> {
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
fn with_filter<R>(
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
fn deliver_stream_complete(envoy: abi::HttpFilterEnvoyPtr, module: abi::HttpFilterModulePtr) {
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

fn buffer_bytes<'a>(buf: abi::EnvoyBuffer) -> &'a [u8] {
    // SAFETY: only used on the `name`/`config` buffers of a config hook, which Envoy keeps valid
    // for the duration of that hook; the returned slice is not kept past it.
    unsafe { envoy_slice(buf.ptr, buf.length) }
}

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
            _borrow: PhantomData,
        };
        filter::new_filter_config(&name, buffer_bytes(config), &mut ctx)
            .map_err(|e| format!("filter config {name:?} rejected: {e}"))
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "panic in on_http_filter_config_new: {}",
            panic_message(payload.as_ref())
        )),
    };
    match outcome {
        Ok(config) => {
            Box::into_raw(Box::new(ConfigSlot { config })) as abi::HttpFilterConfigModulePtr
        }
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
