//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: the whole test suite (`cargo test --workspace --all-features`);
//! - `bench [--quick]`: every criterion benchmark, then a summary table in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test [cargo test args] | bench [--quick]");
            std::process::exit(2)
        }
    }
}

/// The repository root, found from this crate's manifest directory (cargo-xtask convention).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    run(Command::new("cargo")
        .current_dir(root)
        .args(["test", "--workspace", "--all-features"])
        .args(extra))
}

fn bench(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let quick = extra.iter().any(|a| a == "--quick");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["bench", "--workspace", "--all-features"]);
    if quick {
        cmd.env("EVENTSMITH_BENCH_QUICK", "1");
    }
    run(&mut cmd)
}
