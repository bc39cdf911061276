//! `bench-tokens`: generates the benchmark's signing keys and mints token files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesh_authz::tools::issuer;
use mesh_authz_bench::{KEYS, mint, tamper_signature};
use mesh_authz_core::token::Algorithm;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Keys and tokens for the mesh-authz benchmark")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Writes `<kid>.pem` for rs2048, rs4096, es256, eddsa and one `jwks.json` holding all four.
    Keygen {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Mints `count` distinct tokens (one per line) signed by `<dir>/<kid>.pem`.
    Mint {
        /// Directory written by `keygen`.
        #[arg(long)]
        dir: PathBuf,
        /// Key id: rs2048, rs4096, es256, eddsa.
        #[arg(long)]
        kid: String,
        /// How many tokens.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Alter every signature (bad-signature deny path).
        #[arg(long)]
        bad_sig: bool,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Signing threads.
        #[arg(long, default_value_t = 2)]
        threads: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Keygen { out } => {
            std::fs::create_dir_all(&out)?;
            let mut keys = Vec::new();
            for (kid, alg, bits) in KEYS {
                let alg: Algorithm = alg.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let k = issuer::generate_key(alg, (*bits).max(2048), kid)?;
                std::fs::write(out.join(format!("{kid}.pem")), &k.private_pem)?;
                let doc: serde_json::Value = serde_json::from_str(&k.jwks_json)?;
                let arr = doc
                    .get("keys")
                    .and_then(|k| k.as_array())
                    .context("jwks without keys")?;
                keys.extend(arr.iter().cloned());
            }
            let jwks = serde_json::json!({ "keys": keys });
            std::fs::write(out.join("jwks.json"), serde_json::to_vec_pretty(&jwks)?)?;
        }
        Cmd::Mint {
            dir,
            kid,
            count,
            bad_sig,
            out,
            threads,
        } => {
            let pem = std::fs::read_to_string(dir.join(format!("{kid}.pem")))
                .with_context(|| format!("reading key {kid}"))?;
            let threads = threads.max(1);
            let chunks: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let pem = &pem;
                        let kid = &kid;
                        s.spawn(move || {
                            let mut v = Vec::new();
                            let mut n = t;
                            while n < count {
                                let tok = mint(pem, kid, n)?;
                                v.push(if bad_sig {
                                    tamper_signature(&tok)?
                                } else {
                                    tok
                                });
                                n += threads;
                            }
                            Ok(v)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panic"))))
                    .collect()
            });
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            for c in chunks {
                for t in c? {
                    writeln!(f, "{t}")?;
                }
            }
            f.flush()?;
        }
    }
    Ok(())
}
