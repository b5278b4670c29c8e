//! The same bank on Apache Cassandra (or ScyllaDB). Runs when a node is up at
//! `EVENTSMITH_CASSANDRA` (default 127.0.0.1:9042, see `cargo xtask cassandra start`), and says
//! so when not.
//!
//! Run with `cargo run --example bank_cassandra`.

use eventsmith::{CassandraConfig, CassandraStore, StoreError};
use eventsmith_examples::bank::Bank;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::var("EVENTSMITH_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let mut config = CassandraConfig::new([address.as_str()], "eventsmith_bank_example")?;
    config.connect_timeout = std::time::Duration::from_secs(3);
    // A development node: one replica (production keyspaces want 3 or more).
    config.replication = Some(eventsmith::scylla::Replication::Simple {
        replication_factor: 1,
    });
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
    // The transfers process follows the store's log; Cassandra has no log to follow yet (it
    // comes with the Cassandra feed), so here the debit stands and the credit waits.
    if let Err(e) = bank.settle().await {
        println!("transfer debited; not yet credited on Cassandra: {e}");
    }
    println!(
        "on Cassandra at {address}: alice {} cents, bob {} cents",
        bank.balance(alice).await?,
        bank.balance(bob).await?
    );
    Ok(())
}
