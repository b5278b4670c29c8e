//! Two OS processes race for the same versions of the same sequences: for every version
//! exactly one wins and the other gets `AppendError::Conflict`; nothing is duplicated or
//! half-written. The test re-runs its own binary as the two racers (`RACE_CHILD` set), each
//! with its own store, started together; they print what they won and lost.
//!
//! Each racer, version by version, appends one item to each of the "single" sequences (a
//! pure race for each slot: both racers try every slot in the same order) and batches of
//! two items to pairs of the "pair" sequences, paired differently by the two racers (`a`
//! pairs 0-1 and 2-3, `b` pairs 1-2 and 3-0), so a batch can lose on one item and must
//! then write neither.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use eventsmith_core::{AppendError, ItemStore, Position, SequencedItem};
use uuid::Uuid;

const CHILD_ENV: &str = "RACE_CHILD";
const SCHEMA_ENV: &str = "RACE_SCHEMA";
const SEQUENCES_ENV: &str = "RACE_SEQUENCES";
const VERSIONS: u64 = 60;
const SINGLES: usize = 4;
const PAIRS: usize = 4;

/// The batches racer `who` appends at version `v`: (tag, [(sequence index, sequence)]).
fn batches(who: &str, v: u64, sequences: &[Uuid]) -> Vec<(String, Vec<Uuid>)> {
    let (singles, pairs) = sequences.split_at(SINGLES);
    let mut out: Vec<(String, Vec<Uuid>)> = singles
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{who}:single:{v}:{i}"), vec![*s]))
        .collect();
    let shift = usize::from(who == "b");
    for i in (0..PAIRS).step_by(2) {
        let (x, y) = ((i + shift) % PAIRS, (i + 1 + shift) % PAIRS);
        out.push((format!("{who}:pair:{v}:{i}"), vec![pairs[x], pairs[y]]));
    }
    out
}

/// A racer: waits for `go` on stdin, then appends every batch, printing `won TAG` or
/// `lost TAG SEQUENCE POSITION` (the conflict it was given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_child() {
    let Ok(who) = std::env::var(CHILD_ENV) else {
        // Not a test of its own: a racer of `two_processes_racing_for_versions_one_wins_each`.
        return;
    };
    let schema = std::env::var(SCHEMA_ENV).unwrap();
    let sequences: Vec<Uuid> = std::env::var(SEQUENCES_ENV)
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let config = common::url()
        .expect("the parent has a server")
        .parse::<eventsmith_postgres::PostgresConfig>()
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    let store = eventsmith_postgres::PostgresStore::connect(config)
        .await
        .unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    for v in 1..=VERSIONS {
        for (tag, sequences) in batches(&who, v, &sequences) {
            let batch = sequences
                .iter()
                .map(|s| SequencedItem {
                    sequence_id: *s,
                    position: v,
                    topic: "test.Race".into(),
                    payload: tag.clone().into_bytes(),
                })
                .collect();
            match store.append(batch).await {
                Ok(_) => writeln!(out, "won {tag}").unwrap(),
                Err(AppendError::Conflict {
                    sequence_id,
                    position: Position::Version(p),
                }) => writeln!(out, "lost {tag} {sequence_id} {p}").unwrap(),
                Err(other) => panic!("racer {who}: {tag}: {other:?}"),
            }
        }
    }
    out.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_for_versions_one_wins_each() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some((store, schema)) = common::store().await else {
        return;
    };
    let sequences: Vec<Uuid> = (0..SINGLES + PAIRS).map(|_| Uuid::new_v4()).collect();
    let list = sequences
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut children: Vec<_> = ["a", "b"]
        .iter()
        .map(|who| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, who)
                .env(SCHEMA_ENV, &schema.name)
                .env(SEQUENCES_ENV, &list)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    // Both connected before either starts.
    for r in &mut readers {
        // The harness's "test race_child ... " comes first on the same line.
        let line = r.find_map(|l| l.ok().filter(|l| l.ends_with("ready")));
        assert!(line.is_some(), "a racer did not start");
    }
    for c in &mut children {
        writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let collected: Vec<_> = readers
        .into_iter()
        .map(|r| std::thread::spawn(move || r.map_while(Result::ok).collect::<Vec<String>>()))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for c in &mut children {
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "a racer failed: {status}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a racer hung for 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let lines: Vec<String> = collected
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();

    // What each racer said about each batch it tried.
    let mut won: HashSet<String> = HashSet::new();
    let mut lost: HashMap<String, (Uuid, u64)> = HashMap::new();
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f[..] {
            ["won", tag] => assert!(won.insert(tag.to_owned())),
            ["lost", tag, s, p] => {
                lost.insert(tag.to_owned(), (s.parse().unwrap(), p.parse().unwrap()));
            }
            _ => {}
        }
    }
    let tried = 2 * VERSIONS as usize * (SINGLES + PAIRS / 2);
    assert_eq!(won.len() + lost.len(), tried, "every batch answered once");
    // They did race: every slot was tried by both, so one of each pair lost it. (Which racer
    // wins is up to the scheduler: a racer that falls behind once may lose every later
    // slot, so requiring both to win some made this test fail now and then.)
    assert!(!won.is_empty(), "nobody won anything");
    assert!(
        !lost.is_empty(),
        "nobody lost anything: the racers did not race"
    );

    // What the store holds: each (sequence, version) once, tagged with a batch that won.
    let log = store.select_notifications(0, 1_000_000, &[]).await.unwrap();
    let mut stored: HashMap<(Uuid, u64), String> = HashMap::new();
    let mut items_of: HashMap<String, usize> = HashMap::new();
    for n in &log {
        let tag = String::from_utf8(n.item.payload.clone()).unwrap();
        assert!(
            stored
                .insert((n.item.sequence_id, n.item.position), tag.clone())
                .is_none(),
            "version {} of {} stored twice",
            n.item.position,
            n.item.sequence_id
        );
        *items_of.entry(tag).or_default() += 1;
    }
    for (tag, n) in &items_of {
        assert!(
            won.contains(tag),
            "batch {tag} is stored but its racer lost it"
        );
        let size = if tag.contains(":pair:") { 2 } else { 1 };
        assert_eq!(*n, size, "batch {tag} is half-written");
    }
    for tag in &won {
        assert!(
            items_of.contains_key(tag),
            "batch {tag} won but is not stored"
        );
    }
    for (tag, (s, p)) in &lost {
        assert!(
            !items_of.contains_key(tag),
            "batch {tag} lost but is stored"
        );
        let holder = stored
            .get(&(*s, *p))
            .unwrap_or_else(|| panic!("batch {tag} lost to version {p} of {s}, which is empty"));
        assert_ne!(holder, tag);
    }
    // Every single-sequence slot had exactly one winner.
    let (singles, _) = sequences.split_at(SINGLES);
    for s in singles {
        for v in 1..=VERSIONS {
            let holder = stored
                .get(&(*s, v))
                .unwrap_or_else(|| panic!("nobody won version {v} of {s}"));
            let other = if holder.starts_with("a:") { "b" } else { "a" };
            let tag = format!("{other}:{}", &holder[2..]);
            assert!(
                lost.contains_key(&tag),
                "version {v} of {s}: {holder} won, and {tag} did not get a conflict"
            );
        }
    }
    eprintln!(
        "race: {} batches won (a {}, b {}), {} lost with a conflict, {} items stored",
        won.len(),
        won.iter().filter(|t| t.starts_with("a:")).count(),
        won.iter().filter(|t| t.starts_with("b:")).count(),
        lost.len(),
        log.len()
    );
}
