//! Waking one stream's filter on its worker thread from any thread.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use crate::abi;

/// Envoy's scheduler pointer. Only dereferenced by Envoy, and only under [`Scheduler`]'s mutex.
pub(super) struct SchedulerPtr(pub(super) NonNull<c_void>);

// SAFETY: Envoy documents `envoy_dynamic_module_callback_http_filter_scheduler_commit` as callable
// from any thread; the pointer is only used by commit and delete, which the mutex serialises.
unsafe impl Send for SchedulerPtr {}

/// A handle that wakes one stream's filter on its worker thread from any thread: `Send + Sync +
/// Clone`. [`Scheduler::commit`] after the stream is gone is a harmless no-op that returns `false`
/// (the Envoy scheduler is deleted in the filter's destroy hook under the same mutex, so commit
/// and delete never race).
#[derive(Clone)]
pub struct Scheduler {
    pub(super) slot: Arc<Mutex<Option<SchedulerPtr>>>,
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
    pub(super) fn delete(&self) {
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

/// Envoy's config-scheduler pointer. Only dereferenced by Envoy, and only under
/// [`ConfigScheduler`]'s mutex.
pub(super) struct ConfigSchedulerPtr(pub(super) NonNull<c_void>);

// SAFETY: Envoy documents `envoy_dynamic_module_callback_http_filter_config_scheduler_commit` as
// callable from any thread; the pointer is only used by commit and delete, which the mutex
// serialises.
unsafe impl Send for ConfigSchedulerPtr {}

/// A handle that runs [`FilterConfig::on_scheduled`](crate::filter::FilterConfig::on_scheduled)
/// on Envoy's main thread from any thread: `Send + Sync + Clone`. Made by
/// [`ConfigContext::scheduler`](super::ConfigContext::scheduler); deleted with its config (in the
/// config's destroy hook, under the same mutex as commit), after which commits are no-ops.
#[derive(Clone)]
pub struct ConfigScheduler {
    pub(super) slot: Arc<Mutex<Option<ConfigSchedulerPtr>>>,
}

impl ConfigScheduler {
    /// Schedules `on_scheduled(event_id)` of the config on the main thread. Returns `false` when
    /// the config is already destroyed.
    pub fn commit(&self, event_id: u64) -> bool {
        let guard = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(p) => {
                // SAFETY: the pointer came from `config_scheduler_new` and is not deleted while we
                // hold the mutex (delete takes the same lock); commit is thread-safe.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                        p.0.as_ptr(),
                        event_id,
                    )
                };
                true
            }
            None => false,
        }
    }

    /// Deletes the Envoy scheduler (config destroy hook); later commits are no-ops.
    pub(super) fn delete(&self) {
        let mut guard = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = guard.take() {
            // SAFETY: the pointer came from `config_scheduler_new`, is taken out of the slot
            // exactly once, and no commit can run concurrently (we hold the lock).
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(p.0.as_ptr())
            };
        }
    }
}
