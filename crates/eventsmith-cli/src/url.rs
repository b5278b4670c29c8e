//! Store URLs: `sqlite:///path/to/file.db`, `memory:`, `cassandra://host:port/keyspace`,
//! `postgres://user@host:port/database?schema=NAME`.

use std::path::PathBuf;

use eventsmith_postgres::PostgresConfig;

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

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A fresh in-memory store (empty at every start).
    Memory,
    /// A Cassandra or ScyllaDB keyspace.
    Cassandra {
        /// `host:port`.
        address: String,
        /// The keyspace.
        keyspace: String,
    },
    /// A PostgreSQL schema (`postgres://` or `postgresql://`, with libpq's parameters and
    /// eventsmith's `schema`, `pool_size`, `max_group`, `lock_timeout_ms`).
    Postgres(PostgresUrl),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(format!(
                    "bad store URL {url:?}: no file path (use sqlite:///path/to/file.db)"
                ));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("cassandra://") {
            let (address, keyspace) = rest.split_once('/').ok_or_else(|| {
                format!("bad store URL {url:?}: no keyspace (use cassandra://host:port/keyspace)")
            })?;
            let (host, port) = address.rsplit_once(':').ok_or_else(|| {
                format!("bad store URL {url:?}: no port (use cassandra://host:port/keyspace)")
            })?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!(
                    "bad store URL {url:?}: {address:?} is not host:port"
                ));
            }
            if keyspace.is_empty() {
                return Err(format!("bad store URL {url:?}: empty keyspace"));
            }
            return Ok(StoreUrl::Cassandra {
                address: address.to_owned(),
                keyspace: keyspace.to_owned(),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The parser's messages never repeat the password; neither does this one.
            return match url.parse::<PostgresConfig>() {
                Ok(_) => Ok(StoreUrl::Postgres(PostgresUrl(url.to_owned()))),
                Err(e) => Err(format!("bad store URL (postgres://...): {e}")),
            };
        }
        Err(format!(
            "bad store URL {url:?}: expected sqlite:///path/to/file.db, memory:, cassandra://host:port/keyspace or postgres://user@host:port/database"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            "sqlite:///tmp/x.db".parse(),
            Ok(StoreUrl::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            "sqlite://rel.db".parse(),
            Ok(StoreUrl::Sqlite("rel.db".into()))
        );
        assert_eq!("memory:".parse(), Ok(StoreUrl::Memory));
        assert_eq!(
            "cassandra://127.0.0.1:9042/events".parse(),
            Ok(StoreUrl::Cassandra {
                address: "127.0.0.1:9042".into(),
                keyspace: "events".into()
            })
        );
        let Ok(StoreUrl::Postgres(pg)) =
            "postgres://u:secret@127.0.0.1:55432/db?schema=orders".parse::<StoreUrl>()
        else {
            panic!("a postgres URL")
        };
        assert_eq!(pg.config().schema(), Some("orders"));
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn rejects_malformed_urls_with_a_reason() {
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
            "postgres://h:notaport/db",
            "postgresql://h/db?pool_size=0",
        ] {
            let err = bad.parse::<StoreUrl>().unwrap_err();
            assert!(err.starts_with("bad store URL"), "{bad}: {err}");
        }
    }
}
