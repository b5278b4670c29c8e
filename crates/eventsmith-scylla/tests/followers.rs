//! What followers on the feed need of the Cassandra store, against the real node, each test in
//! a fresh keyspace: pages of the feed through the store trait (`read_feed_page`) with text
//! positions, saved feed positions, per-slice leases (lightweight transactions with a TTL)
//! and the announcements of live runners; and the upgrade of a version-3 keyspace.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use eventsmith_core::{
    Delivery, IntegerSequencedItem, ItemStore, Lease, LeaseClaim, SequencedItem, StoreError,
};
use eventsmith_scylla::{CassandraConfig, CassandraStore, SCHEMA_VERSION};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use uuid::Uuid;

fn item(id: Uuid, position: u64) -> IntegerSequencedItem {
    SequencedItem {
        sequence_id: id,
        position,
        topic: "followers.test".into(),
        payload: format!("{id}/{position}").into_bytes(),
    }
}

/// A fresh keyspace of this run (`suffix` tells the tests' apart), with a feed of
/// [`common::feed_settings`]'s 4 slices or none, created; its configuration and a session to
/// look behind the store with.
async fn fresh(suffix: &str, feed: bool) -> Option<(CassandraConfig, Session)> {
    let address = common::address()?;
    let ks = format!("{}_{suffix}", common::keyspace());
    let mut config = CassandraConfig::new([address.as_str()], &ks).unwrap();
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    if feed {
        config.feed = Some(common::feed_settings());
    }
    CassandraStore::create_schema(&config)
        .await
        .expect("create a fresh keyspace");
    let session = SessionBuilder::new()
        .known_node(&address)
        .build()
        .await
        .unwrap();
    Some((config, session))
}

async fn drop_keyspace(session: &Session, config: &CassandraConfig) {
    session
        .query_unpaged(
            format!("DROP KEYSPACE IF EXISTS {}", config.keyspace()),
            &[],
        )
        .await
        .unwrap();
}

/// A sequence id whose appends are in feed slice `slice`.
fn id_in(store: &CassandraStore, slice: u32) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if store.feed_slice_of(id).unwrap() == slice {
            return id;
        }
    }
}

fn is_config<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Config { .. }))
}

/// Appends in one slice (and others elsewhere) are read through the trait in pages of at
/// most `limit` appends from the feed's start (`None`) to the end, each once and in version
/// order per sequence; a reader resumed from a saved position reads only what followed it,
/// and from the end nothing; a garbled position, one of another slice and a slice beyond the
/// feed are configuration errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pages_round_trip_through_text_positions() {
    let Some((config, session)) = fresh("pages", true).await else {
        return;
    };
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    assert_eq!(store.feed_slices().unwrap(), 4);
    let slice = 2;
    let ids: Vec<Uuid> = (0..5).map(|_| id_in(&store, slice)).collect();
    let elsewhere = id_in(&store, 1);
    let mut expected = Vec::new();
    for version in 1..=3 {
        for id in &ids {
            store.append(vec![item(*id, version)]).await.unwrap();
            expected.push(vec![item(*id, version)]);
        }
        store.append(vec![item(elsewhere, version)]).await.unwrap();
    }
    // One append of two items: delivered as one.
    let batch = vec![item(ids[0], 4), item(ids[0], 5)];
    store.append(batch.clone()).await.unwrap();
    expected.push(batch);

    // From the feed's start, pages of at most 4 appends, until everything came.
    let limit = 4;
    let mut delivered: Vec<Vec<IntegerSequencedItem>> = Vec::new();
    let mut position: Option<String> = None;
    let mut saved: Option<(String, usize)> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} appends delivered",
            delivered.len(),
            expected.len()
        );
        let page = store
            .read_feed_page(slice, position.as_deref(), limit)
            .await
            .unwrap();
        assert!(
            page.appends.len() <= limit,
            "{} appends",
            page.appends.len()
        );
        for append in &page.appends {
            assert!(
                append.iter().all(|i| ids.contains(&i.sequence_id)),
                "slice {slice} delivered an append of another slice: {append:?}"
            );
        }
        delivered.extend(page.appends);
        // Halfway through: the follower saves where it is.
        if saved.is_none() && delivered.len() >= expected.len() / 2 {
            store
                .save_feed_position("pages", slice, &page.position)
                .await
                .unwrap();
            saved = Some((page.position.clone(), delivered.len()));
        }
        position = Some(page.position);
    }
    let mut unique = HashSet::new();
    for append in &delivered {
        assert!(unique.insert(append.clone()), "delivered twice: {append:?}");
    }
    let sorted = |mut appends: Vec<Vec<IntegerSequencedItem>>| {
        appends.sort_by_key(|a| (a[0].sequence_id, a[0].position));
        appends
    };
    assert_eq!(sorted(delivered.clone()), sorted(expected.clone()));
    for id in &ids {
        let versions: Vec<u64> = delivered
            .iter()
            .flatten()
            .filter(|i| i.sequence_id == *id)
            .map(|i| i.position)
            .collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
    // From the end: nothing more.
    let end = position.unwrap();
    let page = store
        .read_feed_page(slice, Some(&end), limit)
        .await
        .unwrap();
    assert!(page.appends.is_empty(), "{:?}", page.appends);

    // A second runner resumes from the saved position: exactly what came after it.
    let (at, count) = saved.unwrap();
    let resumed_from = store.feed_position("pages", slice).await.unwrap();
    assert_eq!(resumed_from.as_deref(), Some(at.as_str()));
    let mut again = Vec::new();
    let mut position = resumed_from.unwrap();
    loop {
        let page = store
            .read_feed_page(slice, Some(&position), limit)
            .await
            .unwrap();
        if page.appends.is_empty() {
            break;
        }
        again.extend(page.appends);
        position = page.position;
    }
    assert_eq!(again, delivered[count..], "resumed: only what followed");

    // Positions this store did not write, and slices it does not have.
    for garbled in ["", "garbage", "2@x", "2@1,nope:1"] {
        assert!(
            is_config(store.read_feed_page(slice, Some(garbled), limit).await),
            "{garbled:?}"
        );
    }
    assert!(is_config(store.read_feed_page(3, Some(&end), limit).await));
    assert!(is_config(store.read_feed_page(4, None, limit).await));
    assert!(is_config(store.feed_position("pages", 4).await));
    assert!(is_config(store.save_feed_position("pages", 4, &end).await));
    drop_keyspace(&session, &config).await;
}

/// Saved positions are per (follower, slice), `None` before the first save, and a later
/// save replaces an earlier one; a store on a keyspace without a feed has none of the feed's
/// methods (and no delivery), but its leases work.
#[tokio::test]
async fn feed_positions_are_saved_per_follower_and_slice() {
    let Some((config, session)) = fresh("positions", true).await else {
        return;
    };
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    assert_eq!(store.feed_position("a", 0).await.unwrap(), None);
    store.save_feed_position("a", 0, "0@1").await.unwrap();
    store.save_feed_position("a", 1, "1@2").await.unwrap();
    store.save_feed_position("b", 0, "0@3").await.unwrap();
    assert_eq!(
        store.feed_position("a", 0).await.unwrap().as_deref(),
        Some("0@1")
    );
    assert_eq!(
        store.feed_position("a", 1).await.unwrap().as_deref(),
        Some("1@2")
    );
    assert_eq!(
        store.feed_position("b", 0).await.unwrap().as_deref(),
        Some("0@3")
    );
    assert_eq!(store.feed_position("b", 1).await.unwrap(), None);
    store.save_feed_position("a", 0, "0@9").await.unwrap();
    assert_eq!(
        store.feed_position("a", 0).await.unwrap().as_deref(),
        Some("0@9")
    );
    // Another store on the keyspace reads what this one saved.
    let other = CassandraStore::connect(config.clone()).await.unwrap();
    assert_eq!(
        other.feed_position("a", 0).await.unwrap().as_deref(),
        Some("0@9")
    );
    drop_keyspace(&session, &config).await;

    let Some((plain_config, session)) = fresh("nofeed", false).await else {
        return;
    };
    let plain = CassandraStore::connect(plain_config.clone()).await.unwrap();
    assert_eq!(plain.delivery(), None::<Delivery>);
    let unsupported = |e: StoreError| matches!(e, StoreError::Unsupported { .. });
    assert!(unsupported(plain.feed_slices().unwrap_err()));
    assert!(unsupported(
        plain.read_feed_page(0, None, 10).await.unwrap_err()
    ));
    assert!(unsupported(plain.feed_position("a", 0).await.unwrap_err()));
    assert!(unsupported(
        plain.save_feed_position("a", 0, "0@1").await.unwrap_err()
    ));
    assert!(unsupported(
        plain
            .announce_runner("a", Uuid::new_v4(), Duration::from_secs(1))
            .await
            .unwrap_err()
    ));
    let lease = Lease {
        follower: "a/0".into(),
        owner: Uuid::new_v4(),
        ttl: Duration::from_secs(5),
    };
    assert_eq!(plain.claim_lease(&lease).await.unwrap(), LeaseClaim::Held);
    drop_keyspace(&session, &plain_config).await;
}

fn lease(name: &str, owner: Uuid, ttl: Duration) -> Lease {
    Lease {
        follower: name.to_owned(),
        owner,
        ttl,
    }
}

/// The first claimer holds a lease, another finds it taken (by whom, for how long); the
/// holder renews it; a release by someone else changes nothing, the holder's lets another
/// claim it at once; the slices' leases are independent; of claimers racing for a free lease
/// exactly one holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_held_taken_renewed_and_released() {
    let Some((config, session)) = fresh("leases", false).await else {
        return;
    };
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let ttl = Duration::from_secs(10);
    let name = "follower/0";
    assert_eq!(
        store.claim_lease(&lease(name, a, ttl)).await.unwrap(),
        LeaseClaim::Held
    );
    let taken = |claim: LeaseClaim| match claim {
        LeaseClaim::Taken { owner, expires_in } => (owner, expires_in),
        other => panic!("expected the lease taken, got {other:?}"),
    };
    let (owner, expires_in) = taken(store.claim_lease(&lease(name, b, ttl)).await.unwrap());
    assert_eq!(owner, a);
    // The TTL is the lease's, rounded up to whole seconds, plus one (see claim_lease).
    assert!(
        expires_in >= ttl && expires_in <= ttl + Duration::from_secs(1),
        "{expires_in:?}"
    );
    // The holder renews (with a longer TTL: the other sees it).
    assert_eq!(
        store
            .claim_lease(&lease(name, a, Duration::from_secs(30)))
            .await
            .unwrap(),
        LeaseClaim::Held
    );
    let (owner, expires_in) = taken(store.claim_lease(&lease(name, b, ttl)).await.unwrap());
    assert_eq!(owner, a);
    assert!(
        expires_in > ttl,
        "renewed for 30 s, yet {expires_in:?} left"
    );
    // The other lease of the follower is free.
    assert_eq!(
        store
            .claim_lease(&lease("follower/1", b, ttl))
            .await
            .unwrap(),
        LeaseClaim::Held
    );
    // A release by someone who does not hold it changes nothing.
    store.release_lease(name, b).await.unwrap();
    assert_eq!(
        taken(store.claim_lease(&lease(name, b, ttl)).await.unwrap()).0,
        a
    );
    // The holder's release frees it at once.
    store.release_lease(name, a).await.unwrap();
    assert_eq!(
        store.claim_lease(&lease(name, b, ttl)).await.unwrap(),
        LeaseClaim::Held
    );
    assert_eq!(
        taken(store.claim_lease(&lease(name, a, ttl)).await.unwrap()).0,
        b
    );

    // Eight claimers at once for a free lease: one holds it, seven find it held by that one.
    let claims = (0..8).map(|_| {
        let store = store.clone();
        let owner = Uuid::new_v4();
        tokio::spawn(async move {
            (
                owner,
                store
                    .claim_lease(&lease("race/0", owner, ttl))
                    .await
                    .unwrap(),
            )
        })
    });
    let mut outcomes = Vec::new();
    for claim in claims.collect::<Vec<_>>() {
        outcomes.push(claim.await.unwrap());
    }
    let holders: Vec<Uuid> = outcomes
        .iter()
        .filter(|(_, c)| *c == LeaseClaim::Held)
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(holders.len(), 1, "{outcomes:?}");
    for (_, claim) in &outcomes {
        if let LeaseClaim::Taken { owner, .. } = claim {
            assert_eq!(*owner, holders[0]);
        }
    }
    drop_keyspace(&session, &config).await;
}

/// A lease that is not renewed expires by itself, after its TTL (1 s) and not before: the
/// TTL is rounded up to whole seconds plus one, since Cassandra expires a cell at the start
/// of a second; a TTL below a second is rounded up too (never to 0, which Cassandra reads as
/// *no expiry*).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreleased_lease_expires_after_its_ttl() {
    let Some((config, session)) = fresh("expiry", false).await else {
        return;
    };
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    for (name, ttl) in [
        ("expiry/0", Duration::from_secs(1)),
        ("expiry/1", Duration::from_millis(1)),
    ] {
        let (dead, next) = (Uuid::new_v4(), Uuid::new_v4());
        let claimed = Instant::now();
        assert_eq!(
            store.claim_lease(&lease(name, dead, ttl)).await.unwrap(),
            LeaseClaim::Held
        );
        let mut looks = 0;
        let freed = loop {
            match store.claim_lease(&lease(name, next, ttl)).await.unwrap() {
                LeaseClaim::Held => break claimed.elapsed(),
                LeaseClaim::Taken { owner, expires_in } => {
                    assert_eq!(owner, dead);
                    assert!(
                        expires_in > Duration::ZERO && expires_in <= Duration::from_secs(2),
                        "{name}: {expires_in:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
            looks += 1;
            assert!(
                claimed.elapsed() < Duration::from_secs(5),
                "{name}: the dead owner's lease did not expire"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(looks > 0, "{name}: free right after it was claimed");
        // Held at least the TTL asked for (a whole second, for the 1 ms one).
        assert!(
            freed >= Duration::from_secs(1),
            "{name}: taken over {freed:?} after the claim"
        );
    }
    drop_keyspace(&session, &config).await;
}

/// Runners of a follower see each other while they announce themselves, in `Uuid` order
/// (which is not Cassandra's order of `uuid` keys: the ids below differ in their version
/// nibble), and one that stops announcing disappears after its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_announce_themselves_and_expire() {
    let Some((config, session)) = fresh("runners", true).await else {
        return;
    };
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    // Byte order: a < b < c; Cassandra's would put the version-1 id c first.
    let a = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);
    let b = Uuid::from_u128(0x7000_0000_0000_4000_8000_0000_0000_0001);
    let c = Uuid::from_u128(0xffff_ffff_ffff_1fff_8fff_ffff_ffff_ffff);
    let follower = "process";
    let long = Duration::from_secs(30);
    assert_eq!(
        store.announce_runner(follower, b, long).await.unwrap(),
        vec![b]
    );
    assert_eq!(
        store
            .announce_runner(follower, c, Duration::from_secs(1))
            .await
            .unwrap(),
        vec![b, c]
    );
    assert_eq!(
        store.announce_runner(follower, a, long).await.unwrap(),
        vec![a, b, c]
    );
    // Another follower's runners are its own.
    assert_eq!(
        store.announce_runner("other", c, long).await.unwrap(),
        vec![c]
    );
    // c stops announcing: gone after its 1 s, while a and b go on.
    let started = Instant::now();
    loop {
        let live = store.announce_runner(follower, a, long).await.unwrap();
        if live == vec![a, b] {
            break;
        }
        assert_eq!(live, vec![a, b, c]);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a runner that stopped announcing is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop_keyspace(&session, &config).await;
}

/// A keyspace of schema version 3 (before the followers' tables) is refused by `connect`
/// and upgraded by `create_schema`: the tables are created, the stamp raised, and leases,
/// runners and saved positions work.
#[tokio::test]
async fn create_schema_upgrades_a_version_3_keyspace() {
    let Some((config, session)) = fresh("upgrade", true).await else {
        return;
    };
    assert_eq!(SCHEMA_VERSION, 4);
    let ks = config.keyspace();
    // What a version-3 keyspace looks like: no followers' tables, stamped 3.
    for table in ["leases", "feed_runners", "feed_tracking"] {
        session
            .query_unpaged(format!("DROP TABLE {ks}.{table}"), &[])
            .await
            .unwrap();
    }
    session
        .query_unpaged(
            format!(
                "UPDATE {ks}.eventsmith_schema SET version = 3 WHERE component = 'eventsmith' IF EXISTS"
            ),
            &[],
        )
        .await
        .unwrap();
    session.await_schema_agreement().await.unwrap();
    let e = CassandraStore::connect(config.clone()).await.unwrap_err();
    assert!(matches!(e, StoreError::Config { .. }), "{e}");
    assert!(e.to_string().contains("version 3, older than 4"), "{e}");

    CassandraStore::create_schema(&config).await.unwrap();
    let store = CassandraStore::connect(config.clone()).await.unwrap();
    let owner = Uuid::new_v4();
    assert_eq!(
        store
            .claim_lease(&lease("f/0", owner, Duration::from_secs(5)))
            .await
            .unwrap(),
        LeaseClaim::Held
    );
    assert_eq!(
        store
            .announce_runner("f", owner, Duration::from_secs(5))
            .await
            .unwrap(),
        vec![owner]
    );
    store.save_feed_position("f", 0, "0@1").await.unwrap();
    assert_eq!(
        store.feed_position("f", 0).await.unwrap().as_deref(),
        Some("0@1")
    );
    drop_keyspace(&session, &config).await;
}
