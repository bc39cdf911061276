//! What Envoy lends to one stream hook.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::Attribute;
use super::guard::{ROUTE_CONFIG_MAGIC, RouteConfigSlot};
use super::headers::{HeaderKind, HeaderMap, envoy_slice};
use super::metrics::{GaugeId, MetricsError, RecordFn, RecordStats, StatCall, record_with};
use super::scheduler::Scheduler;
use crate::abi;

/// What Envoy lends to one stream hook: header access, replies, metadata, metrics, attributes.
/// Lives only for the hook call; neither `Send` nor `Sync`.
pub struct Stream<'a> {
    pub(super) envoy: abi::HttpFilterEnvoyPtr,
    pub(super) scheduler: &'a RefCell<Option<Scheduler>>,
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
        let s = Scheduler::new(ptr);
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

    fn gauge_step(
        &mut self,
        f: RecordFn,
        id: GaugeId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        // SAFETY: `self.envoy` is the live filter pointer of the current hook, on its worker.
        unsafe { record_with(f, self.envoy, id.0, labels, value) }
    }

    /// Raises a gauge.
    pub fn increment_gauge(
        &mut self,
        id: GaugeId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.gauge_step(
            abi::envoy_dynamic_module_callback_http_filter_increment_gauge,
            id,
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
        self.gauge_step(
            abi::envoy_dynamic_module_callback_http_filter_decrement_gauge,
            id,
            labels,
            value,
        )
    }
}

impl RecordStats for Stream<'_> {
    fn record(
        &mut self,
        call: StatCall,
        id: usize,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        let f: RecordFn = match call {
            StatCall::IncrementCounter => {
                abi::envoy_dynamic_module_callback_http_filter_increment_counter
            }
            StatCall::SetGauge => abi::envoy_dynamic_module_callback_http_filter_set_gauge,
            StatCall::RecordHistogram => {
                abi::envoy_dynamic_module_callback_http_filter_record_histogram_value
            }
        };
        // SAFETY: `self.envoy` is the live filter pointer of the current hook, on its worker.
        unsafe { record_with(f, self.envoy, id, labels, value) }
    }
}
