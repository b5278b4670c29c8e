//! What the benchmarks share: a small aggregate with ~100-byte events, and the benchmark
//! settings (`EVENTSMITH_BENCH_QUICK=1` for the short run of `cargo xtask bench --quick`).

use std::time::Duration;

use criterion::Criterion;
use eventsmith_core::{Aggregate, Event};
use serde::{Deserialize, Serialize};

/// An event of about 100 bytes once encoded.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Credited {
    /// The amount credited.
    pub amount: u64,
    /// A note that brings the event to about 100 bytes.
    pub note: String,
}

impl Event for Credited {
    const TOPIC: &'static str = "bench.Credited";
}

eventsmith_core::domain_events! {
    /// The benchmark aggregate's events.
    pub enum BenchEvent { Credited(Credited) }
}

/// A running total.
#[derive(Default, Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Sum of amounts.
    pub total: u64,
    /// Number of credits.
    pub credits: u64,
}

impl Aggregate for Account {
    type Event = BenchEvent;
    fn apply(&mut self, event: &BenchEvent) {
        let BenchEvent::Credited(c) = event;
        self.total += c.amount;
        self.credits += 1;
    }
}

impl eventsmith_snapshot::SnapshotState for Account {
    const SNAPSHOT_TOPIC: &'static str = "bench.AccountSnapshot";
}

/// A credit of one with a note padding it to about 100 bytes.
pub fn credit(n: u64) -> Credited {
    Credited {
        amount: 1,
        note: format!("{n:>08}: {}", "x".repeat(80)),
    }
}

/// Whether this is the short run.
pub fn quick() -> bool {
    std::env::var_os("EVENTSMITH_BENCH_QUICK").is_some()
}

/// Scales a workload size down for the short run.
pub fn size(full: usize, quick_size: usize) -> usize {
    if quick() { quick_size } else { full }
}

/// Criterion settings: few samples, short windows; the quick run shorter still.
pub fn criterion() -> Criterion {
    let c = Criterion::default().sample_size(10).without_plots();
    if quick() {
        c.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1200))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    }
}
