//! The embedded in-memory revocation store (the default).

/// In-memory revocation store: per replica, lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    _private: (),
}
