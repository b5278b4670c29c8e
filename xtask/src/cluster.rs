//! `cargo xtask cassandra cluster start [3]|stop|status|kill N|restart N|pause N|resume N` and
//! `cargo xtask test --cluster`: a throw-away 3-node Apache Cassandra 5.0 cluster on 127.0.0.1,
//! 127.0.0.2 and 127.0.0.3 (CQL port 9043, storage port 7010, so it runs beside the single
//! node of `cassandra start`), from the same Maven Central jars. The work is done by
//! `tools/cassandra/run_cluster.sh`; see tools/cassandra/CLUSTER.md.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The contact points the cluster tests read.
pub(crate) const CLUSTER_ENV: &str = "EVENTSMITH_CASSANDRA_CLUSTER";
/// The cluster's contact points, as `run_cluster.sh contact` prints them for 3 nodes.
const CONTACT_POINTS: &str = "127.0.0.1:9043,127.0.0.2:9043,127.0.0.3:9043";

const USAGE: &str =
    "usage: cargo xtask cassandra cluster start [3]|stop|status|kill N|restart N|pause N|resume N";

fn script(root: &Path) -> std::path::PathBuf {
    root.join("tools/cassandra/run_cluster.sh")
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

/// Resolves cassandra-all 5.0.x and its dependencies from Maven Central, once.
fn ensure_jars(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tools/cassandra");
    let has_jars = std::fs::read_dir(dir.join("target/cassandra-lib")).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cassandra-all-")
        })
    });
    if !has_jars {
        run(Command::new("mvn")
            .current_dir(&dir)
            .args(["-B", "-q", "package"]))
        .context("cannot fetch Cassandra's jars with Maven")?;
    }
    Ok(())
}

/// `cargo xtask cassandra cluster ARGS`.
pub(crate) fn cluster(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let action = args.first().map(String::as_str).unwrap_or("");
    match action {
        "start" => {
            let nodes = args.get(1).map(String::as_str).unwrap_or("3");
            if nodes != "3" {
                bail!("the cluster has 3 nodes (not {nodes:?}); {USAGE}");
            }
            ensure_jars(root)?;
            run(Command::new("bash")
                .arg(script(root))
                .args(["start", nodes]))?;
            eprintln!("xtask: the cluster is up; for the tests: {CLUSTER_ENV}={CONTACT_POINTS}");
            Ok(())
        }
        "stop" | "status" => run(Command::new("bash").arg(script(root)).arg(action)),
        "kill" | "restart" | "pause" | "resume" => {
            let Some(node) = args
                .get(1)
                .filter(|n| matches!(n.as_str(), "1" | "2" | "3"))
            else {
                bail!("{action} needs a node, 1 to 3; {USAGE}");
            };
            run(Command::new("bash")
                .arg(script(root))
                .args([action, node.as_str()]))
        }
        other => bail!("{USAGE} (not {other:?})"),
    }
}

/// `cargo xtask test --cluster [cargo test args]`: the cluster tests
/// (crates/eventsmith-scylla/tests/cluster.rs) on the cluster that `EVENTSMITH_CASSANDRA_CLUSTER`
/// names, or on one started for the run and stopped after. The conformance suite runs first,
/// its cases in parallel; then the fault tests, one at a time (they kill and pause nodes, and
/// measure throughput); then the measurements (the feed's cost, a follower's lag). Without Java 17 and Maven this fails: it is never a silent skip.
pub(crate) fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let (contact, started) = match std::env::var(CLUSTER_ENV) {
        Ok(contact) if !contact.is_empty() => {
            eprintln!("xtask: using the cluster at {contact} ({CLUSTER_ENV})");
            (contact, false)
        }
        _ => {
            cluster(root, &["start".into(), "3".into()])
                .context("cannot start the 3-node cluster that `test --cluster` needs")?;
            (CONTACT_POINTS.to_owned(), true)
        }
    };
    let t0 = std::time::Instant::now();
    let cargo_test = |filter: &str, harness: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["test", "-p", "eventsmith-scylla", "--test", "cluster"])
            .args(extra)
            .arg("--")
            .arg(filter)
            .args(harness)
            .env(CLUSTER_ENV, &contact)
            .env("EVENTSMITH_CLUSTER_CTL", script(root));
        run(&mut cmd)
    };
    let result = cargo_test("conformance::", &[])
        .and_then(|()| cargo_test("faults_", &["--test-threads=1", "--nocapture"]))
        .and_then(|()| cargo_test("measure_", &["--test-threads=1", "--nocapture"]));
    eprintln!(
        "xtask: cluster tests took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    if started {
        let stopped = cluster(root, &["stop".into()]);
        result?;
        return stopped;
    }
    result
}
