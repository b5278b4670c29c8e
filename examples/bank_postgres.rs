//! The same bank on PostgreSQL, its transfers completed by the bank's system, woken by the
//! server's notifications. Runs against `EVENTSMITH_POSTGRES` (a `postgres://` URL; default
//! the server `cargo xtask postgres start` runs), and says so when none answers.
//!
//! Run with `cargo run --example bank_postgres`.

use std::time::Duration;

use eventsmith::{ErrorKind, ItemStore, PostgresConfig, PostgresStore};
use eventsmith_examples::bank::{Bank, TRANSFERS};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EVENTSMITH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let config = url
        .parse::<PostgresConfig>()?
        .with_schema("eventsmith_bank_example")?;
    let store = match PostgresStore::connect(config).await {
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            println!(
                "no PostgreSQL server at {url} ({e}): start one with `cargo xtask postgres start`, then run this again"
            );
            return Ok(());
        }
        other => other?,
    };
    let bank = Bank::with_new_key(store.clone());
    let system = bank.system();
    // Commits made by other processes wake the runner too.
    let _listening = store.listen(system.waker()).await?;
    let running = system.runner().start();
    let alice = bank.open("alice", 0).await?;
    let bob = bank.open("bob", 0).await?;
    bank.deposit(alice, 10_000, None).await?;
    bank.transfer(alice, bob, 2_500, None).await?;
    let sent = store
        .select_notifications(0, 1_000_000, &["bank.TransferSent"])
        .await?;
    let last = sent.last().map_or(0, |n| n.id);
    tokio::time::timeout(Duration::from_secs(10), running.wait_for(TRANSFERS, last)).await?;
    running.stop().await;
    println!(
        "on PostgreSQL at {url}: alice {} cents, bob {} cents",
        bank.balance(alice).await?,
        bank.balance(bob).await?
    );
    Ok(())
}
