//! The bank on a SQLite file, with encryption and snapshots on.
//!
//! Run with `cargo run --example bank`.

use eventsmith::SqliteStore;
use eventsmith_examples::bank::{Bank, BankError};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("bank.db")).await?;
    let bank = Bank::with_new_key(store.clone());
    let alice = bank.open("alice", 0).await?;
    let bob = bank.open("bob", 5_000).await?;
    bank.deposit(alice, 10_000, None).await?;
    bank.transfer(alice, bob, 3_000, None).await?;
    // The debit is committed; the transfers process credits bob from the stored log. A
    // service runs `bank.system().runner().start()` for that; a batch job settles in its own task.
    bank.settle().await?;
    bank.withdraw(bob, 7_000, None).await?; // into bob's overdraft
    match bank.withdraw(bob, 2_000, None).await {
        Err(BankError::InsufficientFunds { balance, limit, .. }) => {
            println!("bob cannot go below -{limit}: balance {balance}")
        }
        other => anyhow::bail!("expected the overdraft limit to hold, got {other:?}"),
    }
    println!(
        "alice: {} cents, bob: {} cents",
        bank.balance(alice).await?,
        bank.balance(bob).await?
    );
    store.close().await;
    Ok(())
}
