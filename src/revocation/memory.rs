//! The embedded in-memory revocation store (the default).

/// In-memory revocation store: per replica, lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    _private: (),
}

impl super::RevocationStore for MemoryStore {
    fn status<'a>(
        &'a self,
        _token: super::TokenRef<'a>,
    ) -> super::BoxFuture<'a, Result<super::Status, super::StoreError>> {
        todo!()
    }
    fn revoke_jti<'a>(
        &'a self,
        _jti: &'a str,
        _e: i64,
    ) -> super::BoxFuture<'a, Result<(), super::StoreError>> {
        todo!()
    }
    fn revoke_subject<'a>(
        &'a self,
        _s: &'a str,
        _b: i64,
    ) -> super::BoxFuture<'a, Result<(), super::StoreError>> {
        todo!()
    }
    fn unrevoke_jti<'a>(
        &'a self,
        _j: &'a str,
    ) -> super::BoxFuture<'a, Result<(), super::StoreError>> {
        todo!()
    }
    fn unrevoke_subject<'a>(
        &'a self,
        _s: &'a str,
    ) -> super::BoxFuture<'a, Result<(), super::StoreError>> {
        todo!()
    }
}
