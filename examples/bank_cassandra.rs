//! The same bank on Apache Cassandra (or ScyllaDB). Runs when a node is up at
//! `EVENTSMITH_CASSANDRA` (default 127.0.0.1:9042, see `cargo xtask cassandra start`), and says
//! so when not.
//!
//! Cassandra has no gapless log across aggregates, so the keyspace is made with a feed, and the
//! transfers process follows the feed: at least once, each credit keyed by the transfer it
//! completes, so that a redelivered transfer is never credited twice.
//!
//! Run with `cargo run --example bank_cassandra`.

use eventsmith::scylla::{FeedConfig, Replication};
use eventsmith::{CassandraConfig, CassandraStore, StoreError};
use eventsmith_examples::bank::Bank;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::var("EVENTSMITH_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let mut config = CassandraConfig::new([address.as_str()], "eventsmith_bank")?;
    config.connect_timeout = std::time::Duration::from_secs(3);
    // A development node: one replica (production keyspaces want 3 or more).
    config.replication = Some(Replication::Simple {
        replication_factor: 1,
    });
    config.feed = Some(FeedConfig::default());
    match CassandraStore::create_schema(&config).await {
        Err(StoreError::Unreachable { .. }) => {
            println!(
                "no Cassandra node at {address}: start one with `cargo xtask cassandra start`, then run this again"
            );
            return Ok(());
        }
        other => other?,
    }
    let bank = Bank::with_new_key(CassandraStore::connect(config).await?);
    let alice = bank.open("alice", 0).await?;
    let bob = bank.open("bob", 0).await?;
    bank.deposit(alice, 10_000, None).await?;
    bank.transfer(alice, bob, 2_500, None).await?;
    // The transfers process reads every slice of the feed from where it saved its positions.
    bank.settle().await?;
    println!(
        "on Cassandra at {address}: alice {} cents, bob {} cents",
        bank.balance(alice).await?,
        bank.balance(bob).await?
    );
    Ok(())
}
