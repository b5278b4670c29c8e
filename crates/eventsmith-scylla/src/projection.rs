//! Projections on Cassandra. Without a global notification log, a projection follows each
//! sequence on its own, and records per (projection, sequence) how far it has read. The
//! output rows and that tracking record are written in *logged* batches, which Cassandra
//! applies in full or not at all (atomic, though not isolated), each with the position of
//! its last event, so a crash and a re-run neither skip nor repeat an event. One runner per
//! projection at a time.

use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlValue;
use uuid::Uuid;

use eventsmith_core::{IntegerSequencedItem, ItemStore, Select, StoreError, Version};

use crate::{CassandraStore, backend, read_error};

/// A value bound to a projection's CQL statement.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CqlParam {
    /// `uuid`.
    Uuid(Uuid),
    /// `bigint`.
    BigInt(i64),
    /// `int`.
    Int(i32),
    /// `text`.
    Text(String),
    /// `blob`.
    Blob(Vec<u8>),
}

impl From<CqlParam> for CqlValue {
    fn from(p: CqlParam) -> Self {
        match p {
            CqlParam::Uuid(u) => CqlValue::Uuid(u),
            CqlParam::BigInt(i) => CqlValue::BigInt(i),
            CqlParam::Int(i) => CqlValue::Int(i),
            CqlParam::Text(t) => CqlValue::Text(t),
            CqlParam::Blob(b) => CqlValue::Blob(b),
        }
    }
}

/// What one logged batch of a projection may carry, in bytes of statements and values: under
/// Cassandra's `batch_size_fail_threshold` (50 KiB by default), past which it refuses a
/// batch, so a long backlog is written in several.
const BATCH_BYTES: usize = 40 * 1024;

impl CqlParam {
    /// About what the value adds to a batch.
    fn size(&self) -> usize {
        match self {
            CqlParam::Uuid(_) => 16,
            CqlParam::BigInt(_) => 8,
            CqlParam::Int(_) => 4,
            CqlParam::Text(t) => t.len(),
            CqlParam::Blob(b) => b.len(),
        }
    }
}

/// One write of a projection's output: a CQL statement (not conditional, not a counter) and
/// its values.
#[derive(Debug, Clone, PartialEq)]
pub struct CqlWrite {
    /// The statement, with `?` markers.
    pub cql: String,
    /// The values, in marker order.
    pub values: Vec<CqlParam>,
}

impl CassandraStore {
    /// How far `projection` has read `sequence_id` (0 before the first event), read at the
    /// configured consistency (the session's default execution profile carries it).
    ///
    /// # Cancellation
    ///
    /// A read: a dropped future leaves nothing behind.
    pub async fn tracking_position(
        &self,
        projection: &str,
        sequence_id: Uuid,
    ) -> Result<Version, StoreError> {
        let cql = format!(
            "SELECT position FROM {}.tracking WHERE projection = ? AND sequence_id = ?",
            self.inner.config.keyspace
        );
        // Prepared once, with the configured consistency set on the statement itself.
        let stmt = self.select_statement(cql).await?;
        let result = self
            .inner
            .session
            .execute_unpaged(&stmt, (projection, sequence_id))
            .await
            .map_err(read_error)?;
        let rows = result.into_rows_result().map_err(backend)?;
        Ok(rows
            .maybe_first_row::<(i64,)>()
            .map_err(backend)?
            .map_or(0, |(p,)| p.max(0) as Version))
    }

    /// Feeds `project` the events of `sequence_id` after the projection's position, and writes
    /// the output it returns together with the new position, in logged batches of at most
    /// about 40 KiB (each with the position of its last event, so a failure between them
    /// leaves a consistent prefix applied). Returns how many events were applied. If
    /// `project` fails, nothing of this run is written.
    ///
    /// # Cancellation
    ///
    /// A future dropped while a batch is in flight may still have written it (a logged
    /// batch is applied whole or not at all): the next run reads the tracking position and
    /// goes on from whichever state it finds, so no event is applied twice.
    pub async fn project_sequence<E>(
        &self,
        projection: &str,
        sequence_id: Uuid,
        mut project: impl FnMut(&IntegerSequencedItem) -> Result<Vec<CqlWrite>, E>,
    ) -> Result<Result<u64, E>, StoreError> {
        let from = self.tracking_position(projection, sequence_id).await?;
        let items = self.select(sequence_id, &Select::all().gt(from)).await?;
        let Some(last) = items.last().map(|i| i.position) else {
            return Ok(Ok(0));
        };
        let mut outputs = Vec::with_capacity(items.len());
        for item in &items {
            match project(item) {
                Ok(w) => outputs.push((item.position, w)),
                Err(e) => return Ok(Err(e)),
            }
        }
        let (mut batch, mut bytes) = (Vec::new(), 0);
        let mut at = from;
        for (position, writes) in outputs {
            let size: usize = writes
                .iter()
                .map(|w| w.cql.len() + w.values.iter().map(CqlParam::size).sum::<usize>())
                .sum();
            if bytes > 0 && bytes + size > BATCH_BYTES {
                self.write_projected(projection, sequence_id, std::mem::take(&mut batch), at)
                    .await?;
                bytes = 0;
            }
            batch.extend(writes);
            bytes += size;
            at = position;
        }
        self.write_projected(projection, sequence_id, batch, last)
            .await?;
        Ok(Ok(items.len() as u64))
    }

    /// Writes `writes` and moves the tracking record to `position`, in one logged batch.
    async fn write_projected(
        &self,
        projection: &str,
        sequence_id: Uuid,
        writes: Vec<CqlWrite>,
        position: Version,
    ) -> Result<(), StoreError> {
        let ks = &self.inner.config.keyspace;
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> = Vec::with_capacity(writes.len() + 1);
        for w in writes {
            batch.append_statement(w.cql.as_str());
            values.push(w.values.into_iter().map(CqlValue::from).collect());
        }
        batch.append_statement(
            format!(
                "INSERT INTO {ks}.tracking (projection, sequence_id, position) VALUES (?, ?, ?)"
            )
            .as_str(),
        );
        values.push(vec![
            CqlValue::Text(projection.to_owned()),
            CqlValue::Uuid(sequence_id),
            CqlValue::BigInt(position as i64),
        ]);
        batch.set_consistency(self.inner.config.driver_consistency());
        self.inner
            .session
            .batch(&batch, values)
            .await
            .map_err(read_error)?;
        Ok(())
    }
}
