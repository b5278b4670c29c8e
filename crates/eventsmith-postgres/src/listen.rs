//! Wake-ups from other processes: every group commit that wrote items sends `NOTIFY` on the
//! schema's channel inside its transaction (so it is delivered on commit, never for a
//! rollback), and a [`Listener`] wakes a [`RunnerWaker`] for each one it receives.

use std::future::poll_fn;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsmith_core::{RunnerWaker, StoreError};
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket};

use crate::config::PostgresConfig;
use crate::error::from_pg;
use crate::pool::connect_error;

/// The longest channel name PostgreSQL keeps (NAMEDATALEN - 1); `pg_notify` refuses longer.
const MAX_CHANNEL: usize = 63;

/// The channel of a schema: `eventsmith_SCHEMA`, or, when that is too long, a prefix of the
/// schema name and a hash of the whole (so two long names sharing a prefix do not share a
/// channel).
pub(crate) fn channel(schema: &str) -> String {
    let name = format!("eventsmith_{schema}");
    if name.len() <= MAX_CHANNEL {
        return name;
    }
    // FNV-1a: stable across builds and platforms, which std's hasher does not promise.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = MAX_CHANNEL - "eventsmith__".len() - 16;
    while !schema.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("eventsmith_{}_{hash:016x}", &schema[..cut])
}

/// A channel name as a quoted identifier, for `LISTEN` (which takes no bind parameter).
fn quoted(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

/// Wakes a [`RunnerWaker`] whenever a commit to the store's schema is notified, from any
/// process; made by [`PostgresStore::listen`](crate::PostgresStore::listen).
///
/// It runs as a task on a dedicated connection. When the connection is lost it reconnects
/// with exponential backoff (100 ms up to 5 s, with jitter) and then wakes the waker once,
/// since commits made while it was away were not notified to it. Dropping the `Listener`
/// stops the task and closes its connection.
#[derive(Debug)]
pub struct Listener {
    task: JoinHandle<()>,
    channel: String,
}

impl Listener {
    /// The channel it listens on ([`PostgresStore::notification_channel`](crate::PostgresStore::notification_channel)).
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection that has run `LISTEN`.
struct Session {
    /// Kept so the connection stays open; nothing is sent on it after `LISTEN`.
    _client: Client,
    connection: Connection<Socket, NoTlsStream>,
}

impl Session {
    /// Connects and listens; the connection is driven here until `LISTEN` is answered, so no
    /// notification can be missed between the two.
    async fn open(config: &PostgresConfig, channel: &str) -> Result<Session, StoreError> {
        let address = config.address();
        let mut driver = config.connection(crate::config::Role::Pooled);
        if driver.get_application_name() == Some("eventsmith") {
            driver.application_name("eventsmith-listener");
        }
        // A connection that dies without a word (a partition, a host gone) shows only when
        // something is sent; the listener sends nothing, so TCP keepalives find it out.
        driver
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        let (client, mut connection) = driver
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(e, config))?;
        {
            let sql = format!("LISTEN {}", quoted(channel));
            let listen = client.batch_execute(&sql);
            let mut listen = std::pin::pin!(listen);
            loop {
                tokio::select! {
                    done = &mut listen => {
                        done.map_err(|e| from_pg(e, &address))?;
                        break;
                    }
                    message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(from_pg(e, &address)),
                        None => return Err(closed(&address)),
                    },
                }
            }
        }
        Ok(Session {
            _client: client,
            connection,
        })
    }

    /// Wakes `waker` for every notification until the connection fails; returns why.
    async fn run(&mut self, waker: &RunnerWaker, address: &str) -> StoreError {
        loop {
            match poll_fn(|cx| self.connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => waker.wake(),
                // Notices (and future message kinds) carry nothing to act on.
                Some(Ok(_)) => {}
                Some(Err(e)) => return from_pg(e, address),
                None => return closed(address),
            }
        }
    }
}

fn closed(address: &str) -> StoreError {
    StoreError::Unreachable {
        address: address.to_owned(),
        source: "the listening connection was closed".into(),
    }
}

/// Starts listening on `channel`: returns once `LISTEN` is in place (or why it could not
/// be), with the task that keeps it so.
pub(crate) async fn start(
    config: PostgresConfig,
    channel: String,
    waker: RunnerWaker,
) -> Result<Listener, StoreError> {
    let session = Session::open(&config, &channel).await?;
    // Commits made before `LISTEN` took effect were not notified: look once now.
    waker.wake();
    let task = tokio::spawn(keep_listening(config, channel.clone(), waker, session));
    Ok(Listener { task, channel })
}

async fn keep_listening(
    config: PostgresConfig,
    channel: String,
    waker: RunnerWaker,
    mut session: Session,
) {
    let address = config.address();
    loop {
        let lost = session.run(&waker, &address).await;
        tracing::warn!(%channel, error = %lost, "the notification listener lost its connection; reconnecting");
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build();
        session = loop {
            tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(5))).await;
            match Session::open(&config, &channel).await {
                Ok(session) => break session,
                Err(e) => {
                    tracing::debug!(%channel, error = %e, "the notification listener cannot reconnect yet")
                }
            }
        };
        // Commits made while it was away were not notified to it.
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_and_stay_apart() {
        assert_eq!(channel("shop"), "eventsmith_shop");
        let long_a = format!("{}a", "s".repeat(62));
        let long_b = format!("{}b", "s".repeat(62));
        assert!(channel(&long_a).len() <= MAX_CHANNEL);
        assert_ne!(channel(&long_a), channel(&long_b));
        let odd = "É".repeat(40);
        assert!(channel(&odd).len() <= MAX_CHANNEL);
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
