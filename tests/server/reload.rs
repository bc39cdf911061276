//! Config reload: through `Running::reload`, and through the real binary on SIGHUP.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::ports::free_port;
use crate::common::process::Proc;
use crate::common::*;
use mesh_authz_core::config::Config;
use mesh_authz_core::token::Algorithm;

fn provider(jwks: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {jwks}
"#
    )
}

/// `/api` needs a token; `/public` is open only when `open_public`.
fn yaml(jwks: &str, open_public: bool) -> String {
    let public = if open_public {
        "  - name: public\n    match: { path_prefix: /public }\n    allow_anonymous: true\n"
    } else {
        ""
    };
    format!(
        "{}rules:\n{public}  - name: api\n    match: {{ path_prefix: /api }}\n    require: {{ token: true }}\n",
        provider(jwks)
    )
}

fn parse(yaml: &str) -> Config {
    let mut config = mesh_authz_core::config::from_str_with_env(yaml, Vec::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    // The same listener settings as `crate::common::start`, so nothing restart-only changes.
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    config
}

fn uri_jwks(uri: &str) -> String {
    format!("{{ uri: \"{uri}\", refresh_interval: 5m, min_refetch_interval: 5m }}")
}

#[tokio::test]
async fn a_rule_change_takes_effect_and_uri_keys_are_kept_without_a_refetch() {
    let mut e = Env::start(|uri| yaml(&uri_jwks(uri), false)).await;
    let token = mint(&e.key, "alice", |_| {});
    let r = check(&mut e.client, Req::get("/public/x")).await;
    assert_eq!(reason(&r), "no_matching_rule");

    let fetches = e.jwks.hits.load(Ordering::SeqCst);
    // The JWKS endpoint now stalls: a reload that refetched would hang and a lost key set
    // would deny the token below.
    e.jwks.delay_ms.store(10_000, Ordering::SeqCst);
    let started = Instant::now();
    e.server
        .reload(parse(&yaml(&uri_jwks(&e.jwks.uri()), true)))
        .await
        .expect("a valid config is applied");
    assert!(started.elapsed() < Duration::from_secs(2));

    let r = check(&mut e.client, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "the new rule applies: {}", reason(&r));
    let fresh = mint(&e.key, "bob", |_| {});
    for t in [&token, &fresh] {
        let r = check(&mut e.client, Req::get("/api/x").bearer(t)).await;
        assert_eq!(verdict(&r).0, 200, "keys kept: {}", reason(&r));
    }
    assert_eq!(e.jwks.hits.load(Ordering::SeqCst), fetches);
    assert_eq!(
        metric(
            &e.server,
            r#"mesh_authz_config_reloads_total{outcome="ok"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_bad_config_is_refused_with_every_error_and_the_old_one_keeps_serving() {
    let mut e = Env::start(|uri| yaml(&uri_jwks(uri), false)).await;
    let token = mint(&e.key, "alice", |_| {});

    let mut bad = parse(&yaml(&uri_jwks(&e.jwks.uri()), true));
    bad.providers[0].algorithms.clear();
    bad.limits.check_timeout = Duration::ZERO;
    bad.rules[0].name = bad.rules[1].name.clone();
    let errors = e.server.reload(bad).await.expect_err("refused");
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    for want in ["providers[0].algorithms", "limits.check_timeout"] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        paths.iter().any(|p| p.starts_with("rules[")),
        "duplicate rule name not reported: {paths:?}"
    );

    // The old config still answers: /public is not open, /api still verifies tokens.
    let r = check(&mut e.client, Req::get("/public/x")).await;
    assert_eq!(reason(&r), "no_matching_rule");
    let r = check(&mut e.client, Req::get("/api/x").bearer(&token)).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let r = check(&mut e.client, Req::get("/api/x")).await;
    assert_eq!(reason(&r), "token_missing");
    assert_eq!(
        metric(
            &e.server,
            r#"mesh_authz_config_reloads_total{outcome="refused"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &e.server,
            r#"mesh_authz_config_reloads_total{outcome="ok"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn a_rotated_jwks_file_is_read_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    let k1 = key(Algorithm::RS256, "k1");
    let k2 = key(Algorithm::RS256, "k2");
    std::fs::write(&jwks_path, &k1.jwks_json).unwrap();
    // Long intervals: only the reload can make the new file visible.
    let jwks = format!(
        "{{ file: \"{}\", refresh_interval: 1h, min_refetch_interval: 1h }}",
        jwks_path.display()
    );
    let config = yaml(&jwks, false);
    let server = start(&config).await;
    let mut c = client(server.grpc_addr).await;
    let t2 = mint(&k2, "alice", |_| {});
    // k2 is unknown, and this spends the one unknown-kid refetch of the hour.
    let r = check(&mut c, Req::get("/api/x").bearer(&t2)).await;
    assert_eq!(reason(&r), "token_unknown_kid");

    std::fs::write(&jwks_path, merge_jwks(&[&k1.jwks_json, &k2.jwks_json])).unwrap();
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k2, "bob", |_| {}))).await;
    assert_eq!(
        reason(&r),
        "token_unknown_kid",
        "rate-limited before reload"
    );

    server.reload(parse(&config)).await.unwrap();
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&mint(&k2, "carol", |_| {})),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "new kid after reload: {}", reason(&r));
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&mint(&k1, "dave", |_| {})),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "old kid still: {}", reason(&r));

    // A garbage file on reload: the config is fine, the bad key set is refused, keys are kept.
    std::fs::write(&jwks_path, "garbage").unwrap();
    server.reload(parse(&config)).await.unwrap();
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&mint(&k2, "erin", |_| {})),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
}

#[tokio::test]
async fn a_new_provider_is_loaded_before_the_swap_and_a_removed_one_is_gone() {
    let mut e = Env::start(|uri| yaml(&uri_jwks(uri), false)).await;
    let other_key = key(Algorithm::RS256, "o1");
    let other_jwks = JwksServer::start(&other_key.jwks_json).await;
    let other = mint(&other_key, "zed", |o| o.iss = "https://other.test".into());
    let r = check(&mut e.client, Req::get("/api/x").bearer(&other)).await;
    assert_eq!(reason(&r), "token_unknown_issuer");

    // Replace `corp` by `other`.
    let yaml = format!(
        "providers:\n  - name: other\n    issuer: https://other.test\n    audiences: [{AUDIENCE}]\n    jwks: {}\nrules:\n  - name: api\n    match: {{ path_prefix: /api }}\n",
        uri_jwks(&other_jwks.uri())
    );
    e.server.reload(parse(&yaml)).await.unwrap();
    let r = check(&mut e.client, Req::get("/api/x").bearer(&other)).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let corp = mint(&e.key, "alice", |_| {});
    let r = check(&mut e.client, Req::get("/api/x").bearer(&corp)).await;
    assert_eq!(reason(&r), "token_unknown_issuer");
    let ready = reqwest::get(format!("http://{}/readyz", e.server.http_addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

fn write_config(path: &Path, grpc: u16, http: u16, jwks: &Path, open_public: bool) {
    std::fs::write(path, config_body(grpc, http, "0s", jwks, open_public)).unwrap();
}

/// A config file's text; `watch` is `server.watch_interval` (`0s`: SIGHUP only).
fn config_body(grpc: u16, http: u16, watch: &str, jwks: &Path, open_public: bool) -> String {
    format!(
        "server: {{ grpc_addr: 127.0.0.1:{grpc}, http_addr: 127.0.0.1:{http}, drain_delay: 0s, watch_interval: {watch} }}\n{}",
        yaml(
            &format!(
                "{{ file: \"{}\", refresh_interval: 1h, min_refetch_interval: 1h }}",
                jwks.display()
            ),
            open_public
        )
    )
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let k1 = key(Algorithm::RS256, "k1");
    let k2 = key(Algorithm::RS256, "k2");
    std::fs::write(&jwks, &k1.jwks_json).unwrap();
    let cfg = dir.path().join("config.yaml");
    let (grpc, http) = (free_port(), free_port());
    write_config(&cfg, grpc, http, &jwks, false);

    let mut p = Proc::spawn(&["serve", "--config", cfg.to_str().unwrap()]);
    p.wait_for("mesh-authz serving", Duration::from_secs(20));
    let mut c = client(format!("127.0.0.1:{grpc}").parse().unwrap()).await;
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(reason(&r), "no_matching_rule");

    // A rule change and a rotated JWKS file, applied on SIGHUP.
    write_config(&cfg, grpc, http, &jwks, true);
    std::fs::write(&jwks, merge_jwks(&[&k1.jwks_json, &k2.jwks_json])).unwrap();
    p.signal("-HUP");
    p.wait_for("config reloaded", Duration::from_secs(10));
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&mint(&k2, "alice", |_| {})),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));

    // A broken file: refused with its path, and the process keeps serving the last good one.
    std::fs::write(&cfg, "rules:\n  - name: x\n    bogus_key: 1\n").unwrap();
    p.signal("-HUP");
    p.wait_for("config reload refused", Duration::from_secs(10));
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "SIGHUP must not end the process"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"mesh_authz_config_reloads_total{outcome="ok"} 1"#)
            && metrics.contains(r#"mesh_authz_config_reloads_total{outcome="refused"} 1"#),
        "{metrics}"
    );

    // SIGTERM still ends it cleanly after reloads. The wait below yields to the runtime, so our
    // client's connection can answer the server's GOAWAY and the drain is not held up by it.
    drop(c);
    p.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Kubernetes ConfigMap (or Secret) volume as the kubelet writes it: `dir/NAME -> ..data/NAME`,
/// `..data -> ..TIMESTAMP/`; an update writes a new timestamped dir, renames a new `..data`
/// symlink over the old one (atomic) and removes the old dir. The file's own inode never changes
/// in place, so only something that follows the path sees the update.
struct ConfigMapVolume {
    dir: std::path::PathBuf,
    generation: u32,
}

impl ConfigMapVolume {
    fn new(dir: &Path, files: &[(&str, &[u8])]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut v = ConfigMapVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        v.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        v
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    fn publish(&mut self, files: &[(&str, &[u8])]) {
        let old = format!(
            "..2026_11_30_02_00_{:02}.{}",
            self.generation, self.generation
        );
        self.generation += 1;
        let ts = format!(
            "..2026_11_30_02_00_{:02}.{}",
            self.generation, self.generation
        );
        std::fs::create_dir(self.dir.join(&ts)).unwrap();
        for (name, bytes) in files {
            std::fs::write(self.dir.join(&ts).join(name), bytes).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join(old));
    }
}

async fn reloads(http: u16, outcome: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = format!("mesh_authz_config_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits (bounded) until the reload counter for `outcome` reaches `n`.
async fn wait_reloads(p: &mut Proc, http: u16, outcome: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while reloads(http, outcome).await < n {
        assert!(
            Instant::now() < deadline,
            "no {outcome} reload #{n} within 15s; output:\n{}",
            p.drain()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_configmap_update_is_reloaded_without_sighup_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let k1 = key(Algorithm::RS256, "k1");
    std::fs::write(&jwks, &k1.jwks_json).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let body = |open: bool| config_body(grpc, http, "200ms", &jwks, open);
    let mut volume = ConfigMapVolume::new(
        &dir.path().join("etc"),
        &[("config.yaml", body(false).as_bytes())],
    );
    let cfg = volume.path("config.yaml");
    let mut p = Proc::spawn(&["serve", "--config", cfg.to_str().unwrap()]);
    p.wait_for("mesh-authz serving", Duration::from_secs(20));
    let mut c = client(format!("127.0.0.1:{grpc}").parse().unwrap()).await;
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(reason(&r), "no_matching_rule");

    // The kubelet's `..data` swap with a rule change: applied, no signal sent.
    volume.publish(&[("config.yaml", body(true).as_bytes())]);
    wait_reloads(&mut p, http, "ok", 1.0).await;
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));

    // A broken config: refused, and the last good one keeps serving.
    volume.publish(&[("config.yaml", b"rules:\n  - name: x\n    bogus_key: 1\n")]);
    wait_reloads(&mut p, http, "refused", 1.0).await;
    p.wait_for("config reload refused", Duration::from_secs(5));
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k1, "a", |_| {}))).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));

    // An in-place write (through the symlinks) of a valid config: applied.
    std::fs::write(&cfg, body(false)).unwrap();
    wait_reloads(&mut p, http, "ok", 2.0).await;
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(reason(&r), "no_matching_rule");

    // An editor's save: a new file renamed over the path.
    let tmp = dir.path().join("etc").join(".config.yaml.swp");
    std::fs::write(&tmp, body(true)).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    wait_reloads(&mut p, http, "ok", 3.0).await;
    let r = check(&mut c, Req::get("/public/x")).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));

    // The same bytes written again: not a reload. Several watch intervals pass.
    std::fs::write(&cfg, body(true)).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reloads(http, "ok").await, 3.0);
    assert_eq!(reloads(http, "refused").await, 1.0);
    assert!(p.child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn a_jwks_file_rotated_by_a_secret_volume_swap_is_picked_up_without_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = key(Algorithm::RS256, "k1");
    let k2 = key(Algorithm::RS256, "k2");
    let mut keys = ConfigMapVolume::new(
        &dir.path().join("jwks"),
        &[("jwks.json", k1.jwks_json.as_bytes())],
    );
    let (grpc, http) = (free_port(), free_port());
    let cfg = dir.path().join("config.yaml");
    // Hour-long JWKS intervals: only the watch can make the new key set visible.
    std::fs::write(
        &cfg,
        config_body(grpc, http, "200ms", &keys.path("jwks.json"), false),
    )
    .unwrap();
    let mut p = Proc::spawn(&["serve", "--config", cfg.to_str().unwrap()]);
    p.wait_for("mesh-authz serving", Duration::from_secs(20));
    let mut c = client(format!("127.0.0.1:{grpc}").parse().unwrap()).await;
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k1, "a", |_| {}))).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k2, "b", |_| {}))).await;
    assert_eq!(reason(&r), "token_unknown_kid");

    // Rotation: k2 replaces k1.
    keys.publish(&[("jwks.json", k2.jwks_json.as_bytes())]);
    wait_reloads(&mut p, http, "ok", 1.0).await;
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k2, "c", |_| {}))).await;
    assert_eq!(verdict(&r).0, 200, "new key allowed: {}", reason(&r));
    let r = check(&mut c, Req::get("/api/x").bearer(&mint(&k1, "d", |_| {}))).await;
    assert_eq!(verdict(&r).0, 401, "removed key denied: {}", reason(&r));
    assert_eq!(reason(&r), "token_unknown_kid");

    // A swap to a new volume generation with the same bytes: not a reload.
    keys.publish(&[("jwks.json", k2.jwks_json.as_bytes())]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reloads(http, "ok").await, 1.0);
}
