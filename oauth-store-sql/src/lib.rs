#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("oauth-store-sql needs at least one of its features `sqlite` and `postgres`");

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oauth_core::Stores;

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body is compiled once
/// per backend, so one SQL text and one piece of code serve both; the SQL uses `$n`
/// placeholders, which SQLite and PostgreSQL both understand.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            #[cfg(feature = "sqlite")]
            $crate::Pool::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// Binds the columns of [`rows::grant_columns`] of `$grant` to `$query`, in that order.
macro_rules! bind_grant {
    ($query:expr, $grant:expr, $generation:expr) => {
        $query
            .bind($grant.id.as_str())
            .bind($grant.client_id.as_str())
            .bind($grant.user.as_str())
            .bind($grant.scopes.to_string())
            .bind($grant.resource.as_str())
            .bind($grant.auth_time.as_secs())
            .bind($grant.created_at.as_secs())
            .bind($generation)
            .bind($grant.has_refresh_token)
            .bind($grant.rotated_at.map(::oauth_core::UnixTime::as_secs))
            .bind($grant.refresh_expires_at.map(::oauth_core::UnixTime::as_secs))
            .bind($grant.revoked_at.map(::oauth_core::UnixTime::as_secs))
    };
}

/// Inserts `$grant` and, if given, its first refresh token's hash (`Option<&SecretHash>`) in
/// the open transaction `$tx`: the one statement pair that both `create_grant` and the code
/// exchange run, for either backend.
macro_rules! insert_grant {
    ($tx:expr, $grant:expr, $refresh:expr, $generation:expr) => {
        async {
            let grant: &::oauth_core::Grant = $grant;
            let insert = sqlx::query(concat!(
                "INSERT INTO grants (",
                $crate::rows::grant_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ));
            bind_grant!(insert, grant, $generation).execute(&mut *$tx).await?;
            if let Some(hash) = $refresh {
                let hash: &::oauth_core::SecretHash = hash;
                sqlx::query("INSERT INTO refresh_tokens (hash, grant_id, generation) VALUES ($1, $2, $3)")
                    .bind(hash.to_hex())
                    .bind(grant.id.as_str())
                    .bind($generation)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}

#[cfg(feature = "sqlite")]
mod checkpoint;
mod error;
mod events;
mod grants;
mod keys;
mod limits;
#[cfg(feature = "postgres")]
mod listen;
mod rows;
mod sessions;
mod stores;
mod upstream;
mod users;
mod write;

/// Every `oauth-core` store on one SQL database, SQLite or PostgreSQL.
///
/// Cloning is cheap: clones share the connection pool.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
    /// This process's writers take turns (SQLite), instead of sleeping on the busy handler.
    writes: Arc<write::WriteTurns>,
    /// Woken by the revocation trigger (PostgreSQL only).
    #[cfg(feature = "postgres")]
    listener: std::sync::Arc<listen::Listener>,
    /// The background checkpoints of a SQLite file, stopped with the last clone.
    #[cfg(feature = "sqlite")]
    _checkpoints: Option<Arc<checkpoint::Checkpoints>>,
}

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

#[cfg(feature = "sqlite")]
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
#[cfg(feature = "postgres")]
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl SqlStore {
    /// Connects to the database at `url` with default [`SqlStoreOptions`] and brings its schema
    /// up to date. The scheme picks the backend: `sqlite:` or `postgres:` (`postgresql:`).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, &SqlStoreOptions::default()).await
    }

    /// Connects to the database at `url` with `options` and brings its schema up to date.
    pub async fn connect_with(url: &str, options: &SqlStoreOptions) -> Result<Self, ConnectError> {
        let backend = Backend::from_url(url).ok_or_else(|| ConnectError::UnsupportedUrl(scheme_of(url)))?;
        let store = match backend {
            Backend::Sqlite => Self::connect_sqlite(url, options).await?,
            Backend::Postgres => Self::connect_postgres(url, options).await?,
        };
        store.migrate().await?;
        tracing::info!(backend = backend.as_str(), "connected to the database; schema up to date");
        Ok(store)
    }

    /// Applies the migrations this version embeds that the database lacks. [`connect`] does
    /// it already; running it again is harmless.
    ///
    /// [`connect`]: Self::connect
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        with_pool!(self, pool => self.migrator().run(pool).await).map_err(|e| {
            tracing::error!(backend = self.backend().as_str(), error = %e, "database migration failed");
            ConnectError::Migrate(Box::new(e))
        })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The connection pool right now: connections open, of those idle, and the most it opens.
    /// For metrics.
    pub fn pool_use(&self) -> (u32, u32, u32) {
        with_pool!(self, pool => {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            (pool.size(), idle, pool.options().get_max_connections())
        })
    }

    /// The store as the [`Stores`] bundle the server takes.
    pub fn into_stores(self) -> Stores {
        Stores::from_backend(Arc::new(self))
    }

    /// Closes every connection, waiting for those in use to be returned. Later calls fail.
    pub async fn close(&self) {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                self.writes.close().await;
                pool.close().await;
            }
            // The revocation listener holds a connection of the pool until it lets go (within
            // the wait in progress, if one is).
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                self.listener.release().await;
                pool.close().await;
            }
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => &SQLITE_MIGRATIONS,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(url: &str, options: &SqlStoreOptions) -> Result<Self, ConnectError> {
        use std::str::FromStr as _;

        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

        // `mode=rwc` in the URL sets `create_if_missing`; the rest is ours: WAL so that readers
        // never block the writer, a busy timeout so that writers queue instead of failing with
        // "database is locked", and foreign keys (which SQLite leaves off by default).
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| ConnectError::InvalidUrl(Box::new(e)))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.sqlite_synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", checkpoint::AUTO_PAGES);
        if !is_sqlite_memory(url) && creates_missing_file(url) {
            // A new file in a new directory, as an operator's first run expects.
            if let Some(dir) = connect.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| ConnectError::Connect(Box::new(e)))?;
            }
        }
        let mut pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout);
        if is_sqlite_memory(url) {
            // An in-memory database lives as long as its connections and is not shared safely
            // between several: keep exactly one, forever.
            pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool.connect_with(connect.clone()).await.map_err(|e| ConnectError::Connect(Box::new(e)))?;
        if is_sqlite_memory(url) {
            return Ok(Self::on(Pool::Sqlite(pool), options));
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| ConnectError::Connect(Box::new(e)))?;
        let mut store = Self::on(Pool::Sqlite(pool.clone()), options);
        store.writes = Arc::new(write::WriteTurns::new(options.busy_timeout).with_writer(writer));
        store._checkpoints = Some(Arc::new(checkpoint::spawn(pool)));
        Ok(store)
    }

    #[cfg(not(feature = "sqlite"))]
    async fn connect_sqlite(_: &str, _: &SqlStoreOptions) -> Result<Self, ConnectError> {
        Err(ConnectError::FeatureDisabled("sqlite"))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(url: &str, options: &SqlStoreOptions) -> Result<Self, ConnectError> {
        use std::str::FromStr as _;

        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

        // The URL's own settings (`sslmode`, `sslrootcert`, `options`, …) stay; the statement
        // timeout is added to the session options so that a query stuck behind a lock, or on a
        // database that stopped answering, frees its connection instead of holding it forever.
        let mut connect = PgConnectOptions::from_str(url).map_err(|e| ConnectError::InvalidUrl(Box::new(e)))?;
        if let Some(timeout) = options.statement_timeout {
            let millis = timeout.as_millis().max(1).to_string();
            connect = connect.options([("statement_timeout", millis.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| ConnectError::Connect(tls_hint(e)))?;
        Ok(Self::on(Pool::Postgres(pool), options))
    }

    #[cfg(not(feature = "postgres"))]
    async fn connect_postgres(_: &str, _: &SqlStoreOptions) -> Result<Self, ConnectError> {
        Err(ConnectError::FeatureDisabled("postgres"))
    }
}

impl SqlStore {
    fn on(pool: Pool, options: &SqlStoreOptions) -> Self {
        Self {
            pool,
            writes: Arc::new(write::WriteTurns::new(options.busy_timeout)),
            #[cfg(feature = "postgres")]
            listener: std::sync::Arc::default(),
            #[cfg(feature = "sqlite")]
            _checkpoints: None,
        }
    }
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = with_pool!(self, pool => pool.size());
        f.debug_struct("SqlStore").field("backend", &self.backend()).field("connections", &size).finish()
    }
}

/// The database behind a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite (feature `sqlite`).
    Sqlite,
    /// PostgreSQL (feature `postgres`).
    Postgres,
}

impl Backend {
    /// The backend a database URL names by its scheme: `sqlite:`, `postgres:` or
    /// `postgresql:`. `None` for any other.
    pub fn from_url(url: &str) -> Option<Self> {
        let (scheme, _) = url.split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// A short lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`SqlStore::connect_with`] sizes and tunes its connection pool.
///
/// ```
/// use std::time::Duration;
/// use oauth_store_sql::SqlStoreOptions;
///
/// let options = SqlStoreOptions::default().with_max_connections(20).with_acquire_timeout(Duration::from_secs(5));
/// assert_eq!(options.max_connections, 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlStoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle.
    pub min_connections: u32,
    /// How long a query waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for another writer's lock before it fails.
    pub busy_timeout: Duration,
    /// SQLite only: `synchronous=FULL` (an fsync at every commit) instead of `NORMAL`.
    pub sqlite_synchronous_full: bool,
    /// PostgreSQL only: the server cancels any statement that runs longer (`statement_timeout`);
    /// `None` leaves the database's own setting.
    pub statement_timeout: Option<Duration>,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: false,
            statement_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl SqlStoreOptions {
    /// SQLite only: an fsync at every commit (`synchronous=FULL`). Default off: in WAL mode
    /// `NORMAL` never corrupts the database and loses nothing when the process crashes; only a
    /// power loss or an operating-system crash can lose the last commits (a code just issued, a
    /// rotation just made), which clients recover from by signing in again. Turn it on where
    /// that is not acceptable; it costs an fsync per write.
    #[must_use]
    pub fn with_sqlite_synchronous_full(mut self, on: bool) -> Self {
        self.sqlite_synchronous_full = on;
        self
    }

    /// Most connections the pool opens. Default 10. More lets more requests touch the database
    /// at once; PostgreSQL counts each against its own `max_connections` (100 by default)
    /// across every replica. An in-memory SQLite database always uses exactly one.
    #[must_use]
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Connections kept open even when idle. Default 0.
    #[must_use]
    pub fn with_min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long a query waits for a free connection (or for a database that is not answering)
    /// before it fails and the request with it, as `server_error`. Default 5 s: a client
    /// is better served by a prompt error it can retry than by a request hanging on an outage.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// PostgreSQL only: the longest a statement may run before the database cancels it and
    /// the request that sent it fails with `server_error`. Default 30 s, long enough for the
    /// migrations; `None` leaves the database's own `statement_timeout` (none by default).
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// SQLite only: how long a write waits for the database lock held by another writer
    /// before it fails with "database is locked". Default 5 s; SQLite has one writer at a time,
    /// and this is how concurrent writers take turns.
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// Why [`SqlStore::connect`] or [`SqlStore::migrate`] failed. Messages never repeat the URL,
/// which may carry a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL's scheme is not one this crate knows.
    #[error("unsupported database URL scheme `{0}`: use sqlite:… or postgres:…")]
    UnsupportedUrl(String),
    /// The URL names a backend whose feature is not enabled.
    #[error("the database URL needs the `{0}` feature of oauth-store-sql, which is not enabled")]
    FeatureDisabled(&'static str),
    /// The URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] Box<dyn StdError + Send + Sync>),
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] Box<dyn StdError + Send + Sync>),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[source] Box<dyn StdError + Send + Sync>),
}

/// A refused server certificate, with what to do about it.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct CertificateRefused(sqlx::Error);

#[cfg(feature = "postgres")]
impl fmt::Display for CertificateRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the database server's TLS certificate was refused ({}). With sslmode=verify-ca or verify-full, \
             set sslrootcert to the file of the CA that signed it (a managed database's provider publishes \
             its CA bundle); with verify-full, also connect by a host name the certificate names",
            self.0
        )
    }
}

#[cfg(feature = "postgres")]
impl StdError for CertificateRefused {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

/// `e`, explained when it is a refused certificate: rustls says only "invalid peer
/// certificate", which does not tell the operator which setting to change.
#[cfg(feature = "postgres")]
fn tls_hint(e: sqlx::Error) -> Box<dyn StdError + Send + Sync> {
    if e.to_string().to_lowercase().contains("certificate") { Box::new(CertificateRefused(e)) } else { Box::new(e) }
}

/// The scheme of `url`, for an error message: only what precedes the first `:`, and only if it
/// looks like a scheme, so that nothing else of the URL is repeated.
fn scheme_of(url: &str) -> String {
    match url.split_once(':') {
        Some((s, _)) if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') => {
            s.to_owned()
        }
        _ => String::new(),
    }
}

/// Whether a SQLite URL asks for the file to be created when it is missing (`mode=rwc`).
#[cfg(feature = "sqlite")]
fn creates_missing_file(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=rwc"))
}

/// Whether a SQLite URL names an in-memory database.
#[cfg(feature = "sqlite")]
fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_follow_the_url_scheme() {
        assert_eq!(Backend::from_url("sqlite://data/oauth.db?mode=rwc"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@127.0.0.1/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("PostgreSQL://u@127.0.0.1/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://u@127.0.0.1/db"), None);
        assert_eq!(Backend::from_url("oauth.db"), None);
    }

    #[tokio::test]
    async fn unsupported_urls_are_refused_without_repeating_them() {
        let e = SqlStore::connect("mysql://admin:hunter2@db/oauth").await.unwrap_err();
        assert!(matches!(e, ConnectError::UnsupportedUrl(_)));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("mysql"), "{e}");
        let e = SqlStore::connect("admin:hunter2@db").await.unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn options_have_setters() {
        let o = SqlStoreOptions::default()
            .with_max_connections(3)
            .with_min_connections(1)
            .with_acquire_timeout(Duration::from_secs(2))
            .with_busy_timeout(Duration::from_secs(9))
            .with_statement_timeout(None);
        assert_eq!(
            (o.max_connections, o.min_connections, o.acquire_timeout, o.busy_timeout, o.statement_timeout),
            (3, 1, Duration::from_secs(2), Duration::from_secs(9), None)
        );
    }
}
