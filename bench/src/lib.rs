//! Shared helpers for the benchmark tools: token minting and `/proc` readings.

use std::time::Duration;

use anyhow::{Context, bail};
use mesh_authz::tools::issuer::{self, MintOptions};

/// Issuer every benchmark token carries.
pub const ISSUER: &str = "https://issuer.bench";
/// Audience every benchmark token carries.
pub const AUDIENCE: &str = "bench";

/// The key ids the benchmark generates, with their algorithm and RSA size.
pub const KEYS: &[(&str, &str, usize)] = &[
    ("rs2048", "RS256", 2048),
    ("rs4096", "RS256", 4096),
    ("es256", "ES256", 0),
    ("eddsa", "EdDSA", 0),
];

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    mesh_authz_core::clock::unix_now()
}

/// Mints one token signed by `private_pem` under `kid`; `n` makes the subject (and with the random
/// `jti`, the token) distinct.
pub fn mint(private_pem: &str, kid: &str, n: u64) -> anyhow::Result<String> {
    let opts = MintOptions {
        iss: ISSUER.into(),
        sub: format!("user-{n}"),
        aud: vec![AUDIENCE.into()],
        ttl: Duration::from_secs(4 * 3600),
        now: unix_now(),
        kid: Some(kid.into()),
        scope: Some("bench:read".into()),
        ..Default::default()
    };
    issuer::mint(private_pem, &opts).context("minting a token")
}

/// Returns `token` with its signature altered (one character in the middle of the signature
/// swapped), so it parses but fails verification.
pub fn tamper_signature(token: &str) -> anyhow::Result<String> {
    let dot = token.rfind('.').context("token without signature")?;
    let sig = &token[dot + 1..];
    if sig.len() < 8 {
        bail!("signature too short to tamper");
    }
    let mid = dot + 1 + sig.len() / 2;
    let mut out = String::with_capacity(token.len());
    out.push_str(&token[..mid]);
    let c = token[mid..].chars().next().context("empty")?;
    out.push(if c == 'A' { 'B' } else { 'A' });
    out.push_str(&token[mid + c.len_utf8()..]);
    Ok(out)
}

/// CPU seconds (user + system, all threads) the process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    let hz = match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        hz => hz as f64,
    };
    Ok((utime + stime) / hz)
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kib = v.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("no VmRSS in /proc/{pid}/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tamper_changes_only_the_signature() {
        let t = "aaa.bbb.cccccccccccc";
        let x = tamper_signature(t).unwrap();
        assert_ne!(t, x);
        assert_eq!(&x[..8], "aaa.bbb.");
        assert_eq!(x.len(), t.len());
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_kib(pid).unwrap() > 0);
    }
}
