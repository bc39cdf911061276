//! Attacks on the listeners and on Check's transport, each with a bounded time and count, on
//! loopback only:
//!
//! * requests tonic's client would refuse to send, over a raw HTTP/2 client: values that are not
//!   UTF-8 (in the `CheckRequest` and in HTTP/2 headers), an oversized `CheckRequest`, a
//!   `metadata_context` nested past the decoder's depth limit, a compressed or torn message, and a
//!   body that arrives after its `grpc-timeout` (or under the non-standard `+100m`). Each must be
//!   answered with a deny `CheckResponse` (gRPC status OK), never a gRPC error status: Envoy's
//!   `failure_mode_allow` turns an error into an allow;
//! * slowloris on the HTTP and gRPC listeners: connections that never finish their headers (or
//!   their HTTP/2 preface) are closed after `server.header_read_timeout`;
//! * idle-connection floods past `server.max_connections`, while real Checks, including through a
//!   real Envoy 1.40 with `failure_mode_allow: true`, are still answered;
//! * descriptor exhaustion: the real binary, started under a soft `RLIMIT_NOFILE` of 256, raises
//!   it to the hard limit and keeps answering Envoy through a 300-socket flood; started with
//!   soft = hard = 300 on Redis, it fits its listener caps to the limit, so 1200 idle sockets lock
//!   out neither new callers nor Redis reconnects; at 40 (below the caps' floor) a failed accept
//!   backs off, is logged once and evicts an idle connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::ports::free_port;
use crate::common::process::Proc;
use crate::common::*;
use axum::body::Bytes;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use mesh_authz_core::token::Algorithm;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// ext_authz's Check method, as Envoy calls it.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Small limits, so that the tests run in seconds.
const SERVER: &str =
    "server: { max_connections: 16, header_read_timeout: 500ms, idle_timeout: 2s }\n";

/// How long any connection the server should close may take to go (header_read_timeout plus
/// the close grace, with room for a loaded machine).
const CLOSED_WITHIN: Duration = Duration::from_secs(6);

fn config(jwks_uri: &str) -> String {
    format!(
        r#"{SERVER}
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m }}
rules:
  - name: api
    match: {{ path_prefix: / }}
    require: {{ token: true }}
limits: {{ check_timeout: 2s }}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 gRPC client
// ---------------------------------------------------------------------------------------------

/// How the request body is sent.
enum BodyPlan {
    /// At once, with the headers.
    Now(Vec<u8>),
    /// This long after the headers.
    After(Duration, Vec<u8>),
    /// Never (the stream stays open).
    Never,
}

/// What came back: the HTTP status, `grpc-status` (from the trailers or a trailers-only answer),
/// `grpc-message`, and the decoded `CheckResponse`, if any.
#[derive(Debug)]
struct Answer {
    http_status: u16,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
    response: Option<CheckResponse>,
}

/// The length-prefixed gRPC frame of `message` (flag 0: uncompressed).
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Sends one Check over a fresh HTTP/2 connection with exactly these extra headers (any bytes)
/// and body; waits at most 10 s for the answer.
async fn raw_check(addr: SocketAddr, headers: &[(&str, &[u8])], body: BodyPlan) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{CHECK_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    let (response, mut stream) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let sender = tokio::spawn(async move {
        match body {
            BodyPlan::Now(b) => {
                let _ = stream.send_data(Bytes::from(b), true);
            }
            BodyPlan::After(delay, b) => {
                tokio::time::sleep(delay).await;
                let _ = stream.send_data(Bytes::from(b), true);
            }
            BodyPlan::Never => {}
        }
        // Keep the stream (and so the request) open until the test is done with it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(stream);
    });
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("no answer within 10s")
        .expect("HTTP/2 response");
    let http_status = response.status().as_u16();
    let header = |h: &http::HeaderMap, n: &str| {
        h.get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut grpc_status = header(response.headers(), "grpc-status");
    let mut grpc_message = header(response.headers(), "grpc-message");
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data())
        .await
        .expect("body within 10s")
    {
        let chunk = chunk.expect("body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    if let Ok(Some(trailers)) = body.trailers().await {
        grpc_status = grpc_status.or_else(|| header(&trailers, "grpc-status"));
        grpc_message = grpc_message.or_else(|| header(&trailers, "grpc-message"));
    }
    sender.abort();
    let response = (data.len() >= 5).then(|| CheckResponse::decode(&data[5..]).unwrap());
    Answer {
        http_status,
        grpc_status,
        grpc_message,
        response,
    }
}

/// Asserts a deny `CheckResponse` with `status` (and `reason`, when given) under gRPC status OK.
fn assert_deny(case: &str, a: &Answer, status: u16, want_reason: Option<&str>) {
    assert_eq!(a.http_status, 200, "{case}: {a:?}");
    assert_eq!(
        a.grpc_status.as_deref(),
        Some("0"),
        "{case}: Check ended in a gRPC error ({:?}), which failure_mode_allow turns into an allow",
        a.grpc_message
    );
    let r = a
        .response
        .as_ref()
        .unwrap_or_else(|| panic!("{case}: no CheckResponse"));
    assert_eq!(verdict(r).0, status, "{case}: {r:?}");
    if let Some(want) = want_reason {
        assert_eq!(reason(r), want, "{case}");
    }
}

/// A plain Check for `/api` with no token (denied 401 by the rules).
fn plain_request() -> CheckRequest {
    check_request(Req::get("/api/orders"))
}

/// `req`'s bytes with the `placeholder` string's bytes replaced by `bytes` (same length): how a
/// string that is not UTF-8 gets into a message prost would refuse to encode.
fn splice(req: &CheckRequest, placeholder: &str, bytes: &[u8]) -> Vec<u8> {
    assert_eq!(placeholder.len(), bytes.len());
    let mut out = req.encode_to_vec();
    let at = out
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .expect("placeholder in the encoding");
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

/// A `metadata_context` Struct nested `depth` levels deep.
fn nested(depth: usize) -> CheckRequest {
    let mut s = Struct::default();
    for _ in 0..depth {
        let mut outer = Struct::default();
        outer.fields.insert(
            "n".into(),
            PbValue {
                kind: Some(Kind::StructValue(s)),
            },
        );
        s = outer;
    }
    let mut req = plain_request();
    if let Some(a) = req.attributes.as_mut() {
        a.metadata_context = Some(Metadata {
            filter_metadata: HashMap::from([("attacker".to_string(), s)]),
            ..Default::default()
        });
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_transport_abuse_is_always_a_deny_check_response() {
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    let addr = server.grpc_addr;
    let ms = Duration::from_millis;

    let mut bad_utf8 = plain_request();
    if let Some(h) = bad_utf8
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        h.headers
            .insert("x-attack".into(), "PLACEHOLDER-VALUE".into());
    }
    let bad_utf8 = splice(
        &bad_utf8,
        "PLACEHOLDER-VALUE",
        b"\xff\xfe\xfd\xc3\x28abcdefghijkl",
    );

    let mut oversized = plain_request();
    if let Some(h) = oversized
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        h.headers.insert("x-big".into(), "a".repeat(5 << 20));
    }

    let plain = frame(&plain_request().encode_to_vec());
    let mut compressed = plain.clone();
    compressed[0] = 1;
    let mut two_messages = plain.clone();
    two_messages.extend_from_slice(&plain);
    let torn = plain[..plain.len() - 3].to_vec();

    struct Case {
        name: &'static str,
        headers: Vec<(&'static str, &'static [u8])>,
        body: BodyPlan,
        status: u16,
        reason: Option<&'static str>,
    }
    let case = |name, headers, body, status, reason| Case {
        name,
        headers,
        body,
        status,
        reason,
    };
    let cases = vec![
        // The raw client itself: an ordinary request gets its ordinary answer.
        case("control", vec![], BodyPlan::Now(plain.clone()), 401, None),
        case(
            "CheckRequest header value not UTF-8",
            vec![],
            BodyPlan::Now(frame(&bad_utf8)),
            403,
            Some("request_invalid"),
        ),
        case(
            "CheckRequest over the decode limit",
            vec![],
            BodyPlan::Now(frame(&oversized.encode_to_vec())),
            403,
            Some("request_invalid"),
        ),
        case(
            "metadata_context nested past the depth limit",
            vec![],
            BodyPlan::Now(frame(&nested(200).encode_to_vec())),
            403,
            Some("request_invalid"),
        ),
        case(
            "compressed message",
            vec![("grpc-encoding", b"gzip".as_slice())],
            BodyPlan::Now(compressed),
            403,
            Some("request_invalid"),
        ),
        case(
            "two messages",
            vec![],
            BodyPlan::Now(two_messages),
            403,
            Some("request_invalid"),
        ),
        case(
            "torn message",
            vec![],
            BodyPlan::Now(torn),
            403,
            Some("request_invalid"),
        ),
        case(
            "empty body",
            vec![],
            BodyPlan::Now(Vec::new()),
            403,
            Some("request_invalid"),
        ),
        // HTTP/2 header values that are not UTF-8: tonic answers `grpc-encoding` it cannot read
        // with UNIMPLEMENTED; an unreadable `grpc-timeout` is a malformed request.
        case(
            "grpc-encoding not UTF-8",
            vec![("grpc-encoding", b"\xff\xfe".as_slice())],
            BodyPlan::Now(plain.clone()),
            401,
            None,
        ),
        case(
            "metadata value not UTF-8",
            vec![("x-meta", b"\xc3\x28\xff".as_slice())],
            BodyPlan::Now(plain.clone()),
            401,
            None,
        ),
        case(
            "grpc-timeout not UTF-8",
            vec![("grpc-timeout", b"1\xffm".as_slice())],
            BodyPlan::Now(plain.clone()),
            403,
            Some("request_invalid"),
        ),
        // Body late under a short deadline: tonic's own timer used to answer with a gRPC error.
        case(
            "body 120ms after HEADERS, grpc-timeout 50m",
            vec![("grpc-timeout", b"50m".as_slice())],
            BodyPlan::After(ms(120), plain.clone()),
            503,
            Some("deadline_exceeded"),
        ),
        case(
            "body 60ms after HEADERS, grpc-timeout 40m",
            vec![("grpc-timeout", b"40m".as_slice())],
            BodyPlan::After(ms(60), plain.clone()),
            503,
            Some("deadline_exceeded"),
        ),
        case(
            "no body, grpc-timeout 100m",
            vec![("grpc-timeout", b"100m".as_slice())],
            BodyPlan::Never,
            503,
            Some("deadline_exceeded"),
        ),
        // `+100m` is not a gRPC timeout (digits only); tonic read it as 100 ms.
        case(
            "body 150ms after HEADERS, grpc-timeout +100m",
            vec![("grpc-timeout", b"+100m".as_slice())],
            BodyPlan::After(ms(150), plain.clone()),
            403,
            Some("request_invalid"),
        ),
        case(
            "body 40ms after HEADERS, grpc-timeout +100m",
            vec![("grpc-timeout", b"+100m".as_slice())],
            BodyPlan::After(ms(40), plain.clone()),
            403,
            Some("request_invalid"),
        ),
    ];
    // Every case runs; the failures are reported together.
    let mut failures = Vec::new();
    for c in cases {
        let answer = raw_check(addr, &c.headers, c.body).await;
        let outcome = std::panic::catch_unwind(|| assert_deny(c.name, &answer, c.status, c.reason));
        if outcome.is_err() {
            failures.push(format!("{}: {answer:?}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Each refusal is counted under its reason.
    assert!(
        metric(
            &server,
            "mesh_authz_checks_total{decision=\"deny\",reason=\"request_invalid\"}"
        ) >= 9.0
    );
    assert!(
        metric(
            &server,
            "mesh_authz_checks_total{decision=\"deny\",reason=\"deadline_exceeded\"}"
        ) >= 3.0
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_body_within_the_deadline_is_decided_normally() {
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    let token = mint(&key, "alice", |_| {});
    let req = check_request(Req::get("/api/orders").bearer(&token));
    let answer = raw_check(
        server.grpc_addr,
        &[("grpc-timeout", b"5S".as_slice())],
        BodyPlan::After(Duration::from_millis(50), frame(&req.encode_to_vec())),
    )
    .await;
    assert_eq!(answer.grpc_status.as_deref(), Some("0"), "{answer:?}");
    assert_eq!(verdict(answer.response.as_ref().unwrap()).0, 200);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Slowloris and idle floods
// ---------------------------------------------------------------------------------------------

/// Writes `opening`, then dribbles `dribble` one byte every 100 ms (ignoring write errors) while
/// reading; returns how long until the server closed the connection, or None if it was still
/// open after `CLOSED_WITHIN`.
async fn closed_after(addr: SocketAddr, opening: &[u8], dribble: &[u8]) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(opening).await;
    let (mut rd, mut wr) = tcp.into_split();
    let dribble = dribble.to_vec();
    let writer = tokio::spawn(async move {
        for b in dribble.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    closed.ok().map(|()| started.elapsed())
}

/// An HTTP/2 frame header: length, type, flags, stream id.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_on_both_listeners() {
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    let settings = h2_frame(4, 0, 0, &[]);
    let mut preface_settings = PREFACE.to_vec();
    preface_settings.extend_from_slice(&settings);
    // HEADERS on stream 1 without END_HEADERS: a header block that never ends.
    let mut open_headers = preface_settings.clone();
    open_headers.extend_from_slice(&h2_frame(1, 0, 1, &[0x83, 0x86]));
    let http = server.http_addr;
    let grpc = server.grpc_addr;
    let cases: Vec<(&str, SocketAddr, Vec<u8>, &[u8])> = vec![
        ("http: silent", http, Vec::new(), b"".as_slice()),
        (
            "http: request line dribbled",
            http,
            b"GET /hea".to_vec(),
            b"dzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz".as_slice(),
        ),
        (
            "http: headers never finished",
            http,
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n".to_vec(),
            b"X-a: b\r\n".as_slice(),
        ),
        (
            "http: h2c preface, then headers never finished",
            http,
            open_headers.clone(),
            b"".as_slice(),
        ),
        ("grpc: silent", grpc, Vec::new(), b"".as_slice()),
        ("grpc: preface dribbled", grpc, Vec::new(), PREFACE),
        (
            "grpc: preface and SETTINGS, then nothing",
            grpc,
            preface_settings,
            b"".as_slice(),
        ),
        (
            "grpc: HEADERS never finished",
            grpc,
            open_headers,
            b"".as_slice(),
        ),
    ];
    let mut results = Vec::new();
    for (name, addr, opening, dribble) in cases {
        results.push((name, closed_after(addr, &opening, dribble).await));
    }
    for (name, closed) in &results {
        assert!(
            closed.is_some(),
            "{name}: still open after {CLOSED_WITHIN:?}"
        );
    }
    // The listeners still serve.
    let mut client = client(grpc).await;
    let r = check(&mut client, Req::get("/api/x")).await;
    assert_eq!(verdict(&r).0, 401);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_after_a_request_is_closed() {
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    // HTTP/1.1 keep-alive: answered, then closed once idle.
    let closed = closed_after(
        server.http_addr,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"",
    )
    .await;
    assert!(
        closed.is_some(),
        "idle HTTP/1.1 keep-alive connection left open"
    );
    // HTTP/2: a Check answered, then the connection is closed (GOAWAY) after idle_timeout (2s).
    let tcp = TcpStream::connect(server.grpc_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let (resp, mut stream) = client
        .send_request(
            http::Request::builder()
                .method("POST")
                .uri(format!("http://{}{CHECK_PATH}", server.grpc_addr))
                .header("content-type", "application/grpc")
                .body(())
                .unwrap(),
            false,
        )
        .unwrap();
    stream
        .send_data(Bytes::from(frame(&plain_request().encode_to_vec())), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(
        ended.is_ok(),
        "idle HTTP/2 connection still open 8s after its last request (idle_timeout 2s)"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_past_the_cap_does_not_lock_out_checks() {
    let _one_flood_at_a_time = FLOODS.lock().await;
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    let token = mint(&key, "alice", |_| {});
    // Four times the cap of idle sockets on each listener.
    let mut flood = Vec::new();
    for addr in [server.grpc_addr, server.http_addr] {
        for _ in 0..64 {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    // A fresh client (new connection) is answered while the flood sockets are still open.
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = client(server.grpc_addr).await;
        check(&mut c, Req::get("/api/x").bearer(&token)).await
    })
    .await
    .expect("a fresh Check was not answered within 5s during an idle flood");
    assert_eq!(verdict(&answered).0, 200);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http.get(format!("http://{}/healthz", server.http_addr))
            .send(),
    )
    .await
    .expect("/healthz not answered within 5s during an idle flood")
    .unwrap();
    assert_eq!(r.status(), 200);
    drop(flood);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Through a real Envoy, and the real binary under a low descriptor limit
// ---------------------------------------------------------------------------------------------

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`; panics (fails the test)
/// when none exists.
fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("envoy").is_file() {
                return dir.join("envoy");
            }
        }
    }
    panic!("no Envoy binary: set ENVOY_BIN or put envoy on PATH");
}

/// An Envoy whose listener asks mesh-authz (gRPC, `failure_mode_allow: true`, so an unanswered
/// Check would let the request through) and answers 200 itself when allowed.
struct Envoy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    async fn start(authz: SocketAddr) -> Envoy {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let config = format!(
            r#"
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "upstream" }} }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: true
              grpc_service:
                envoy_grpc: {{ cluster_name: mesh-authz }}
                timeout: 4s
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: mesh-authz
    type: STATIC
    connect_timeout: 4s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: mesh-authz
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {authz_port} }} }} }}
"#,
            authz_port = authz.port()
        );
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base_id = std::process::id() % 100_000 * 100
            + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&file)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-level", "warn", "--base-id", &base_id.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start envoy");
        let envoy = Envoy {
            child,
            port,
            _dir: dir,
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{admin}/ready"))
                .send()
                .await
                && r.status() == 200
            {
                return envoy;
            }
            assert!(Instant::now() < deadline, "envoy not ready within 20s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One request through Envoy; its status, or 0 if Envoy did not answer within 10s.
    async fn get(&self, token: Option<&str>) -> u16 {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut rb = http.get(format!("http://127.0.0.1:{}/api/orders", self.port));
        if let Some(t) = token {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        rb.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_checks_are_answered_during_an_idle_flood() {
    let _one_flood_at_a_time = FLOODS.lock().await;
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri())).await;
    let envoy = Envoy::start(server.grpc_addr).await;
    let token = mint(&key, "alice", |_| {});
    // Idle sockets: four times the cap, before Envoy opens its first connection to mesh-authz.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(TcpStream::connect(server.grpc_addr).await.unwrap());
    }
    // failure_mode_allow is on: a Check that is not answered would turn this 401 into a 200.
    assert_eq!(envoy.get(None).await, 401);
    assert_eq!(envoy.get(Some(&token)).await, 200);
    // More flood while Envoy holds its connection.
    for _ in 0..64 {
        flood.push(TcpStream::connect(server.grpc_addr).await.unwrap());
    }
    for _ in 0..3 {
        assert_eq!(envoy.get(None).await, 401);
    }
    drop(flood);
    drop(envoy);
    server.shutdown().await;
}

/// The soft and hard `Max open files` of a process, from /proc.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_raises_its_descriptor_limit_and_survives_a_flood() {
    let _one_flood_at_a_time = FLOODS.lock().await;
    let (_, hard) = open_files_limits(std::process::id());
    assert!(
        hard >= 1024,
        "this test needs a hard RLIMIT_NOFILE of at least 1024 (have {hard})"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = key(Algorithm::RS256, "k1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &key.jwks_json).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ grpc_addr: 127.0.0.1:{grpc}, http_addr: 127.0.0.1:{http}, max_connections: 64, header_read_timeout: 1s }}\n\
             providers:\n  - name: corp\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    jwks: {{ file: {} }}\n\
             rules:\n  - name: api\n    match: {{ path_prefix: / }}\n    require: {{ token: true }}\n",
            jwks_file.display()
        ),
    )
    .unwrap();
    // A soft limit of 256 (the hard one untouched), as a small container might start it.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_mesh-authz"))
        .arg(&cfg);
    let mut proc = Proc::spawn_command(command);
    proc.wait_for("mesh-authz serving", Duration::from_secs(20));
    let authz: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let envoy = Envoy::start(authz).await;
    let token = mint(&key, "alice", |_| {});
    // 300 idle sockets: past the old soft limit of 256, and past max_connections.
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(authz).await.unwrap());
    }
    // failure_mode_allow is on: a Check left unanswered would be a 200.
    assert_eq!(envoy.get(None).await, 401);
    assert_eq!(envoy.get(Some(&token)).await, 200);
    // A direct client on a fresh connection too.
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = client(authz).await;
        check(&mut c, Req::get("/api/x")).await
    })
    .await
    .expect("a fresh Check was not answered within 5s during the flood");
    assert_eq!(verdict(&answered).0, 401);
    drop(flood);
    let (soft, now_hard) = open_files_limits(proc.child.id());
    assert_eq!(
        (soft, now_hard),
        (hard, hard),
        "soft RLIMIT_NOFILE not raised to the hard limit"
    );

    let out = proc.drain();
    assert!(out.contains("open-files limit"), "{out}");
}

/// One Check on a fresh connection, bounded by 3 s end to end (connect included): the HTTP
/// status of the answer (200 allow) and the deny reason, or `None` when nothing came in time.
/// The flood tests take turns: each holds hundreds of connections and measures CPU and timing,
/// which another flood running beside it (in this one test binary) would distort.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fresh_check(authz: SocketAddr, token: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(3), async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{authz}"))
            .unwrap()
            .connect()
            .await
            .ok()?;
        let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(channel);
        let r = check_with_deadline(&mut c, Req::get("/api/x").bearer(token), Duration::from_secs(2))
            .await
            .ok()?;
        Some((verdict(&r).0, reason(&r)))
    })
    .await
    .ok()
    .flatten()
}

/// `/readyz` on a fresh connection, bounded by 3 s; 0 when nothing came in time.
async fn fresh_readyz(http: SocketAddr) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    match client.get(format!("http://{http}/readyz")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// CPU time (user + system) a process has used, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_sec: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_millis(ticks * 1000 / per_sec)
}

/// Polls `f` every 100 ms until it returns true, at most `limit`; panics with `what` otherwise.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Redis-faults issue's scenario: the real binary on Redis, started with soft = hard = 300
/// descriptors (nothing to raise) and the default `max_connections` (4096 per listener, far past
/// what fits), under 600 idle connections to each listener. New callers are still answered, a
/// revoked token is still denied, Redis connections killed under the flood come back, and the
/// process does not spin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_at_a_low_descriptor_limit_keeps_callers_and_redis_under_an_idle_flood() {
    let _one_flood_at_a_time = FLOODS.lock().await;
    crate::common::redis::require("redis-server");
    let redis = crate::common::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = key(Algorithm::RS256, "k1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &key.jwks_json).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.path().join("config.yaml");
    // header_read_timeout well past the test's length, so the flood is never timed out.
    std::fs::write(
        &cfg,
        format!(
            "server: {{ grpc_addr: 127.0.0.1:{grpc}, http_addr: 127.0.0.1:{http}, header_read_timeout: 60s }}\n\
             providers:\n  - name: corp\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    jwks: {{ file: {} }}\n\
             revocation:\n  store: redis\n  redis: {{ url: \"{}\", cache_ttl: 1s, command_timeout: 300ms, connect_timeout: 300ms }}\n\
             rules:\n  - name: api\n    match: {{ path_prefix: / }}\n    require: {{ token: true }}\n",
            jwks_file.display(),
            redis.url(),
        ),
    )
    .unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 300 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_mesh-authz"))
        .arg(&cfg);
    let mut proc = Proc::spawn_command(command);
    proc.wait_for("mesh-authz serving", Duration::from_secs(20));
    let pid = proc.child.id();
    assert_eq!(open_files_limits(pid), (300, 300));
    let startup = proc.seen.join("\n");
    assert!(
        startup.contains("effective_max_connections"),
        "no warning naming the clamped connection cap:\n{startup}"
    );
    let authz: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let alice = mint(&key, "alice", |_| {});
    let revoked = mint(&key, "mallory", |o| o.jti = Some("fd-revoked".into()));
    redis.cli(&["SET", "mesh-authz:jti:fd-revoked", "1", "EX", "600"]);
    assert_eq!(fresh_check(authz, &alice).await.map(|a| a.0), Some(200));
    assert_eq!(fresh_readyz(http_addr).await, 200);

    // 600 idle sockets on each listener, past the whole descriptor limit twice over.
    let mut flood = Vec::new();
    for addr in [authz, http_addr] {
        for _ in 0..600 {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (a) A new caller is answered, within 3 s, and a revoked token is still denied.
    let asked = Instant::now();
    let fresh = fresh_check(authz, &alice).await;
    eprintln!(
        "fresh Check answered in {:?} during the flood",
        asked.elapsed()
    );
    assert_eq!(
        fresh,
        Some((200, String::new())),
        "a fresh Check was not answered within 3s during the flood"
    );
    let denied = fresh_check(authz, &revoked).await;
    assert_eq!(
        denied.as_ref().map(|a| (a.0, a.1.as_str())),
        Some((401, "token_revoked")),
        "revoked token during the flood: {denied:?}"
    );

    // (b) Redis connections killed while the flood is open are re-established.
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let killed = Instant::now();
    eventually(Duration::from_secs(15), "reconnected to Redis", || async {
        // Never allowed, not even while the connections are coming back.
        let denied = fresh_check(authz, &revoked).await;
        assert_ne!(denied.as_ref().map(|a| a.0), Some(200), "{denied:?}");
        denied.map(|a| a.0) == Some(401)
            && fresh_readyz(http_addr).await == 200
            && fresh_check(authz, &alice).await == Some((200, String::new()))
    })
    .await;
    eprintln!("Redis reconnected {:?} after CLIENT KILL", killed.elapsed());
    let pubsub = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert!(!pubsub.is_empty(), "no subscription after the kill");

    // (c) Not spinning: under the still-open flood, CPU time over an idle 2 s stays small.
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    eprintln!("{open} descriptors open of 300 under the flood");
    eprintln!("{spent:?} of CPU over 2 s idle under the flood");
    assert!(
        spent < Duration::from_millis(500),
        "mesh-authz used {spent:?} of CPU in 2 s while idle under the flood"
    );
    // Running out of descriptors is logged once per episode, not on every failed accept.
    proc.wait_for("mesh-authz", Duration::from_secs(1));
    let accept_failures = proc
        .seen
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        accept_failures <= 10,
        "{accept_failures} accept-failure lines logged"
    );
    drop(flood);
}

/// Below even the floor of 16 connections per listener (`ulimit -n 40`), accepts do fail with
/// EMFILE: the loop backs off instead of spinning, logs the episode once rather than every
/// retry, closes idle connections to make room, and a new caller gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_out_of_descriptors_backs_off_and_logs_once() {
    let _one_flood_at_a_time = FLOODS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key(Algorithm::RS256, "k1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &key.jwks_json).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ grpc_addr: 127.0.0.1:{grpc}, http_addr: 127.0.0.1:{http}, header_read_timeout: 60s }}\n\
             providers:\n  - name: corp\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    jwks: {{ file: {} }}\n\
             rules:\n  - name: api\n    match: {{ path_prefix: / }}\n    require: {{ token: true }}\n",
            jwks_file.display(),
        ),
    )
    .unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_mesh-authz"))
        .arg(&cfg);
    let mut proc = Proc::spawn_command(command);
    proc.wait_for("mesh-authz serving", Duration::from_secs(20));
    let pid = proc.child.id();
    let authz: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let alice = mint(&key, "alice", |_| {});
    let mut flood = Vec::new();
    for addr in [authz, http_addr] {
        for _ in 0..60 {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    proc.wait_for("accept failed", Duration::from_secs(10));
    // Not spinning while out of descriptors.
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    eprintln!("{spent:?} of CPU over 2 s out of descriptors");
    assert!(
        spent < Duration::from_millis(500),
        "mesh-authz used {spent:?} of CPU in 2 s while out of descriptors"
    );
    // A new caller gets in once idle connections made room.
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(40),
        "a fresh Check answered",
        || async { fresh_check(authz, &alice).await == Some((200, String::new())) },
    )
    .await;
    eprintln!("fresh Check answered {:?} into the episode", t0.elapsed());
    proc.wait_for("mesh-authz", Duration::from_secs(1));
    let failures = proc
        .seen
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=4).contains(&failures),
        "{failures} accept-failure lines logged:\n{}",
        proc.seen.join("\n")
    );
    drop(flood);
}
