//! Connecting the tests to the real node named by `EVENTSMITH_CASSANDRA` (host:port), with one
//! keyspace per test run.

use std::sync::OnceLock;

use eventsmith_scylla::{CassandraConfig, CassandraStore};
use tokio::sync::OnceCell;

/// The node's address, or `None` (printing why) when the tests cannot run here. Under CI a
/// missing node is a failure, never a skip.
pub(crate) fn address() -> Option<String> {
    match std::env::var("EVENTSMITH_CASSANDRA") {
        Ok(address) if !address.is_empty() => Some(address),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but EVENTSMITH_CASSANDRA is not: .ci/run must start Cassandra and set it"
            );
            eprintln!(
                "skipped: EVENTSMITH_CASSANDRA is not set; start a node with `cargo xtask cassandra start` and set EVENTSMITH_CASSANDRA=127.0.0.1:9042"
            );
            None
        }
    }
}

/// A keyspace of this test run.
pub(crate) fn keyspace() -> &'static str {
    static KEYSPACE: OnceLock<String> = OnceLock::new();
    KEYSPACE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "eventsmith_test_{}_{}",
            std::process::id(),
            nanos % 1_000_000
        )
    })
}

/// The configuration of this run's keyspace on `address`.
#[allow(dead_code)]
pub(crate) fn config(address: &str) -> CassandraConfig {
    let mut config = CassandraConfig::new([address], keyspace()).unwrap();
    // One node: one replica, chosen (a keyspace is never created with a default).
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    config
}

/// A store on this run's keyspace, created once per run; `None` when no node is configured.
#[allow(dead_code)]
pub(crate) async fn store() -> Option<(CassandraStore, ())> {
    static SCHEMA: OnceCell<()> = OnceCell::const_new();
    let address = address()?;
    let config = config(&address);
    SCHEMA
        .get_or_init(|| async {
            CassandraStore::create_schema(&config)
                .await
                .expect("create the test keyspace")
        })
        .await;
    Some((
        CassandraStore::connect(config)
            .await
            .expect("connect to Cassandra"),
        (),
    ))
}

/// A keyspace of this test run with a feed (of `slices` slices), created once per run; the
/// store's feed timings are those of `feed`. `None` when no node is configured.
#[allow(dead_code)]
pub(crate) async fn feed_store(feed: eventsmith_scylla::FeedConfig) -> Option<CassandraStore> {
    static SCHEMA: OnceCell<()> = OnceCell::const_new();
    let address = address()?;
    let mut config = feed_config(&address);
    SCHEMA
        .get_or_init(|| async {
            CassandraStore::create_schema(&config)
                .await
                .expect("create the test keyspace with a feed")
        })
        .await;
    config.feed = Some(feed);
    Some(
        CassandraStore::connect(config)
            .await
            .expect("connect to Cassandra"),
    )
}

/// The feed keyspace's slice count and bucket width (fixed at creation): 4 slices of one
/// minute, so that the tests cross buckets.
#[allow(dead_code)]
pub(crate) fn feed_settings() -> eventsmith_scylla::FeedConfig {
    eventsmith_scylla::FeedConfig {
        slices: 4,
        bucket: std::time::Duration::from_secs(60),
        ..eventsmith_scylla::FeedConfig::default()
    }
}

/// The configuration of this run's feed keyspace on `address`.
#[allow(dead_code)]
pub(crate) fn feed_config(address: &str) -> CassandraConfig {
    let mut config = CassandraConfig::new([address], &format!("{}_feed", keyspace())).unwrap();
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    config.feed = Some(feed_settings());
    config
}

/// The conformance suite's reader of a store's feed: from about the present, every slice.
#[allow(dead_code)]
pub(crate) struct FeedReader {
    store: CassandraStore,
    position: Option<eventsmith_scylla::FeedPosition>,
}

/// A reader of `store`'s feed for the conformance suite.
#[allow(dead_code)]
pub(crate) fn feed_reader(store: &CassandraStore) -> FeedReader {
    FeedReader {
        store: store.clone(),
        position: None,
    }
}

impl eventsmith_testkit::feed::FeedReader for FeedReader {
    fn next(
        &mut self,
    ) -> eventsmith_core::BoxFuture<
        '_,
        Result<Vec<eventsmith_core::IntegerSequencedItem>, eventsmith_core::StoreError>,
    > {
        Box::pin(async move {
            let position = match self.position.take() {
                Some(p) => p,
                None => self.store.feed_now()?,
            };
            let (appends, next) = self.store.read_feed(&position, 1000).await?;
            self.position = Some(next);
            Ok(appends.into_iter().flat_map(|a| a.items).collect())
        })
    }
}
