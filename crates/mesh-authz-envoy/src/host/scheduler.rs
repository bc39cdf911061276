//! Waking a stream's filter on its worker thread, or a config on the main thread, from any
//! thread.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use crate::abi;

/// An Envoy scheduler pointer (a stream's or a config's) with its commit and delete calls.
/// Only dereferenced by Envoy, and only under [`Guarded`]'s mutex.
struct Raw {
    ptr: NonNull<c_void>,
    commit: unsafe extern "C" fn(*mut c_void, u64),
    delete: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: Envoy documents both scheduler commits as callable from any thread; the pointer is only
// used by commit and delete, which the mutex serialises.
unsafe impl Send for Raw {}

/// The pointer behind a mutex: commit from any thread, delete once, never both at a time.
#[derive(Clone)]
struct Guarded(Arc<Mutex<Option<Raw>>>);

impl Guarded {
    fn new(raw: Raw) -> Self {
        Self(Arc::new(Mutex::new(Some(raw))))
    }

    fn commit(&self, event_id: u64) -> bool {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(r) => {
                // SAFETY: the pointer came from the matching `scheduler_new` and is not deleted
                // while we hold the mutex (delete takes the same lock); commit is thread-safe.
                unsafe { (r.commit)(r.ptr.as_ptr(), event_id) };
                true
            }
            None => false,
        }
    }

    fn delete(&self) {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = guard.take() {
            // SAFETY: the pointer came from the matching `scheduler_new`, is taken out of the slot
            // exactly once, and no commit can run concurrently (we hold the lock).
            unsafe { (r.delete)(r.ptr.as_ptr()) };
        }
    }
}

/// A handle that wakes one stream's filter on its worker thread from any thread: `Send + Sync +
/// Clone`. [`Scheduler::commit`] after the stream is gone is a harmless no-op that returns `false`
/// (the Envoy scheduler is deleted in the filter's destroy hook under the same mutex, so commit
/// and delete never race).
#[derive(Clone)]
pub struct Scheduler(Guarded);

impl Scheduler {
    /// Wraps a pointer from `http_filter_scheduler_new`.
    pub(super) fn new(ptr: NonNull<c_void>) -> Self {
        Self(Guarded::new(Raw {
            ptr,
            commit: abi::envoy_dynamic_module_callback_http_filter_scheduler_commit,
            delete: abi::envoy_dynamic_module_callback_http_filter_scheduler_delete,
        }))
    }

    /// Schedules `on_scheduled(event_id)` on the stream's worker. Returns `false` when the stream
    /// is already destroyed (nothing happens then).
    pub fn commit(&self, event_id: u64) -> bool {
        self.0.commit(event_id)
    }

    /// Deletes the Envoy scheduler (filter destroy hook, worker thread); later commits are no-ops.
    pub(super) fn delete(&self) {
        self.0.delete();
    }
}

/// A handle that runs [`FilterConfig::on_scheduled`](crate::filter::FilterConfig::on_scheduled)
/// on Envoy's main thread from any thread: `Send + Sync + Clone`. Made by
/// [`ConfigContext::scheduler`](super::ConfigContext::scheduler); deleted with its config (in the
/// config's destroy hook, under the same mutex as commit), after which commits are no-ops.
#[derive(Clone)]
pub struct ConfigScheduler(Guarded);

impl ConfigScheduler {
    /// Wraps a pointer from `http_filter_config_scheduler_new`.
    pub(super) fn new(ptr: NonNull<c_void>) -> Self {
        Self(Guarded::new(Raw {
            ptr,
            commit: abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit,
            delete: abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete,
        }))
    }

    /// Schedules `on_scheduled(event_id)` of the config on the main thread. Returns `false` when
    /// the config is already destroyed.
    pub fn commit(&self, event_id: u64) -> bool {
        self.0.commit(event_id)
    }

    /// Deletes the Envoy scheduler (config destroy hook); later commits are no-ops.
    pub(super) fn delete(&self) {
        self.0.delete();
    }
}
