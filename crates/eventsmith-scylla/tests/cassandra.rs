//! What only the Cassandra store has, against the real node: 16 writers racing for each
//! version, unknown outcomes resolved through a proxy that cuts connections, and typed errors
//! for bad configuration.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use eventsmith_core::{AppendError, ItemStore, Position, Select, SequencedItem, StoreError};
use eventsmith_scylla::{CassandraConfig, CassandraStore, CqlParam, CqlWrite, SCHEMA_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;
use uuid::Uuid;

fn item(id: Uuid, position: u64, payload: &str) -> eventsmith_core::IntegerSequencedItem {
    SequencedItem {
        sequence_id: id,
        position,
        topic: "test".into(),
        payload: payload.as_bytes().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_race_for_each_version_200_rounds() {
    let Some((store, ())) = common::store().await else {
        return;
    };
    const WRITERS: usize = 16;
    const ROUNDS: u64 = 200;
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut won = Vec::new();
                for version in 1..=ROUNDS {
                    barrier.wait().await;
                    match store
                        .append(vec![item(id, version, &format!("writer {w}"))])
                        .await
                    {
                        Ok(_) => won.push(version),
                        Err(AppendError::Conflict {
                            sequence_id,
                            position,
                        }) => {
                            assert_eq!((sequence_id, position), (id, Position::Version(version)))
                        }
                        Err(e) => panic!("writer {w} at version {version}: {e}"),
                    }
                }
                (w, won)
            })
        })
        .collect();
    let mut winners = BTreeMap::new();
    for t in tasks {
        let (w, won) = t.await.unwrap();
        for v in won {
            assert!(winners.insert(v, w).is_none(), "two winners at version {v}");
        }
    }
    assert_eq!(winners.len() as u64, ROUNDS, "a version without a winner");
    let stored = store.select(id, &Select::all()).await.unwrap();
    assert_eq!(stored.len() as u64, ROUNDS, "lost or duplicated");
    for it in stored {
        assert_eq!(
            it.payload,
            format!("writer {}", winners[&it.position]).into_bytes()
        );
    }
}

#[tokio::test]
async fn a_batch_over_two_sequences_is_refused_and_writes_nothing() {
    let Some((store, ())) = common::store().await else {
        return;
    };
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let err = store
        .append(vec![item(a, 1, "x"), item(b, 1, "y")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Store(StoreError::Unsupported { .. })),
        "{err}"
    );
    assert!(store.select(a, &Select::all()).await.unwrap().is_empty());
    assert!(store.select(b, &Select::all()).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_configuration_and_unreachable_nodes_are_typed_errors() {
    for bad in ["", "1abc", "has-dash", "spaces here", &"k".repeat(49)] {
        assert!(
            matches!(
                CassandraConfig::new(["127.0.0.1:9042"], bad),
                Err(StoreError::Config { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        CassandraConfig::new(Vec::<String>::new(), "ks"),
        Err(StoreError::Config { .. })
    ));
    let mut config = CassandraConfig::new(["127.0.0.1:1"], "ks").unwrap();
    config.connect_timeout = Duration::from_secs(2);
    let err = CassandraStore::connect(config).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unreachable { address, .. } if address == "127.0.0.1:1"),
        "{err}"
    );
    if let Some(address) = common::address() {
        // A keyspace without the tables is named in the error.
        let err =
            CassandraStore::connect(CassandraConfig::new([address], "no_such_keyspace").unwrap())
                .await
                .unwrap_err();
        assert!(
            matches!(&err, StoreError::Config { detail } if detail.contains("no_such_keyspace")),
            "{err}"
        );
    }
}

/// What the proxy does to the next EXECUTE or BATCH request that carries the marker (the
/// driver sends other requests of its own on its connections).
const PASS: u8 = 0;
/// Forward the request, let the server answer, then cut the connection before the answer
/// reaches the driver: the append happened, the driver does not know.
const CUT_AFTER_REQUEST: u8 = 1;
/// Cut the connection instead of forwarding the request: the append never happened.
const CUT_BEFORE_REQUEST: u8 = 2;
/// Hold the request (the driver times out on it, as on a frozen coordinator), and forward it
/// just before the next marked request, the store's resend: the first try applies late,
/// between the store's SERIAL read and its resend.
const HOLD_UNTIL_RESEND: u8 = 3;
/// Set by the proxy while it holds a request.
const RELEASE_BEFORE_NEXT: u8 = 4;

/// A TCP proxy in front of Cassandra that understands just enough of the CQL frame header
/// (9 bytes: version, flags, stream, opcode, body length) to cut a connection around one request.
struct Proxy {
    address: SocketAddr,
    mode: Arc<AtomicU8>,
    cuts: Arc<AtomicUsize>,
}

/// The bytes that mark the request to cut: payloads of the appends under test contain them.
const MARKER: &[u8] = b"cut here";

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, cuts) = (Arc::new(AtomicU8::new(PASS)), Arc::new(AtomicUsize::new(0)));
        let (m, c) = (mode.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, m.clone(), c.clone()));
            }
        });
        Proxy {
            address,
            mode,
            cuts,
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, mode: Arc<AtomicU8>, cuts: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers =
        tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut header = [0u8; 9];
    let mut held: Option<([u8; 9], Vec<u8>)> = None;
    loop {
        if client_read.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize;
        let mut body = vec![0; len];
        if client_read.read_exact(&mut body).await.is_err() {
            break;
        }
        let is_write = matches!(header[4], 0x0A | 0x0D); // EXECUTE, BATCH
        let marked = is_write && body.windows(MARKER.len()).any(|w| w == MARKER);
        let action = if marked {
            mode.swap(PASS, Ordering::SeqCst)
        } else {
            PASS
        };
        if action == HOLD_UNTIL_RESEND {
            cuts.fetch_add(1, Ordering::SeqCst);
            held = Some((header, body));
            mode.store(RELEASE_BEFORE_NEXT, Ordering::SeqCst);
            continue;
        }
        if action == RELEASE_BEFORE_NEXT
            && let Some((h, b)) = held.take()
        {
            if server_write.write_all(&h).await.is_err()
                || server_write.write_all(&b).await.is_err()
            {
                break;
            }
            // Give the server time to apply the first try before the resend arrives.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if matches!(action, PASS | RELEASE_BEFORE_NEXT) {
            if server_write.write_all(&header).await.is_err()
                || server_write.write_all(&body).await.is_err()
            {
                break;
            }
            continue;
        }
        cuts.fetch_add(1, Ordering::SeqCst);
        // Stop relaying answers first, so that none reaches the driver.
        answers.abort();
        if action == CUT_AFTER_REQUEST {
            let _ = server_write.write_all(&header).await;
            let _ = server_write.write_all(&body).await;
            // Give the server time to apply the request before the connection goes.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        break;
    }
    answers.abort();
}

async fn proxied_store() -> Option<(CassandraStore, Proxy)> {
    proxied_store_with(|_| ()).await
}

async fn proxied_store_with(
    configure: impl FnOnce(&mut CassandraConfig),
) -> Option<(CassandraStore, Proxy)> {
    let (_, ()) = common::store().await?; // creates the keyspace
    let address = common::address()?;
    let upstream: SocketAddr = tokio::net::lookup_host(&address)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let mut config = CassandraConfig::new([proxy.address.to_string()], common::keyspace()).unwrap();
    // The node announces its own address; route the driver's pool through the proxy too.
    config.address_map = HashMap::from([(upstream, proxy.address), (proxy.address, proxy.address)]);
    configure(&mut config);
    let store = CassandraStore::connect(config).await.unwrap();
    Some((store, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_answer_is_lost_is_resolved_as_applied() {
    let Some((store, proxy)) = proxied_store().await else {
        return;
    };
    // The spans and events of a resolved unknown outcome (docs/observability.md). Scoped to
    // this thread, on which the test's future, and so every append's, is polled.
    let traces = eventsmith_testkit::traces::Collector::new();
    let _traced = tracing::subscriber::set_default(traces.clone());
    for batch in [1u64, 3] {
        let id = Uuid::new_v4();
        let items: Vec<_> = (1..=batch)
            .map(|v| item(id, v, "lost answer, cut here"))
            .collect();
        traces.clear();
        proxy.mode.store(CUT_AFTER_REQUEST, Ordering::SeqCst);
        let cuts = proxy.cuts.load(Ordering::SeqCst);
        store
            .append(items.clone())
            .await
            .expect("the append applied; the store must find that out");
        assert_eq!(
            proxy.cuts.load(Ordering::SeqCst),
            cuts + 1,
            "the proxy cut the connection"
        );
        assert_eq!(
            store.select(id, &Select::all()).await.unwrap(),
            items,
            "written exactly once"
        );
        let appends = traces.spans_named("eventsmith.append");
        assert_eq!(appends.len(), 1, "{:?}", traces.spans());
        let f = &appends[0].fields;
        assert_eq!(
            (f["backend"].as_str(), f["outcome"].as_str()),
            ("cassandra", "ok")
        );
        assert_eq!(f["items"], batch.to_string());
        assert_eq!(f["sequence_id"], id.to_string());
        let lost = traces.events_saying("append outcome unknown");
        assert_eq!(lost.len(), 1, "{:?}", traces.events());
        assert_eq!(lost[0].level, tracing::Level::WARN);
        assert_eq!(lost[0].span, Some("eventsmith.append"));
        let resolved = traces.events_saying("unknown outcome resolved");
        assert_eq!(resolved.len(), 1, "{:?}", traces.events());
        assert_eq!(resolved[0].fields["resolution"], "applied");
        assert_eq!(resolved[0].fields["commit_id"], lost[0].fields["commit_id"]);
        // It really is there: appending the same versions again conflicts.
        traces.clear();
        let again = store.append(items).await.unwrap_err();
        assert!(matches!(again, AppendError::Conflict { .. }), "{again}");
        let appends = traces.spans_named("eventsmith.append");
        assert_eq!(appends.len(), 1, "{:?}", traces.spans());
        assert_eq!(appends[0].fields["outcome"], "conflict");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_request_is_lost_is_resolved_and_sent_again() {
    let Some((store, proxy)) = proxied_store().await else {
        return;
    };
    let id = Uuid::new_v4();
    let items = vec![
        item(id, 1, "lost request, cut here"),
        item(id, 2, "lost request, cut here"),
    ];
    proxy.mode.store(CUT_BEFORE_REQUEST, Ordering::SeqCst);
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    store
        .append(items.clone())
        .await
        .expect("not applied, nothing in the way: sent again and applied");
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), cuts + 1);
    assert_eq!(store.select(id, &Select::all()).await.unwrap(), items);
}

/// The first try is held (as by a frozen coordinator) past the request timeout; the store's
/// SERIAL read finds the positions free and it resends; the first try applies just before the
/// resend, which is then refused because of the append's own rows. That is a success, not a
/// conflict. Found by the SIGSTOP fault test on the 3-node cluster (RELIABILITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_try_that_applies_late_before_the_resend_is_a_success() {
    let Some((store, proxy)) = proxied_store_with(|c| {
        c.request_timeout = Some(Duration::from_millis(1000));
    })
    .await
    else {
        return;
    };
    for batch in [1u64, 3] {
        let id = Uuid::new_v4();
        let items: Vec<_> = (1..=batch)
            .map(|v| item(id, v, "late first try, cut here"))
            .collect();
        proxy.mode.store(HOLD_UNTIL_RESEND, Ordering::SeqCst);
        let cuts = proxy.cuts.load(Ordering::SeqCst);
        store
            .append(items.clone())
            .await
            .expect("the first try applied: a success, whatever the resend was told");
        assert_eq!(
            proxy.cuts.load(Ordering::SeqCst),
            cuts + 1,
            "the proxy held the first try"
        );
        assert_eq!(
            proxy.mode.load(Ordering::SeqCst),
            PASS,
            "the store resent the batch"
        );
        assert_eq!(
            store.select(id, &Select::all()).await.unwrap(),
            items,
            "written exactly once"
        );
    }
    assert!(store.outcome_stats().resolved_applied >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_over_a_rivals_write_resolves_as_a_conflict() {
    let Some((store, proxy)) = proxied_store().await else {
        return;
    };
    let Some((direct, ())) = common::store().await else {
        return;
    };
    let id = Uuid::new_v4();
    direct.append(vec![item(id, 1, "rival")]).await.unwrap();
    proxy.mode.store(CUT_AFTER_REQUEST, Ordering::SeqCst);
    let err = store
        .append(vec![item(id, 1, "mine, cut here")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Conflict {
                position: Position::Version(1),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.select(id, &Select::all()).await.unwrap(),
        vec![item(id, 1, "rival")]
    );
}

/// Projects events into `view` rows (sequence, position, run): a re-applied event would show
/// a later run number.
fn view_writes(
    ks: &str,
    view: &str,
    run: i32,
) -> impl FnMut(&eventsmith_core::IntegerSequencedItem) -> Result<Vec<CqlWrite>, String> {
    let cql = format!("INSERT INTO {ks}.{view} (sequence_id, position, run) VALUES (?, ?, ?)");
    move |item| {
        Ok(vec![CqlWrite {
            cql: cql.clone(),
            values: vec![
                CqlParam::Uuid(item.sequence_id),
                CqlParam::BigInt(item.position as i64),
                CqlParam::Int(run),
            ],
        }])
    }
}

/// A session of its own and a new view table (sequence id, position, run) in keyspace `ks`.
async fn view_table(ks: &str) -> (scylla::client::session::Session, String) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(common::address().unwrap())
        .build()
        .await
        .unwrap();
    let view = format!("view_{}", Uuid::new_v4().simple());
    session
        .query_unpaged(format!("CREATE TABLE {ks}.{view} (sequence_id uuid, position bigint, run int, PRIMARY KEY ((sequence_id), position))"), &[])
        .await
        .unwrap();
    session.await_schema_agreement().await.unwrap();
    (session, view)
}

#[tokio::test]
async fn a_projection_writes_its_output_and_position_together_and_resumes_exactly() {
    let Some((store, ())) = common::store().await else {
        return;
    };
    let ks = common::keyspace();
    let (session, view) = view_table(ks).await;
    let rows = |id: Uuid| {
        let (session, view) = (&session, &view);
        async move {
            let result = session
                .query_unpaged(
                    format!("SELECT position, run FROM {ks}.{view} WHERE sequence_id = ?"),
                    (id,),
                )
                .await
                .unwrap();
            result
                .into_rows_result()
                .unwrap()
                .rows::<(i64, i32)>()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        }
    };
    let name = format!("p{}", Uuid::new_v4().simple());
    let id = Uuid::new_v4();
    store
        .append((1..=5).map(|v| item(id, v, "e")).collect())
        .await
        .unwrap();

    // A run that fails on the third event writes nothing, not even the first two.
    let mut writes = view_writes(ks, &view, 1);
    let failed = store
        .project_sequence(&name, id, |i| {
            if i.position == 3 {
                Err("crash".to_owned())
            } else {
                writes(i)
            }
        })
        .await
        .unwrap();
    assert_eq!(failed, Err("crash".to_owned()));
    assert!(rows(id).await.is_empty());
    assert_eq!(store.tracking_position(&name, id).await.unwrap(), 0);

    // The re-run applies all five; a later run only what came after.
    assert_eq!(
        store
            .project_sequence(&name, id, view_writes(ks, &view, 2))
            .await
            .unwrap(),
        Ok(5)
    );
    assert_eq!(store.tracking_position(&name, id).await.unwrap(), 5);
    store
        .append((6..=7).map(|v| item(id, v, "e")).collect())
        .await
        .unwrap();
    assert_eq!(
        store
            .project_sequence(&name, id, view_writes(ks, &view, 3))
            .await
            .unwrap(),
        Ok(2)
    );
    assert_eq!(
        store
            .project_sequence(&name, id, view_writes(ks, &view, 4))
            .await
            .unwrap(),
        Ok(0)
    );
    let expected: Vec<(i64, i32)> = (1..=7).map(|p| (p, if p <= 5 { 2 } else { 3 })).collect();
    assert_eq!(rows(id).await, expected, "every event applied exactly once");
}

/// A backlog far past Cassandra's batch size limit (3,000 events, about 300 KiB of output)
/// is projected in several logged batches, each with its position: everything applied once,
/// the position at the last event.
#[tokio::test]
async fn a_long_backlog_is_projected_in_batches_under_the_size_limit() {
    let Some((store, ())) = common::store().await else {
        return;
    };
    let ks = common::keyspace();
    let (session, view) = view_table(ks).await;
    let id = Uuid::new_v4();
    for chunk in (1..=3000u64).collect::<Vec<_>>().chunks(100) {
        store
            .append(chunk.iter().map(|v| item(id, *v, "e")).collect())
            .await
            .unwrap();
    }
    let name = format!("p{}", Uuid::new_v4().simple());
    let applied = store
        .project_sequence(&name, id, view_writes(ks, &view, 1))
        .await
        .expect("a backlog larger than one batch may carry")
        .unwrap();
    assert_eq!(applied, 3000);
    assert_eq!(store.tracking_position(&name, id).await.unwrap(), 3000);
    let result = session
        .query_unpaged(
            format!("SELECT count(*) FROM {ks}.{view} WHERE sequence_id = ?"),
            (id,),
        )
        .await
        .unwrap();
    let (count,): (i64,) = result.into_rows_result().unwrap().first_row().unwrap();
    assert_eq!(count, 3000);
}

/// The keyspace's schema stamp is checked on connect: none (a keyspace of an older build, or
/// not eventsmith's) and an older one send the user to `create_schema`, which upgrades it; a
/// newer one is refused by both.
#[tokio::test]
async fn connect_checks_the_keyspace_schema_stamp() {
    let Some(address) = common::address() else {
        return;
    };
    let ks = format!("{}_stamp", common::keyspace());
    let mut config = CassandraConfig::new([address.as_str()], &ks).unwrap();
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    CassandraStore::create_schema(&config).await.unwrap();
    CassandraStore::connect(config.clone())
        .await
        .expect("a freshly created keyspace");
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&address)
        .build()
        .await
        .unwrap();
    let set = |version: Option<i32>| {
        let (session, ks) = (&session, &ks);
        async move {
            let cql = match version {
                Some(v) => format!(
                    "UPDATE {ks}.eventsmith_schema SET version = {v} WHERE component = 'eventsmith' IF EXISTS"
                ),
                None => format!(
                    "DELETE FROM {ks}.eventsmith_schema WHERE component = 'eventsmith' IF EXISTS"
                ),
            };
            session.query_unpaged(cql, &[]).await.unwrap();
        }
    };
    let connect = || CassandraStore::connect(config.clone());
    let message = |e: StoreError| e.to_string();

    set(None).await;
    let e = message(connect().await.unwrap_err());
    assert!(e.contains("no eventsmith schema stamp"), "{e}");
    CassandraStore::create_schema(&config).await.unwrap();
    connect().await.expect("create_schema stamped it again");

    // Every older version (2: before the feed's tables) is raised by create_schema.
    for older in 1..SCHEMA_VERSION {
        set(Some(older)).await;
        let e = message(connect().await.unwrap_err());
        assert!(
            e.contains(&format!("version {older}, older than {SCHEMA_VERSION}")),
            "{e}"
        );
        CassandraStore::create_schema(&config).await.unwrap();
        connect().await.expect("create_schema raised the stamp");
    }

    set(Some(SCHEMA_VERSION + 1)).await;
    for e in [
        connect().await.unwrap_err(),
        CassandraStore::create_schema(&config).await.unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("newer than"), "{e}");
    }
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .unwrap();
}

/// A store URL with two contact points, the first dead, and a percent-escaped keyspace name
/// connects through the live one (the driver tries each contact point); the unreachable
/// node alone is the `Unavailable` kind, retryable, with the driver's error as its source.
#[tokio::test]
async fn a_url_with_several_contact_points_connects_through_a_live_one() {
    let Some(address) = common::address() else {
        return;
    };
    // The run's keyspace, created by the shared store.
    let (_store, ()) = common::store().await.expect("a configured node");
    let keyspace = common::keyspace();
    let escaped = keyspace.replacen('_', "%5F", 1);
    let url = format!("cassandra://127.0.0.1:1,{address}/{escaped}?connect_timeout_ms=5000");
    let config: CassandraConfig = url.parse().unwrap();
    assert_eq!(config.nodes(), ["127.0.0.1:1", address.as_str()]);
    assert_eq!(config.keyspace(), keyspace);
    let store = CassandraStore::connect(config).await.expect("connect");
    let id = Uuid::new_v4();
    store.append(vec![item(id, 1, "x")]).await.unwrap();
    assert_eq!(
        store.select(id, &Select::all()).await.unwrap(),
        vec![item(id, 1, "x")]
    );

    let dead: CassandraConfig =
        format!("cassandra://127.0.0.1:1/{keyspace}?connect_timeout_ms=2000")
            .parse()
            .unwrap();
    let err = CassandraStore::connect(dead).await.unwrap_err();
    assert_eq!(
        err.kind(),
        eventsmith_core::ErrorKind::Unavailable,
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
}

/// A keyed append whose answer is lost, dropped at a different moment each round (before
/// the request, while it is in flight, while its outcome is being resolved, after): the
/// store is left consistent, and the retry with the same key applies the events exactly
/// once (issue 18's cancellation case for Cassandra).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_append_dropped_while_its_outcome_is_resolved_applies_once_on_retry() {
    let Some((store, proxy)) = proxied_store().await else {
        return;
    };
    let traces = eventsmith_testkit::traces::Collector::new();
    let _traced = tracing::subscriber::set_default(traces.clone());
    let mut dropped_while_resolving = 0;
    for round in 0..40u64 {
        let id = Uuid::new_v4();
        let key = eventsmith_core::IdempotencyKey::new(format!("drop-{round}")).unwrap();
        let items: Vec<_> = (1..=2).map(|v| item(id, v, "dropped, cut here")).collect();
        traces.clear();
        proxy.mode.store(CUT_AFTER_REQUEST, Ordering::SeqCst);
        // 0 to 152 ms, closer together at first: the cut, the driver noticing it and the
        // SERIAL read that resolves the outcome take tens of milliseconds on loopback.
        let delay = Duration::from_micros(round * round * 100);
        let first = tokio::time::timeout(delay, store.append_with_key(items.clone(), &key)).await;
        proxy.mode.store(PASS, Ordering::SeqCst);
        let unknown = !traces.events_saying("append outcome unknown").is_empty();
        let resolved = !traces.events_saying("unknown outcome resolved").is_empty();
        if first.is_err() && unknown && !resolved {
            dropped_while_resolving += 1;
        }
        // The retry, as a client would send after its request timed out.
        let retry = store
            .append_with_key(items.clone(), &key)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the retry failed: {e}"));
        match (&first, &retry) {
            (Ok(Ok(eventsmith_core::KeyedAppend::Appended(_))), r) => assert!(
                matches!(r, eventsmith_core::KeyedAppend::AlreadyApplied(_)),
                "round {round}: the first append completed, the retry must find it: {r:?}"
            ),
            (Ok(other), _) => panic!("round {round}: the first append failed: {other:?}"),
            (Err(_), _) => {} // dropped: either outcome is right, once
        }
        assert_eq!(
            store.select(id, &Select::all()).await.unwrap(),
            items,
            "round {round} (dropped after {delay:?}): the events are there exactly once"
        );
        assert!(
            matches!(
                store.find_key(id, &key).await.unwrap(),
                Some(prior) if prior.versions == (1..=2)
            ),
            "round {round}: the key names the append"
        );
    }
    eprintln!("{dropped_while_resolving} of 40 rounds dropped the append while it was resolved");
    assert!(
        dropped_while_resolving > 0,
        "no round dropped the append while its outcome was being resolved; widen the delays"
    );
}

/// The spans every backend records, with the same fields (`docs/observability.md`).
#[tokio::test(flavor = "current_thread")]
async fn store_calls_are_traced() {
    let Some((store, ())) = common::store().await else {
        return;
    };
    let collector = eventsmith_testkit::traces::Collector::new();
    let _default = tracing::subscriber::set_default(collector.clone());
    eventsmith_testkit::traces::check_store_spans(&store, &collector, "cassandra").await;
}
