//! Leases and live runners: how runners of one follower, in one process or several, share
//! its work ([`ItemStore::claim_lease`](eventsmith_core::ItemStore::claim_lease),
//! [`ItemStore::announce_runner`](eventsmith_core::ItemStore::announce_runner)).
//!
//! - `leases (name text PRIMARY KEY, owner uuid)`: one partition per lease, so that the
//!   Paxos rounds of a follower's slices (leases `follower/0`, `follower/1`, …) do not
//!   serialise each other. Claims, renewals and releases are lightweight transactions at the
//!   configured serial consistency; expiry is the `owner` cell's TTL, by the server's clock.
//! - `feed_runners (follower text, owner uuid, PRIMARY KEY ((follower), owner))`: a plain
//!   insert with a TTL per announcement, read back at the configured consistency.
//!
//! Cassandra's TTLs are whole seconds, and a cell written with a TTL of `n` expires at the
//! start of the `n`th second after the one it was written in, so it lives between `n - 1`
//! and `n` seconds. A lease's or an announcement's time to live is therefore rounded up to
//! whole seconds, plus one: it lives at least as long as asked, and at most a second and a
//! bit longer (a dead runner's lease is taken over that much later).

use std::time::Duration;

use eventsmith_core::{Lease, LeaseClaim, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

use crate::{CassandraConfig, CassandraStore, Failure, backend, classify, read_error};

/// The tables of this module (created with every keyspace, with or without a feed).
pub(crate) fn ddl(ks: &str) -> [String; 2] {
    [
        format!("CREATE TABLE IF NOT EXISTS {ks}.leases (name text PRIMARY KEY, owner uuid)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.feed_runners (follower text, owner uuid, PRIMARY KEY ((follower), owner))"
        ),
    ]
}

/// Cassandra's largest TTL (20 years).
const MAX_TTL_SECS: u64 = 630_720_000;

/// A time to live as a Cassandra TTL: whole seconds rounded up, at least 1 (a TTL of 0 would
/// mean *never expires*, the opposite of a short lease), plus the one second that expiry at a
/// second's start may take off it (see the [module docs](self)).
pub(crate) fn ttl_secs(ttl: Duration) -> Result<i32, StoreError> {
    let secs = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1) + 1;
    if secs > MAX_TTL_SECS {
        return Err(StoreError::Config {
            detail: format!(
                "a time to live of {ttl:?} is beyond Cassandra's largest TTL ({MAX_TTL_SECS} s)"
            ),
        });
    }
    Ok(secs as i32)
}

/// The prepared statements of leases and runners.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Takes a free lease or renews the claimer's own, in one Paxos round.
    claim: PreparedStatement,
    /// The holder and its remaining TTL, read at SERIAL.
    holder: PreparedStatement,
    release: PreparedStatement,
    announce: PreparedStatement,
    runners: PreparedStatement,
}

impl Statements {
    pub(crate) async fn prepare(
        session: &Session,
        config: &CassandraConfig,
    ) -> Result<Statements, StoreError> {
        let ks = &config.keyspace;
        let prepare = async |cql: String| session.prepare(cql).await.map_err(backend);
        // An UPDATE, not `INSERT … IF NOT EXISTS`: an insert also writes a row marker with
        // its own TTL, which a renewal with a shorter TTL would leave behind, a row whose
        // owner has expired that `IF NOT EXISTS` still sees as taken. With the owner the
        // row's only cell, the row lives exactly as long as the owner. `IN (null, ?)` takes a
        // missing (free, expired or released) lease and renews the claimer's own.
        let mut claim = prepare(format!(
            "UPDATE {ks}.leases USING TTL ? SET owner = ? WHERE name = ? IF owner IN (null, ?)"
        ))
        .await?;
        claim.set_consistency(config.driver_consistency());
        claim.set_serial_consistency(Some(config.driver_serial()));
        let mut holder = prepare(format!(
            "SELECT owner, TTL(owner) FROM {ks}.leases WHERE name = ?"
        ))
        .await?;
        // SERIAL: completes a claim in flight, so the holder read is the one that refused us
        // or a later one.
        holder.set_consistency(config.driver_serial_read());
        holder.set_is_idempotent(true);
        let mut release = prepare(format!(
            "DELETE FROM {ks}.leases WHERE name = ? IF owner = ?"
        ))
        .await?;
        release.set_consistency(config.driver_consistency());
        release.set_serial_consistency(Some(config.driver_serial()));
        let mut announce = prepare(format!(
            "INSERT INTO {ks}.feed_runners (follower, owner) VALUES (?, ?) USING TTL ?"
        ))
        .await?;
        announce.set_consistency(config.driver_consistency());
        // A plain insert of fixed values: sending it twice writes the same row.
        announce.set_is_idempotent(true);
        let mut runners = prepare(format!(
            "SELECT owner FROM {ks}.feed_runners WHERE follower = ?"
        ))
        .await?;
        runners.set_consistency(config.driver_consistency());
        runners.set_is_idempotent(true);
        Ok(Statements {
            claim,
            holder,
            release,
            announce,
            runners,
        })
    }
}

/// What a conditional statement answered: applied, or not with the row's current owner.
fn lwt_outcome(
    result: scylla::response::query_result::QueryResult,
) -> Result<(bool, Option<Uuid>), StoreError> {
    let rows = result.into_rows_result().map_err(backend)?;
    let owner = rows.column_specs().get_by_name("owner").map(|(i, _)| i);
    let Some(row) = rows.rows::<Row>().map_err(backend)?.next() else {
        return Err(backend("a conditional statement answered no row"));
    };
    let row = row.map_err(backend)?;
    let applied = matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true))));
    let owner = match owner.and_then(|i| row.columns.get(i)) {
        Some(Some(CqlValue::Uuid(o))) => Some(*o),
        _ => None,
    };
    Ok((applied, owner))
}

/// How many times a claim is sent again when the lease changed hands between the claim and
/// the read of its holder (released or expired in between: the next claim may take it).
const RACES: usize = 3;

impl CassandraStore {
    /// Sends a lease's conditional statement, sending it again (up to
    /// [`resolve_attempts`](CassandraConfig::resolve_attempts) times) while its outcome is
    /// unknown: both of this module's are idempotent for one owner (a second claim renews,
    /// a second release finds nothing to release), so a retry also settles the first try.
    async fn lease_lwt(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        owner: Uuid,
    ) -> Result<(bool, Option<Uuid>), StoreError> {
        let attempts = self.inner.config.resolve_attempts.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            }
            match self.inner.session.execute_unpaged(statement, &values).await {
                Ok(result) => return lwt_outcome(result),
                Err(e) => match classify(e) {
                    Failure::Definite(e) => return Err(e),
                    Failure::Unknown(e) => {
                        tracing::debug!(%owner, attempt, error = %e, "a lease's lightweight transaction has an unknown outcome; sending it again");
                        last = Some(e);
                    }
                },
            }
        }
        // It may have applied: a claim then holds until its TTL runs out, by itself.
        Err(StoreError::OutcomeUnknown {
            commit_id: owner,
            source: last.unwrap_or_else(|| "no attempt was made".into()),
        })
    }

    /// [`ItemStore::claim_lease`](eventsmith_core::ItemStore::claim_lease).
    pub(crate) async fn lease_claim(&self, lease: &Lease) -> Result<LeaseClaim, StoreError> {
        let ttl = ttl_secs(lease.ttl)?;
        let statements = &self.inner.leases;
        let name = lease.follower.as_str();
        for _ in 0..RACES {
            let (applied, _) = self
                .lease_lwt(
                    &statements.claim,
                    (ttl, lease.owner, name, lease.owner),
                    lease.owner,
                )
                .await?;
            if applied {
                return Ok(LeaseClaim::Held);
            }
            // Refused: another owner holds it. Its remaining TTL is not in the LWT's answer.
            let holder = self
                .inner
                .session
                .execute_unpaged(&statements.holder, (name,))
                .await
                .map_err(read_error)?
                .into_rows_result()
                .map_err(backend)?
                .maybe_first_row::<(Option<Uuid>, Option<i32>)>()
                .map_err(backend)?;
            match holder {
                // TTL() is whole seconds left, rounded down by the server from its expiry
                // second, so the lease ends within it: an upper bound, as `Taken` says.
                Some((Some(owner), Some(left))) if owner != lease.owner => {
                    return Ok(LeaseClaim::Taken {
                        owner,
                        expires_in: Duration::from_secs(left.max(1) as u64),
                    });
                }
                Some((Some(owner), None)) if owner != lease.owner => {
                    return Err(StoreError::Corrupt {
                        detail: format!(
                            "the lease {name:?} is held by {owner} with no time to live (not written by eventsmith)"
                        ),
                        source: None,
                    });
                }
                // Released or expired since the claim looked (or taken by this owner from
                // elsewhere): claim again.
                _ => {}
            }
        }
        Err(StoreError::Busy {
            source: format!(
                "the lease {name:?} changed hands {RACES} times while it was being claimed"
            )
            .into(),
        })
    }

    /// [`ItemStore::release_lease`](eventsmith_core::ItemStore::release_lease).
    pub(crate) async fn lease_release(&self, name: &str, owner: Uuid) -> Result<(), StoreError> {
        // Not applied when another owner holds it, or no one: nothing to give up either way.
        self.lease_lwt(&self.inner.leases.release, (name, owner), owner)
            .await?;
        Ok(())
    }

    /// [`ItemStore::announce_runner`](eventsmith_core::ItemStore::announce_runner).
    pub(crate) async fn runner_announce(
        &self,
        follower: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ttl = ttl_secs(ttl)?;
        let statements = &self.inner.leases;
        self.inner
            .session
            .execute_unpaged(&statements.announce, (follower, owner, ttl))
            .await
            .map_err(read_error)?;
        let mut paging = scylla::response::PagingState::start();
        let mut owners = Vec::new();
        loop {
            let (result, response) = self
                .inner
                .session
                .execute_single_page(&statements.runners, (follower,), paging)
                .await
                .map_err(read_error)?;
            for row in result
                .into_rows_result()
                .map_err(backend)?
                .rows::<(Uuid,)>()
                .map_err(backend)?
            {
                owners.push(row.map_err(backend)?.0);
            }
            match response.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => break,
                std::ops::ControlFlow::Continue(next) => paging = next,
            }
        }
        // Cassandra orders `uuid` clustering keys by version and time first, not by their
        // bytes: sorted here, so that every runner sees the same order as `Uuid`'s.
        owners.sort_unstable();
        owners.dedup();
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_rounded_up_plus_one() {
        let secs = |d| ttl_secs(d).unwrap();
        assert_eq!(secs(Duration::ZERO), 2);
        assert_eq!(secs(Duration::from_millis(1)), 2);
        assert_eq!(secs(Duration::from_secs(1)), 2);
        assert_eq!(secs(Duration::from_millis(1001)), 3);
        assert_eq!(secs(Duration::from_secs(30)), 31);
        assert!(matches!(
            ttl_secs(Duration::from_secs(MAX_TTL_SECS)),
            Err(StoreError::Config { .. })
        ));
    }
}
