//! mesh-authz as an Envoy **dynamic module** (`envoy.filters.http.dynamic_modules`): the FFI
//! foundation.
//!
//! * [`abi`] (private): hand-written `#[repr(C)]` types and `extern "C"` declarations for the
//!   subset of Envoy 1.40.0's dynamic-module ABI (`v0.2.0`) an authorization filter needs.
//! * [`host`]: the safe layer: borrowed header views, local replies, dynamic metadata, filter
//!   state, attributes, metrics, a `Send` scheduler, per-route config, logging; and the exported
//!   event hooks, each behind `catch_unwind` (a panic in a stream hook answers 503 for that
//!   request, in a config hook refuses the config).
//! * [`filter`]: the traits a filter implements.
//! * `probe` (private): a test-only filter (`filter_name: probe`) that exercises every binding.
//!
//! `unsafe` is denied crate-wide and allowed only in `abi` and `host`.
//!
//! Build: `cargo build --release -p mesh-authz-envoy` gives
//! `target/release/libmesh_authz_envoy.so`; load it with
//! `dynamic_module_config: {name: mesh_authz_envoy, do_not_close: true}` and
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` pointing at its directory.

#[allow(unsafe_code)]
mod abi;
mod authz;
pub mod filter;
#[allow(unsafe_code)]
pub mod host;
mod probe;
