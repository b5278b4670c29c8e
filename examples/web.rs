//! The bank as an HTTP service (axum), one `Bank` shared by all requests, on a SQLite file.
//!
//! Run with `cargo run --example web`, then for example:
//! `curl -X POST localhost:3000/accounts -H 'content-type: application/json' -d '{"owner":"ada"}'`.

use eventsmith::SqliteStore;
use eventsmith_examples::{bank::Bank, web::router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bank-web.db".into());
    let bank = Bank::with_new_key(SqliteStore::open(&path).await?);
    // The transfers process, following the log beside the server.
    let _processes = bank.system().runner().start();
    let address = std::env::var("ADDRESS").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("serving the bank on http://{address} (events in {path})");
    axum::serve(listener, router(bank)).await?;
    Ok(())
}
