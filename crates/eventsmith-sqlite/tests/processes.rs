//! Tests with real OS processes on one SQLite file (a custom harness: the binary re-runs
//! itself as the child process).
//!
//! - `two_processes_race_for_each_position`: two processes race to append the next version
//!   of one sequence; exactly one wins each position, the other gets the typed conflict.
//! - `kill_9_never_loses_an_acknowledged_batch`: a child appends batches in a loop and reports
//!   each acknowledged batch over a pipe; it is killed with SIGKILL at random moments, 20 times,
//!   and after each kill the file is reopened and checked: every batch all-or-nothing, every
//!   acknowledged batch present, notification ids increasing with no batch interleaved.
//! - `appends_on_a_full_disk_fail_typed_and_lose_nothing`: a child appends under a file-size
//!   limit (`prlimit --fsize`, with SIGXFSZ ignored, so writes fail as on a full disk) until
//!   appends fail; every failure is a typed error, and after the fault clears every
//!   acknowledged batch is there and `PRAGMA integrity_check` passes.
//! - `projection_killed_mid_run_rebuilds_the_same_view`: a child runs a projection into a
//!   table of the same file and is killed with SIGKILL at random moments until it finishes;
//!   the view then equals one rebuilt from scratch: nothing skipped, nothing applied twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsmith_core::{AppendError, ItemStore, Select, SequencedItem, StoreError};
use eventsmith_core::{Follower, catch_up};
use eventsmith_sqlite::{SqliteProjection, SqliteStore};
use rand::Rng;
use std::sync::Arc;
use uuid::Uuid;

const BATCH: u64 = 5;
const KILLS: usize = 20;
const RACE_POSITIONS: u64 = 200;

/// Multi-threaded, as in a server: appends that find the writer idle commit inline, the
/// others (and those that find another process holding the lock) on the writer thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child-race") => {
            return child_race(Path::new(&args[2]), args[3].parse().unwrap(), &args[4]);
        }
        Some("--child-crash") => return child_crash(Path::new(&args[2])),
        Some("--child-project") => return child_project(Path::new(&args[2])),
        Some("--child-full") => return child_full(Path::new(&args[2])),
        Some("--child-hold") => return child_hold(Path::new(&args[2])),
        _ => {}
    }
    let tests: [(&str, fn()); 5] = [
        (
            "a_follower_never_skips_rows_of_a_transaction_held_open_by_another_process",
            a_follower_never_skips_rows_of_a_transaction_held_open_by_another_process,
        ),
        (
            "appends_on_a_full_disk_fail_typed_and_lose_nothing",
            appends_on_a_full_disk_fail_typed_and_lose_nothing,
        ),
        (
            "two_processes_race_for_each_position",
            two_processes_race_for_each_position,
        ),
        (
            "kill_9_never_loses_an_acknowledged_batch",
            kill_9_never_loses_an_acknowledged_batch,
        ),
        (
            "projection_killed_mid_run_rebuilds_the_same_view",
            projection_killed_mid_run_rebuilds_the_same_view,
        ),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let start = Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    println!("\nrunning {} tests", tests.len());
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_ok() {
            passed += 1
        } else {
            failed += 1
        }
    }
    let status = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        start.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

/// Appends the next version of `sequence` until it reaches `RACE_POSITIONS`, printing
/// `won P` or `lost P` for every attempt.
fn child_race(path: &Path, sequence: Uuid, name: &str) {
    runtime().block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let mut out = std::io::stdout().lock();
        loop {
            let latest = store
                .latest(sequence)
                .await
                .unwrap()
                .map_or(0, |i| i.position);
            if latest >= RACE_POSITIONS {
                break;
            }
            let next = latest + 1;
            let item = SequencedItem {
                sequence_id: sequence,
                position: next,
                topic: "race".into(),
                payload: name.as_bytes().to_vec(),
            };
            match store.append(vec![item]).await {
                Ok(_) => writeln!(out, "won {next}").unwrap(),
                Err(AppendError::Conflict {
                    sequence_id,
                    position,
                }) => {
                    assert_eq!((sequence_id, position), (sequence, next.into()));
                    writeln!(out, "lost {next}").unwrap()
                }
                // Another process held the lock past the busy timeout: typed and retryable.
                Err(AppendError::Store(e @ StoreError::Busy { .. })) => {
                    assert!(e.is_retryable());
                    writeln!(out, "busy {next}").unwrap()
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        let stats = store.commit_stats();
        writeln!(out, "inline {}", stats.inline).unwrap();
        writeln!(out, "queued {}", stats.transactions - stats.inline).unwrap();
    });
}

fn two_processes_race_for_each_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    // Create the schema once, so the children race on appends rather than on creation.
    runtime().block_on(async { SqliteStore::open(&path).await.unwrap().close().await });
    let sequence = Uuid::new_v4();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let child = Command::new(&exe)
                .args([
                    "--child-race",
                    path.to_str().unwrap(),
                    &sequence.to_string(),
                    name,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (name, child)
        })
        .collect();
    let mut wins: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    let (mut losses, mut inline, mut queued) = (0, 0, 0);
    for (name, child) in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "child {name} failed");
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let (what, position) = line.split_once(' ').unwrap();
            let position: u64 = position.parse().unwrap();
            match what {
                "won" => wins.entry(position).or_default().push(name),
                "lost" => losses += 1,
                "inline" => inline += position,
                "queued" => queued += position,
                _ => {}
            }
        }
    }
    assert_eq!(
        wins.keys().copied().collect::<Vec<_>>(),
        (1..=RACE_POSITIONS).collect::<Vec<_>>()
    );
    for (position, winners) in &wins {
        assert_eq!(winners.len(), 1, "position {position} won by {winners:?}");
    }
    // Both ways of committing took part: inline, and on the writer thread after finding the
    // other process holding the lock.
    assert!(inline > 0 && queued > 0, "inline {inline}, queued {queued}");
    let stored = runtime().block_on(async {
        SqliteStore::open(&path)
            .await
            .unwrap()
            .select(sequence, &Select::all())
            .await
            .unwrap()
    });
    assert_eq!(
        stored.len() as u64,
        RACE_POSITIONS,
        "nothing lost or duplicated"
    );
    for item in stored {
        assert_eq!(
            item.payload,
            wins[&item.position][0].as_bytes(),
            "the winner's item is stored"
        );
    }
    eprintln!("race: {RACE_POSITIONS} positions, {losses} typed conflicts");
}

/// Appends batches of fresh sequences forever, printing `ack ID START END` once acknowledged.
fn child_crash(path: &Path) {
    runtime().block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let mut out = std::io::stdout().lock();
        loop {
            let id = Uuid::new_v4();
            let batch = (1..=BATCH)
                .map(|p| SequencedItem {
                    sequence_id: id,
                    position: p,
                    topic: "crash".into(),
                    payload: vec![p as u8; 100],
                })
                .collect();
            let ids = store.append(batch).await.unwrap();
            writeln!(out, "ack {id} {} {}", ids.start, ids.end).unwrap();
            out.flush().unwrap();
        }
    });
}

fn kill_9_never_loses_an_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked: HashMap<Uuid, (u64, u64)> = HashMap::new();
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--child-crash", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() == 4 && parts[0] == "ack" {
                acked.insert(
                    parts[1].parse().unwrap(),
                    (parts[2].parse().unwrap(), parts[3].parse().unwrap()),
                );
            }
        }
        verify(&path, &acked, kill);
    }
    eprintln!(
        "crash: {KILLS} kills survived, {} acknowledged batches checked",
        acked.len()
    );
    assert!(
        acked.len() > KILLS,
        "the child acknowledged too few batches to mean anything"
    );
}

fn verify(path: &Path, acked: &HashMap<Uuid, (u64, u64)>, kill: usize) {
    runtime().block_on(async {
        let store = SqliteStore::open(path)
            .await
            .unwrap_or_else(|e| panic!("reopen after kill {kill}: {e}"));
        let log = store
            .select_notifications(0, usize::MAX, &[])
            .await
            .unwrap();
        // Ids strictly increase, and each batch's five items are adjacent and in order.
        assert!(
            log.windows(2).all(|w| w[0].id < w[1].id),
            "ids not increasing after kill {kill}"
        );
        let mut seen = HashSet::new();
        for chunk in log.chunks(BATCH as usize) {
            let id = chunk[0].item.sequence_id;
            assert_eq!(
                chunk.len() as u64,
                BATCH,
                "partial batch of {id} after kill {kill}"
            );
            for (n, notification) in chunk.iter().enumerate() {
                assert_eq!(
                    notification.item.sequence_id, id,
                    "batches interleaved after kill {kill}"
                );
                assert_eq!(notification.item.position, n as u64 + 1);
                assert_eq!(
                    notification.id,
                    chunk[0].id + n as u64,
                    "ids not contiguous in a batch"
                );
            }
            assert!(seen.insert(id), "batch {id} appears twice");
        }
        for (id, (start, end)) in acked {
            assert!(
                seen.contains(id),
                "acknowledged batch {id} lost after kill {kill}"
            );
            let ids: Vec<u64> = log
                .iter()
                .filter(|n| n.item.sequence_id == *id)
                .map(|n| n.id)
                .collect();
            assert_eq!(
                ids,
                (*start..*end).collect::<Vec<_>>(),
                "acknowledged ids changed"
            );
        }
        store.close().await;
    });
}

const VIEW_SETUP: &str = "CREATE TABLE IF NOT EXISTS view (sequence_id BLOB PRIMARY KEY, events INTEGER NOT NULL, positions INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS view_fresh (sequence_id BLOB PRIMARY KEY, events INTEGER NOT NULL, positions INTEGER NOT NULL);";

/// A projection counting each sequence's events into `table`. Not idempotent on purpose: an
/// event applied twice would show.
async fn counting_projection(
    path: &Path,
    name: &str,
    table: &'static str,
    slow: bool,
) -> SqliteProjection<
    impl Fn(
        &rusqlite::Transaction<'_>,
        &eventsmith_core::Notification,
    ) -> Result<(), eventsmith_core::BoxError>
    + Send
    + Sync
    + 'static,
> {
    SqliteProjection::open(path, name, VIEW_SETUP, move |tx, n| {
        if slow && n.id % 25 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
        tx.execute(
            &format!("INSERT INTO {table} (sequence_id, events, positions) VALUES (?1, 1, ?2) ON CONFLICT (sequence_id) DO UPDATE SET events = events + 1, positions = positions + excluded.positions"),
            rusqlite::params![n.item.sequence_id.as_bytes(), n.item.position as i64],
        )?;
        Ok(())
    })
    .await
    .unwrap()
}

fn child_project(path: &Path) {
    runtime().block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let projection = counting_projection(path, "view", "view", true).await;
        catch_up(&store, &projection, 40).await.unwrap();
        println!("done");
    });
}

fn view(path: &Path, table: &str) -> Vec<(Vec<u8>, i64, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT sequence_id, events, positions FROM {table} ORDER BY sequence_id"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn projection_killed_mid_run_rebuilds_the_same_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.db");
    let sequences = 300u64;
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        for _ in 0..sequences {
            let id = Uuid::new_v4();
            let batch = (1..=10)
                .map(|p| SequencedItem {
                    sequence_id: id,
                    position: p,
                    topic: "p".into(),
                    payload: vec![1],
                })
                .collect();
            store.append(batch).await.unwrap();
        }
        store.close().await;
    });
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let (mut kills, mut finished) = (0, false);
    while kills < KILLS && !finished {
        let mut child = Command::new(&exe)
            .args(["--child-project", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..150)));
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        finished = String::from_utf8_lossy(&output.stdout).contains("done");
        if !finished {
            kills += 1;
        }
    }
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        // Resume the killed projection to the end, then rebuild another from scratch.
        let resumed = counting_projection(&path, "view", "view", false).await;
        catch_up(&store, &resumed, 40).await.unwrap();
        let fresh = counting_projection(&path, "fresh", "view_fresh", false).await;
        assert_eq!(
            catch_up(&store, &fresh, 1000).await.unwrap(),
            sequences * 10
        );
        assert_eq!(
            resumed.position(&store).await.unwrap(),
            fresh.position(&store).await.unwrap()
        );
    });
    let (resumed, fresh) = (view(&path, "view"), view(&path, "view_fresh"));
    assert_eq!(resumed.len() as u64, sequences);
    assert!(
        resumed
            .iter()
            .all(|(_, events, positions)| (*events, *positions) == (10, 55)),
        "an event skipped or applied twice"
    );
    assert_eq!(resumed, fresh);
    eprintln!(
        "projection: killed {kills} times mid-run; the resumed view equals a rebuild from scratch"
    );
    assert!(
        kills > 0,
        "the projection finished before it could be killed: slow it down"
    );
}

/// Appends batches until 20 appends in a row have failed, printing `ack ID` or `err KIND`.
fn child_full(path: &Path) {
    runtime().block_on(async {
        let mut out = std::io::stdout().lock();
        let store = match SqliteStore::open(path).await {
            Ok(store) => store,
            Err(e) => {
                writeln!(out, "err open {e}").unwrap();
                return;
            }
        };
        let mut failures = 0;
        while failures < 20 {
            let id = Uuid::new_v4();
            let batch = (1..=BATCH)
                .map(|p| SequencedItem {
                    sequence_id: id,
                    position: p,
                    topic: "full".into(),
                    payload: vec![7; 400],
                })
                .collect();
            match store.append(batch).await {
                Ok(_) => {
                    failures = 0;
                    writeln!(out, "ack {id}").unwrap();
                }
                Err(AppendError::Store(e)) => {
                    failures += 1;
                    writeln!(out, "err {:?} {e}", e.kind()).unwrap();
                }
                Err(e) => panic!("unexpected: {e}"),
            }
            out.flush().unwrap();
        }
    });
}

fn appends_on_a_full_disk_fail_typed_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    runtime().block_on(async { SqliteStore::open(&path).await.unwrap().close().await });
    let exe = std::env::current_exe().unwrap();
    // A 1 MiB limit on every file the child writes; SIGXFSZ ignored (inherited across exec),
    // so a write past the limit fails with EFBIG, as on a full disk.
    let script = format!(
        "trap '' XFSZ; exec prlimit --fsize=1048576 -- '{}' --child-full '{}'",
        exe.display(),
        path.display()
    );
    let output = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        output.status.success(),
        "the child crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let acked: Vec<Uuid> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|id| id.parse().unwrap())
        .collect();
    let errors: Vec<&str> = stdout.lines().filter(|l| l.starts_with("err ")).collect();
    assert!(
        acked.len() > 10,
        "the limit hit before anything was written: {stdout}"
    );
    assert!(errors.len() >= 20, "the limit was never hit");
    // A write past the size limit fails with EFBIG, which SQLite reports as a disk I/O error
    // (kind Other), not as SQLITE_FULL; ENOSPC and a file at its page limit are SQLITE_FULL
    // (kind StorageFull; `a_full_file_is_storage_full_and_writes_nothing_half` in sqlite.rs).
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("err Other ") || e.starts_with("err StorageFull ")),
        "failures of another kind: {errors:?}"
    );
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        for id in &acked {
            assert_eq!(
                store.select(*id, &Select::all()).await.unwrap().len() as u64,
                BATCH,
                "acknowledged batch {id} lost"
            );
        }
        // Every batch is whole: the log holds runs of BATCH items of one sequence.
        let log = store
            .select_notifications(0, usize::MAX, &[])
            .await
            .unwrap();
        assert_eq!(log.len() as u64 % BATCH, 0, "a partial batch");
        store
            .append(vec![SequencedItem {
                sequence_id: Uuid::new_v4(),
                position: 1,
                topic: "after".into(),
                payload: vec![1],
            }])
            .await
            .unwrap();
        store.close().await;
    });
    let check: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    eprintln!(
        "full disk: {} batches acknowledged, {} typed failures ({:?}...), integrity ok",
        acked.len(),
        errors.len(),
        errors.first()
    );
}

/// Another process's writer: inserts rows in `BEGIN IMMEDIATE` transactions it holds open for
/// a while before committing, until killed. Its rows get their ids while the transaction is
/// still in flight: exactly what a feed must not read past.
fn child_hold(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let id = Uuid::new_v4();
    let mut position = 0i64;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..3 {
            position += 1;
            conn.execute(
                "INSERT INTO integer_items (sequence_id, position, topic, payload) VALUES (?1, ?2, 'held', x'01')",
                rusqlite::params![id.as_bytes(), position],
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        conn.execute_batch("COMMIT").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Eight writers in this process commit batches while another process holds write
/// transactions open (inserting rows inside them) across the follower's reads: the
/// follower's output equals a rebuild, every row exactly once, each sequence in order.
fn a_follower_never_skips_rows_of_a_transaction_held_open_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    runtime().block_on(async {
        SqliteStore::open(&path).await.unwrap().close().await;
    });
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--child-hold", path.to_str().unwrap()])
        .spawn()
        .unwrap();
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let all = Arc::new(eventsmith_core::MemoryProjection::new(
            "all",
            Vec::<eventsmith_core::Notification>::new(),
            |v: &mut Vec<eventsmith_core::Notification>, n| {
                v.push(n.clone());
                Ok(())
            },
        ));
        let running = eventsmith_core::Runner::new(store.clone())
            .follow(all.clone())
            .page_size(5)
            .poll_interval(Duration::from_millis(1))
            .start();
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = Uuid::new_v4();
                    for b in 0..25u64 {
                        let batch: Vec<_> = (1..=2)
                            .map(|i| SequencedItem {
                                sequence_id: id,
                                position: b * 2 + i,
                                topic: "mine".into(),
                                payload: vec![2],
                            })
                            .collect();
                        loop {
                            match store.append(batch.clone()).await {
                                Ok(_) => break,
                                Err(AppendError::Store(StoreError::Busy { .. })) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        // Let the holder commit a few more transactions, then stop it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        holder.kill().unwrap();
        let _ = holder.wait();
        let head = store.max_notification_id().await.unwrap();
        running.wait_for("all", head).await;
        running.stop().await;
        let applied = all.view();
        let mut rebuilt = Vec::new();
        loop {
            let after = rebuilt
                .last()
                .map_or(0, |n: &eventsmith_core::Notification| n.id);
            let page = store.select_notifications(after, 1000, &[]).await.unwrap();
            if page.is_empty() {
                break;
            }
            rebuilt.extend(page);
        }
        assert!(
            rebuilt.iter().filter(|n| n.item.topic == "held").count() >= 6,
            "the holder committed"
        );
        assert_eq!(
            rebuilt.iter().filter(|n| n.item.topic == "mine").count(),
            8 * 50
        );
        assert_eq!(applied, rebuilt, "the follower skipped or repeated a row");
        let mut last = std::collections::HashMap::new();
        for n in &applied {
            let before = last
                .insert(n.item.sequence_id, n.item.position)
                .unwrap_or(0);
            assert_eq!(n.item.position, before + 1, "a sequence out of order");
        }
        store.close().await;
    });
}
