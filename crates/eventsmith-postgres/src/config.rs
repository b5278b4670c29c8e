//! [`PostgresConfig`]: where and how a store connects, parsed from a `postgres://` URL.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use eventsmith_core::StoreError;

/// Where and how a [`PostgresStore`](crate::PostgresStore) connects.
///
/// Parsed from a libpq connection URL (`postgres://user:password@host:port/database?…`,
/// percent-decoded by the driver's parser) or key-value string (`host=… user=…`). Besides
/// libpq's parameters the URL may carry eventsmith's own:
///
/// - `schema=NAME`: the PostgreSQL schema holding the tables (created when missing); every
///   connection of the store sets its `search_path` to it. Default: the server's
///   `search_path` (normally `public`).
/// - `pool_size=N`: the most connections the store opens for reads and non-log writes
///   (default 8); the notification-log writer has one more.
/// - `max_group=N`: the most appends committed in one transaction (default 64).
/// - `lock_timeout_ms=N`: how long an append waits for the log lock before failing with
///   [`StoreError::Busy`] (default 5,000).
///
/// ```
/// use eventsmith_postgres::PostgresConfig;
/// let config: PostgresConfig =
///     "postgres://app:s%40cret@127.0.0.1:5432/events?schema=orders&pool_size=4".parse()?;
/// assert_eq!(config.schema(), Some("orders"));
/// assert_eq!(config.pool_size, 4);
/// assert_eq!(config.address(), "127.0.0.1:5432");
/// # Ok::<(), eventsmith_core::StoreError>(())
/// ```
///
/// TLS is not offered yet: connections are plain TCP or Unix sockets (`sslmode=require`
/// fails to connect).
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) driver: tokio_postgres::Config,
    schema: Option<String>,
    /// The most pooled connections (reads, snapshots, timestamped items, key look-ups).
    pub pool_size: usize,
    /// The most appends committed together in one transaction.
    pub max_group: usize,
    /// How long an append waits for the notification-log lock (held by another process's
    /// commit) before failing with [`StoreError::Busy`].
    pub lock_timeout: Duration,
    /// How long a call waits for a free pooled connection before failing with
    /// [`StoreError::Busy`].
    pub acquire_timeout: Duration,
}

/// eventsmith's own URL parameters, removed before the driver parses the rest.
const OWN_PARAMETERS: [&str; 4] = ["schema", "pool_size", "max_group", "lock_timeout_ms"];

fn config_error(detail: impl Into<String>) -> StoreError {
    StoreError::Config {
        detail: detail.into(),
    }
}

/// Checks a schema name: 1 to 63 lowercase ASCII letters, digits or underscores, starting
/// with a letter or underscore. Such a name needs no quoting, so DDL can name it safely
/// (identifiers cannot be bind parameters).
pub(crate) fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(config_error(format!(
            "invalid schema name {name:?}: use 1 to 63 lowercase letters, digits or underscores, starting with a letter"
        )))
    }
}

impl PostgresConfig {
    /// The same configuration with the tables in `schema` (see the `schema` URL parameter).
    pub fn with_schema(mut self, schema: &str) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        self.schema = Some(schema.to_owned());
        Ok(self)
    }

    /// The schema holding the tables, when one is configured.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The first host and port, for messages (`host:port`, or the socket directory).
    pub fn address(&self) -> String {
        use tokio_postgres::config::Host;
        let port = self.driver.get_ports().first().copied().unwrap_or(5432);
        match self.driver.get_hosts().first() {
            Some(Host::Tcp(host)) => format!("{host}:{port}"),
            Some(Host::Unix(path)) => format!("{}:{port}", path.display()),
            None => format!("localhost:{port}"),
        }
    }

    /// The database name, when given.
    pub fn database(&self) -> Option<&str> {
        self.driver.get_dbname()
    }

    /// The user name, when given.
    pub fn user(&self) -> Option<&str> {
        self.driver.get_user()
    }

    /// The driver's configuration for one connection: the startup `options` carry the
    /// `search_path`, the lock timeout and the planner settings, so every connection is set
    /// up before its first query without a round trip.
    pub(crate) fn connection(&self, role: Role) -> tokio_postgres::Config {
        let mut driver = self.driver.clone();
        let mut options = driver.get_options().unwrap_or("").to_owned();
        if let Some(schema) = &self.schema {
            options.push_str(&format!(" -c search_path={schema}"));
        }
        options.push_str(&format!(
            " -c lock_timeout={}",
            self.lock_timeout.as_millis().max(1)
        ));
        // The store's statements are few, prepared once per connection, and every one of
        // them is an index look-up whatever its parameters: a generic plan is always right.
        // Left to choose, the server re-plans the append statement at every execution
        // (planning cost about as much as executing it).
        options.push_str(" -c plan_cache_mode=force_generic_plan");
        if role == Role::Writer {
            // A generic plan is made once, at the first execution, from the statistics of
            // that moment, and kept until the table is next analysed (autovacuum visits a
            // database once a minute at best). Made while `integer_items` was empty or
            // small, the append statement's conflict check became a hash join over a
            // sequential scan of the whole table, so every append read every row (6.8 ms
            // per append at 30,000 rows, growing with the log). The writer's statements
            // are all look-ups by primary key, so its connection is told to plan them as
            // such whatever the statistics say: nested loops over index scans.
            options
                .push_str(" -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off");
        }
        driver.options(options.trim());
        if driver.get_application_name().is_none() {
            driver.application_name("eventsmith");
        }
        if driver.get_connect_timeout().is_none() {
            driver.connect_timeout(Duration::from_secs(10));
        }
        driver
    }
}

/// What a connection is for: its planner settings differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A pooled connection: reads, snapshots, timestamped items, leases.
    Pooled,
    /// The writer's connection: appends and their resolution, all primary-key look-ups.
    Writer,
}

fn parse_number(name: &str, value: &str) -> Result<u64, StoreError> {
    value
        .parse()
        .map_err(|_| config_error(format!("{name}={value:?} is not a number")))
}

impl FromStr for PostgresConfig {
    type Err = StoreError;

    /// Parses a `postgres://` (or `postgresql://`) URL or a key-value connection string.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let mut schema = None;
        let mut pool_size = 8;
        let mut max_group = 64;
        let mut lock_timeout = Duration::from_secs(5);
        let is_url = s.starts_with("postgres://") || s.starts_with("postgresql://");
        let driver_text = match s.split_once('?') {
            Some((base, query)) if is_url => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    match name {
                        "schema" => {
                            check_schema_name(value)?;
                            schema = Some(value.to_owned());
                        }
                        "pool_size" => pool_size = parse_number(name, value)? as usize,
                        "max_group" => max_group = parse_number(name, value)? as usize,
                        "lock_timeout_ms" => {
                            lock_timeout = Duration::from_millis(parse_number(name, value)?)
                        }
                        _ => kept.push(pair),
                    }
                }
                debug_assert!(OWN_PARAMETERS.iter().all(|p| !kept.contains(p)));
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            _ => s.to_owned(),
        };
        let driver: tokio_postgres::Config = driver_text.parse().map_err(|e| {
            // The driver's message never repeats the password.
            config_error(format!("invalid PostgreSQL connection string: {e}"))
        })?;
        if pool_size == 0 || max_group == 0 {
            return Err(config_error("pool_size and max_group must be at least 1"));
        }
        Ok(PostgresConfig {
            driver,
            schema,
            pool_size,
            max_group,
            lock_timeout,
            acquire_timeout: Duration::from_secs(30),
        })
    }
}

impl fmt::Debug for PostgresConfig {
    // Written by hand so that the password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("address", &self.address())
            .field("database", &self.database())
            .field("user", &self.user())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("max_group", &self.max_group)
            .field("lock_timeout", &self.lock_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_own_parameters() {
        let c: PostgresConfig =
            "postgres://u:p%40ss@db.example:6543/ev?schema=s1&connect_timeout=3&max_group=7"
                .parse()
                .unwrap();
        assert_eq!(c.schema(), Some("s1"));
        assert_eq!(c.max_group, 7);
        assert_eq!(c.user(), Some("u"));
        assert_eq!(c.driver.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.database(), Some("ev"));
        assert_eq!(c.address(), "db.example:6543");
        assert_eq!(
            c.driver.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert!(!format!("{c:?}").contains("p@ss"));
        let options = c.connection(Role::Pooled);
        assert!(options.get_options().unwrap().contains("search_path=s1"));
        assert!(!options.get_options().unwrap().contains("enable_seqscan"));
        let writer = c.connection(Role::Writer);
        let writer = writer.get_options().unwrap();
        assert!(writer.contains("search_path=s1"));
        for setting in [
            "enable_seqscan=off",
            "enable_hashjoin=off",
            "enable_mergejoin=off",
        ] {
            assert!(writer.contains(setting), "{writer}");
        }
    }

    #[test]
    fn bad_configurations_are_config_errors() {
        for bad in [
            "postgres://h/db?schema=Robert'); DROP",
            "postgres://h/db?pool_size=x",
            "postgres://h/db?pool_size=0",
            "postgres://h:notaport/db",
        ] {
            assert!(
                matches!(
                    bad.parse::<PostgresConfig>(),
                    Err(StoreError::Config { .. })
                ),
                "{bad}"
            );
        }
        assert!(
            "host=localhost user=postgres"
                .parse::<PostgresConfig>()
                .is_ok()
        );
    }
}
