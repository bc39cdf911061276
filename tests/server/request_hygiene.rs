//! Request hygiene over gRPC: huge and many headers, non-UTF-8 values, a repeated `authorization`
//! header, path tricks against rules, and no token in any log line.
//!
//! # Paths
//!
//! mesh-authz matches `attributes.request.http.path` exactly as Envoy hands it over (query string
//! cut off, nothing decoded, no dot segment resolved, case-sensitive, segment-aware prefixes). It
//! does not normalise a second time, because a second normaliser that disagrees with Envoy's would
//! pick a different rule than the route Envoy picks. What that promises:
//!
//! * With the HTTP connection manager settings `normalize_path: true`, `merge_slashes: true` and
//!   `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT` (or `REJECT_REQUEST`), Envoy
//!   resolves `/x/../admin`, `//admin`, `/%61dmin` and `/admin%2Fx` before any filter runs, so
//!   ext_authz and the router see the same `/admin...` path and the `/admin` rule applies
//!   (`normalized_forms_of_admin_paths_hit_the_admin_rule`). Envoy refuses a path with a `#`
//!   fragment by default.
//! * Without those settings the raw forms below reach mesh-authz unchanged, and the ones that do
//!   not textually start with the `/admin` segment fall to another rule
//!   (`raw_tricks_are_matched_as_handed_over` pins exactly which). An upstream that itself
//!   resolves `..`, merges slashes or decodes `%2F` could then serve `/admin` under a weaker rule.
//!   mesh-authz cannot detect that; the Envoy settings are required.
//! * Not covered by any Envoy setting: case (`/ADMIN`; Envoy's route matching is case-sensitive
//!   by default, and so are rules) and `;` path parameters (`/admin;x`). If the upstream treats
//!   these as `/admin`, deny them with an Envoy route or write rules for them.
//! * A catch-all rule that requires a token bounds the damage: a trick can only move a request
//!   between token-requiring rules, never to anonymous access, unless an anonymous rule's prefix
//!   is where the trick starts (`/public/../admin`), which is why anonymous rules should be exact
//!   or narrow and the Envoy settings on.

use std::sync::{Arc, Mutex};

use crate::common::*;

fn config(jwks_uri: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 1s }}
    claims_to_headers: {{ sub: x-auth-subject }}
rules:
  - name: public
    match: {{ path_prefix: /public }}
    allow_anonymous: true
  - name: admin
    match: {{ path_prefix: /admin }}
    require: {{ scopes: [admin] }}
  - name: catch-all
    match: {{ path_prefix: / }}
default_action: deny
"#
    )
}

// ---------------------------------------------------------------- log capture

/// Everything any test in this binary logs (JSON lines).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    crate::common::logs::Logs::global().buffer()
}

async fn env() -> Env {
    let _ = logs();
    Env::start(config).await
}

fn read_token(e: &Env) -> String {
    mint(&e.key, "reader", |o| o.scope = Some("read".into()))
}

fn admin_token(e: &Env) -> String {
    mint(&e.key, "boss", |o| o.scope = Some("read admin".into()))
}

// ---------------------------------------------------------------- sizes and counts

#[tokio::test]
async fn huge_header_values_get_an_explicit_answer() {
    let mut e = env().await;
    let token = read_token(&e);
    let big = "a".repeat(64 * 1024);
    let huge = "b".repeat(1024 * 1024);

    // An unrelated huge header does not disturb the decision.
    let r = check(
        &mut e.client,
        Req::get("/x").bearer(&token).header("x-big", &big),
    )
    .await;
    assert_eq!(verdict(&r).0, 200);
    let r = check(
        &mut e.client,
        Req::get("/x").bearer(&token).header("x-huge", &huge),
    )
    .await;
    assert_eq!(verdict(&r).0, 200);

    // A 64 KiB token is refused before parsing.
    let r = check(&mut e.client, Req::get("/x").bearer(&big)).await;
    assert_eq!(verdict(&r).0, 401);
    assert_eq!(reason(&r), "token_too_large");

    // A 64 KiB XFCC header is ignored when XFCC is not trusted (the default).
    let xfcc = format!("URI=spiffe://cluster.local/ns/a/sa/{big}");
    let r = check(
        &mut e.client,
        Req::get("/x")
            .bearer(&token)
            .header("x-forwarded-client-cert", &xfcc),
    )
    .await;
    assert_eq!(verdict(&r).0, 200);

    // A 64 KiB path is matched like any other.
    let r = check(
        &mut e.client,
        Req::get(&format!("/admin/{big}")).bearer(&token),
    )
    .await;
    assert_eq!(verdict(&r).0, 403);
}

#[tokio::test]
async fn thousands_of_headers_get_an_explicit_answer() {
    let mut e = env().await;
    let token = read_token(&e);
    let mut req = Req::get("/x");
    for i in 0..5000 {
        req = req.header(&format!("x-h-{i}"), "v");
    }
    let r = check(&mut e.client, req.clone()).await;
    assert_eq!(verdict(&r).0, 401);
    let r = check(&mut e.client, req.bearer(&token)).await;
    assert_eq!(verdict(&r).0, 200);

    // The same through header_map, with the token among them.
    let names: Vec<String> = (0..5000).map(|i| format!("x-r-{i}")).collect();
    let auth = format!("Bearer {token}");
    let mut raw: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
    raw.push(("authorization", auth.as_bytes()));
    let r = check_raw(&mut e.client, Req::get("/x"), &raw).await;
    assert_eq!(verdict(&r).0, 200);
}

// ---------------------------------------------------------------- encodings

#[tokio::test]
async fn non_utf8_header_values_fail_only_what_reads_them() {
    let mut e = env().await;
    let token = read_token(&e);

    // Sanity: a clean token through header_map (raw_value) is accepted.
    let auth = format!("Bearer {token}");
    let r = check_raw(
        &mut e.client,
        Req::get("/x"),
        &[("authorization", auth.as_bytes())],
    )
    .await;
    assert_eq!(verdict(&r).0, 200);

    // Invalid UTF-8 inside or after the token: refused as malformed, never a gRPC error.
    for bad in [
        [auth.as_bytes(), b"\xff"].concat(),
        [b"Bearer \xff\xfe".as_slice(), token.as_bytes()].concat(),
        b"Bearer \xc3\x28".to_vec(),
        [b"\xffBearer ".as_slice(), token.as_bytes()].concat(),
    ] {
        let r = check_raw(&mut e.client, Req::get("/x"), &[("authorization", &bad)]).await;
        assert_eq!(verdict(&r).0, 401, "{bad:?}");
    }

    // Invalid UTF-8 in a header nobody reads does not matter.
    let r = check_raw(
        &mut e.client,
        Req::get("/x").bearer(&token),
        &[("x-junk", b"\xff\xfe\x00\x01")],
    )
    .await;
    assert_eq!(verdict(&r).0, 200);

    // On an anonymous rule a garbled token is dropped, not refused.
    let r = check_raw(
        &mut e.client,
        Req::get("/public/x"),
        &[("authorization", b"Bearer \xff")],
    )
    .await;
    assert_eq!(verdict(&r).0, 200);
}

#[tokio::test]
async fn a_repeated_authorization_header_is_refused() {
    let mut e = env().await;
    let token = read_token(&e);
    let admin = admin_token(&e);

    // Envoy joins a repeated header with ",": neither copy is used, even two valid ones.
    for joined in [
        format!("Bearer {token},Bearer {token}"),
        format!("Bearer {token}, Bearer {admin}"),
        format!("Bearer {admin},"),
        format!(",Bearer {admin}"),
    ] {
        let r = check(
            &mut e.client,
            Req::get("/admin/x").header("authorization", &joined),
        )
        .await;
        assert_eq!(verdict(&r).0, 401, "{joined:.20}");
        assert_eq!(reason(&r), "token_malformed_header");
    }

    // Two header_map entries (encode_raw_headers) are joined the same way.
    let a = format!("Bearer {admin}");
    let r = check_raw(
        &mut e.client,
        Req::get("/admin/x"),
        &[
            ("authorization", a.as_bytes()),
            ("Authorization", a.as_bytes()),
        ],
    )
    .await;
    assert_eq!(verdict(&r).0, 401);
    assert_eq!(reason(&r), "token_malformed_header");

    // One in `headers` and one in `header_map`: joined too.
    let r = check_raw(
        &mut e.client,
        Req::get("/admin/x").bearer(&admin),
        &[("authorization", a.as_bytes())],
    )
    .await;
    assert_eq!(verdict(&r).0, 401);
}

// ---------------------------------------------------------------- paths

/// What Envoy hands over for each trick with `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT` (after the redirect is followed).
const NORMALIZED: &[(&str, &str)] = &[
    ("/x/../admin", "/admin"),
    ("/public/../admin", "/admin"),
    ("//admin", "/admin"),
    ("/admin//x", "/admin/x"),
    ("/./admin", "/admin"),
    ("/%61dmin", "/admin"),
    ("/admin%2Fx", "/admin/x"),
    ("/admin%2fx", "/admin/x"),
    ("/public%2F..%2Fadmin", "/admin"),
];

#[tokio::test]
async fn normalized_forms_of_admin_paths_hit_the_admin_rule() {
    let mut e = env().await;
    let read = read_token(&e);
    let admin = admin_token(&e);
    for (trick, normalized) in NORMALIZED {
        let r = check(&mut e.client, Req::get(normalized).bearer(&read)).await;
        assert_eq!(verdict(&r).0, 403, "{trick} -> {normalized}");
        assert_eq!(reason(&r), "insufficient_scope", "{trick} -> {normalized}");
        let r = check(&mut e.client, Req::get(normalized)).await;
        assert_eq!(
            verdict(&r).0,
            401,
            "{trick} -> {normalized} without a token"
        );
        let r = check(&mut e.client, Req::get(normalized).bearer(&admin)).await;
        assert_eq!(
            verdict(&r).0,
            200,
            "{trick} -> {normalized} with admin scope"
        );
    }
    // The query string is not part of the path.
    let r = check(&mut e.client, Req::get("/admin?next=/x").bearer(&read)).await;
    assert_eq!(verdict(&r).0, 403);
    let r = check(&mut e.client, Req::get("/x?/admin").bearer(&read)).await;
    assert_eq!(verdict(&r).0, 200);
}

/// The raw forms, as mesh-authz sees them if Envoy does NOT normalise: matched textually. The
/// outcome is pinned so that a change is noticed; each allow below is only safe because Envoy
/// normalises first (see the module docs).
#[tokio::test]
async fn raw_tricks_are_matched_as_handed_over() {
    let mut e = env().await;
    let read = read_token(&e);
    // (path, status for a caller with a `read` token, status without a token)
    let cases: &[(&str, u16, u16)] = &[
        // Textually under /admin: the admin rule, whatever an upstream makes of the rest.
        ("/admin", 403, 401),
        ("/admin/", 403, 401),
        ("/admin/../x", 403, 401),
        ("/admin/%2e%2e/x", 403, 401),
        ("/admin?x", 403, 401),
        // Not textually under /admin: the catch-all (token required, no scope).
        ("/adminx", 200, 401),
        ("/x/../admin", 200, 401),
        ("//admin", 200, 401),
        ("/./admin", 200, 401),
        ("/%61dmin", 200, 401),
        ("/admin%2Fx", 200, 401),
        ("/ADMIN", 200, 401),
        ("/Admin/x", 200, 401),
        ("/admin;x", 200, 401),
        ("/admin#x", 200, 401),
        ("/admin\\x", 200, 401),
        // Not starting with "/": only the "/" catch-all (which matches every path) applies.
        ("", 200, 401),
        ("admin", 200, 401),
        // Textually under /public: anonymous, which is why normalisation must be on.
        ("/public/../admin", 200, 200),
        // `%2F` is not a segment boundary: `/public%2F..` is not under `/public`.
        ("/public%2F..%2Fadmin", 200, 401),
    ];
    for (path, with_read, without) in cases {
        let r = check(&mut e.client, Req::get(path).bearer(&read)).await;
        assert_eq!(verdict(&r).0, *with_read, "{path:?} with a read token");
        let r = check(&mut e.client, Req::get(path)).await;
        assert_eq!(verdict(&r).0, *without, "{path:?} without a token");
    }
}

// ---------------------------------------------------------------- logs

/// Segments (and 16-byte pieces of segments) of a token that must never reach a log line.
fn fragments(token: &str) -> Vec<String> {
    let mut out = Vec::new();
    for seg in token.split(['.', ' ', ',']) {
        if seg.len() >= 16 {
            out.push(seg.to_string());
            let b = seg.as_bytes();
            for chunk in b.chunks(16).filter(|c| c.len() == 16) {
                out.push(String::from_utf8_lossy(chunk).into_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn no_token_reaches_the_logs() {
    let mut e = env().await;
    let buf = logs();
    let good = read_token(&e);
    let admin = admin_token(&e);
    let expired = mint(&e.key, "late", |o| o.now -= 100_000);
    let wrong_aud = mint(&e.key, "aud", |o| o.aud = vec!["someone-else".into()]);
    let other_key = key(mesh_authz_core::token::Algorithm::RS256, "k1");
    let bad_sig = mint(&other_key, "forger", |_| {});
    let unknown_kid = mint(&other_key, "kid", |o| {
        o.kid = Some("nope-kid-0123456789".into())
    });
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 20..tampered.len() - 19, "A");
    let oversized = format!(
        "{}.{}.{}",
        "eyJ".repeat(3000),
        "QUFB".repeat(2000),
        "c2ln".repeat(100)
    );
    let malformed = [
        format!("{good}.extra-segment-that-is-long"),
        good.replacen('.', "", 1),
        format!("{good} {admin}"),
        format!("not_a_jwt_but_long_enough_to_matter_{}", "x".repeat(40)),
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0In0.".to_string(),
    ];
    let mut tokens = vec![
        good.clone(),
        admin.clone(),
        expired,
        wrong_aud,
        bad_sig,
        unknown_kid,
        tampered,
        oversized,
    ];
    tokens.extend(malformed);

    for t in &tokens {
        for path in ["/x", "/admin/x", "/public"] {
            let _ = check(&mut e.client, Req::get(path).bearer(t)).await;
            let _ = check(
                &mut e.client,
                Req::get(path).header("authorization", &format!("Bearer {t},Bearer {t}")),
            )
            .await;
            let _ = check(&mut e.client, Req::get(path).header("authorization", t)).await;
        }
    }
    // Valid tokens on allowed requests too (the allow path logs nothing with them either).
    let r = check(&mut e.client, Req::get("/admin").bearer(&admin)).await;
    assert_eq!(verdict(&r).0, 200);

    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    assert!(
        text.contains("check denied"),
        "the log capture must have seen the denials:\n{text:.2000}"
    );
    for t in &tokens {
        for f in fragments(t) {
            assert!(
                !text.contains(&f),
                "a token fragment reached the logs: {f:?}\nin:\n{}",
                text.lines()
                    .filter(|l| l.contains(&f))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// A header mapping that would let a token's claim overwrite what Envoy or the upstream trusts
/// (credentials, cookies, routing and forwarding headers, the SPIFFE ID header, another claim's
/// header) is refused when the config loads, with the key's path.
#[test]
fn dangerous_header_mappings_are_refused_at_load() {
    for (mapping, identity, path) in [
        (
            "{ sub: proxy-authorization }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: set-cookie }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: forwarded }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: x-forwarded-proto }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: x-envoy-original-path }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: \":path\" }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: x-auth-spiffe-id }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: x-caller }",
            "identity: { spiffe_id_header: x-caller }\n",
            "providers[0].claims_to_headers.sub",
        ),
        (
            "{ sub: x-user, email: x-user }",
            "",
            "providers[0].claims_to_headers.sub",
        ),
    ] {
        let yaml = format!(
            "providers:\n  - name: corp\n    issuer: {ISSUER}\n    jwks: {{ file: Cargo.toml }}\n    claims_to_headers: {mapping}\n{identity}"
        );
        let errors = match mesh_authz_core::config::from_str_with_env(&yaml, Vec::new()) {
            Ok(c) => mesh_authz_core::config::validate(&c),
            Err(e) => e.0,
        };
        assert!(
            errors.iter().any(|e| e.path == path),
            "{mapping} {identity}: {errors:?}"
        );
    }
}
