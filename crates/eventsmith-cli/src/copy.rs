//! `copy`: every item from one store to another, resumable.
//!
//! Integer items are copied in the source's notification order (per sequence where the source
//! has no notification log), as batches of consecutive items of one sequence, so the
//! destination's notification order follows the source's. An item already at the destination
//! is compared and skipped when identical: a re-run after an interruption continues where the
//! last one stopped and never writes anything twice. A different item at the same position is
//! an error.

use std::io::IsTerminal;
use std::time::Instant;

use eventsmith_core::{
    AppendError, IntegerSequencedItem, Inventory, ItemKind, Select, Support, TimestampSequencedItem,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;

/// Progress on a terminal as a bar with rate and ETA; otherwise a plain line now and then.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} events, {per_sec}, ETA {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.last_line.elapsed().as_secs() >= 2 || self.done == self.total {
            self.last_line = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!("copied {}/{} events ({rate:.0}/s)", self.done, self.total);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Appends one batch of one sequence; if it conflicts, checks the destination already holds
/// exactly these items (a re-run) and writes the missing ones.
async fn put<D: Inventory>(
    destination: &D,
    batch: Vec<IntegerSequencedItem>,
) -> Result<(), CliError> {
    let Some(first) = batch.first() else {
        return Ok(());
    };
    let id = first.sequence_id;
    match destination.append(batch.clone()).await {
        Ok(_) => Ok(()),
        Err(AppendError::Conflict { .. }) => {
            let (lo, hi) = (
                first.position,
                batch.last().map_or(first.position, |i| i.position),
            );
            let existing = destination
                .select(id, &Select::all().gte(lo).lte(hi))
                .await?;
            let mut missing = Vec::new();
            for item in batch {
                match existing.iter().find(|e| e.position == item.position) {
                    Some(e) if *e == item => {}
                    Some(_) => {
                        return Err(CliError::DifferentItem {
                            sequence_id: id,
                            version: item.position,
                        });
                    }
                    None => missing.push(item),
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            destination
                .append(missing)
                .await
                .map(|_| ())
                .map_err(CliError::from)
        }
        Err(e) => Err(e.into()),
    }
}

async fn put_timestamped<D: Inventory>(
    destination: &D,
    items: Vec<TimestampSequencedItem>,
) -> Result<(), CliError> {
    for chunk in items.chunks(100) {
        match destination.append_timestamped(chunk.to_vec()).await {
            Ok(()) => {}
            Err(AppendError::Conflict { .. }) => {
                for item in chunk {
                    let at = Select::all().gte(item.position).lte(item.position);
                    let existing = destination
                        .select_timestamped(item.sequence_id, &at)
                        .await?;
                    match existing.first() {
                        Some(e) if e == item => {}
                        Some(_) => {
                            return Err(CliError::DifferentLogItem(item.sequence_id));
                        }
                        None => destination.append_timestamped(vec![item.clone()]).await?,
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The largest batch one append carries (a Cassandra conditional batch must stay well under
/// its mutation size limit).
const BATCH: usize = 100;

pub(crate) async fn copy<S: Inventory, D: Inventory>(
    source: &S,
    destination: &D,
) -> Result<(), CliError> {
    let sequences = source.list_sequences(ItemKind::Integer).await?;
    let total: u64 = sequences.iter().map(|(_, v)| *v as u64).sum();
    let mut progress = Progress::new(total);
    if source.capabilities().notifications == Support::Yes {
        let mut after = 0;
        loop {
            let page = source.select_notifications(after, 1000, &[]).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            // Runs of one sequence, in log order.
            let mut run: Vec<IntegerSequencedItem> = Vec::new();
            for n in page {
                if run.len() == BATCH
                    || run
                        .last()
                        .is_some_and(|i| i.sequence_id != n.item.sequence_id)
                {
                    progress.add(run.len() as u64);
                    put(destination, std::mem::take(&mut run)).await?;
                }
                run.push(n.item);
            }
            progress.add(run.len() as u64);
            put(destination, run).await?;
        }
    } else {
        for (id, _) in &sequences {
            let items = source.select(*id, &Select::all()).await?;
            for chunk in items.chunks(BATCH) {
                put(destination, chunk.to_vec()).await?;
                progress.add(chunk.len() as u64);
            }
        }
    }
    progress.finish();
    let logs = source.list_sequences(ItemKind::Timestamped).await?;
    for (id, _) in &logs {
        let items = source.select_timestamped(*id, &Select::all()).await?;
        put_timestamped(destination, items).await?;
    }
    let snapshotted = source.list_sequences(ItemKind::Snapshots).await?;
    let mut snapshots = 0;
    for (id, _) in &snapshotted {
        for snapshot in source.select_snapshots(*id).await? {
            destination.write_snapshot(snapshot).await?;
            snapshots += 1;
        }
    }
    eprintln!(
        "copied {} events of {} sequences, {} logs, {snapshots} snapshots",
        progress.done,
        sequences.len(),
        logs.len()
    );
    Ok(())
}
