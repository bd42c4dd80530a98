//! The fleet's PostgreSQL connections: a pool with timeouts, retries of
//! work that cannot have been applied, and dedicated sessions for locks.

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// How long operations wait, in total, for PostgreSQL to come back before
/// they fail (while the server restarts, say).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// A pool of connections to the fleet's database.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    timeout: Duration,
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No connection could be had within the patience; nothing was applied.
    #[error("PostgreSQL is unreachable: {0}")]
    Unreachable(String),
    /// The server answered with an error, or the connection broke mid-way.
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

impl PgError {
    /// A serialization failure or deadlock: the transaction may be run again.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Query(e) => matches!(
                e.code(),
                Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
            ),
            Self::Unreachable(_) => false,
        }
    }

    /// The connection broke (or never came): worth trying again once it is back.
    pub fn is_connection(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Query(e) => {
                e.is_closed()
                    || e.code().is_none()
                    || matches!(
                        e.code(),
                        Some(
                            &SqlState::ADMIN_SHUTDOWN
                                | &SqlState::CRASH_SHUTDOWN
                                | &SqlState::CANNOT_CONNECT_NOW
                        )
                    )
            }
        }
    }
}

impl Pg {
    /// A pool of up to `size` connections to `url`, checked by connecting once.
    pub async fn connect(url: &str, size: usize, timeout: Duration) -> anyhow::Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url).with_context(|| {
            format!(
                "[backend] postgres_url `{}` is not a PostgreSQL URL",
                redacted(url)
            )
        })?;
        config
            .application_name("bazaar")
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .context("cannot build the PostgreSQL pool")?;
        let pg = Self {
            pool,
            config: Arc::new(config),
            timeout,
        };
        let client = pg.pool.get().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {}: {}; is it running, and does the database exist? ([backend] postgres_url)",
                redacted(url),
                pool_error_text(&e)
            )
        })?;
        client
            .simple_query("SELECT 1")
            .await
            .context("PostgreSQL accepted the connection but not a query")?;
        Ok(pg)
    }

    /// A pooled connection; while none can be had (the server restarts),
    /// tries again with backoff for a while.
    pub async fn get(&self) -> Result<Object, PgError> {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            match self.pool.get().await {
                Ok(client) if !client.is_closed() => return Ok(client),
                Ok(client) => drop(Object::take(client)),
                Err(e) if started.elapsed() + wait > RECONNECT_PATIENCE => {
                    return Err(PgError::Unreachable(pool_error_text(&e)));
                }
                Err(e) => {
                    tracing::debug!(error = pool_error_text(&e), "waiting for PostgreSQL");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// A session of its own (not pooled), for a lock that must end when the
    /// session does, even if this process dies.
    pub async fn session(&self) -> anyhow::Result<Session> {
        let (client, connection) = tokio::time::timeout(self.timeout, self.config.connect(NoTls))
            .await
            .context("timed out connecting to PostgreSQL")?
            .context("cannot connect to PostgreSQL")?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL session ended");
            }
        });
        Ok(Session { client, task })
    }
}

/// Paces the tries of one transaction: after a conflict or a broken
/// connection it waits a little longer each time, and gives up once
/// PostgreSQL has been away too long.
///
/// ```ignore
/// let mut retry = Retry::default();
/// loop {
///     let mut client = pg.get().await?;
///     match attempt(&mut client).await {
///         Attempt::Done(result) => return result,
///         Attempt::Retry(e) => retry.again(e, client).await?,
///     }
/// }
/// ```
pub struct Retry {
    started: tokio::time::Instant,
    wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            wait: Duration::from_millis(20),
        }
    }
}

impl Retry {
    /// After try failed with `e` on `client`: waits before the next try,
    /// or returns `e` when it is time to give up.
    pub async fn again(&mut self, e: PgError, client: Object) -> Result<(), PgError> {
        if e.is_connection() {
            // The connection is gone; do not hand it out again.
            drop(Object::take(client));
        } else {
            drop(client);
        }
        if self.started.elapsed() + self.wait > RECONNECT_PATIENCE {
            return Err(e);
        }
        tracing::debug!(error = %e, "retrying a PostgreSQL transaction");
        tokio::time::sleep(jitter(self.wait)).await;
        self.wait = (self.wait * 2).min(Duration::from_millis(500));
        Ok(())
    }
}

/// What one try of a transaction came to.
pub enum Attempt<T> {
    /// Finished: the result stands.
    Done(Result<T, PgError>),
    /// Nothing was applied; try again.
    Retry(PgError),
}

impl<T> Attempt<T> {
    /// Classifies an error that struck before the transaction committed:
    /// a conflict or a broken connection is retried, anything else stands.
    pub fn before_commit(e: tokio_postgres::Error) -> Self {
        let e = PgError::Query(e);
        if e.is_conflict() || e.is_connection() {
            Self::Retry(e)
        } else {
            Self::Done(Err(e))
        }
    }

    /// The result, changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Self::Done(result) => Attempt::Done(result.map(f)),
            Self::Retry(e) => Attempt::Retry(e),
        }
    }

    /// Classifies the result of `COMMIT`: a conflict is retried (nothing was
    /// applied), but a broken connection is not, since the commit may
    /// have landed and running it again could apply it twice.
    pub fn at_commit(result: Result<T, tokio_postgres::Error>) -> Self {
        match result {
            Ok(value) => Self::Done(Ok(value)),
            Err(e) => {
                let e = PgError::Query(e);
                if e.is_conflict() {
                    Self::Retry(e)
                } else {
                    Self::Done(Err(e))
                }
            }
        }
    }
}

/// A dedicated PostgreSQL session; dropping it closes it.
pub struct Session {
    /// The session's client.
    pub client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or("");
            if user_info.contains(':') {
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            } else {
                url.to_owned()
            }
        }
        _ => url.to_owned(),
    }
}

fn pool_error_text(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => format!("{e}"),
        deadpool_postgres::PoolError::Timeout(_) => "timed out".to_owned(),
        other => other.to_string(),
    }
}

/// `wait`, give or take a quarter, so hosts retrying together spread out.
fn jitter(wait: Duration) -> Duration {
    let quarter = wait.as_millis() as u64 / 4;
    let offset = if quarter == 0 {
        0
    } else {
        uuid::Uuid::new_v4().as_u128() as u64 % (2 * quarter)
    };
    wait - Duration::from_millis(quarter) + Duration::from_millis(offset)
}

/// A 64-bit key for `pg_advisory_lock`, from a name.
pub fn lock_key(name: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(
            redacted("postgres://bazaar:s3cret@db:5432/bazaar"),
            "postgres://bazaar:***@db:5432/bazaar"
        );
        assert_eq!(
            redacted("postgres://bazaar@db/bazaar"),
            "postgres://bazaar@db/bazaar"
        );
        assert_eq!(redacted("host=db user=x"), "host=db user=x");
    }

    #[test]
    fn lock_keys_differ_by_name() {
        assert_ne!(lock_key("users"), lock_key("orders"));
        assert_eq!(lock_key("users"), lock_key("users"));
    }
}
