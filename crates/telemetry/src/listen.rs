//! Binding a service's TCP listener: one place for the socket options every rampart
//! listener uses (address reuse for quick restarts, non-blocking for tokio, an explicit
//! backlog) and for an error that names the address, or the listener systemd passed
//! for that address ([`passed`], socket activation). Also the source allow-list every
//! listener checks right after accept ([`AllowList`], `[listen] allow_from` in each
//! service's config): defence in depth beside the firewall policy.
//!
//! Every service's `[listen]` table is validated here, key by key ([`addr`],
//! [`optional_addr`], [`allow_list`]): each service keeps its own key names (lb
//! `https`/`http`/`admin`, web `app`/`admin`, dns `udp`/`tcp`, agent `metrics`, dashboard
//! `addr`, and `allow_from`/`admin_allow_from`), and the values and errors read the same
//! everywhere.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::Checker;

/// The table every service's listener keys live in; errors name `listen.<key>`.
const TABLE: &str = "listen";

/// `[listen] <key>`: a listener's address (`IP:PORT`), `default` when absent. After an
/// error (recorded) the unspecified address stands in: the config is refused anyway.
pub fn addr(c: &mut Checker<'_>, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
    c.addr(&format!("{TABLE}.{key}"), value.unwrap_or(default))
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// `[listen] <key>`: a listener that is on unless set to "off": its address, `default`
/// (which may itself be "off") when absent.
pub fn optional_addr(
    c: &mut Checker<'_>,
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Option<SocketAddr> {
    match value.unwrap_or(default) {
        "off" => None,
        v => c.addr(&format!("{TABLE}.{key}"), v),
    }
}

/// `[listen] <key>`: who may connect (absent: anyone), recording an error named
/// `listen.<key>[i]` for each entry that is not an address or network.
pub fn allow_list(c: &mut Checker<'_>, key: &str, entries: Option<&[String]>) -> AllowList {
    let mut nets = Vec::new();
    for (i, s) in entries.unwrap_or_default().iter().enumerate() {
        match Net::parse(s) {
            Some(n) => nets.push(n),
            None => c.err(
                format!("{TABLE}.{key}[{i}]"),
                format!(
                    "`{s}` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24"
                ),
            ),
        }
    }
    AllowList(nets)
}

/// Binds `addr` and listens with `backlog`. Must be called inside a tokio runtime.
pub fn tcp(addr: SocketAddr, backlog: i32) -> std::io::Result<tokio::net::TcpListener> {
    tcp_with(addr, backlog, false)
}

/// Like [`tcp`], with IP_FREEBIND: `addr` need not be on this host yet (a floating
/// address that keepalived assigns to whichever of two hosts is active).
pub fn tcp_freebind(addr: SocketAddr, backlog: i32) -> std::io::Result<tokio::net::TcpListener> {
    tcp_with(addr, backlog, true)
}

fn tcp_with(
    addr: SocketAddr,
    backlog: i32,
    freebind: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    if freebind {
        s.set_freebind(true)?;
    }
    s.bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind tcp {addr}: {e}")))?;
    s.listen(backlog)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// Listening TCP sockets a service manager passed at start (systemd socket activation:
/// `LISTEN_FDS`, `LISTEN_PID`), by their bound address, read once per process.
struct Passed(Vec<(SocketAddr, std::net::TcpListener)>);

impl Passed {
    fn from_env() -> Result<Self, String> {
        let mut fds = listenfd::ListenFd::from_env();
        let mut out = Vec::new();
        for i in 0..fds.len() {
            let fd = 3 + i;
            let l = match fds.take_tcp_listener(i) {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => return Err(format!("passed socket fd {fd}: {e}")),
            };
            let addr = l
                .local_addr()
                .map_err(|e| format!("passed socket fd {fd}: {e}"))?;
            out.push((addr, l));
        }
        Ok(Self(out))
    }
}

static PASSED: std::sync::OnceLock<std::sync::Mutex<Result<Passed, String>>> =
    std::sync::OnceLock::new();

/// The listener bound to `addr` that the service manager passed (systemd socket
/// activation), if it passed one, ready for tokio; each is taken once. A listener taken
/// from here outlives the process: a restart of the service never closes it, and
/// connections that arrive meanwhile wait in its queue for the next process. Must be
/// called inside a tokio runtime.
pub fn passed(addr: SocketAddr) -> std::io::Result<Option<tokio::net::TcpListener>> {
    let cell = PASSED.get_or_init(|| std::sync::Mutex::new(Passed::from_env()));
    let mut guard = cell
        .lock()
        .map_err(|_| std::io::Error::other("passed sockets: lock poisoned"))?;
    let passed = guard
        .as_mut()
        .map_err(|e| std::io::Error::other(e.clone()))?;
    let Some(i) = passed.0.iter().position(|(a, _)| *a == addr) else {
        return Ok(None);
    };
    let (_, l) = passed.0.swap_remove(i);
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l).map(Some)
}

/// The passed listeners no service took (their addresses), for a warning: a unit that
/// passes an address the config does not name.
pub fn passed_unused() -> Vec<SocketAddr> {
    PASSED
        .get()
        .and_then(|c| {
            c.lock().ok().map(|g| {
                g.as_ref()
                    .map(|p| p.0.iter().map(|(a, _)| *a).collect())
                    .unwrap_or_default()
            })
        })
        .unwrap_or_default()
}

/// An IPv4 or IPv6 network, written `addr` (one address) or `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// Parses `198.18.1.10`, `198.18.1.0/24`, `2001:db8::/32`; `None` for anything else
    /// (a prefix longer than the address included).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Net { addr, prefix })
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// what a dual-stack socket reports for an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The source addresses a listener accepts connections (or datagrams) from. Empty means
/// anyone: the firewall is the first line, this the second.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Net>);

impl AllowList {
    pub fn new(nets: Vec<Net>) -> AllowList {
        AllowList(nets)
    }

    /// Whether a peer at `ip` may connect: the list is empty or a network in it holds
    /// `ip` (IPv4-mapped IPv6 peers match as IPv4, see [`Net::contains`]).
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n.contains(ip))
    }

    /// True when anyone may connect.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn nets(&self) -> &[Net] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An address this host does not have (TEST-NET-1, never routed) binds only with
    /// freebind: what a load balancer of a pair does before keepalived gives it the
    /// floating address. Nothing is sent.
    #[tokio::test]
    async fn freebind_binds_an_address_not_on_this_host() {
        let addr: SocketAddr = "192.0.2.123:0".parse().unwrap();
        let err = tcp(addr, 16).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable, "{err}");
        let l = tcp_freebind(addr, 16).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), addr.ip());
    }

    #[test]
    fn allow_list_networks() {
        let n = Net::parse("198.18.1.0/24").unwrap();
        assert!(n.contains(ip("198.18.1.10")));
        assert!(!n.contains(ip("198.18.2.10")));
        assert!(n.contains(ip("::ffff:198.18.1.7")));
        let h = Net::parse("127.0.0.1").unwrap();
        assert!(h.contains(ip("127.0.0.1")));
        assert!(!h.contains(ip("127.0.0.2")));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let v6 = Net::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!v6.contains(ip("198.18.1.10")));
        assert!(Net::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn parse_forms() {
        for (input, expected) in [
            ("198.18.1.10", Some("198.18.1.10/32")),
            (" 198.18.1.0 / 24 ", Some("198.18.1.0/24")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("198.18.1.0/33", None),
            ("2001:db8::/129", None),
            ("198.18.1.0/", None),
            ("198.18.1.0/-1", None),
            ("198.18.1", None),
            ("localhost", None),
            ("", None),
        ] {
            let got = Net::parse(input).map(|n| n.to_string());
            assert_eq!(got.as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn empty_permits_anyone_else_only_the_listed() {
        let anyone = AllowList::default();
        assert!(anyone.permits(ip("203.0.113.100")));
        assert!(anyone.permits(ip("::1")));
        let some = AllowList::new(vec![
            Net::parse("127.0.0.2").unwrap(),
            Net::parse("198.18.1.0/24").unwrap(),
        ]);
        assert!(some.permits(ip("127.0.0.2")));
        assert!(some.permits(ip("198.18.1.200")));
        assert!(some.permits(ip("::ffff:127.0.0.2")));
        assert!(!some.permits(ip("127.0.0.1")));
        assert!(!some.permits(ip("::1")));
    }

    #[test]
    fn allow_list_names_each_bad_entry() {
        let file = Path::new("/etc/rampart/x.toml");
        let mut c = Checker::new(file);
        let entries = [
            "127.0.0.1".to_owned(),
            "web1".to_owned(),
            "10.0.0.0/8".to_owned(),
        ];
        let list = allow_list(&mut c, "allow_from", Some(&entries));
        assert_eq!(list.nets().len(), 2);
        let errors: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            ["/etc/rampart/x.toml: listen.allow_from[1]: `web1` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24"]
        );
        let mut c = Checker::new(file);
        assert!(allow_list(&mut c, "admin_allow_from", None).is_empty());
        assert!(c.errors.is_empty());
    }

    /// Validates one listener key as (`addr`, or `optional_addr` when `off_allowed`) and
    /// compares the address (or "off") and the errors with `expected`.
    fn check_addr(value: Option<&str>, default: &str, off_allowed: bool, expected: &str) {
        let mut c = Checker::new(Path::new("/etc/rampart/x.toml"));
        let got = if off_allowed {
            optional_addr(&mut c, "admin", value, default).map_or("off".into(), |a| a.to_string())
        } else {
            addr(&mut c, "admin", value, default).to_string()
        };
        let errors: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        let got = std::iter::once(got)
            .chain(errors)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(got, expected, "{value:?} (default {default})");
    }

    #[test]
    fn listener_addresses() {
        let bad = "/etc/rampart/x.toml: listen.admin: `localhost:80` is not an address; expected IP:PORT such as 0.0.0.0:443";
        for (value, default, off_allowed, expected) in [
            (None, "127.0.0.1:9180", false, "127.0.0.1:9180".to_owned()),
            (Some("0.0.0.0:443"), "127.0.0.1:9180", false, "0.0.0.0:443".to_owned()),
            (Some("[::1]:8443"), "127.0.0.1:9180", true, "[::1]:8443".to_owned()),
            (None, "127.0.0.1:9180", true, "127.0.0.1:9180".to_owned()),
            (Some("off"), "127.0.0.1:9180", true, "off".to_owned()),
            (None, "off", true, "off".to_owned()),
            (Some("localhost:80"), "127.0.0.1:9180", false, format!("0.0.0.0:0\n{bad}")),
            (Some("localhost:80"), "127.0.0.1:9180", true, format!("off\n{bad}")),
            // "off" only where a listener may be off.
            (
                Some("off"),
                "127.0.0.1:9180",
                false,
                "0.0.0.0:0\n/etc/rampart/x.toml: listen.admin: `off` is not an address; expected IP:PORT such as 0.0.0.0:443".to_owned(),
            ),
        ] {
            check_addr(value, default, off_allowed, &expected);
        }
    }
}
