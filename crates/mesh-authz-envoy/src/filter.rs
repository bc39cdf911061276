//! The traits a filter implementation writes against. No `unsafe` here: everything Envoy-facing
//! goes through [`crate::host`].

use std::any::Any;
use std::sync::Arc;

use crate::host::{ConfigContext, MainThread, Stream};

/// What a headers hook tells Envoy to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersStatus {
    /// Pass the headers on to the next filter.
    Continue,
    /// Hold the headers (the body may still flow); resume later with
    /// [`Stream::continue_decoding`] from [`Filter::on_scheduled`], or answer with
    /// [`Stream::send_local_reply`].
    StopIteration,
    /// Hold headers and buffer the body until resumed: what an authorizer waiting for a verdict
    /// uses, so that no byte reaches the upstream before the decision.
    StopAllIterationAndBuffer,
}

/// One filter configuration (one `envoy.filters.http.dynamic_modules` entry). Created on the main
/// thread in `on_http_filter_config_new`, shared by every worker.
pub trait FilterConfig: Send + Sync + 'static {
    /// Creates the per-stream filter (on the stream's worker thread).
    fn new_filter(&self) -> Box<dyn Filter>;

    /// An event committed through a [`crate::host::ConfigScheduler`] reached the main thread.
    fn on_scheduled(&self, _main: &mut MainThread<'_>, _event_id: u64) {}
}

/// The per-stream filter. Each hook runs on the stream's worker thread; a panic in any hook is
/// caught by the host layer (a local 503 for that request, never an unwind into Envoy).
pub trait Filter: 'static {
    /// Request headers arrived.
    fn on_request_headers(
        &mut self,
        _stream: &mut Stream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }

    /// Response headers arrived (from the upstream or from a local reply).
    fn on_response_headers(
        &mut self,
        _stream: &mut Stream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }

    /// An event committed through a [`crate::host::Scheduler`] reached the stream's worker.
    fn on_scheduled(&mut self, _stream: &mut Stream<'_>, _event_id: u64) {}

    /// The stream is complete (before access logs are written and the filter is destroyed).
    fn on_stream_complete(&mut self, _stream: &mut Stream<'_>) {}
}

/// A per-route configuration value, as built by the module's route-config factory; reached from a
/// stream with [`Stream::route_config`].
pub type RouteConfig = Arc<dyn Any + Send + Sync>;

/// Builds the filter configuration named by `filter_name` (the `filter_name` field of
/// `DynamicModuleFilter`), or refuses it with a message Envoy's log will show.
pub(crate) fn new_filter_config(
    filter_name: &str,
    config: &[u8],
    ctx: &mut ConfigContext<'_>,
) -> Result<Arc<dyn FilterConfig>, String> {
    match filter_name {
        crate::authz::FILTER_NAME => crate::authz::new_config(config, ctx),
        crate::probe::FILTER_NAME => crate::probe::new_config(config, ctx),
        other => Err(format!(
            "unknown filter_name {other:?} (this module provides: {:?}, {:?})",
            crate::authz::FILTER_NAME,
            crate::probe::FILTER_NAME
        )),
    }
}

/// Builds the per-route configuration named by `name` (the `per_route_config_name` field of
/// `DynamicModuleFilterPerRoute`), or refuses it.
pub(crate) fn new_route_config(name: &str, config: &[u8]) -> Result<RouteConfig, String> {
    match name {
        crate::authz::FILTER_NAME => crate::authz::new_route_config(config),
        crate::probe::ROUTE_CONFIG_NAME => crate::probe::new_route_config(config),
        other => Err(format!(
            "unknown per-route filter_name {other:?} (this module provides: {:?}, {:?})",
            crate::authz::FILTER_NAME,
            crate::probe::ROUTE_CONFIG_NAME
        )),
    }
}
