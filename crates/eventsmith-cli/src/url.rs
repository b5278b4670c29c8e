//! Store URLs: `sqlite:///path/to/file.db`, `memory:`, `cassandra://host:port/keyspace`,
//! `postgres://user@host:port/database?schema=NAME`, each parsed by its backend's crate.

use eventsmith_core::StoreError;
use eventsmith_postgres::PostgresConfig;
use eventsmith_scylla::CassandraConfig;
use eventsmith_sqlite::SqliteUrl;

/// A PostgreSQL store's URL, checked by [`PostgresConfig`]'s parser. Its `Debug` leaves out
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The store's configuration (the URL parsed when the `PostgresUrl` was made).
    pub fn config(&self) -> PostgresConfig {
        self.0
            .parse()
            .expect("a PostgresUrl is only made from a URL that parses")
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration's Debug never shows the password.
        f.debug_tuple("PostgresUrl").field(&self.config()).finish()
    }
}

/// Where a store lives, and how to open it: each backend's own configuration type parses its
/// URL (`SqliteUrl`, `CassandraConfig`, `PostgresConfig`); this only picks the backend.
#[derive(Debug, Clone)]
pub enum StoreUrl {
    /// A SQLite file (`sqlite:///absolute/path.db`, `sqlite://relative/path.db`, with
    /// [`SqliteUrl`]'s parameters).
    Sqlite(SqliteUrl),
    /// A fresh in-memory store (empty at every start).
    Memory,
    /// A Cassandra or ScyllaDB keyspace (`cassandra://host:port[,host:port]/keyspace`, with
    /// [`CassandraConfig`]'s parameters).
    Cassandra(Box<CassandraConfig>),
    /// A PostgreSQL schema (`postgres://` or `postgresql://`, with libpq's parameters and
    /// eventsmith's `schema`, `pool_size`, `max_group`, `lock_timeout_ms`).
    Postgres(PostgresUrl),
}

impl std::str::FromStr for StoreUrl {
    /// A [`StoreError::Config`] saying what is wrong (never repeating a password).
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        if url == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if url.starts_with("sqlite:") {
            return url.parse().map(StoreUrl::Sqlite);
        }
        if url.starts_with("cassandra:") {
            return url.parse().map(|c| StoreUrl::Cassandra(Box::new(c)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The parser's messages never repeat the password.
            return url
                .parse::<PostgresConfig>()
                .map(|_| StoreUrl::Postgres(PostgresUrl(url.to_owned())));
        }
        Err(StoreError::Config {
            detail: format!(
                "{url:?}: expected sqlite:///path/to/file.db, memory:, cassandra://host:port/keyspace or postgres://user@host:port/database"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let Ok(StoreUrl::Sqlite(sqlite)) = "sqlite:///tmp/x%20y.db".parse() else {
            panic!("a sqlite URL")
        };
        assert_eq!(sqlite.path, std::path::Path::new("/tmp/x y.db"));
        let Ok(StoreUrl::Sqlite(sqlite)) = "sqlite://rel.db".parse() else {
            panic!("a relative sqlite URL")
        };
        assert_eq!(sqlite.path, std::path::Path::new("rel.db"));
        assert!(matches!("memory:".parse(), Ok(StoreUrl::Memory)));
        let Ok(StoreUrl::Cassandra(cassandra)) =
            "cassandra://127.0.0.1:9042,127.0.0.2:9042/events?replication_factor=2".parse()
        else {
            panic!("a cassandra URL")
        };
        assert_eq!(cassandra.nodes(), ["127.0.0.1:9042", "127.0.0.2:9042"]);
        assert_eq!(cassandra.keyspace(), "events");
        let Ok(StoreUrl::Postgres(pg)) =
            "postgres://u:secret@127.0.0.1:55432/db?schema=orders".parse::<StoreUrl>()
        else {
            panic!("a postgres URL")
        };
        assert_eq!(pg.config().schema(), Some("orders"));
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn rejects_malformed_urls_with_a_typed_reason() {
        for bad in [
            "",
            "sqlite://",
            "mysql://x",
            "cassandra://host/ks",
            "cassandra://host:port/ks",
            "cassandra://:9042/ks",
            "cassandra://h:9042/",
            "cassandra://h:9042",
            "memory",
            "postgres://h/db?schema=Bad-Name",
            "postgres://u:hunter2@h:notaport/db",
            "postgresql://h/db?pool_size=0",
        ] {
            let err = bad.parse::<StoreUrl>().unwrap_err();
            assert_eq!(
                err.kind(),
                eventsmith_core::ErrorKind::Config,
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
