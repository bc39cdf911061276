//! The `mesh-authz` binary as an operator uses it: check-config, keygen, mint, serve, check,
//! serve --dev, SIGTERM.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::ports::free_port;
use crate::common::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_mesh-authz");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mesh-authz")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn check_config_lists_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    jwks: {}\n  - name: corp\n    issuer: ''\n    jwks: { uri: ftp://x }\nidentity:\n  sources: [principal, xfcc]\nrules:\n  - name: r\n    match: { path_prefix: nope }\n",
    );
    let out = run(&["check-config", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "providers[0].jwks: one of uri, discovery, file is required",
        "providers[1].name: duplicate provider name",
        "providers[1].issuer: must not be empty",
        "providers[1].jwks.uri",
        "identity.sources: xfcc is read only with identity.trust_xfcc: true",
        "rules[0].match",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let out = run(&[
        "check-config",
        "--config",
        &write(dir.path(), "typo.yaml", "serverr: {}\n"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("serverr"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "ok.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    audiences: [api]\n    jwks: { uri: https://a/jwks.json }\n",
    );
    let out = run(&["check-config", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let effective = text(&out.stdout);
    assert!(effective.contains("grpc_addr: 0.0.0.0:9001"), "{effective}");
    assert!(effective.contains("clock_skew: 30s"), "{effective}");
    assert!(effective.contains("- RS256"), "{effective}");
}

#[test]
fn keygen_mint_serve_check_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = run(&[
        "keygen",
        "--alg",
        "RS256",
        "--bits",
        "2048",
        "--kid",
        "k1",
        "--out",
        keys.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jwks = keys.join("jwks.json");
    let pem = keys.join("k1.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // keygen refuses to overwrite a key.
    assert!(
        !run(&[
            "keygen",
            "--kid",
            "k1",
            "--bits",
            "2048",
            "--out",
            keys.to_str().unwrap()
        ])
        .status
        .success()
    );

    let (grpc, http) = (free_port(), free_port());
    let cfg = write(
        dir.path(),
        "config.yaml",
        &format!(
            "server: {{ grpc_addr: 127.0.0.1:{grpc}, http_addr: 127.0.0.1:{http} }}\nproviders:\n  - name: corp\n    issuer: https://issuer.test\n    audiences: [api]\n    jwks: {{ file: {} }}\n    claims_to_headers: {{ sub: x-auth-subject }}\nrules:\n  - name: api\n    match: {{ path_prefix: / }}\n",
            jwks.display()
        ),
    );
    let mut server = Proc::spawn(&["serve", "--config", &cfg]);
    server.wait_for("mesh-authz serving", Duration::from_secs(20));

    let mint = run(&[
        "mint",
        "--key",
        pem.to_str().unwrap(),
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--sub",
        "alice",
        "--ttl",
        "5m",
    ]);
    assert!(mint.status.success(), "{}", text(&mint.stderr));
    let token = text(&mint.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3);

    let addr = format!("127.0.0.1:{grpc}");
    let ok = run(&[
        "check",
        "--addr",
        &addr,
        "--token",
        &token,
        "--path",
        "/orders",
        "--explain",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    let shown = text(&ok.stdout);
    assert!(shown.starts_with("ALLOW"), "{shown}");
    assert!(shown.contains("x-auth-subject: alice"), "{shown}");

    let no = run(&["check", "--addr", &addr, "--path", "/orders", "--explain"]);
    assert_eq!(no.status.code(), Some(1));
    let shown = text(&no.stdout);
    assert!(shown.starts_with("DENY 401"), "{shown}");
    assert!(shown.contains("reason=token_missing"), "{shown}");

    // The header and signature of alice's token around another payload: a bad signature.
    let other = run(&[
        "mint",
        "--key",
        pem.to_str().unwrap(),
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--sub",
        "mallory",
    ]);
    let other = text(&other.stdout);
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        other.trim().split('.').nth(1).unwrap(),
        parts[2]
    );
    let bad = run(&[
        "check", "--addr", &addr, "--token", &tampered, "--path", "/orders",
    ]);
    assert_eq!(bad.status.code(), Some(1));

    // One JSON log line per denial with the reason; never the token.
    let line = server.wait_for("token_bad_signature", Duration::from_secs(5));
    let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(json["reason"], "token_bad_signature");
    assert_eq!(json["status"], 401);

    // SIGTERM drains and exits cleanly.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logs = server.drain();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature) && !logs.contains(&token[..40]),
        "a token reached the logs"
    );
    assert!(logs.contains("shutdown signal received"), "{logs}");
}

#[test]
fn serve_dev_answers_health_within_20s_and_its_token_passes() {
    let grpc = free_port();
    let http = free_port();
    let started = Instant::now();
    let mut server = Proc::spawn(&[
        "serve",
        "--dev",
        "--grpc-addr",
        &format!("127.0.0.1:{grpc}"),
        "--http-addr",
        &format!("127.0.0.1:{http}"),
    ]);
    server.wait_for("mesh-authz check --addr", Duration::from_secs(20));
    let token = {
        let i = server
            .seen
            .iter()
            .position(|l| l.starts_with("A token for dev-user"))
            .expect("token banner");
        server.seen.get(i + 1).cloned().unwrap_or_default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let serving = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
                    .unwrap()
                    .connect()
                    .await
            {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = h
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    && r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(serving, "gRPC health not SERVING");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let addr = format!("127.0.0.1:{grpc}");
    let ok = run(&[
        "check", "--addr", &addr, "--token", &token, "--path", "/hello",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    let admin = run(&[
        "check", "--addr", &addr, "--token", &token, "--path", "/admin",
    ]);
    assert_eq!(admin.status.code(), Some(1), "dev-user has no admin scope");
    let health = run(&["check", "--addr", &addr, "--path", "/healthz"]);
    assert_eq!(health.status.code(), Some(0));
}

#[test]
fn check_config_requires_audiences_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write(
        dir.path(),
        "no-aud.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    jwks: { uri: https://a/jwks.json }\n",
    );
    let out = run(&["check-config", "--config", &missing]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("providers[0].audiences: must list the accepted audiences"),
        "{err}"
    );
    assert!(err.contains("allow_any_audience: true"), "{err}");

    let both = write(
        dir.path(),
        "both.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    audiences: [api]\n    allow_any_audience: true\n    jwks: { uri: https://a/jwks.json }\n",
    );
    let out = run(&["check-config", "--config", &both]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("providers[0].allow_any_audience: cannot be set together"),
        "{}",
        text(&out.stderr)
    );

    let opt_out = write(
        dir.path(),
        "any.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    allow_any_audience: true\n    jwks: { uri: https://a/jwks.json }\n",
    );
    let out = run(&["check-config", "--config", &opt_out]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: providers[0].allow_any_audience: the token's aud is not checked"),
        "{err}"
    );
    assert!(text(&out.stdout).contains("allow_any_audience: true"));
}

#[test]
fn check_config_never_prints_a_jwks_uri_credential() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "creds.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    audiences: [api]\n    jwks: { uri: 'https://jwks-user:hunter2@a.example/jwks.json?api_key=s3cr3t#frag' }\n  - name: bad\n    issuer: https://b\n    audiences: [api]\n    jwks: { uri: 'ftp://ftp-user:ftp-pass@b.example/k?token=t0ken' }\n",
    );
    let out = run(&["check-config", "--config", &cfg]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in [
        "jwks-user",
        "hunter2",
        "s3cr3t",
        "ftp-user",
        "ftp-pass",
        "t0ken",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    assert!(all.contains("providers[1].jwks.uri"), "{all}");

    let ok = write(
        dir.path(),
        "creds-ok.yaml",
        "providers:\n  - name: corp\n    issuer: https://a\n    audiences: [api]\n    jwks: { uri: 'https://jwks-user:hunter2@a.example/jwks.json?api_key=s3cr3t' }\n",
    );
    let out = run(&["check-config", "--config", &ok]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("https://***:***@a.example/jwks.json?***"),
        "{printed}"
    );
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cr3t"),
        "{printed}"
    );
}

#[test]
fn check_config_reports_the_keys_a_file_jwks_drops() {
    let dir = tempfile::tempdir().unwrap();
    // 128 bytes of 0xff: a 1024-bit modulus.
    let weak_n = format!("{}8", "_".repeat(170));
    let jwks = write(
        dir.path(),
        "jwks.json",
        &format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"rsa1024","n":"{weak_n}","e":"AQAB"}},{{"kty":"OKP","kid":"enc","use":"enc","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}]}}"#
        ),
    );
    let cfg = write(
        dir.path(),
        "file.yaml",
        &format!(
            "providers:\n  - name: corp\n    issuer: https://a\n    audiences: [api]\n    jwks: {{ file: {jwks} }}\n"
        ),
    );
    let out = run(&["check-config", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for expected in [
        "warning: providers[0].jwks.file: key 0 (kid \"rsa1024\"): rsa modulus under 2048 bits",
        "warning: providers[0].jwks.file: key 1 (kid \"enc\"): use is not sig",
        "warning: providers[0].jwks.file: JWKS holds no usable signing key",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains(&weak_n[..20]), "{err}");
}

#[test]
fn text_logs_carry_no_colour_codes_when_piped() {
    let (grpc, http) = (free_port(), free_port());
    let mut server = Proc::spawn(&[
        "serve",
        "--dev",
        "--grpc-addr",
        &format!("127.0.0.1:{grpc}"),
        "--http-addr",
        &format!("127.0.0.1:{http}"),
    ]);
    let line = server.wait_for("mesh-authz serving", Duration::from_secs(20));
    assert!(line.contains("INFO"), "a text log line: {line}");
    let all = server.drain();
    assert!(
        !all.contains('\u{1b}'),
        "colour codes in piped logs:\n{all:?}"
    );
}
