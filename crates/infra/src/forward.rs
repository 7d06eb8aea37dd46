//! The operator's way into the isolated topology: a TCP forward from a port on
//! 127.0.0.1 in the root namespace to the load balancer, whose outgoing connections start
//! inside the client host's namespace (the way container engines publish ports).
//!
//! The process binds its listener first, then moves into the client namespace
//! ([`crate::netns::enter`]) before its runtime starts, so the listener stays on the root
//! namespace's loopback while every connection to the topology leaves from the client
//! host, through the client's firewall, as a user's would. Nothing is sent from the root
//! namespace to a topology address.
//!
//! Limits: at most [`Limits::max_connections`] at once (more are closed at accept by
//! [`rampart_telemetry::accept::Gate`], which also backs off when accept fails), a
//! connect timeout, and an idle timeout over both directions together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The forward's limits; the defaults suit an operator's browser and curl.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Accepts on `listener` and pipes each connection to `to` until `shutdown` resolves;
/// open connections are then dropped (they are an operator's, not a service's).
pub async fn serve(
    listener: TcpListener,
    to: SocketAddr,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Anyone on the loopback it is bound to: the operator's own machine.
    let rules = Fixed {
        max_connections: limits.max_connections,
        ..Fixed::default()
    };
    let mut gate = Gate::new(listener, "forward", Slots::new(), Counters::default());
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => return,
            conn = gate.accept(&rules) => conn,
        };
        tokio::spawn(async move {
            let _slot = conn.permit;
            match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(to)).await {
                Ok(Ok(upstream)) => pipe(conn.stream, upstream, limits.idle_timeout).await,
                Ok(Err(error)) => tracing::warn!(%to, %error, "forward connect failed"),
                Err(_) => tracing::warn!(%to, "forward connect timed out"),
            }
        });
    }
}

/// Copies both ways until both sides finish or nothing moves for `idle`.
async fn pipe(client: TcpStream, upstream: TcpStream, idle: Duration) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let both = async { tokio::join!(copy(cr, uw, start, &last), copy(ur, cw, start, &last)) };
    let watchdog = async {
        loop {
            tokio::time::sleep(idle / 4).await;
            let quiet = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
            if quiet > idle.as_millis() as u64 {
                return;
            }
        }
    };
    tokio::select! {
        _ = both => {}
        () = watchdog => {}
    }
}

async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    start: Instant,
    last: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Both directions arrive whole, and a half-close on one side reaches the other.
    #[tokio::test]
    async fn pipes_both_ways_and_passes_half_close() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got.reverse();
            s.write_all(&got).await.unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(front, to, Limits::default(), async {
            let _ = stopped.await;
        }));
        let mut c = TcpStream::connect(addr).await.unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&payload).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        let mut expected = payload;
        expected.reverse();
        assert!(back == expected, "{} bytes back", back.len());
        let _ = stop.send(());
        server.await.unwrap();
    }

    /// A connection over the limit is closed at once, without reaching the target.
    #[tokio::test]
    async fn connections_over_the_limit_are_closed() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = target.local_addr().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        tokio::spawn(serve(front, to, limits, std::future::pending()));
        let _first = TcpStream::connect(addr).await.unwrap();
        let (_held, _) = target.accept().await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the second connection should be closed");
    }
}
