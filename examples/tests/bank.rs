//! The bank: the overdraft invariant, transfers completed by the transfers process (refunded
//! when the receiver is closed), encryption and snapshots on a SQLite file, concurrent
//! commands; and the HTTP service under concurrent requests and client retries.

use std::time::Duration;

use eventsmith::mapper::PayloadHeader;
use eventsmith::{
    CassandraConfig, CassandraStore, ItemStore, PostgresConfig, PostgresStore, Select,
    SnapshotStore, SqliteStore,
};
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
async fn the_overdraft_limit_holds_and_transfers_arrive_through_the_process() {
    let (bank, store, _dir) = bank().await;
    let alice = bank.open("alice", 0).await.unwrap();
    let bob = bank.open("bob", 20).await.unwrap();
    bank.deposit(alice, 100, None).await.unwrap();
    assert_eq!(
        bank.withdraw(alice, 101, None).await,
        Err(BankError::InsufficientFunds {
            balance: 100,
            limit: 0,
            asked: 101
        })
    );
    assert_eq!(
        bank.deposit(alice, 0, None).await,
        Err(BankError::ZeroAmount)
    );
    bank.transfer(alice, bob, 60, None).await.unwrap();
    assert_eq!(
        bank.balance(bob).await.unwrap(),
        0,
        "debited, not yet credited"
    );
    bank.settle().await.unwrap();
    assert_eq!(
        (
            bank.balance(alice).await.unwrap(),
            bank.balance(bob).await.unwrap()
        ),
        (40, 60)
    );
    assert_eq!(
        bank.transfer(alice, bob, 41, None).await,
        Err(BankError::InsufficientFunds {
            balance: 40,
            limit: 0,
            asked: 41
        })
    );
    bank.withdraw(bob, 80, None).await.unwrap();
    assert_eq!(bank.balance(bob).await.unwrap(), -20);
    assert!(matches!(
        bank.transfer(alice, Uuid::new_v4(), 1, None).await,
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
        bank.deposit(bob, 1, None).await.unwrap();
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

/// A bank on a fresh schema of the PostgreSQL server named by `EVENTSMITH_POSTGRES` (which
/// `cargo xtask test` starts); `None`, saying why, when none is configured outside CI.
async fn postgres_bank() -> Option<Bank<PostgresStore>> {
    let Ok(url) = std::env::var("EVENTSMITH_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but EVENTSMITH_POSTGRES is not: .ci/run must start PostgreSQL"
        );
        eprintln!("skipped: EVENTSMITH_POSTGRES is not set (cargo xtask postgres start)");
        return None;
    };
    let schema = format!("bank_{}", Uuid::new_v4().simple());
    let config = url
        .parse::<PostgresConfig>()
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    Some(Bank::with_new_key(
        PostgresStore::connect(config).await.unwrap(),
    ))
}

/// A bank on a fresh keyspace with a feed on the Cassandra node named by
/// `EVENTSMITH_CASSANDRA` (which `cargo xtask test` starts); `None`, saying why, when none is
/// configured outside CI.
async fn cassandra_bank() -> Option<Bank<CassandraStore>> {
    let Ok(address) = std::env::var("EVENTSMITH_CASSANDRA") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but EVENTSMITH_CASSANDRA is not: .ci/run must start Cassandra"
        );
        eprintln!("skipped: EVENTSMITH_CASSANDRA is not set (cargo xtask cassandra start)");
        return None;
    };
    let keyspace = format!("bank_{}", Uuid::new_v4().simple());
    let mut config = CassandraConfig::new([address.as_str()], &keyspace).unwrap();
    config.replication = Some(eventsmith::scylla::Replication::Simple {
        replication_factor: 1,
    });
    config.feed = Some(eventsmith::scylla::FeedConfig {
        slices: 4,
        ..Default::default()
    });
    CassandraStore::create_schema(&config).await.unwrap();
    Some(Bank::with_new_key(
        CassandraStore::connect(config).await.unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_complete_exactly_once_with_two_runners_and_refund_on_a_closed_account() {
    let (bank, _store, _dir) = bank().await;
    transfers_complete_exactly_once(bank).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_transfers_complete_exactly_once_with_two_runners() {
    let Some(bank) = postgres_bank().await else {
        return;
    };
    transfers_complete_exactly_once(bank).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_cassandra_transfers_complete_exactly_once_with_two_runners() {
    let Some(bank) = cassandra_bank().await else {
        return;
    };
    transfers_complete_exactly_once(bank).await;
}

/// Two runners of the bank's system (as two processes sharing the store would run) while 40
/// transfers are sent, some to a closed account: every transfer completes once (refunded
/// when the receiver is closed) and the money is conserved. On SQLite and PostgreSQL the
/// process follows the log (transactional); on Cassandra, the feed (idempotent, its appends
/// keyed by the transfer they complete).
async fn transfers_complete_exactly_once<S: ItemStore + SnapshotStore>(bank: Bank<S>) {
    let accounts: Vec<Uuid> = {
        let mut v = Vec::new();
        for i in 0..6 {
            let id = bank.open(&format!("a{i}"), 0).await.unwrap();
            bank.deposit(id, 1_000, None).await.unwrap();
            v.push(id);
        }
        v
    };
    // Two runners of the same process, as two processes sharing the file would run.
    let (first, second) = (
        bank.system().runner().start(),
        bank.system().runner().start(),
    );
    let closed = accounts[5];
    bank.close(closed).await.unwrap();
    assert_eq!(
        bank.deposit(closed, 1, None).await,
        Err(BankError::Closed(closed))
    );
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (bank, accounts) = (bank.clone(), accounts.clone());
            tokio::spawn(async move {
                let from = accounts[i % 5];
                let to = accounts[(i * 7 + 1) % 6];
                if from != to {
                    bank.transfer(from, to, 10, None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Wait until every transfer completed: until then a debit waits for its credit or
    // refund, and the total is short.
    let total = || async {
        let mut total = 0;
        for id in &accounts {
            total += bank.balance(*id).await.unwrap();
        }
        total
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while total().await < 6_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the process fell behind: {} of 6000 cents accounted for",
            total().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the runners go on a little: a transfer completed twice would show now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    second.stop().await;
    assert_eq!(
        total().await,
        6_000,
        "money is conserved: every transfer completed once"
    );
    // The closed account received nothing: transfers to it came back.
    assert_eq!(bank.balance(closed).await.unwrap(), 1_000);
    let events = bank
        .accounts()
        .repository()
        .event_store()
        .load(accounts[0], &Select::all())
        .await
        .unwrap();
    let sent = events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                eventsmith_examples::bank::AccountEvent::TransferSent(_)
            )
        })
        .count();
    assert!(sent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_account_all_land() {
    let (bank, _store, _dir) = bank().await;
    let id = bank.open("busy", 0).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let bank = bank.clone();
            tokio::spawn(async move { bank.deposit(id, 5, None).await })
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
    http_with_key(address, method, path, None, body).await
}

/// Sends one HTTP/1.1 request, with an `Idempotency-Key` header when `key` is given.
async fn http_with_key(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_retry_after_a_lost_response_does_not_debit_twice() {
    let (bank, _store, _dir) = bank().await;
    let id = bank.open("ada", 10).await.unwrap();
    bank.deposit(id, 100, None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(bank)).await.unwrap() });
    let withdrawals = format!("/accounts/{id}/withdrawals");
    let balance = || async move {
        let (_, body) = http(address, "GET", &format!("/accounts/{id}"), "").await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["balance"].clone()
    };

    // The first response is "lost"; the client sends the same request again, twice.
    for _ in 0..3 {
        let (status, body) = http_with_key(
            address,
            "POST",
            &withdrawals,
            Some("req-1"),
            r#"{"amount":30}"#,
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!(balance().await, 70, "debited once");

    // Eight copies of one request racing each other also debit once.
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let path = withdrawals.clone();
            tokio::spawn(async move {
                http_with_key(address, "POST", &path, Some("req-2"), r#"{"amount":10}"#).await
            })
        })
        .collect();
    for r in racing {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!(balance().await, 60);

    // A replay returns the first outcome, even when the state would now refuse the request.
    let (status, body) = http_with_key(
        address,
        "POST",
        &withdrawals,
        Some("req-3"),
        r#"{"amount":65}"#,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = http_with_key(
        address,
        "POST",
        &withdrawals,
        Some("req-3"),
        r#"{"amount":65}"#,
    )
    .await;
    assert_eq!(status, 204, "a replay, not a new decision on -5: {body}");
    assert_eq!(balance().await, -5);

    // Another key is another request; without a key every request is new.
    let (status, _) = http_with_key(
        address,
        "POST",
        &withdrawals,
        Some("req-4"),
        r#"{"amount":65}"#,
    )
    .await;
    assert_eq!(status, 422, "insufficient funds for a new request");
    let (status, body) = http_with_key(
        address,
        "POST",
        &withdrawals,
        Some(&"x".repeat(201)),
        r#"{"amount":1}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("idempotency-key"), "{body}");
    assert_eq!(balance().await, -5);
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
}
