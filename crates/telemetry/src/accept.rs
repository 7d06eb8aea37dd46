//! The accept gate every rampart TCP listener goes through ([`Gate`]): it owns the
//! listener, closes a connection from outside the allow-list right after accept, holds
//! the connection cap (a [`Permit`] per admitted connection, released when it drops),
//! backs off when accept fails for want of descriptors or memory instead of spinning, and
//! counts what it did ([`Counters`]) so each service exports the numbers under its own
//! metric names.
//!
//! Accept errors come in two kinds. Network errors of one pending connection (Linux's
//! accept passes them on: ECONNABORTED, EPROTO, EPERM from a firewall, ...) concern only
//! that connection, so the gate retries at once. Everything else, above all EMFILE,
//! ENFILE, ENOBUFS and ENOMEM, would fail again right away: the gate waits, doubling
//! the wait from [`BACKOFF_MIN`] up to [`BACKOFF_MAX`] while the failures last, and logs
//! a warning at most once per [`WARN_EVERY`] (with how many it kept quiet).
//!
//! The rules (allow-list and cap) are read after each accept, so a service that reloads
//! them (the load balancer) applies the new ones to the next connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::listen::AllowList;

/// The counter type of [`Counters`]: a prometheus-client counter, so a service can hand
/// the gate the very counters its registry exports.
pub type Counter = prometheus_client::metrics::counter::Counter;

/// The first wait after an accept error that is not one connection's own.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait between accepts while such errors last.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// At most one warning per listener this often while accept keeps failing.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where a gate takes connections from: a [`TcpListener`], or in tests a source that
/// fails on demand.
pub trait Accept: Send {
    type Stream: Send;
    /// The next connection and its peer (cancel-safe, as [`TcpListener::accept`] is).
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// What a gate checks each accepted connection against.
pub trait Rules {
    /// The sources allowed to connect.
    fn allow_from(&self) -> &AllowList;
    /// How many connections may be open at once under the gate's [`Slots`].
    fn max_connections(&self) -> usize;
}

impl<R: Rules + ?Sized> Rules for &R {
    fn allow_from(&self) -> &AllowList {
        (**self).allow_from()
    }
    fn max_connections(&self) -> usize {
        (**self).max_connections()
    }
}

impl<R: Rules + ?Sized> Rules for Arc<R> {
    fn allow_from(&self) -> &AllowList {
        (**self).allow_from()
    }
    fn max_connections(&self) -> usize {
        (**self).max_connections()
    }
}

/// Rules that stay as configured for the life of the listener.
#[derive(Clone, Debug, Default)]
pub struct Fixed {
    pub allow_from: AllowList,
    pub max_connections: usize,
}

impl Rules for Fixed {
    fn allow_from(&self) -> &AllowList {
        &self.allow_from
    }
    fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// What a gate counts. Each is a shared counter: clones count together, so a service
/// passes in the counters its metrics export (or fresh ones it reads itself).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Connections accept returned, including those then closed.
    pub accepted: Counter,
    /// Connections closed at once because the source is outside the allow-list.
    pub not_allowed: Counter,
    /// Connections closed at once because `max_connections` were open.
    pub over_cap: Counter,
    /// Failed accept calls.
    pub errors: Counter,
}

/// The open-connection count a cap applies to, shared by the gates (and listeners) that
/// share one cap; it also tells a draining service when the last connection ended.
#[derive(Clone, Debug, Default)]
pub struct Slots(Arc<SlotsInner>);

#[derive(Debug, Default)]
struct SlotsInner {
    open: AtomicUsize,
    idle: Notify,
}

impl Slots {
    pub fn new() -> Slots {
        Slots::default()
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// A permit when fewer than `max` are open.
    pub fn try_take(&self, max: usize) -> Option<Permit> {
        if self.0.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.release();
            return None;
        }
        Some(Permit(self.clone()))
    }

    /// Resolves once no permit is held (at once if none is).
    pub async fn idle(&self) {
        loop {
            // Created before the check, so a release in between still wakes it.
            let released = self.0.idle.notified();
            if self.open() == 0 {
                return;
            }
            released.await;
        }
    }

    fn release(&self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One admitted connection's place under the cap; dropping it frees the place.
#[derive(Debug)]
pub struct Permit(Slots);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A connection the gate let through.
#[derive(Debug)]
pub struct Admitted<T = TcpStream> {
    pub stream: T,
    pub peer: SocketAddr,
    /// Hold it for as long as the connection is served.
    pub permit: Permit,
}

/// A listener behind the allow-list, the cap and the back-off. See the module doc.
pub struct Gate<S = TcpListener> {
    source: S,
    listener: &'static str,
    slots: Slots,
    counters: Counters,
    wait: Option<Duration>,
    last_warning: Option<Instant>,
    quiet: u64,
}

impl<S> std::fmt::Debug for Gate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("listener", &self.listener)
            .field("open", &self.slots.open())
            .finish_non_exhaustive()
    }
}

impl<S: Accept> Gate<S> {
    /// A gate over `source`; `listener` names it in logs; connections it admits take
    /// their permits from `slots`; what it does is counted in `counters`.
    pub fn new(source: S, listener: &'static str, slots: Slots, counters: Counters) -> Gate<S> {
        Gate {
            source,
            listener,
            slots,
            counters,
            wait: None,
            last_warning: None,
            quiet: 0,
        }
    }

    /// The gate's counters (clones of the ones it was given).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The accept source, e.g. for its local address.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The next connection that passes `rules`. Cancel-safe.
    pub async fn accept(&mut self, rules: &impl Rules) -> Admitted<S::Stream> {
        self.accept_with(|| rules).await.0
    }

    /// The next connection that passes the rules `current` returns, read afresh after
    /// each accept; they are returned with the connection. Cancel-safe.
    pub async fn accept_with<R: Rules>(
        &mut self,
        mut current: impl FnMut() -> R,
    ) -> (Admitted<S::Stream>, R) {
        loop {
            let (stream, peer) = match self.source.accept().await {
                Ok(accepted) => {
                    self.wait = None;
                    accepted
                }
                Err(error) => {
                    self.counters.errors.inc();
                    self.failed(&error).await;
                    continue;
                }
            };
            self.counters.accepted.inc();
            let rules = current();
            if !rules.allow_from().permits(peer.ip()) {
                self.counters.not_allowed.inc();
                tracing::debug!(%peer, listener = self.listener, "connection from outside the allow-list closed");
                continue;
            }
            let max = rules.max_connections();
            let Some(permit) = self.slots.try_take(max) else {
                self.counters.over_cap.inc();
                tracing::debug!(%peer, listener = self.listener, max, "connection cap reached; connection closed");
                continue;
            };
            return (
                Admitted {
                    stream,
                    peer,
                    permit,
                },
                rules,
            );
        }
    }

    /// After a failed accept: nothing for one connection's own error, else the back-off.
    async fn failed(&mut self, error: &io::Error) {
        if one_connections_error(error) {
            tracing::debug!(listener = self.listener, %error, "accept failed for one connection");
            return;
        }
        let wait = self.wait.map_or(BACKOFF_MIN, |w| (w * 2).min(BACKOFF_MAX));
        self.wait = Some(wait);
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(listener = self.listener, %error, retry_in = ?wait,
                quieted = self.quiet, "accept failed; backing off");
            self.last_warning = Some(now);
            self.quiet = 0;
        } else {
            self.quiet += 1;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Whether accept failed for the pending connection alone (Linux's accept(2) passes on
/// its network errors), so the next accept may well succeed.
fn one_connections_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENONET
                | libc::EOPNOTSUPP
                | libc::ETIMEDOUT
        )
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::listen::Net;

    fn fixed(allow: &[&str], max: usize) -> Fixed {
        Fixed {
            allow_from: AllowList::new(allow.iter().map(|s| Net::parse(s).unwrap()).collect()),
            max_connections: max,
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    /// A client connection from source address `from`.
    async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Whether the server side closed `s` without sending anything.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn closes_sources_outside_the_allow_list_and_counts_them() {
        let (l, addr) = listener().await;
        let mut gate = Gate::new(l, "test", Slots::new(), Counters::default());
        let rules = fixed(&["127.0.0.2"], 10);
        let mut refused = connect_from("127.0.0.1", addr).await;
        let _allowed = connect_from("127.0.0.2", addr).await;
        let admitted = gate.accept(&rules).await;
        assert_eq!(admitted.peer.ip().to_string(), "127.0.0.2");
        assert!(closed(&mut refused).await, "refused connection left open");
        let c = gate.counters();
        assert_eq!(
            (c.accepted.get(), c.not_allowed.get(), c.over_cap.get()),
            (2, 1, 0)
        );
    }

    #[tokio::test]
    async fn holds_the_cap_until_a_permit_drops() {
        let (l, addr) = listener().await;
        let slots = Slots::new();
        let mut gate = Gate::new(l, "test", slots.clone(), Counters::default());
        let rules = fixed(&[], 1);
        let _first = connect_from("127.0.0.1", addr).await;
        let first = gate.accept(&rules).await;
        assert_eq!(slots.open(), 1);

        let mut second = connect_from("127.0.0.1", addr).await;
        let accepting = tokio::spawn(async move {
            let third = gate.accept(&rules).await;
            (gate, third)
        });
        assert!(
            closed(&mut second).await,
            "connection over the cap left open"
        );
        drop(first.permit);
        let _third = connect_from("127.0.0.1", addr).await;
        let (gate, third) = accepting.await.unwrap();
        assert_eq!(slots.open(), 1);
        let c = gate.counters();
        assert_eq!(
            (c.accepted.get(), c.not_allowed.get(), c.over_cap.get()),
            (3, 0, 1)
        );
        drop(third);
        slots.idle().await;
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test]
    async fn rules_are_read_after_each_accept() {
        let (l, addr) = listener().await;
        let mut gate = Gate::new(l, "test", Slots::new(), Counters::default());
        let current = Arc::new(Mutex::new(Arc::new(fixed(&["127.0.0.9"], 10))));
        let mut refused = connect_from("127.0.0.1", addr).await;
        assert!(
            tokio::time::timeout(
                Duration::from_secs(1),
                gate.accept_with(|| Arc::clone(&current.lock().unwrap()))
            )
            .await
            .is_err(),
            "a connection outside the allow-list got through"
        );
        assert!(closed(&mut refused).await);
        *current.lock().unwrap() = Arc::new(fixed(&["127.0.0.1"], 10));
        let _c = connect_from("127.0.0.1", addr).await;
        let (admitted, rules) = gate
            .accept_with(|| Arc::clone(&current.lock().unwrap()))
            .await;
        assert_eq!(admitted.peer.ip().to_string(), "127.0.0.1");
        assert_eq!(rules.allow_from().nets().len(), 1);
    }

    /// An accept source that fails with `errno` on every call, recording each call.
    /// After `give_up` calls it never answers, so a gate that spins ends rather than
    /// hanging the test.
    struct Failing {
        errno: i32,
        calls: AtomicU64,
        give_up: u64,
        then_admit: bool,
    }

    impl Accept for Failing {
        type Stream = ();

        async fn accept(&self) -> io::Result<((), SocketAddr)> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::task::yield_now().await;
            if n > self.give_up {
                if self.then_admit {
                    return Ok(((), "127.0.0.1:1".parse().unwrap()));
                }
                std::future::pending::<()>().await;
            }
            Err(io::Error::from_raw_os_error(self.errno))
        }
    }

    fn failing(errno: i32, give_up: u64, then_admit: bool) -> Gate<Failing> {
        let source = Failing {
            errno,
            calls: AtomicU64::new(0),
            give_up,
            then_admit,
        };
        Gate::new(source, "test", Slots::new(), Counters::default())
    }

    /// The regression: the agent's accept loop did `Err(_) => continue`, so out of
    /// descriptors it called accept again at once, forever, at full CPU. Over ten
    /// (paused, virtual) seconds of EMFILE the gate must try only as often as its
    /// back-off allows; a spinning loop reaches the source's 10,000-call limit.
    #[tokio::test(start_paused = true)]
    async fn agent_spinning_on_emfile_now_backs_off() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let mut gate = failing(errno, 10_000, false);
            let waited =
                tokio::time::timeout(Duration::from_secs(10), gate.accept(&Fixed::default())).await;
            assert!(waited.is_err(), "nothing was admitted");
            let calls = gate.source().calls.load(Ordering::Relaxed);
            // Tries at 0, 10, 30, 70, 150 and 310 ms, then every 500 ms: 25 in all.
            assert!(calls <= 30, "errno {errno}: {calls} accept calls in 10 s");
            assert!(
                calls >= 20,
                "errno {errno}: only {calls} accept calls in 10 s"
            );
            assert_eq!(gate.counters().errors.get(), calls);
            // One warning at the start, the rest kept quiet until WARN_EVERY passes.
            assert!(
                gate.quiet + 2 >= calls,
                "errno {errno}: {} warnings",
                calls - gate.quiet
            );
        }
    }

    /// One connection's own error (the peer gave up while queued) is not waited on.
    #[tokio::test(start_paused = true)]
    async fn one_connections_error_is_retried_at_once() {
        let mut gate = failing(libc::ECONNABORTED, 100, true);
        let rules = Fixed {
            max_connections: 1,
            ..Fixed::default()
        };
        let start = Instant::now();
        let _admitted = gate.accept(&rules).await;
        assert_eq!(Instant::now(), start, "the gate waited");
        assert_eq!(gate.counters().errors.get(), 100);
    }

    /// After the descriptors come back the gate admits again, and the next failure
    /// starts the back-off from its minimum.
    #[tokio::test(start_paused = true)]
    async fn recovers_and_resets_the_back_off() {
        let mut gate = failing(libc::EMFILE, 5, true);
        let rules = Fixed {
            max_connections: 1,
            ..Fixed::default()
        };
        let start = Instant::now();
        let admitted = gate.accept(&rules).await;
        assert_eq!(admitted.peer.port(), 1);
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(10 + 20 + 40 + 80 + 160)
        );
        assert_eq!(gate.wait, None);
    }
}
