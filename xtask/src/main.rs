//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: the whole test suite (`cargo test --workspace --all-features`), with a Cassandra
//!   node started for it when `EVENTSMITH_CASSANDRA` is not set and Java 17 and Maven are here;
//! - `cassandra start|stop|status`: a throw-away single-node Apache Cassandra 5.0 on
//!   127.0.0.1:9042, from Maven Central jars (tools/cassandra);
//! - `cassandra cluster start 3|stop|status` (and `kill|restart|pause|resume N`): a 3-node
//!   cluster on 127.0.0.1-3:9043 (`cluster.rs`); `test --cluster` runs the cluster tests on it;
//! - `postgres start|stop|status`: a throw-away PostgreSQL 17 on 127.0.0.1:55432, from the
//!   Maven Central binaries jar, run as `nobody` when this runs as root (`postgres.rs`);
//!   `test` starts one when none is running and passes it as `EVENTSMITH_POSTGRES`;
//! - `fuzz [--smoke] [SECONDS]`: every cargo-fuzz target for SECONDS each (60 with `--smoke`),
//!   on stable Rust (`--sanitizer none`); fails on the first crash, whose input cargo-fuzz keeps;
//! - `bench [--quick]`: every criterion benchmark, then a summary table in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod cluster;
mod postgres;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        // The cluster tests need no PostgreSQL.
        Some("test") if args.iter().any(|a| a == "--cluster") => test(&root, &args[1..]),
        Some("test") => postgres::with_postgres(&root, || test(&root, &args[1..])),
        Some("bench") => postgres::with_postgres(&root, || bench(&root, &args[1..])),
        Some("cassandra") if args.get(1).is_some_and(|a| a == "cluster") => {
            cluster::cluster(&root, &args[2..])
        }
        Some("cassandra") => cassandra(&root, args.get(1).map(String::as_str).unwrap_or("")),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("postgres") => postgres::command(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test [--cluster] [cargo test args] | bench [--quick] | cassandra start|stop|status | cassandra cluster start 3|stop|status | postgres start|stop [--immediate]|restart|status | fuzz [--smoke] [SECONDS]"
            );
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

/// The fuzz targets, in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: [&str; 4] = ["payload_header", "mapper_decode", "store_url", "key_file"];

fn fuzz(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let seconds: u64 = match args.iter().find(|a| !a.starts_with("--")) {
        Some(s) => s.parse().context("fuzz time must be a number of seconds")?,
        None if args.iter().any(|a| a == "--smoke") => 60,
        None => 600,
    };
    let dir = root.join("fuzz");
    for target in FUZZ_TARGETS {
        // Stable Rust has no sanitizers: libFuzzer's coverage guidance still works, and Rust's
        // own checks (bounds, overflow in debug assertions, panics) catch the bugs.
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // Kept crash inputs seed the run, so a regression is found again at once.
        let regressions = dir.join("regressions").join(target);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&dir).args([
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--debug-assertions",
            target,
        ]);
        cmd.arg(&corpus);
        if regressions.is_dir() {
            cmd.arg(&regressions);
        }
        run(cmd.args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]))
        .with_context(|| format!("fuzz target {target} found a crash: its input is in fuzz/artifacts/{target}; copy it to fuzz/regressions/{target}/ to keep it as a test"))?;
    }
    Ok(())
}

/// The address the Cassandra tests read, and the one `cassandra start` serves.
const CASSANDRA_ENV: &str = "EVENTSMITH_CASSANDRA";
const CASSANDRA_ADDRESS: &str = "127.0.0.1:9042";

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    if let Some(i) = extra.iter().position(|a| a == "--cluster") {
        let rest: Vec<String> = [&extra[..i], &extra[i + 1..]].concat();
        return cluster::test(root, &rest);
    }
    with_cassandra(root, |cassandra| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["test", "--workspace", "--all-features"])
            .args(extra);
        if let Some(address) = cassandra {
            cmd.env(CASSANDRA_ENV, address);
        }
        postgres::pass_url(&mut cmd);
        run(&mut cmd)
    })
}

/// Runs `f` with the address of a Cassandra node: the one `EVENTSMITH_CASSANDRA` names, one
/// already listening on 127.0.0.1:9042, or one started for the run (and stopped after). When
/// none can be had, `f` gets `None`: the Cassandra tests then report that they were skipped,
/// and fail under CI, where skipping is not allowed.
fn with_cassandra<T>(
    root: &Path,
    f: impl FnOnce(Option<&str>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Ok(address) = std::env::var(CASSANDRA_ENV) {
        return f(Some(&address));
    }
    if std::net::TcpStream::connect(CASSANDRA_ADDRESS).is_ok() {
        eprintln!("xtask: using the Cassandra node already listening on {CASSANDRA_ADDRESS}");
        return f(Some(CASSANDRA_ADDRESS));
    }
    match cassandra(root, "start") {
        Ok(()) => {
            let result = f(Some(CASSANDRA_ADDRESS));
            let stopped = cassandra(root, "stop");
            let value = result?;
            stopped?;
            Ok(value)
        }
        Err(e) => {
            eprintln!(
                "xtask: no Cassandra node ({e:#}); its tests and benchmarks will say they were skipped"
            );
            f(None)
        }
    }
}

fn cassandra(root: &Path, action: &str) -> anyhow::Result<()> {
    let dir = root.join("tools/cassandra");
    let script = dir.join("run_cassandra.sh");
    match action {
        "start" => {
            let lib = dir.join("target/cassandra-lib");
            let has_jars = std::fs::read_dir(&lib).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("cassandra-all-")
                })
            });
            if !has_jars {
                // Resolves cassandra-all 5.0.x and its dependencies from Maven Central.
                run(Command::new("mvn")
                    .current_dir(&dir)
                    .args(["-B", "-q", "package"]))
                .context("cannot fetch Cassandra's jars with Maven")?;
            }
            run(Command::new("bash").arg(&script).arg("start"))
        }
        "stop" | "status" => run(Command::new("bash").arg(&script).arg(action)),
        other => bail!("usage: cargo xtask cassandra start|stop|status (not {other:?})"),
    }
}

fn bench(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let quick = extra.iter().any(|a| a == "--quick");
    let started = std::time::SystemTime::now();
    with_cassandra(root, |cassandra| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["bench", "--package", "eventsmith-benches", "--all-features"]);
        if quick {
            cmd.env("EVENTSMITH_BENCH_QUICK", "1");
        }
        if let Some(address) = cassandra {
            cmd.env(CASSANDRA_ENV, address);
        }
        postgres::pass_url(&mut cmd);
        run(&mut cmd)
    })?;
    let rows = collect(&root.join("target/criterion"), started)?;
    let mut table = render(&rows);
    table.push_str(&render_follow(
        &root.join("target/criterion/follow.json"),
        started,
    )?);
    table.push_str(&render_cassandra(
        &root.join("target/criterion/cassandra.json"),
        started,
    )?);
    println!("\n{table}");
    std::fs::write(root.join("BENCHMARKS.md"), benchmarks_md(&table, quick))?;
    eprintln!(
        "xtask: wrote BENCHMARKS.md; criterion's HTML reports are in target/criterion/report"
    );
    Ok(())
}

/// One benchmark group: its measured functions and its baseline, as events per second.
struct Row {
    group: String,
    baseline: (String, f64),
    measured: Vec<(String, f64)>,
}

/// The baseline function of a group: `raw` (hand-written rusqlite) or `plain` (no cipher).
const BASELINES: [&str; 2] = ["raw", "plain"];

/// Reads what criterion wrote during this run: target/criterion/GROUP/FUNCTION/new/*.json.
fn collect(dir: &Path, since: std::time::SystemTime) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut groups: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("no criterion output in {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "report"))
        .collect();
    groups.sort();
    for group in groups {
        let mut rates = Vec::new();
        for function in std::fs::read_dir(&group)?.filter_map(Result::ok) {
            let new = function.path().join("new");
            let estimates = new.join("estimates.json");
            let fresh = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if !fresh {
                continue;
            }
            let estimates: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&estimates)?)?;
            let benchmark: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(new.join("benchmark.json"))?)?;
            let nanos = estimates["mean"]["point_estimate"]
                .as_f64()
                .context("estimates.json without a mean")?;
            let elements = benchmark["throughput"]["Elements"].as_f64().unwrap_or(1.0);
            let name = benchmark["function_id"].as_str().unwrap_or("?").to_owned();
            rates.push((name, elements * 1e9 / nanos));
        }
        let Some(i) = rates
            .iter()
            .position(|(n, _)| BASELINES.contains(&n.as_str()))
        else {
            continue;
        };
        let baseline = rates.remove(i);
        rates.sort_by(|a, b| a.0.cmp(&b.0));
        let group = group.file_name().unwrap().to_string_lossy().into_owned();
        rows.push(Row {
            group,
            baseline,
            measured: rates,
        });
    }
    Ok(rows)
}

/// The goal of a group, as the lowest acceptable ratio of measured to baseline rate.
fn goal(group: &str) -> Option<(f64, &'static str)> {
    // Matched by suffix, first match wins: PostgreSQL's goals (issue 17) before SQLite's.
    let goals: [(&str, f64, &str); 14] = [
        (
            "k-tracing-a",
            0.97,
            "<= 3% slower with an INFO subscriber than with none",
        ),
        (
            "postgres-b-commands-8-tasks",
            3.0,
            ">= 3x raw one-insert transactions",
        ),
        ("postgres-c-batch-10", 0.8, ">= 0.8x raw batched inserts"),
        (
            "postgres-e-load-10000",
            0.67,
            "<= 1.5x the time of raw select + decode",
        ),
        ("postgres-d-notifications", 0.5, ">= 0.5x raw select"),
        (
            "i-application",
            0.95,
            "<= 5% slower than the bare repository",
        ),
        (
            "h-load-10000-snapshots",
            20.0,
            ">= 20x faster with snapshots",
        ),
        ("a-commands", 0.7, ">= 0.7x raw one-insert transactions"),
        (
            "b-commands-8-tasks",
            2.0,
            ">= 2x raw one-insert transactions",
        ),
        ("c-batch-10", 0.7, ">= 0.7x raw batched inserts"),
        (
            "j-follower-projection",
            0.5,
            ">= 0.5x raw read-all of the log",
        ),
        ("d-notifications", 0.5, ">= 0.5x raw select"),
        ("e-load-10000", 0.5, "<= 2x the time of raw select + decode"),
        (
            "f-commands-cipher",
            0.8,
            "<= 25% slower than without cipher",
        ),
    ];
    goals
        .iter()
        .find(|(suffix, _, _)| group.ends_with(suffix))
        .map(|(_, min, text)| (*min, *text))
}

fn human(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k/s", r / 1e3),
        r => format!("{r:.0} /s"),
    }
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| benchmark | measured | rate | baseline | rate | ratio | goal | met |\n\
         | --- | --- | ---: | --- | ---: | ---: | --- | --- |\n",
    );
    for row in rows {
        for (name, rate) in &row.measured {
            let ratio = rate / row.baseline.1;
            let (goal_text, met) = match goal(&row.group) {
                // A second raw measurement is context for the goal (the most raw SQLite
                // itself reaches), not something the goal applies to.
                Some(_) if name.starts_with("raw") => ("(the raw driver's own rate: context)", ""),
                // Spans per second against commands per second: a command makes two spans,
                // so their share of a command is 2 / ratio.
                Some(_) if name == "disabled-span" => ("(disabled spans per second: context)", ""),
                Some((min, text)) => (text, if ratio >= min { "yes" } else { "no" }),
                None => ("", ""),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2}x | {} | {} |\n",
                row.group,
                name,
                human(*rate),
                row.baseline.0,
                human(row.baseline.1),
                ratio,
                goal_text,
                met
            ));
        }
    }
    out
}

/// The followers' section (wake-up latency, lag under workload b), from the JSON the follow
/// bench wrote during this run.
fn render_follow(path: &Path, since: std::time::SystemTime) -> anyhow::Result<String> {
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return Ok("\nFollowers: not measured in this run.\n".into());
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let met = |ok: bool| if ok { "yes" } else { "no" };
    let wake = &report["wake_up"];
    let (p50, p99) = (ms(&wake["p50_ms"]), ms(&wake["p99_ms"]));
    let lag = &report["lag_b"];
    Ok(format!(
        "\nFollowers on SQLite (synchronous=FULL)\n\n\
         | measure | p50 | p99 | max | goal | met |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         | wake-up: commit to handler, one process ({} commits) | {p50:.3} ms | {p99:.3} ms | {:.3} ms | p50 <= 1 ms, p99 <= 10 ms | {} |\n\
         | lag under workload b (8 tasks, {} commands at {}): events behind | {} | {} | {} | | |\n\
         | lag under workload b: time from commit to the follower's page | {:.1} ms | {:.1} ms | {:.1} ms | | |\n",
        wake["commits"],
        ms(&wake["max_ms"]),
        met(p50 <= 1.0 && p99 <= 10.0),
        lag["commands"],
        human(ms(&lag["commands_per_s"])),
        lag["events_p50"],
        lag["events_p99"],
        lag["events_max"],
        ms(&lag["p50_ms"]),
        ms(&lag["p99_ms"]),
        ms(&lag["max_ms"]),
    ))
}

/// The Cassandra section, from the JSON the cassandra bench wrote during this run.
fn render_cassandra(path: &Path, since: std::time::SystemTime) -> anyhow::Result<String> {
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return Ok("\nCassandra: not measured in this run (no node).\n".into());
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let writers = report["writers"]
        .as_array()
        .context("cassandra.json without writers")?;
    let single = writers
        .first()
        .and_then(|w| w["appends_per_s"].as_f64())
        .unwrap_or(f64::NAN);
    let mut out = String::from(
        "\nCassandra (one real node on this machine; LWT appends of one ~100-byte event; baseline: 1 writer)\n\n\
         | writers | appends | appends/s | ratio to 1 writer | p50 | p99 |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for w in writers {
        let rate = w["appends_per_s"].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "| {} | {} | {} | {:.2}x | {:.2} ms | {:.2} ms |\n",
            w["writers"],
            w["appends"],
            human(rate),
            rate / single,
            w["p50_ms"].as_f64().unwrap_or(f64::NAN),
            w["p99_ms"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    let load = &report["load_10000"];
    out.push_str(&format!(
        "\nLoading one aggregate of 10,000 events (select + decode): {:.1} ms median ({}).\n",
        load["median_ms"].as_f64().unwrap_or(f64::NAN),
        human(load["events_per_s"].as_f64().unwrap_or(f64::NAN))
    ));
    let base = &report["baselines"];
    if base.is_object() {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        out.push_str(
            "\nAgainst raw scylla-driver calls on the same table, interleaved with eventsmith's (QUORUM, SERIAL):\n\n\
             | work | eventsmith p50 | raw p50 | ratio | eventsmith p99 | raw p99 | ratio | goal | met |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
        );
        for (name, key) in [
            ("append of one event (LWT insert)", "lwt_single"),
            ("append of 10 events (conditional batch)", "lwt_batch_10"),
        ] {
            out.push_str(&latency_row(
                name,
                &base[key],
                1.2,
                "<= 1.2x at p50 and p99",
            ));
        }
        let load = &base["load_10000"];
        let ratio = f(&load["rate_ratio"]);
        out.push_str(&format!(
            "\nLoading the 10,000-event aggregate, decoded: eventsmith {:.1} ms, raw paged select + decode {:.1} ms (median): {ratio:.2}x the raw rate (goal >= 0.8x: {}).\n",
            f(&load["median_ms"]),
            f(&load["raw_median_ms"]),
            if ratio >= 0.8 { "met" } else { "not met" },
        ));
    }
    let feed = &report["feed"];
    if feed.is_object() {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        out.push_str(
            "\nThe feed's cost per append: a keyspace with a 64-slice feed (intent, then the LWT) against one without, interleaved:\n\n\
             | append | with feed p50 | without p50 | ratio | with feed p99 | without p99 | ratio | goal | met |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
        );
        for (name, key) in [
            ("one event", "append_single"),
            ("10 events", "append_batch_10"),
        ] {
            out.push_str(&latency_row(
                name,
                &feed[key],
                1.3,
                "<= 1.3x (30% more latency)",
            ));
        }
        let (backlog, poll) = (&feed["backlog"], &feed["poll_64_slices"]);
        out.push_str(&format!(
            "\nA reader settled and delivered a backlog of {} events at {}; one poll of all 64 caught-up slices: {:.1} ms p50, {:.1} ms max.\n",
            backlog["items"],
            human(f(&backlog["items_per_s"])),
            f(&poll["p50_ms"]),
            f(&poll["max_ms"]),
        ));
        let lag = &feed["follower_lag"];
        if lag.is_object() {
            out.push_str(&format!(
                "A follower's lag (a `Runner` on all 64 slices, polling every {} ms, one append every 10 ms; acknowledgement to delivery, {} appends): {:.1} ms p50, {:.1} ms p99.\n",
                lag["poll_ms"],
                lag["appends"],
                f(&lag["p50_ms"]),
                f(&lag["p99_ms"]),
            ));
        }
    }
    Ok(out)
}

/// One row of a latency comparison (the bench's `compare`: p50 and p99 against a baseline's),
/// met when both ratios are at most `limit`.
fn latency_row(name: &str, m: &serde_json::Value, limit: f64, goal: &str) -> String {
    let f = |key: &str| m[key].as_f64().unwrap_or(f64::NAN);
    let (r50, r99) = (f("p50_ratio"), f("p99_ratio"));
    format!(
        "| {name} | {:.2} ms | {:.2} ms | {r50:.2}x | {:.2} ms | {:.2} ms | {r99:.2}x | {goal} | {} |\n",
        f("p50_ms"),
        f("raw_p50_ms"),
        f("p99_ms"),
        f("raw_p99_ms"),
        if r50 <= limit && r99 <= limit {
            "yes"
        } else {
            "no"
        },
    )
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn benchmarks_md(table: &str, quick: bool) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .next()
        .unwrap_or("")
        .replace("MemTotal:", "")
        .trim()
        .to_owned();
    let machine = format!(
        "{} cores ({cpu}), {mem} memory, {}; {}",
        command_output("nproc", &[]),
        command_output("uname", &["-sr"]),
        command_output("rustc", &["--version"]),
    );
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let run = if quick {
        "`cargo xtask bench --quick` (short windows: indicative only)"
    } else {
        "`cargo xtask bench`"
    };
    format!(
        "# Benchmarks

Written by `cargo xtask bench`; do not edit by hand. Every figure is a ratio against a
baseline measured in the same run on the same machine, because absolute rates on shared
machines vary from run to run. Rates are events per second (commands per second for the
command workloads, reads per second for g). Criterion's full reports (with plots) are in
`target/criterion/report/index.html` after a run.

- Run: {run}, {date}
- Machine: {machine}
- On the 3-node Cassandra cluster (replication factor 3), the feed's cost per append and a
  follower's lag are measured by `cargo xtask test --cluster`, not by this command: the
  last figures are in RELIABILITY.md, section \"3-node Cassandra cluster\".

{table}
## What is measured

SQLite (WAL; `full` and `normal` are `synchronous=FULL` and `NORMAL`; ~100-byte events
encoded with postcard). The `raw` baselines use rusqlite directly on a file with the same
schema and pragmas.

- **a-commands**: load an aggregate (1 to 10 events), decide, save one event with
  concurrency control, from one task; baseline: one `INSERT` per transaction.
- **b-commands-8-tasks**: the same from 8 tasks on distinct aggregates (group commit);
  baseline as in a. Beside it, `raw-grouped-8`: the same commands in raw rusqlite on one
  thread, 8 to a transaction (select the aggregate's items, insert the next one), with
  nothing decoded or encoded and no hand-offs: what group commit of 8 gives SQLite itself.
  And `raw-pipelined-8`: loads on one thread (a read-only connection), inserts handed to a
  second thread that commits up to 8 to a transaction: what a second core adds.
- **c-batch-10**: one atomic append of 10 events; baseline: 10 inserts in one transaction.
- **d-notifications**: the whole notification log in pages of 1,000, decoded; baseline:
  the same selects without decoding.
- **e-load-10000**: load one aggregate of 10,000 events; baseline: select + decode.
- **f-commands-cipher**: workload a with AES-256-GCM and zstd on; baseline: workload a.
- **k-tracing-a** (FULL only): workload a with a subscriber installed (scoped to each
  command) that enables INFO and above, the production case: every store span is DEBUG and
  so off; baseline: workload a with no subscriber, in the same run. Beside it,
  `disabled-span`: one store span as `#[tracing::instrument]` makes it, with nobody
  listening (a command makes 2: the load's select and the append).
- **i-application**: workload a through the built `Application` (its command builder, retry
  policy and hooks, no snapshots); baseline (`plain`): the same load, decide and save written
  by hand on the bare `Repository`.
- **h-load-10000-snapshots**: the e aggregate (plus one event) loaded from a snapshot taken
  every 100 events; baseline: the same load without snapshots.
- **g-point-read**: one `latest` read through the async store (on the calling thread, with
  the idle write connection) against the same select in plain rusqlite: the price of the
  async API.
- **j-follower-projection**: a `SqliteProjection` catching up over d's log from the start:
  each event decoded and upserted into a table of the same file, one transaction (with the
  tracking record, fsynced) per page of 1,000; baseline: d's raw read-all, which writes
  nothing. Beside it, `raw-projection`: the same projection in plain rusqlite (per page one
  transaction that reads it, decodes and upserts each event, and moves a tracking row). The
  goal (0.5x the read-all) is out of reach for SQLite itself: `raw-projection` lands where
  eventsmith does, because one upsert per event costs several times what reading it does.
- **Followers** (the `follow` bench, by hand because it needs percentiles): wake-up latency,
  one command at a time, from the command's after-commit hook to a follower's handler seeing
  the event (its runner woken by the hook, the poll interval long); and lag under workload b:
  8 tasks running commands for a few seconds while a runner projects every event into a
  table of the same file, sampled every 5 ms as events behind the head, and per event as the
  time from its after-commit hook to the projection applying it (before the page commits;
  an event applied before its own hook ran counts as 0).
- **codec-SIZE-CODEC**: encode + decode of one event; baseline: the plain codec.

The command workloads run on a 2-worker tokio runtime. An append that finds the store's
writer idle commits on the calling thread (with `FULL` inside `block_in_place`); concurrent
appends go to the writer thread, which commits them in groups. The raw baselines run
SQLite's auto-checkpoint inside their commits; eventsmith runs checkpoints on its writer
thread, which is why it can beat raw batched inserts.

Why `normal-b` stays below its goal of 2x raw one-insert transactions: raw SQLite itself
does not reach it on one thread. `raw-grouped-8` runs the same commands 8 to a transaction,
with no decoding and no hand-offs, and with `NORMAL` it stays below 2x too (1.3x to 1.8x raw
one-insert transactions across our runs; this run's figure is in the table). Without fsync
a commit costs little more than its inserts (each dirties its own random index page), and a
command's load, which reads pages scattered through the file, costs about as much as a
commit. Loads on a second core help little (`raw-pipelined-8`): a reader connection's page
cache is dropped whenever another connection commits. Group commit pays off
where a commit waits for an fsync (`full-b`, where `raw-grouped-8` is several times raw
one-insert transactions). The eventsmith rate against `raw-grouped-8` shows what the async
API, the mapper and the hand-offs between 8 tasks on 2 cores cost.

`normal-a` sits at its goal of 0.7x: across our runs it measured 0.61x to 0.75x, as much
because the raw one-insert rate moves by a fifth from run to run on this machine as because
eventsmith's does. `full-b` moves too, with this machine's fsync latency: 1.4x to 2.9x across
our runs, at or above 2x in most. A command reads the aggregate before it writes, and without fsync that
read costs a large part of a commit.
"
    )
}
