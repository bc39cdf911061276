//! Borrowed, read-only views of a stream's header maps.

use std::ffi::c_char;
use std::marker::PhantomData;

use smallvec::SmallVec;

use super::Stream;
use crate::abi;

/// Which of the stream's header maps a [`HeaderMap`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderKind {
    Request,
    Response,
}

impl HeaderKind {
    pub(super) fn abi(self) -> abi::HttpHeaderType {
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
pub(super) unsafe fn envoy_slice<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
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
    pub(super) envoy: abi::HttpFilterEnvoyPtr,
    pub(super) kind: HeaderKind,
    pub(super) _stream: PhantomData<&'a Stream<'a>>,
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

    /// Every `(name, value)` entry, borrowed. Up to [`ENTRIES_INLINE`] entries (every ordinary
    /// request) nothing is allocated: the listing lives on the caller's stack.
    pub fn entries(&self) -> Entries<'a> {
        let n = self.len();
        if n == 0 {
            return Entries::new();
        }
        let mut raw: SmallVec<[abi::EnvoyHttpHeader; ENTRIES_INLINE]> =
            smallvec::smallvec![abi::EnvoyHttpHeader::NULL; n];
        // SAFETY: `raw` holds `get_headers_size` entries, as the header requires; the map can not
        // change in between (we hold `&Stream`).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.envoy,
                self.kind.abi(),
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Entries::new();
        }
        raw.iter()
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

/// How many header entries [`HeaderMap::entries`] holds without allocating.
pub const ENTRIES_INLINE: usize = 32;

/// A header map's `(name, value)` entries, borrowed from Envoy for the hook's duration.
pub type Entries<'a> = SmallVec<[(&'a [u8], &'a [u8]); ENTRIES_INLINE]>;
