//! Against a real 3-node Cassandra cluster, replication factor 3, QUORUM / SERIAL: the
//! conformance suite, and faults (a node killed with SIGKILL and restarted; a node frozen with
//! SIGSTOP for longer than the request timeout) under concurrent, conflicting writers and a
//! follower.
//!
//! Run with `cargo xtask test --cluster`, which starts the cluster
//! (`tools/cassandra/run_cluster.sh`), sets `EVENTSMITH_CASSANDRA_CLUSTER` to its contact
//! points and runs this file. This test target has `test = false` in Cargo.toml, so a plain
//! `cargo test` never runs it; run on its own it needs `EVENTSMITH_CASSANDRA_CLUSTER`, and
//! without it every test fails (never a silent skip).
//!
//! The follower: the fault runs' keyspace has a feed, and two runners (each with its own
//! session, as two processes would have) share its slices through their leases; the run checks
//! that what they were handed, once duplicates are set aside (delivery is at least once), is
//! exactly the stored rows, and reports the redeliveries and the follower's lag.
//!
//! `EVENTSMITH_CLUSTER_LEVERS` overrides the driver levers for measurements, e.g.
//! `timeout=2000,spec=1:100,heartbeat=2:2,conns=1` (milliseconds; seconds for heartbeat;
//! `timeout=none`, `spec=none`). Unset: the defaults of [`CassandraConfig`].

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use eventsmith_core::{AppendError, ItemStore, Runner, Select, SequencedItem, StoreError};
use eventsmith_scylla::{
    CassandraConfig, CassandraStore, Consistency, FeedConfig, Replication, SerialConsistency,
    SpeculativeExecution,
};
use eventsmith_testkit::follow::Recorder;
use tokio::sync::OnceCell;
use uuid::Uuid;

const CLUSTER_ENV: &str = "EVENTSMITH_CASSANDRA_CLUSTER";

/// The cluster's contact points; panics when not configured: these tests only run when asked
/// for, and then a missing cluster is a failure.
fn contact_points() -> Vec<String> {
    let value = std::env::var(CLUSTER_ENV).unwrap_or_default();
    let points: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    assert!(
        points.len() >= 3,
        "{CLUSTER_ENV} must name the 3 nodes of a cluster (got {value:?}); run `cargo xtask test --cluster`, or start one with `cargo xtask cassandra cluster start 3` and set {CLUSTER_ENV}=127.0.0.1:9043,127.0.0.2:9043,127.0.0.3:9043"
    );
    points
}

fn run_keyspace(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("es_{prefix}_{}_{}", std::process::id(), nanos % 1_000_000)
}

/// RF 3, QUORUM / SERIAL, the lever defaults unless `EVENTSMITH_CLUSTER_LEVERS` says otherwise.
fn cluster_config(keyspace: &str) -> CassandraConfig {
    let mut config = CassandraConfig::new(contact_points(), keyspace).unwrap();
    config.replication = Some(Replication::Simple {
        replication_factor: 3,
    });
    config.consistency = Consistency::Quorum;
    config.serial_consistency = SerialConsistency::Serial;
    apply_levers(&mut config);
    config
}

fn apply_levers(config: &mut CassandraConfig) {
    let Ok(levers) = std::env::var("EVENTSMITH_CLUSTER_LEVERS") else {
        return;
    };
    let ms = |v: &str| Duration::from_millis(v.parse().expect("milliseconds"));
    for lever in levers.split(',').filter(|l| !l.is_empty()) {
        let (key, value) = lever.split_once('=').expect("lever=value");
        match key {
            "timeout" if value == "none" => config.request_timeout = None,
            "timeout" => config.request_timeout = Some(ms(value)),
            "spec" if value == "none" => config.speculative_execution = None,
            "spec" => {
                let (n, d) = value.split_once(':').expect("spec=N:MS");
                config.speculative_execution = Some(SpeculativeExecution {
                    max_extra: n.parse().unwrap(),
                    delay: ms(d),
                });
            }
            "heartbeat" => {
                let (i, t) = value.split_once(':').expect("heartbeat=S:S");
                config.heartbeat_interval = Duration::from_secs(i.parse().unwrap());
                config.heartbeat_timeout = Duration::from_secs(t.parse().unwrap());
            }
            "conns" => config.connections_per_node = Some(value.parse().unwrap()),
            other => panic!("unknown lever {other:?}"),
        }
    }
}

fn describe(config: &CassandraConfig) -> String {
    format!(
        "request timeout {:?}, speculative reads {:?}, heartbeat every {:?} / timeout {:?}, connections per node {:?}",
        config.request_timeout,
        config.speculative_execution,
        config.heartbeat_interval,
        config.heartbeat_timeout,
        config.connections_per_node
    )
}

/// The conformance suite's store: one keyspace for the run, RF 3.
async fn conformance_store() -> (CassandraStore, ()) {
    static KEYSPACE: OnceLock<String> = OnceLock::new();
    static SCHEMA: OnceCell<()> = OnceCell::const_new();
    let keyspace = KEYSPACE.get_or_init(|| run_keyspace("conformance"));
    let config = cluster_config(keyspace);
    SCHEMA
        .get_or_init(|| async {
            CassandraStore::create_schema(&config)
                .await
                .expect("create the RF 3 keyspace on the cluster")
        })
        .await;
    (
        CassandraStore::connect(config)
            .await
            .expect("connect to the cluster"),
        (),
    )
}

/// The same on a second keyspace, with a feed: every append writes its intent first, and
/// the suite reads the feed back at QUORUM/SERIAL.
async fn conformance_store_with_feed() -> (CassandraStore, ()) {
    static KEYSPACE: OnceLock<String> = OnceLock::new();
    static SCHEMA: OnceCell<()> = OnceCell::const_new();
    let keyspace = KEYSPACE.get_or_init(|| run_keyspace("conformance_feed"));
    let mut config = cluster_config(keyspace);
    config.feed = Some(common::feed_settings());
    SCHEMA
        .get_or_init(|| async {
            CassandraStore::create_schema(&config)
                .await
                .expect("create the RF 3 keyspace with a feed on the cluster")
        })
        .await;
    (
        CassandraStore::connect(config)
            .await
            .expect("connect to the cluster"),
        (),
    )
}

mod conformance {
    eventsmith_testkit::conformance_suite!(super::conformance_store());

    mod with_feed {
        eventsmith_testkit::conformance_suite!(super::super::conformance_store_with_feed());
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

/// Runs `tools/cassandra/run_cluster.sh ACTION NODE` (the script that started the cluster).
fn cluster_ctl(action: &str, node: u8) {
    let script = std::env::var_os("EVENTSMITH_CLUSTER_CTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/cassandra/run_cluster.sh")
        });
    let status = Command::new("bash")
        .arg(&script)
        .arg(action)
        .arg(node.to_string())
        .status()
        .expect("run run_cluster.sh");
    assert!(status.success(), "run_cluster.sh {action} {node} failed");
}

/// What one append attempt was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Acknowledged,
    Conflict,
    /// Failed with a definite error: must not appear.
    Failed,
    /// `OutcomeUnknown`: may appear.
    Unknown,
}

#[derive(Debug, Clone)]
struct Attempt {
    sequence: Uuid,
    version: u64,
    told: Told,
    at: Instant,
}

#[derive(Default)]
struct Log {
    /// Payload → attempt. Payloads are unique per attempt.
    attempts: HashMap<Vec<u8>, Attempt>,
    errors: BTreeMap<String, usize>,
}

/// A window of the run, for throughput.
struct Phase {
    name: &'static str,
    from: Instant,
    to: Instant,
}

const SEQUENCES: usize = 8;
const WRITERS_PER_SEQUENCE: usize = 2;

async fn latest_version(store: &CassandraStore, id: Uuid, stop: &AtomicBool) -> Option<u64> {
    loop {
        match store.select(id, &Select::all().descending().limit(1)).await {
            Ok(items) => return Some(items.first().map_or(0, |i| i.position)),
            Err(_) if !stop.load(Ordering::Relaxed) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(_) => return None,
        }
    }
}

/// One writer: appends the next version of its sequence, one event at a time, racing with the
/// other writer of the same sequence.
async fn writer(
    store: CassandraStore,
    id: Uuid,
    name: String,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) {
    let mut next = match latest_version(&store, id, &stop).await {
        Some(v) => v + 1,
        None => return,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let payload = format!("{name}#{n}").into_bytes();
        let item = SequencedItem {
            sequence_id: id,
            position: next,
            topic: "fault".into(),
            payload: payload.clone(),
        };
        let result = store.append(vec![item]).await;
        let told = match &result {
            Ok(_) => Told::Acknowledged,
            Err(AppendError::Conflict { .. }) => Told::Conflict,
            Err(AppendError::Store(StoreError::OutcomeUnknown { .. })) => Told::Unknown,
            Err(_) => Told::Failed,
        };
        {
            let mut log = log.lock().unwrap();
            if let Err(e) = &result {
                let kind = match e {
                    AppendError::Conflict { .. } => "conflict".to_owned(),
                    // The kind of error, without the commit id: "outcome unknown: Request
                    // execution exceeded a client timeout", say.
                    AppendError::Store(StoreError::OutcomeUnknown { source, .. }) => {
                        let text = source.to_string();
                        format!(
                            "outcome unknown: {}",
                            text.chars().take(60).collect::<String>()
                        )
                    }
                    AppendError::Store(s) => s.to_string().chars().take(80).collect(),
                    other => format!("{other:?}"),
                };
                *log.errors.entry(kind).or_default() += 1;
            }
            log.attempts.insert(
                payload,
                Attempt {
                    sequence: id,
                    version: next,
                    told,
                    at: Instant::now(),
                },
            );
        }
        next = match told {
            Told::Acknowledged => next + 1,
            _ => match latest_version(&store, id, &stop).await {
                Some(v) => v + 1,
                None => break,
            },
        };
    }
}

/// What a recorder was handed of sequence `id`: (version, payload, when), in the order handed.
fn seen(recorder: &Recorder, id: &Uuid) -> Vec<(u64, Vec<u8>, Instant)> {
    recorder
        .arrivals()
        .into_iter()
        .filter(|(item, _)| item.sequence_id == *id)
        .map(|(item, at)| (item.position, item.payload, at))
        .collect()
}

/// The whole fault run: writers and a follower around `fault`, then the checks. Returns the
/// append rate (appends acknowledged + conflicts per second) of each phase.
async fn fault_run<F, Fut>(label: &str, fault: F) -> Vec<(&'static str, f64)>
where
    F: FnOnce(Instant) -> Fut,
    Fut: std::future::Future<Output = Vec<Phase>>,
{
    let keyspace = run_keyspace("faults");
    let mut config = cluster_config(&keyspace);
    config.feed = Some(FeedConfig {
        slices: 8,
        ..FeedConfig::default()
    });
    eprintln!("{label}: {}", describe(&config));
    CassandraStore::create_schema(&config)
        .await
        .expect("create the RF 3 keyspace");
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    // Two runners of the follower share the feed's slices, each with its own session, as
    // two processes would.
    let recorders = [
        Recorder::new("fault-follower", "fault"),
        Recorder::new("fault-follower", "fault"),
    ];
    let mut runners = Vec::new();
    for recorder in &recorders {
        let session = CassandraStore::connect(config.clone()).await.unwrap();
        runners.push(
            Runner::new(session)
                .follow(recorder.clone())
                .poll_interval(Duration::from_millis(20))
                .lease_ttl(Duration::from_secs(3))
                .start(),
        );
    }
    let ids: Vec<Uuid> = (0..SEQUENCES).map(|_| Uuid::new_v4()).collect();
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (s, id) in ids.iter().enumerate() {
        for w in 0..WRITERS_PER_SEQUENCE {
            writers.push(tokio::spawn(writer(
                store.clone(),
                *id,
                format!("s{s}w{w}"),
                log.clone(),
                stop.clone(),
            )));
        }
    }
    let started = Instant::now();
    let phases = fault(started).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let mut problems = Vec::new();

    // Every stored row must reach the runners: wait (an intent left by a writer told
    // outcome-unknown may wait for a helper), then stop them.
    let distinct = |id: &Uuid| -> Vec<(u64, Vec<u8>)> {
        let mut all: Vec<(u64, Vec<u8>)> = recorders
            .iter()
            .flat_map(|r| seen(r, id))
            .map(|(v, p, _)| (v, p))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    // The truth: every sequence read back at QUORUM from the healed cluster, again while
    // waiting, since a reader may still complete an append whose writer was told
    // outcome-unknown.
    let read_back = || async {
        let mut stored: HashMap<Uuid, Vec<(u64, Vec<u8>)>> = HashMap::new();
        for id in &ids {
            let items = store.select(*id, &Select::all()).await.expect("read back");
            stored.insert(
                *id,
                items.into_iter().map(|i| (i.position, i.payload)).collect(),
            );
        }
        stored
    };
    let writers_stopped = Instant::now();
    let deadline = writers_stopped + Duration::from_secs(180);
    let mut stored = read_back().await;
    while ids.iter().any(|id| distinct(id) != stored[id]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stored = read_back().await;
    }
    let caught_up = writers_stopped.elapsed();
    for runner in runners {
        runner.stop().await;
    }
    let log = log.lock().unwrap();
    let count = |t: Told| log.attempts.values().filter(|a| a.told == t).count();
    let mut unknown_applied = 0;
    let mut stored_payloads = HashSet::new();
    for id in &ids {
        let rows = &stored[id];
        for (i, (version, payload)) in rows.iter().enumerate() {
            if *version != i as u64 + 1 {
                problems.push(format!(
                    "sequence {id}: version {version} at index {i}: not contiguous"
                ));
            }
            stored_payloads.insert(payload.clone());
            match log.attempts.get(payload) {
                None => problems.push(format!(
                    "sequence {id} v{version}: a payload no writer sent"
                )),
                Some(a) if a.sequence != *id || a.version != *version => problems.push(format!(
                    "sequence {id} v{version}: payload sent for {} v{}",
                    a.sequence, a.version
                )),
                Some(a) => match a.told {
                    Told::Acknowledged => {}
                    Told::Unknown => unknown_applied += 1,
                    Told::Conflict | Told::Failed => problems.push(format!(
                        "sequence {id} v{version}: reported as {:?} but stored",
                        a.told
                    )),
                },
            }
        }
        // The runners were handed exactly the stored rows (each at least once), and each
        // runner saw a sequence's versions in order: never one ahead of the next it lacked.
        let followed = distinct(id);
        if followed != *rows {
            let missed: Vec<u64> = rows
                .iter()
                .filter(|r| !followed.contains(r))
                .map(|r| r.0)
                .collect();
            let foreign: Vec<u64> = followed
                .iter()
                .filter(|f| !rows.contains(f))
                .map(|f| f.0)
                .collect();
            problems.push(format!(
                "sequence {id}: the runners were handed {} events, the store holds {}; not handed: {}; handed but not stored: {}",
                followed.len(),
                rows.len(),
                ranges(&missed),
                ranges(&foreign)
            ));
        }
        for recorder in &recorders {
            let mut top: Option<u64> = None;
            for (version, _, _) in &seen(recorder, id) {
                if top.is_some_and(|t| *version > t + 1) {
                    problems.push(format!(
                        "sequence {id}: a runner was handed version {version} after version {}",
                        top.unwrap()
                    ));
                }
                top = Some(top.map_or(*version, |t| t.max(*version)));
            }
        }
    }
    for (payload, a) in &log.attempts {
        if a.told == Told::Acknowledged && !stored_payloads.contains(payload) {
            problems.push(format!(
                "acknowledged append lost: sequence {} v{} ({})",
                a.sequence,
                a.version,
                String::from_utf8_lossy(payload)
            ));
        }
    }
    let acknowledged = count(Told::Acknowledged);
    let unknown = count(Told::Unknown);
    let followed_events: usize = ids.iter().map(|id| distinct(id).len()).sum();
    let handed: usize = recorders.iter().map(|r| r.arrivals().len()).sum();
    // Lag: from an append's acknowledgement to its first delivery.
    let mut lags: Vec<Duration> = Vec::new();
    for recorder in &recorders {
        for (item, at) in recorder.arrivals() {
            if let Some(a) = log.attempts.get(&item.payload) {
                if a.told == Told::Acknowledged {
                    lags.push(at.saturating_duration_since(a.at));
                }
            }
        }
    }
    lags.sort();
    let lag = |q: f64| {
        lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut rates = Vec::new();
    let mut per_phase = Vec::new();
    for phase in &phases {
        let secs = (phase.to - phase.from).as_secs_f64();
        let done = log
            .attempts
            .values()
            .filter(|a| {
                matches!(a.told, Told::Acknowledged | Told::Conflict)
                    && a.at >= phase.from
                    && a.at < phase.to
            })
            .count();
        per_phase.push((phase.name, done as f64 / secs));
        rates.push(format!(
            "{} {:.1} s: {:.0}/s",
            phase.name,
            secs,
            done as f64 / secs
        ));
    }
    let resolved = store.outcome_stats();
    let summary = format!(
        "{label}: {acknowledged} appends acknowledged, {} conflicts, {} failed, {unknown} outcome-unknown returned ({unknown_applied} found applied, {} not), {followed_events} events followed ({} redelivered), follower lag p50 {:?} p99 {:?}, caught up {caught_up:?} after the writers stopped; unknown outcomes resolved inside the store: {} as applied, {} as conflicts, {} found absent and sent again; appends+conflicts per second: {}; errors: {:?}; {}",
        count(Told::Conflict),
        count(Told::Failed),
        unknown - unknown_applied,
        handed - followed_events,
        lag(0.5),
        lag(0.99),
        resolved.resolved_applied,
        resolved.resolved_conflict,
        resolved.resolved_absent,
        rates.join(", "),
        log.errors,
        describe(&config),
    );
    println!("{summary}");
    eprintln!("{summary}");
    assert!(
        problems.is_empty(),
        "{label}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(acknowledged > 0, "{label}: nothing was acknowledged");
    // Later checks would be vacuous without a follower that saw the events.
    assert_eq!(followed_events, acknowledged + unknown_applied);
    per_phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_kill_a_node_and_restart_it() {
    fault_run("SIGKILL node 3, restart", |t0| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let killed = Instant::now();
        tokio::task::spawn_blocking(|| cluster_ctl("kill", 3))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let restarting = Instant::now();
        tokio::task::spawn_blocking(|| cluster_ctl("restart", 3))
            .await
            .unwrap();
        let restarted = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let end = Instant::now();
        vec![
            Phase {
                name: "before",
                from: t0 + Duration::from_secs(2),
                to: killed,
            },
            Phase {
                name: "node 3 down",
                from: killed,
                to: restarting,
            },
            Phase {
                name: "restarting",
                from: restarting,
                to: restarted,
            },
            Phase {
                name: "after",
                from: restarted,
                to: end,
            },
        ]
    })
    .await;
}

/// Longer than the default request timeout (10 s), so requests to the frozen node time out.
const PAUSE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_pause_a_node_longer_than_the_request_timeout() {
    let rates = fault_run("SIGSTOP node 2 for 20 s", |t0| async move {
        tokio::time::sleep(Duration::from_secs(12)).await;
        let paused = Instant::now();
        tokio::task::spawn_blocking(|| cluster_ctl("pause", 2))
            .await
            .unwrap();
        tokio::time::sleep(PAUSE).await;
        let resumed = Instant::now();
        tokio::task::spawn_blocking(|| cluster_ctl("resume", 2))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let end = Instant::now();
        vec![
            Phase {
                name: "before",
                from: t0 + Duration::from_secs(2),
                to: paused,
            },
            Phase {
                name: "paused",
                from: paused,
                to: resumed,
            },
            Phase {
                name: "after",
                from: resumed,
                to: end,
            },
        ]
    })
    .await;
    // The goal: a frozen node costs at most half the append throughput.
    let rate = |name: &str| rates.iter().find(|r| r.0 == name).expect("phase").1;
    let (before, paused) = (rate("before"), rate("paused"));
    assert!(
        std::env::var_os("EVENTSMITH_CLUSTER_LEVERS").is_some() || paused >= before / 2.0,
        "a paused node cost more than half the append throughput: {paused}/s while paused against {before}/s before"
    );
}

// ---------------------------------------------------------------------------------------------
// The feed's cost and a follower's lag on the cluster

fn millis(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// RF 3, QUORUM/SERIAL: single-event appends to a keyspace with a feed (64 slices) against the
/// same appends to one without, interleaved and alternating which goes first, so that the
/// machine's noise falls on both; and a runner on the feed (polling every 20 ms), whose lag is
/// the time from an append's acknowledgement to its delivery. Prints the figures that
/// RELIABILITY.md and BENCHMARKS.md quote; fails if an append is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn measure_feed_cost_and_follower_lag() {
    let plain_config = cluster_config(&run_keyspace("cost_plain"));
    let mut feed_config = cluster_config(&run_keyspace("cost_feed"));
    feed_config.feed = Some(FeedConfig::default());
    CassandraStore::create_schema(&plain_config).await.unwrap();
    CassandraStore::create_schema(&feed_config).await.unwrap();
    let plain = CassandraStore::connect(plain_config).await.unwrap();
    let with_feed = CassandraStore::connect(feed_config.clone()).await.unwrap();
    let arrivals = Recorder::new("lag", "cost");
    let running = Runner::new(CassandraStore::connect(feed_config).await.unwrap())
        .follow(arrivals.clone())
        .poll_interval(Duration::from_millis(20))
        .start();
    let rounds = 300;
    let (mut ours, mut without, mut acked) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        for turn in [i % 2, 1 - i % 2] {
            let payload = format!("cost {i} {turn}").into_bytes();
            let item = SequencedItem {
                sequence_id: Uuid::new_v4(),
                position: 1,
                topic: "cost".into(),
                payload: payload.clone(),
            };
            let t = Instant::now();
            if turn == 0 {
                with_feed.append(vec![item]).await.unwrap();
                ours.push(t.elapsed());
                acked.push((payload, Instant::now()));
            } else {
                plain.append(vec![item]).await.unwrap();
                without.push(t.elapsed());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_arrivals = || -> HashMap<Vec<u8>, Instant> {
        let mut first = HashMap::new();
        for (item, at) in arrivals.arrivals() {
            first.entry(item.payload).or_insert(at);
        }
        first
    };
    // Only this run's appends count: the feed may also hold earlier ones of the topic.
    let at = loop {
        let first = first_arrivals();
        let handed = acked.iter().filter(|(p, _)| first.contains_key(p)).count();
        if handed == acked.len() {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "the runner was handed {handed} of {} appends within 60 s",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await;
    let mut lags: Vec<Duration> = acked
        .iter()
        .map(|(p, t)| at[p].saturating_duration_since(*t))
        .collect();
    ours.sort();
    without.sort();
    lags.sort();
    let summary = format!(
        "feed cost on the 3-node cluster (RF 3, QUORUM/SERIAL, {rounds} single-event appends each): with the feed p50 {:.2} ms p99 {:.2} ms, without p50 {:.2} ms p99 {:.2} ms, ratio p50 {:.2}x p99 {:.2}x; follower lag (20 ms poll) p50 {:.1} ms p99 {:.1} ms",
        millis(&ours, 0.5),
        millis(&ours, 0.99),
        millis(&without, 0.5),
        millis(&without, 0.99),
        millis(&ours, 0.5) / millis(&without, 0.5),
        millis(&ours, 0.99) / millis(&without, 0.99),
        millis(&lags, 0.5),
        millis(&lags, 0.99),
    );
    println!("{summary}");
    eprintln!("{summary}");
}

/// Versions as ranges (`1-5, 9`), for a problem report that stays short.
fn ranges(versions: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = versions.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}
