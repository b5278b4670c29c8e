//! `sqlite:` URLs: where a store's file is, and how it is opened.

use std::path::PathBuf;
use std::time::Duration;

use eventsmith_core::StoreError;

use crate::{SqliteConfig, Synchronous};

/// A SQLite store's file and configuration, parsed from a URL by [`FromStr`](std::str::FromStr)
/// (with the `url` crate; percent-escapes are decoded):
///
/// - `sqlite:///absolute/path.db`, `sqlite://relative/path.db` or `sqlite:relative/path.db`;
/// - parameters: `synchronous=full|normal`, `busy_timeout_ms=N`, `read_connections=N`,
///   `max_group=N` (at least 1), `queue_capacity=N` (at least 1), `max_page_count=N` (at
///   least 1).
///
/// Unknown parameters are refused, so that a misspelt one is not silently ignored.
///
/// ```
/// use eventsmith_sqlite::{SqliteUrl, Synchronous};
/// let url: SqliteUrl = "sqlite:///var/lib/my%20app/events.db?synchronous=normal".parse().unwrap();
/// assert_eq!(url.path, std::path::Path::new("/var/lib/my app/events.db"));
/// assert_eq!(url.config.synchronous, Synchronous::Normal);
/// ```
#[derive(Debug, Clone)]
pub struct SqliteUrl {
    /// The database file.
    pub path: PathBuf,
    /// How it is opened ([`SqliteConfig::default`] but for the URL's parameters).
    pub config: SqliteConfig,
}

fn config_error(url: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Config {
        detail: format!(
            "{url:?}: {what} (use sqlite:///absolute/path.db or sqlite://relative/path.db)"
        ),
    }
}

impl std::str::FromStr for SqliteUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url).map_err(|e| config_error(url, e))?;
        if parsed.scheme() != "sqlite" {
            return Err(config_error(url, "not a sqlite: URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.port().is_some() {
            return Err(config_error(url, "a file path takes no user or port"));
        }
        if parsed.fragment().is_some() {
            return Err(config_error(url, "a #fragment means nothing here"));
        }
        // `sqlite://relative/path.db` has the path's first part where a URL has its host;
        // `sqlite:///absolute` has an empty host.
        let raw = match parsed.host_str() {
            Some(host) => format!("{host}{}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        if raw.is_empty() {
            return Err(config_error(url, "no file path"));
        }
        let path = percent_encoding::percent_decode_str(&raw)
            .decode_utf8()
            .map_err(|_| config_error(url, "the path is not UTF-8 once decoded"))?;
        if path.contains('\0') {
            return Err(config_error(url, "the path holds a NUL byte"));
        }
        let mut config = SqliteConfig::default();
        for (name, value) in parsed.query_pairs() {
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| config_error(url, format!("{name}={value:?} is not a number")))
            };
            let positive = || {
                number()?
                    .try_into()
                    .ok()
                    .filter(|n: &usize| *n > 0)
                    .ok_or_else(|| config_error(url, format!("{name} must be at least 1")))
            };
            match name.as_ref() {
                "synchronous" => {
                    config.synchronous = match value.to_ascii_lowercase().as_str() {
                        "full" => Synchronous::Full,
                        "normal" => Synchronous::Normal,
                        _ => {
                            return Err(config_error(
                                url,
                                format!("synchronous={value:?}: use full or normal"),
                            ));
                        }
                    }
                }
                "busy_timeout_ms" => config.busy_timeout = Duration::from_millis(number()?),
                "read_connections" => config.read_connections = number()? as usize,
                "max_group" => config.max_group = positive()?,
                "queue_capacity" => config.queue_capacity = positive()?,
                "max_page_count" => config.max_page_count = Some(positive()? as u64),
                other => {
                    return Err(config_error(
                        url,
                        format!(
                            "unknown parameter {other:?} (known: synchronous, busy_timeout_ms, read_connections, max_group, queue_capacity, max_page_count)"
                        ),
                    ));
                }
            }
        }
        Ok(SqliteUrl {
            path: PathBuf::from(path.as_ref()),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_forms_and_parameters() {
        let path = |url: &str| url.parse::<SqliteUrl>().unwrap().path;
        assert_eq!(path("sqlite:///tmp/x.db"), PathBuf::from("/tmp/x.db"));
        assert_eq!(path("sqlite://rel.db"), PathBuf::from("rel.db"));
        assert_eq!(path("sqlite://Dir/Sub/x.db"), PathBuf::from("Dir/Sub/x.db"));
        assert_eq!(path("sqlite:rel.db"), PathBuf::from("rel.db"));
        assert_eq!(
            path("sqlite:///a%20b/%C3%A9.db"),
            PathBuf::from("/a b/é.db")
        );
        let url: SqliteUrl =
            "sqlite:///x.db?synchronous=NORMAL&busy_timeout_ms=250&read_connections=0&max_group=8&queue_capacity=16&max_page_count=100"
                .parse()
                .unwrap();
        assert_eq!(url.config.synchronous, Synchronous::Normal);
        assert_eq!(url.config.busy_timeout, Duration::from_millis(250));
        assert_eq!(url.config.read_connections, 0);
        assert_eq!(url.config.max_group, 8);
        assert_eq!(url.config.queue_capacity, 16);
        assert_eq!(url.config.max_page_count, Some(100));
    }

    #[test]
    fn bad_urls_are_config_errors_saying_what() {
        for (bad, says) in [
            ("", "relative URL"),
            ("sqlite://", "no file path"),
            ("sqlite:", "no file path"),
            ("postgres://h/db", "not a sqlite: URL"),
            ("sqlite://u@h/x.db", "no user or port"),
            ("sqlite://h:1/x.db", "no user or port"),
            ("sqlite:///x.db#f", "fragment"),
            ("sqlite:///%ff.db", "not UTF-8"),
            ("sqlite:%00", "NUL"),
            ("sqlite:///x.db?synchronous=off", "use full or normal"),
            ("sqlite:///x.db?max_group=0", "at least 1"),
            ("sqlite:///x.db?queue_capacity=0", "at least 1"),
            ("sqlite:///x.db?busy_timeout_ms=soon", "not a number"),
            ("sqlite:///x.db?busytimeout=1", "unknown parameter"),
        ] {
            match bad.parse::<SqliteUrl>() {
                Err(e @ StoreError::Config { .. }) => {
                    assert!(e.to_string().contains(says), "{bad:?}: {e}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
