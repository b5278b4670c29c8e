//! The Cassandra store against a real node (`EVENTSMITH_CASSANDRA`): append latency (p50,
//! p99) and throughput with 1, 8 and 64 concurrent writers on distinct aggregates, and the
//! load of one 10,000-event aggregate. Percentiles need every sample, so this bench measures
//! by hand and writes `target/criterion/cassandra.json`, which `cargo xtask bench` reads.

use std::time::{Duration, Instant};

use eventsmith_benches::{BenchEvent, credit, size};
use eventsmith_core::{Envelope, ItemStore, Mapper, Select};
use eventsmith_mapper::{CodecId, EventMapper};
use eventsmith_scylla::{CassandraConfig, CassandraStore};
use uuid::Uuid;

fn main() {
    // `cargo bench` passes --bench; a filter that excludes this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "cassandra".contains(a.as_str())) {
        return;
    }
    let Ok(address) = std::env::var("EVENTSMITH_CASSANDRA") else {
        println!(
            "cassandra bench skipped: EVENTSMITH_CASSANDRA is not set (cargo xtask bench starts a node when it can)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(run(&address));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/criterion/cassandra.json"
    );
    std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn run(address: &str) -> serde_json::Value {
    let config = CassandraConfig::new([address], "eventsmith_bench").unwrap();
    CassandraStore::create_schema(&config).await.unwrap();
    let store = CassandraStore::connect(config).await.unwrap();
    let mapper = std::sync::Arc::new(
        EventMapper::<BenchEvent>::builder()
            .codec(CodecId::Postcard)
            .build()
            .unwrap(),
    );
    let total = size(4000, 800);
    let mut writers = Vec::new();
    for concurrency in [1usize, 8, 64] {
        let per_task = total / concurrency;
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (store, mapper) = (store.clone(), mapper.clone());
                tokio::spawn(async move {
                    // Each writer appends the next version of its own aggregates, 10 per aggregate.
                    let mut latencies = Vec::with_capacity(per_task);
                    let mut id = Uuid::new_v4();
                    for n in 0..per_task {
                        let version = (n % 10) as u64 + 1;
                        if version == 1 {
                            id = Uuid::new_v4();
                        }
                        let envelope = Envelope {
                            originator_id: id,
                            version,
                            timestamp: time::OffsetDateTime::now_utc(),
                            metadata: Default::default(),
                            event: credit(n as u64).into(),
                        };
                        let item = mapper.encode(&envelope).unwrap();
                        let t = Instant::now();
                        store.append(vec![item]).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        latencies.sort();
        writers.push(serde_json::json!({
            "writers": concurrency,
            "appends": latencies.len(),
            "appends_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
        }));
    }

    // One aggregate of 10,000 events, appended in conditional batches of 100.
    let id = Uuid::new_v4();
    for chunk in (1..=10_000u64).collect::<Vec<_>>().chunks(100) {
        let items = chunk
            .iter()
            .map(|v| {
                mapper
                    .encode(&Envelope {
                        originator_id: id,
                        version: *v,
                        timestamp: time::OffsetDateTime::now_utc(),
                        metadata: Default::default(),
                        event: credit(*v).into(),
                    })
                    .unwrap()
            })
            .collect();
        store.append(items).await.unwrap();
    }
    let rounds = size(10, 3);
    let mut loads = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let items = store.select(id, &Select::all()).await.unwrap();
        let events: Vec<_> = items.iter().map(|i| mapper.decode(i).unwrap()).collect();
        assert_eq!(events.len(), 10_000);
        loads.push(t.elapsed());
    }
    loads.sort();
    let median = loads[loads.len() / 2];
    serde_json::json!({
        "writers": writers,
        "load_10000": { "median_ms": median.as_secs_f64() * 1e3, "events_per_s": 10_000.0 / median.as_secs_f64(), "rounds": rounds },
    })
}
