//! Unit tests of `listener`.

use super::*;

fn limits() -> ListenerLimits {
    ListenerLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
    }
}

#[test]
fn first_request_deadline_then_idle_deadline() {
    let opened = Instant::now();
    let a = Arc::new(Activity::new(opened));
    assert_eq!(a.idle_deadline(&limits()), opened + Duration::from_secs(2));
    let busy = a.begin();
    assert!(a.busy() && a.served());
    drop(busy);
    assert!(!a.busy());
    let since = *a.idle_since.lock().unwrap();
    assert!(since >= opened);
    assert_eq!(a.idle_deadline(&limits()), since + Duration::from_secs(30));
}

#[test]
fn overlapping_requests_keep_the_connection_busy() {
    let a = Arc::new(Activity::new(Instant::now()));
    let one = a.begin();
    let two = a.begin();
    drop(one);
    assert!(a.busy());
    drop(two);
    assert!(!a.busy());
}

fn handle() -> Arc<Handle> {
    Arc::new(Handle {
        activity: Arc::new(Activity::new(Instant::now())),
        evict: CancellationToken::new(),
    })
}

#[test]
fn eviction_prefers_the_oldest_connection_without_requests() {
    let registry = Registry::default();
    let (served_idle, busy, silent_old, silent_new) = (handle(), handle(), handle(), handle());
    for h in [&served_idle, &busy, &silent_old, &silent_new] {
        registry.register(h);
    }
    drop(served_idle.activity.begin());
    let _busy = busy.activity.begin();
    assert!(registry.evict_one());
    assert!(silent_old.evict.is_cancelled());
    assert!(!silent_new.evict.is_cancelled());
    assert!(registry.evict_one());
    assert!(silent_new.evict.is_cancelled());
    // Then the idle one that has served; never the busy one.
    assert!(registry.evict_one());
    assert!(served_idle.evict.is_cancelled());
    assert!(!registry.evict_one());
    assert!(!busy.evict.is_cancelled());
    // Closed connections leave the registry.
    drop((silent_old, silent_new));
    registry.register(&handle());
    assert_eq!(registry.open.lock().unwrap().len(), 3);
}

#[test]
fn connection_cap_leaves_the_reserve_free() {
    // Plenty of room: the configured cap stands.
    assert_eq!(connection_cap(4096, 1 << 20), 4096);
    assert_eq!(connection_cap(4096, 2 * 4096 + 258), 4096);
    // Too little: both caps plus one each plus the reserve fit exactly.
    assert_eq!(connection_cap(4096, 1024), 383);
    assert_eq!(2 * (383 + 1) + DESCRIPTOR_RESERVE, 1024);
    assert_eq!(connection_cap(4096, 300), 21);
    // Never below the floor, never above what is configured.
    assert_eq!(connection_cap(4096, 64), MIN_CONNECTIONS);
    assert_eq!(connection_cap(8, 64), 8);
}

#[test]
fn soft_open_files_limit_reaches_the_hard_limit() {
    let soft = raise_open_files_limit().unwrap();
    let (now_soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert_eq!(soft, now_soft);
    assert_eq!(now_soft, hard);
}
