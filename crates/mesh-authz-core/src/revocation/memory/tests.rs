//! Unit tests of `memory`.

use std::sync::Arc;

use super::*;
use crate::revocation::RevokedBy;

fn tok<'a>(
    jti: Option<&'a str>,
    sub: Option<&'a str>,
    iat: Option<i64>,
    parent: Option<&'a str>,
) -> TokenRef<'a> {
    TokenRef {
        jti,
        sub,
        iat,
        parent_jti: parent,
    }
}

#[tokio::test]
async fn jti_revoke_and_unrevoke() {
    let s = MemoryStore::new();
    let t = tok(Some("a"), Some("alice"), Some(100), None);
    assert_eq!(s.status(t).await.unwrap(), Status::Active);
    s.revoke_jti("a", i64::MAX).await.unwrap();
    assert_eq!(s.status(t).await.unwrap(), Status::Revoked(RevokedBy::Jti));
    assert_eq!(
        s.status(tok(Some("b"), None, None, None)).await.unwrap(),
        Status::Active
    );
    s.unrevoke_jti("a").await.unwrap();
    assert_eq!(s.status(t).await.unwrap(), Status::Active);
    assert_eq!(s.jti_count(), 0);
    // Unrevoking something unknown is fine.
    s.unrevoke_jti("nope").await.unwrap();
    s.unrevoke_subject("nope").await.unwrap();
}

#[tokio::test]
async fn subject_cutoff() {
    let s = MemoryStore::new();
    s.revoke_subject("alice", 1000).await.unwrap();
    let at = |iat| tok(Some("j"), Some("alice"), iat, None);
    assert_eq!(
        s.status(at(Some(999))).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    assert_eq!(
        s.status(at(Some(1000))).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    assert_eq!(s.status(at(Some(1001))).await.unwrap(), Status::Active);
    // No iat: fail closed.
    assert_eq!(
        s.status(at(None)).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    // Other subjects, and tokens without sub, are untouched.
    assert_eq!(
        s.status(tok(None, Some("bob"), None, None)).await.unwrap(),
        Status::Active
    );
    assert_eq!(
        s.status(tok(None, None, None, None)).await.unwrap(),
        Status::Active
    );
    // A lower cut-off does not shorten the revocation.
    s.revoke_subject("alice", 500).await.unwrap();
    assert_eq!(
        s.status(at(Some(999))).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    s.revoke_subject("alice", 2000).await.unwrap();
    assert_eq!(
        s.status(at(Some(1500))).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    s.unrevoke_subject("alice").await.unwrap();
    assert_eq!(s.status(at(None)).await.unwrap(), Status::Active);
}

#[tokio::test]
async fn parent_cascade_and_order() {
    let s = MemoryStore::new();
    s.revoke_jti("parent", i64::MAX).await.unwrap();
    let child = tok(Some("child"), Some("alice"), Some(10), Some("parent"));
    assert_eq!(
        s.status(child).await.unwrap(),
        Status::Revoked(RevokedBy::Parent)
    );

    // Jti before Parent before Subject.
    s.revoke_subject("alice", 100).await.unwrap();
    assert_eq!(
        s.status(child).await.unwrap(),
        Status::Revoked(RevokedBy::Parent)
    );
    s.revoke_jti("child", i64::MAX).await.unwrap();
    assert_eq!(
        s.status(child).await.unwrap(),
        Status::Revoked(RevokedBy::Jti)
    );
    s.unrevoke_jti("child").await.unwrap();
    s.unrevoke_jti("parent").await.unwrap();
    assert_eq!(
        s.status(child).await.unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );

    // A token's own jti is not its parent: a revoked `parent_jti` value only matters as a jti.
    let orphan = tok(Some("x"), None, None, Some("unknown"));
    assert_eq!(s.status(orphan).await.unwrap(), Status::Active);
}

#[test]
fn purge_respects_grace() {
    let s = MemoryStore::with_retention_grace(Duration::from_secs(60));
    s.revoke_jti_at("old", 1000, 900);
    s.revoke_jti_at("new", 5000, 900);
    let old = tok(Some("old"), None, None, None);

    // Still held through exp + grace (a verifier with skew may still accept the token).
    s.revoke_jti_at("x", 9000, 1060);
    assert_eq!(s.status_now(old), Status::Revoked(RevokedBy::Jti));
    assert_eq!(s.jti_count(), 3);

    // Purged on the next write after exp + grace.
    s.revoke_jti_at("y", 9000, 1061);
    assert_eq!(s.status_now(old), Status::Active);
    assert_eq!(s.jti_count(), 3);
    assert_eq!(
        s.status_now(tok(Some("new"), None, None, None)),
        Status::Revoked(RevokedBy::Jti)
    );

    // Subject writes purge too.
    s.revoke_subject_at("alice", 1, 100_000);
    assert_eq!(s.jti_count(), 0);
    assert_eq!(s.subject_count(), 1);
}

#[test]
fn revoking_again_keeps_the_longer_expiry() {
    let s = MemoryStore::with_retention_grace(Duration::ZERO);
    s.revoke_jti_at("a", 2000, 0);
    s.revoke_jti_at("a", 1000, 0);
    s.revoke_jti_at("z", 9999, 1500);
    assert_eq!(
        s.status_now(tok(Some("a"), None, None, None)),
        Status::Revoked(RevokedBy::Jti)
    );
    s.revoke_jti_at("a", 3000, 1500);
    s.revoke_jti_at("z", 9999, 2500);
    assert_eq!(
        s.status_now(tok(Some("a"), None, None, None)),
        Status::Revoked(RevokedBy::Jti)
    );
    s.revoke_jti_at("z", 9999, 3001);
    assert_eq!(
        s.status_now(tok(Some("a"), None, None, None)),
        Status::Active
    );
    // The expiry index holds exactly the live entries.
    assert_eq!(s.read().by_expiry.len(), s.jti_count());
}

#[test]
fn bounded_by_time() {
    let s = MemoryStore::with_retention_grace(Duration::from_secs(10));
    // Tokens living 60 s, one revocation per second for an hour.
    for now in 0..3600 {
        s.revoke_jti_at(&format!("j{now}"), now + 60, now);
    }
    assert!(s.jti_count() <= 72, "held {}", s.jti_count());
    assert_eq!(s.read().by_expiry.len(), s.jti_count());
}

#[test]
fn extreme_values() {
    let s = MemoryStore::with_retention_grace(Duration::MAX);
    s.revoke_jti_at("max", i64::MAX, i64::MAX);
    s.revoke_jti_at("min", i64::MIN, i64::MAX);
    assert_eq!(s.jti_count(), 2);
    s.revoke_subject_at("s", i64::MIN, 0);
    assert_eq!(
        s.status_now(tok(None, Some("s"), Some(i64::MIN), None)),
        Status::Revoked(RevokedBy::Subject)
    );
    assert_eq!(
        s.status_now(tok(None, Some("s"), Some(i64::MIN + 1), None)),
        Status::Active
    );
}

#[test]
fn list_recent_newest_first() {
    let s = MemoryStore::new();
    s.revoke_jti_at("a", 10_000, 100);
    s.revoke_subject_at("alice", 50, 200);
    s.revoke_jti_at("b", 10_000, 300);
    let all = s.list_recent(10);
    assert_eq!(
        all,
        vec![
            RevocationEntry::Jti {
                jti: "b".into(),
                expires_at: 10_000,
                revoked_at: 300
            },
            RevocationEntry::Subject {
                sub: "alice".into(),
                before: 50,
                revoked_at: 200
            },
            RevocationEntry::Jti {
                jti: "a".into(),
                expires_at: 10_000,
                revoked_at: 100
            },
        ]
    );
    assert_eq!(s.list_recent(1).len(), 1);
    assert!(s.list_recent(0).is_empty());
}

#[tokio::test]
async fn works_as_trait_object() {
    let s: Arc<dyn RevocationStore> = Arc::new(MemoryStore::new());
    s.revoke_jti("a", i64::MAX).await.unwrap();
    assert_eq!(
        s.status(tok(Some("a"), None, None, None)).await.unwrap(),
        Status::Revoked(RevokedBy::Jti)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_smoke() {
    let s = Arc::new(MemoryStore::new());
    let mut tasks = Vec::new();
    for t in 0..64 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let jti = format!("t{t}-{i}");
                let r = tok(Some(&jti), Some("shared"), Some(1), None);
                assert_eq!(s.status(r).await.unwrap(), Status::Active);
                s.revoke_jti(&jti, i64::MAX).await.unwrap();
                assert_eq!(s.status(r).await.unwrap(), Status::Revoked(RevokedBy::Jti));
                if i % 50 == 0 {
                    s.revoke_subject(&format!("sub{t}"), i).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.jti_count(), 64 * 200);
    assert_eq!(s.subject_count(), 64);
    assert_eq!(s.read().by_expiry.len(), 64 * 200);
}
