//! A small pool of MariaDB connections, used instead of sqlx's `Pool`: sqlx 0.8 pings
//! every connection when it goes back to its pool (from a spawned task), which made every
//! request two database round trips and an extra task wake-up. Here a connection goes
//! back only when the caller says its exchange completed ([`Conn::reusable`]); one that
//! was dropped mid-exchange (an error, a timeout, a cancelled request, an open
//! transaction) is closed instead, so no half-read result or pending rollback reaches the
//! next request. A connection idle for over a second is pinged before reuse, one idle for
//! over five minutes is closed.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

const PING_AFTER: Duration = Duration::from_secs(1);
const IDLE_LIFETIME: Duration = Duration::from_secs(300);
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// A bounded pool of connections to one server.
pub struct Pool {
    options: MySqlConnectOptions,
    idle: Mutex<Vec<(MySqlConnection, Instant)>>,
    permits: Semaphore,
    open: AtomicUsize,
    closed: AtomicBool,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A connection checked out of a [`Pool`]; goes back on drop only if marked reusable.
pub struct Conn<'a> {
    conn: Option<MySqlConnection>,
    pool: &'a Pool,
    reusable: bool,
    permit: Option<SemaphorePermit<'a>>,
}

impl<'a> Conn<'a> {
    /// The exchange completed: the connection may serve the next request.
    pub fn reusable(&mut self) {
        self.reusable = true;
    }

    /// Closes the connection (not reusable) and keeps the checkout's slot.
    fn discard(mut self) -> SemaphorePermit<'a> {
        if self.conn.take().is_some() {
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
        }
        // `permit` is always present until here; the Drop below then has nothing to do.
        #[allow(clippy::expect_used)]
        self.permit.take().expect("permit present until discard")
    }
}

impl Deref for Conn<'_> {
    type Target = MySqlConnection;
    fn deref(&self) -> &MySqlConnection {
        // Present from checkout until drop (the only place that takes it).
        #[allow(clippy::expect_used)]
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut MySqlConnection {
        #[allow(clippy::expect_used)]
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.reusable {
            if let Ok(mut idle) = self.pool.idle.lock() {
                // Checked under the lock `close` drains with, so nothing is left behind.
                if !self.pool.closed.load(Ordering::Relaxed) {
                    idle.push((conn, Instant::now()));
                    return;
                }
            }
        }
        // Dropping closes the socket; the server ends the session.
        drop(conn);
        self.pool.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool of at most `size` connections made with `options`; nothing connects yet.
    pub fn new(options: MySqlConnectOptions, size: u32, acquire_timeout: Duration) -> Pool {
        Pool {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size as usize),
            open: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            acquire_timeout,
        }
    }

    /// Checks out a connection: the most recently used idle one, or a new one. Waits at
    /// most the acquire timeout for a free slot and for connecting.
    pub async fn acquire(&self) -> Result<Conn<'_>, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let mut permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if self.closed.load(Ordering::Relaxed) {
            return Err(sqlx::Error::PoolClosed);
        }
        loop {
            let next = self.idle.lock().ok().and_then(|mut v| v.pop());
            let Some((conn, since)) = next else { break };
            // Owned by a checkout from here on, so a cancelled ping still gives back its
            // count when dropped.
            let mut checked = self.conn(conn, permit);
            let idle_for = since.elapsed();
            let alive = if idle_for > IDLE_LIFETIME {
                false
            } else if idle_for > PING_AFTER {
                // Its own short deadline: one dead connection must not use up the
                // caller's whole wait and fail every ping after it.
                tokio::time::timeout(PING_TIMEOUT, checked.ping())
                    .await
                    .is_ok_and(|r| r.is_ok())
            } else {
                true
            };
            if alive {
                return Ok(checked);
            }
            permit = checked.discard();
        }
        let conn = tokio::time::timeout_at(deadline, self.options.connect())
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })??;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(self.conn(conn, permit))
    }

    fn conn<'a>(&'a self, conn: MySqlConnection, permit: SemaphorePermit<'a>) -> Conn<'a> {
        Conn {
            conn: Some(conn),
            pool: self,
            reusable: false,
            permit: Some(permit),
        }
    }

    /// Open connections (in use and idle).
    pub fn size(&self) -> u32 {
        u32::try_from(self.open.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    /// Idle connections.
    pub fn num_idle(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    /// Closes idle connections and refuses new checkouts; connections in use close when
    /// they come back.
    pub async fn close(&self) {
        self.permits.close();
        let idle: Vec<_> = self
            .idle
            .lock()
            .map(|mut v| {
                self.closed.store(true, Ordering::Relaxed);
                v.drain(..).collect()
            })
            .unwrap_or_default();
        for (conn, _) in idle {
            let _ = conn.close().await;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
