//! Loopback ports for the servers a test starts.

/// A loopback port nothing listens on, chosen below the kernel's ephemeral range (32768 and up
/// by default): an ephemeral port found free can be taken by any outgoing connection before the
/// server under test binds it (seen as a Redis node that "did not start" under a loaded run).
/// Ports are handed out in turn from a per-process start, each checked by binding it.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
