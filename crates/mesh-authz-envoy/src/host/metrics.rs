//! Stats: defining counters, gauges and histograms (config hook), recording them from the main
//! thread ([`MainThread`]), and the result codes of the recording calls.

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::scheduler::ConfigScheduler;

use crate::abi;

/// A counter defined by [`ConfigContext::define_counter`]; valid with streams of that config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterId(pub(super) usize);
/// A gauge defined by [`ConfigContext::define_gauge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeId(pub(super) usize);
/// A histogram defined by [`ConfigContext::define_histogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramId(pub(super) usize);

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

pub(super) fn metrics_result(r: abi::MetricsResult) -> Result<(), MetricsError> {
    match r {
        abi::METRICS_SUCCESS => Ok(()),
        1 => Err(MetricsError::MetricNotFound),
        2 => Err(MetricsError::InvalidLabels),
        3 => Err(MetricsError::Frozen),
        other => Err(MetricsError::Unknown(other)),
    }
}

pub(super) fn buffers(strings: &[&str]) -> Vec<abi::ModuleBuffer> {
    strings
        .iter()
        .map(|s| abi::ModuleBuffer::from_bytes(s.as_bytes()))
        .collect()
}

/// What Envoy lends during `on_http_filter_config_new` (main thread): defining metrics, and
/// schedulers for work on the main thread later.
pub struct ConfigContext<'a> {
    pub(super) envoy: abi::HttpFilterConfigEnvoyPtr,
    /// Schedulers made for this config; the config's slot deletes them when Envoy destroys it.
    pub(super) schedulers: Vec<ConfigScheduler>,
    pub(super) _borrow: PhantomData<&'a mut ()>,
}

type DefineFn = unsafe extern "C" fn(
    abi::HttpFilterConfigEnvoyPtr,
    abi::ModuleBuffer,
    *mut abi::ModuleBuffer,
    usize,
    *mut usize,
) -> abi::MetricsResult;

impl ConfigContext<'_> {
    /// A scheduler for this config's main-thread events (`None` if Envoy could not make one).
    pub fn scheduler(&mut self) -> Option<ConfigScheduler> {
        // SAFETY: `self.envoy` is the config pointer of the running `on_http_filter_config_new`.
        let raw = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.envoy)
        };
        let s = ConfigScheduler::new(NonNull::new(raw)?);
        self.schedulers.push(s.clone());
        Some(s)
    }

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

/// What Envoy lends to a config's scheduled event on the main thread
/// ([`FilterConfig::on_scheduled`](crate::filter::FilterConfig::on_scheduled)): recording the
/// config's stats without a stream. Lives only for that hook call.
pub struct MainThread<'a> {
    pub(super) envoy: abi::HttpFilterConfigEnvoyPtr,
    pub(super) _borrow: PhantomData<&'a mut ()>,
}

/// Envoy's recording calls share one shape: the handle's pointer (a stream's or a config's), the
/// stat id, the label values, the value.
pub(super) type RecordFn = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    usize,
    *mut abi::ModuleBuffer,
    usize,
    u64,
) -> abi::MetricsResult;

/// Calls `f` with `envoy`, `id`, `labels` (as Envoy buffers) and `value`.
///
/// # Safety
/// `envoy` must be the live pointer of the kind `f` takes (the current hook's stream, or the
/// config of the running scheduled hook), on the thread that hook runs on.
pub(super) unsafe fn record_with(
    f: RecordFn,
    envoy: *mut std::ffi::c_void,
    id: usize,
    labels: &[&str],
    value: u64,
) -> Result<(), MetricsError> {
    let mut labels = buffers(labels);
    // SAFETY: the caller vouches for `envoy`; `labels` outlives the call and is only read.
    let r = unsafe { f(envoy, id, labels.as_mut_ptr(), labels.len(), value) };
    metrics_result(r)
}

/// One of the recording calls every stats handle has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatCall {
    /// Add to a counter.
    IncrementCounter,
    /// Set a gauge.
    SetGauge,
    /// Record one histogram value.
    RecordHistogram,
}

/// Recording a config's stats, from a stream hook ([`Stream`](super::Stream)) or on the main
/// thread ([`MainThread`]); label values in definition order.
pub trait RecordStats {
    /// Makes `call` for stat `id` through this handle.
    fn record(
        &mut self,
        call: StatCall,
        id: usize,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError>;

    /// Adds `value` to a counter.
    fn increment_counter(
        &mut self,
        id: CounterId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.record(StatCall::IncrementCounter, id.0, labels, value)
    }

    /// Sets a gauge.
    fn set_gauge(&mut self, id: GaugeId, labels: &[&str], value: u64) -> Result<(), MetricsError> {
        self.record(StatCall::SetGauge, id.0, labels, value)
    }

    /// Records one value in a histogram.
    fn record_histogram(
        &mut self,
        id: HistogramId,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        self.record(StatCall::RecordHistogram, id.0, labels, value)
    }
}

impl RecordStats for MainThread<'_> {
    fn record(
        &mut self,
        call: StatCall,
        id: usize,
        labels: &[&str],
        value: u64,
    ) -> Result<(), MetricsError> {
        let f: RecordFn = match call {
            StatCall::IncrementCounter => {
                abi::envoy_dynamic_module_callback_http_filter_config_increment_counter
            }
            StatCall::SetGauge => abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
            StatCall::RecordHistogram => {
                abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value
            }
        };
        // SAFETY: `self.envoy` is the config pointer Envoy passed to the running scheduled hook
        // (MainThread can not outlive it), on the main thread.
        unsafe { record_with(f, self.envoy, id, labels, value) }
    }
}
