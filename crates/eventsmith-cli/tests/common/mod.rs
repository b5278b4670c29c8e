//! What the CLI's test files share: running the binary, and naming a SQLite file as a URL.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `eventsmith` binary with `args`.
pub(crate) fn eventsmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventsmith"))
        .args(args)
        .output()
        .unwrap()
}

/// The store URL of a SQLite file.
pub(crate) fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// What the binary printed on stdout.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the binary printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
