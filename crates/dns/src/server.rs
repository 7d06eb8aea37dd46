//! The DNS server's I/O: [`Listeners`] (a UDP socket and a TCP listener, either optional),
//! and [`Dns::serve`], which answers on both until shutdown. Every answer comes from
//! [`crate::handler::respond`]; this file only moves bytes.
//!
//! UDP is one task answering datagram by datagram (an answer is a lookup in a handful of
//! records, so there is nothing to wait on). TCP connections come through
//! [`rampart_telemetry::accept::Gate`] and are capped; each must send a
//! whole query within the idle timeout or is closed, and may send several in turn
//! (RFC 7766). On shutdown the listeners close at once and open TCP connections end after
//! the response they are writing, within the idle timeout.
//!
//! `listen.allow_from` is checked before anything else: a datagram from outside it is
//! dropped unanswered, a TCP connection closed right after accept; both are counted
//! ([`Dns::not_allowed`]) and logged at debug level only. [`Dns`] is a
//! [`rampart_telemetry::service::Service`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Limits};
use crate::handler::{respond, Transport};
use crate::zone::Zone;
use rampart_telemetry::accept::{Counter, Counters, Fixed, Gate, Permit, Slots};
use rampart_telemetry::listen::AllowList;

/// The bound sockets of a DNS server; `None` where the config says "off".
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind udp {addr}: {e}")))?;
    Ok(s)
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port). Must be called inside
    /// a tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Self> {
        let udp = config
            .udp
            .map(|a| UdpSocket::from_std(udp_socket(a)?.into()))
            .transpose()?;
        let tcp = config
            .tcp
            .map(|a| rampart_telemetry::listen::tcp(a, 1024))
            .transpose()?;
        Ok(Self { udp, tcp })
    }

    /// The bound UDP and TCP addresses.
    pub fn local_addrs(&self) -> std::io::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        Ok((
            self.udp.as_ref().map(UdpSocket::local_addr).transpose()?,
            self.tcp.as_ref().map(TcpListener::local_addr).transpose()?,
        ))
    }
}

/// An authoritative DNS server for one zone.
pub struct Dns {
    shared: Arc<Shared>,
    limits: Limits,
}

/// What the UDP loop and every TCP connection read.
struct Shared {
    zone: Zone,
    allow_from: AllowList,
    /// Datagrams dropped and TCP connections closed for a source outside `allow_from`
    /// (the TCP gate counts into it too).
    not_allowed: Counter,
}

impl Shared {
    /// Whether `peer` may ask; counts and logs (at debug) a refusal.
    fn permits(&self, peer: SocketAddr, transport: &'static str) -> bool {
        if self.allow_from.permits(peer.ip()) {
            return true;
        }
        self.not_allowed.inc();
        tracing::debug!(%peer, transport, "query from outside the allow-list dropped");
        false
    }
}

impl Dns {
    pub fn new(config: Config) -> Dns {
        Dns {
            shared: Arc::new(Shared {
                zone: Zone::new(&config.zone),
                allow_from: config.allow_from,
                not_allowed: Counter::default(),
            }),
            limits: config.limits,
        }
    }

    /// The records being served.
    pub fn zone(&self) -> &Zone {
        &self.shared.zone
    }

    /// How many UDP datagrams were dropped and TCP connections closed, since start,
    /// because their source is outside `listen.allow_from`.
    pub fn not_allowed(&self) -> u64 {
        self.shared.not_allowed.get()
    }

    /// Answers on `listeners` until `shutdown` resolves, calling `ready` once both are
    /// being served; then stops accepting and lets open TCP connections finish.
    pub async fn serve(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> std::io::Result<()> {
        let (udp_addr, tcp_addr) = listeners.local_addrs()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if let Some(udp) = listeners.udp {
            tasks.spawn(udp_loop(udp, Arc::clone(&self.shared), stop_rx.clone()));
        }
        if let Some(tcp) = listeners.tcp {
            tasks.spawn(tcp_loop(
                tcp,
                Arc::clone(&self.shared),
                self.limits.clone(),
                stop_rx,
            ));
        }
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(
            zone = %self.shared.zone.origin(),
            udp = %show(udp_addr),
            tcp = %show(tcp_addr),
            "dns server ready udp={} tcp={}",
            show(udp_addr),
            show(tcp_addr)
        );
        ready();
        shutdown.await;
        tracing::info!("shutting down: closing listeners, finishing open TCP queries");
        stop_tx.send_replace(true);
        // Each loop drains its own connections within the idle timeout; this bound is
        // the backstop.
        let deadline = self.limits.tcp_idle_timeout + Duration::from_secs(1);
        if tokio::time::timeout(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("drain deadline passed; closing the rest");
        }
        Ok(())
    }
}

rampart_telemetry::service!(
    Dns,
    error = std::convert::Infallible,
    build = |c| Ok(Arc::new(Dns::new(c)))
);

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn udp_loop(socket: UdpSocket, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Queries are small; a datagram that does not fit is cut short and gets FORMERR.
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            () = stopped(&mut stop) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED); none
                    // of them is a reason to stop answering.
                    tracing::debug!(%error, "udp receive failed");
                    continue;
                }
            },
        };
        if !shared.permits(peer, "udp") {
            continue;
        }
        let Some(resp) = respond(&shared.zone, &buf[..n], Transport::Udp) else {
            tracing::debug!(%peer, bytes = n, "udp datagram ignored");
            continue;
        };
        if let Err(error) = socket.send_to(&resp, peer).await {
            tracing::debug!(%peer, %error, "udp send failed");
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let rules = Fixed {
        allow_from: shared.allow_from.clone(),
        max_connections: limits.max_tcp_connections,
    };
    let counters = Counters {
        not_allowed: shared.not_allowed.clone(),
        ..Counters::default()
    };
    let mut gate = Gate::new(listener, "tcp", Slots::new(), counters);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            conn = gate.accept(&rules) => {
                conns.spawn(tcp_conn(
                    conn.stream,
                    conn.peer,
                    Arc::clone(&shared),
                    limits.tcp_idle_timeout,
                    stop.clone(),
                    conn.permit,
                ));
            }
        }
    }
    drop(gate);
    let drained = tokio::time::timeout(limits.tcp_idle_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(open = conns.len(), "closing tcp connections still open");
    }
}

/// Serves queries on one TCP connection (two-byte length prefix, RFC 1035 4.2.2) until
/// the client closes it, stays idle too long, sends something unanswerable, or shutdown.
async fn tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    _permit: Permit,
) {
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let request = tokio::select! {
            () = stopped(&mut stop) => return,
            r = tokio::time::timeout(idle, read) => match r {
                Ok(Ok(buf)) => buf,
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(%peer, "tcp connection idle; closing");
                    return;
                }
            },
        };
        let Some(resp) = respond(&shared.zone, &request, Transport::Tcp) else {
            return;
        };
        // Responses are at most 65535 bytes: `respond` limits TCP answers to that.
        let Ok(len) = u16::try_from(resp.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&resp);
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
