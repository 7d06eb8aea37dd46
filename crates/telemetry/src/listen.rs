//! Binding a service's TCP listener: one place for the socket options every rampart
//! listener uses (address reuse for quick restarts, non-blocking for tokio, an explicit
//! backlog) and for an error that names the address.

use std::net::SocketAddr;

/// Binds `addr` and listens with `backlog`. Must be called inside a tokio runtime.
pub fn tcp(addr: SocketAddr, backlog: i32) -> std::io::Result<tokio::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind tcp {addr}: {e}")))?;
    s.listen(backlog)?;
    tokio::net::TcpListener::from_std(s.into())
}
