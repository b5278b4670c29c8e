//! The bank: the overdraft invariant, transfers through the policy, encryption and snapshots
//! on a SQLite file, concurrent commands; and the HTTP service under concurrent requests.

use std::time::Duration;

use eventsmith::mapper::PayloadHeader;
use eventsmith::{ItemStore, Select, SnapshotStore, SqliteStore};
use eventsmith_examples::bank::{Bank, BankError};
use eventsmith_examples::web::router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

async fn bank() -> (Bank<SqliteStore>, SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    (Bank::with_new_key(store.clone()), store, dir)
}

#[tokio::test]
async fn the_overdraft_limit_holds_and_transfers_arrive_through_the_policy() {
    let (bank, store, _dir) = bank().await;
    let alice = bank.open("alice", 0).await.unwrap();
    let bob = bank.open("bob", 20).await.unwrap();
    bank.deposit(alice, 100).await.unwrap();
    assert_eq!(
        bank.withdraw(alice, 101).await,
        Err(BankError::InsufficientFunds {
            balance: 100,
            limit: 0,
            asked: 101
        })
    );
    assert_eq!(bank.deposit(alice, 0).await, Err(BankError::ZeroAmount));
    bank.transfer(alice, bob, 60).await.unwrap();
    assert_eq!(
        (
            bank.balance(alice).await.unwrap(),
            bank.balance(bob).await.unwrap()
        ),
        (40, 60)
    );
    assert_eq!(
        bank.transfer(alice, bob, 41).await,
        Err(BankError::InsufficientFunds {
            balance: 40,
            limit: 0,
            asked: 41
        })
    );
    bank.withdraw(bob, 80).await.unwrap();
    assert_eq!(bank.balance(bob).await.unwrap(), -20);
    assert!(matches!(
        bank.transfer(alice, Uuid::new_v4(), 1).await,
        Err(BankError::NoAccount(_))
    ));
    assert!(matches!(
        bank.balance(Uuid::new_v4()).await,
        Err(BankError::NoAccount(_))
    ));

    // Every stored event and snapshot is encrypted; snapshots were taken every 5 events.
    let items = store.select(bob, &Select::all()).await.unwrap();
    assert!(
        items
            .iter()
            .all(|i| PayloadHeader::parse(&i.payload).unwrap().0.key_id.is_some())
    );
    for _ in 0..4 {
        bank.deposit(bob, 1).await.unwrap();
    }
    let snapshot = store
        .latest_snapshot(bob, None)
        .await
        .unwrap()
        .expect("a snapshot at version 5");
    assert_eq!(snapshot.position, 5);
    assert!(
        PayloadHeader::parse(&snapshot.payload)
            .unwrap()
            .0
            .key_id
            .is_some()
    );
    assert_eq!(bank.balance(bob).await.unwrap(), -16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_account_all_land() {
    let (bank, _store, _dir) = bank().await;
    let id = bank.open("busy", 0).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let bank = bank.clone();
            tokio::spawn(async move { bank.deposit(id, 5).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(bank.balance(id).await.unwrap(), 100);
}

/// Sends one HTTP/1.1 request and returns the status code and body.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_service_shares_one_bank_across_concurrent_requests() {
    let (bank, _store, _dir) = bank().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(bank)).await.unwrap() });

    let (status, body) = http(
        address,
        "POST",
        "/accounts",
        r#"{"owner":"ada","overdraft_limit":10}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id: Uuid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // 50 concurrent deposits, each a separate connection and request.
    let requests: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                http(
                    address,
                    "POST",
                    &format!("/accounts/{id}/deposits"),
                    r#"{"amount":2}"#,
                )
                .await
            })
        })
        .collect();
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 204, "{body}");
    }
    let (status, body) = http(address, "GET", &format!("/accounts/{id}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["balance"],
        100
    );

    let (status, body) = http(
        address,
        "POST",
        &format!("/accounts/{id}/withdrawals"),
        r#"{"amount":111}"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("insufficient funds"));
    let (status, _) = http(address, "GET", &format!("/accounts/{}", Uuid::new_v4()), "").await;
    assert_eq!(status, 404);
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
}
