//! The firewall's drop log as structured events: the packets the rulesets' `log prefix
//! "rampart {host} drop {chain}: " group 1` statements hand to nfnetlink_log, read from a
//! netlink socket and parsed by hand into [`DropEvent`]s.
//!
//! **Reading.** [`Nflog::open`] opens a `NETLINK_NETFILTER` socket in the network namespace
//! of the calling thread (the socket stays there when the thread moves on), binds the log
//! group with one `NFULNL_MSG_CONFIG` request (`NFULNL_CFG_CMD_BIND`, copy mode
//! `NFULNL_COPY_PACKET` with [`COPY_RANGE`] bytes, a queue threshold of one so every packet
//! is sent at once) and waits for the kernel's acknowledgement. [`Nflog::next`] then waits
//! on the nonblocking socket through tokio's `AsyncFd` and returns the events of the next
//! datagram that holds any. The group is released when the [`Nflog`] is dropped (the
//! kernel drops the instance with the socket).
//!
//! **Parsing** never panics on input. A message whose prefix is not rampart's is ignored
//! and counted as `foreign`; a message without a payload, a payload that is not an IPv4 or
//! IPv6 packet with a complete transport header where one is needed, and broken netlink
//! framing are counted as `malformed`; a receive buffer overrun (`ENOBUFS`, the kernel
//! dropped messages) is counted as an `overrun` and reading goes on ([`NflogStats`]).
//!
//! Invariant: this module only reads; the caller decides what to do with the events (ship
//! them as [`DropEvent::json_line`]s, count them).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use tokio::io::unix::AsyncFd;

/// How many bytes of each logged packet the kernel copies: enough for an IPv4 or IPv6
/// header (with a few extension headers) and the start of the TCP/UDP header.
pub const COPY_RANGE: u32 = 128;

/// What every rampart drop-log prefix starts with (`nft.rs`'s `drop_tail`).
const PREFIX_START: &str = "rampart ";

// Netlink framing (linux/netlink.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_HDRLEN: usize = 4;
/// `NLA_TYPE_MASK`: the type without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;

// nfnetlink (linux/netfilter/nfnetlink.h): `struct nfgenmsg` is 4 bytes.
const NFGENMSG_LEN: usize = 4;
const NFNETLINK_V0: u8 = 0;
const NFNL_SUBSYS_ULOG: u16 = 4;

// nfnetlink_log (linux/netfilter/nfnetlink_log.h).
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

/// The sequence number of the bind request, matched against the kernel's answer.
const BIND_SEQ: u32 = 1;
/// How long [`Nflog::open`] waits for the kernel to acknowledge the bind (it answers
/// while handling the request, so this is only a bound).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// One datagram of the kernel holds at most its buffer size (a page by default); this is
/// ample, and a longer one is counted as malformed rather than read in part.
const RECV_BUFFER: usize = 64 * 1024;
/// The socket's receive buffer: room for bursts before the kernel reports an overrun.
const SOCKET_RCVBUF: usize = 1 << 20;
/// At most this many IPv6 extension headers are walked before the transport header.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// One packet a rampart ruleset dropped and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// The host whose firewall dropped it, from the log prefix.
    pub host: String,
    /// The chain that dropped it (`input`, `forward`, `output`), from the log prefix.
    pub chain: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or the IP protocol number in decimal.
    pub proto: String,
    /// Ports for TCP and UDP; `None` for other protocols and for non-first fragments.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// The JSON shape of [`DropEvent::json_line`], in its key order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    event: &'static str,
    chain: &'a str,
    proto: &'a str,
    src: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_host: Option<&'a str>,
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
}

impl DropEvent {
    /// The event as one JSON object without a trailing newline, e.g.
    /// `{"event":"drop","chain":"input","proto":"tcp","src":"203.0.113.100","src_host":"client","dst":"198.18.0.11","dst_host":"web1","sport":40000,"dport":8443}`.
    /// `src_host`/`dst_host` appear when `names` knows the address, the ports when the
    /// event has them. The host that dropped the packet is not in the line: the shipper
    /// labels the stream with it.
    pub fn json_line(&self, names: &HashMap<IpAddr, String>) -> String {
        let line = JsonLine {
            event: "drop",
            chain: &self.chain,
            proto: &self.proto,
            src: self.src.to_string(),
            src_host: names.get(&self.src).map(String::as_str),
            dst: self.dst.to_string(),
            dst_host: names.get(&self.dst).map(String::as_str),
            sport: self.sport,
            dport: self.dport,
        };
        // Serializing a struct of strings and integers into a string cannot fail: serde_json
        // errors only on non-string map keys and on failing custom serializers.
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// What [`Nflog`] has counted since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NflogStats {
    /// Events returned (and still pending).
    pub events: u64,
    /// Logged packets whose prefix is not rampart's: ignored.
    pub foreign: u64,
    /// Messages or payloads that could not be parsed: skipped.
    pub malformed: u64,
    /// Receive buffer overruns (`ENOBUFS`): the kernel dropped an unknown number of
    /// messages.
    pub overruns: u64,
}

/// Why the log could not be opened or read. Opening fails on a missing capability, a
/// kernel without nfnetlink_log and a group another socket holds; reading only on
/// unexpected socket errors.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error(
        "nflog group {group}: permission denied: reading the firewall log needs CAP_NET_ADMIN \
         (run as root, or set AmbientCapabilities=CAP_NET_ADMIN in the unit)"
    )]
    NeedsCapability { group: u16 },
    #[error(
        "nflog group {group} is already bound by another socket in this network namespace \
         (another agent, or ulogd?)"
    )]
    GroupBusy { group: u16 },
    #[error(
        "nflog group {group}: the kernel has no nfnetlink_log (load the kernel module: \
         modprobe nfnetlink_log): {source}"
    )]
    NoKernelSupport { group: u16, source: io::Error },
    #[error("nflog group {group}: the kernel did not acknowledge the bind within {ACK_TIMEOUT:?}")]
    NoAck { group: u16 },
    #[error("nflog group {group}: no tokio runtime with I/O enabled to wait on the socket")]
    NoRuntime { group: u16 },
    #[error("nflog group {group}: {op}: {source}")]
    Io {
        group: u16,
        op: &'static str,
        source: io::Error,
    },
}

/// A reader of one nfnetlink_log group in the network namespace it was opened in.
pub struct Nflog {
    fd: AsyncFd<OwnedFd>,
    group: u16,
    buf: Vec<u8>,
    /// Events that arrived with the bind's acknowledgement, returned by the next `next`.
    pending: Vec<DropEvent>,
    stats: NflogStats,
}

impl Nflog {
    /// Opens the socket in the calling thread's network namespace and binds `group`. Must
    /// run inside a tokio runtime with I/O enabled. Blocks for the kernel's
    /// acknowledgement (immediate in practice, at most [`ACK_TIMEOUT`]).
    pub fn open(group: u16) -> Result<Self, NflogError> {
        let io_err = |op: &'static str| {
            move |e: rustix::io::Errno| NflogError::Io {
                group,
                op,
                source: e.into(),
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NflogError::NoRuntime { group });
        }
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::NETFILTER),
        )
        .map_err(|e| match e {
            rustix::io::Errno::PROTONOSUPPORT | rustix::io::Errno::AFNOSUPPORT => {
                NflogError::NoKernelSupport {
                    group,
                    source: e.into(),
                }
            }
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                NflogError::NeedsCapability { group }
            }
            e => io_err("socket")(e),
        })?;
        let kernel = SocketAddrNetlink::new(0, 0);
        rustix::net::bind(&fd, &kernel).map_err(io_err("bind"))?;
        // A larger buffer only delays overruns; the default works too, so a refusal is fine.
        let _ = sockopt::set_socket_recv_buffer_size(&fd, SOCKET_RCVBUF);
        sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(ACK_TIMEOUT))
            .map_err(io_err("setsockopt SO_RCVTIMEO"))?;

        let request = config_request(group, BIND_SEQ, COPY_RANGE);
        rustix::net::sendto(&fd, &request, SendFlags::empty(), &kernel).map_err(|e| match e {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                NflogError::NeedsCapability { group }
            }
            e => io_err("send bind request")(e),
        })?;

        let mut buf = vec![0u8; RECV_BUFFER];
        let mut stats = NflogStats::default();
        let mut pending = Vec::new();
        let deadline = Instant::now() + ACK_TIMEOUT;
        let ack = loop {
            if Instant::now() >= deadline {
                return Err(NflogError::NoAck { group });
            }
            let received = match rustix::net::recv(&fd, &mut buf[..], RecvFlags::TRUNC) {
                Ok((_, len)) => len,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::NOBUFS) => {
                    stats.overruns += 1;
                    continue;
                }
                Err(e) => return Err(io_err("receive bind acknowledgement")(e)),
            };
            let datagram = parse_datagram(buf.get(..received.min(RECV_BUFFER)).unwrap_or(&[]));
            let datagram_ack = datagram.acks.iter().find(|a| a.seq == BIND_SEQ).copied();
            stats.add(&datagram, received > RECV_BUFFER);
            pending.extend(datagram.events);
            if let Some(ack) = datagram_ack {
                break ack;
            }
        };
        if ack.errno != 0 {
            return Err(bind_error(group, ack.errno));
        }
        rustix::io::ioctl_fionbio(&fd, true).map_err(io_err("set nonblocking"))?;
        // `AsyncFd::new` is deprecated for `register`, which is `unsafe` (forbidden here)
        // because a borrowed descriptor could be closed while registered. Its contract
        // holds: the `AsyncFd` owns this `OwnedFd`, nothing else closes or replaces it, and
        // it is deregistered before it is closed (on drop).
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd).map_err(|source| NflogError::Io {
            group,
            op: "register with the runtime",
            source,
        })?;
        Ok(Nflog {
            fd,
            group,
            buf,
            pending,
            stats,
        })
    }

    /// The group this reader is bound to.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// What has been counted so far.
    pub fn stats(&self) -> NflogStats {
        self.stats
    }

    /// Waits for the next datagram that holds at least one rampart drop event and returns
    /// its events (one datagram may carry several packets). Foreign, malformed and overrun
    /// messages are counted on the way. Cancel-safe: a datagram is received and parsed
    /// without awaiting, so dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Vec<DropEvent>, NflogError> {
        if !self.pending.is_empty() {
            return Ok(std::mem::take(&mut self.pending));
        }
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| NflogError::Io {
                group: self.group,
                op: "wait for readiness",
                source,
            })?;
            let buf = &mut self.buf;
            let received = guard.try_io(|fd| {
                rustix::net::recv(fd.get_ref(), &mut buf[..], RecvFlags::TRUNC)
                    .map(|(_, len)| len)
                    .map_err(io::Error::from)
            });
            let received = match received {
                Err(_would_block) => continue,
                Ok(Ok(len)) => len,
                Ok(Err(e))
                    if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) =>
                {
                    self.stats.overruns += 1;
                    continue;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(source)) => {
                    return Err(NflogError::Io {
                        group: self.group,
                        op: "receive",
                        source,
                    })
                }
            };
            let datagram = parse_datagram(self.buf.get(..received.min(RECV_BUFFER)).unwrap_or(&[]));
            self.stats.add(&datagram, received > RECV_BUFFER);
            if !datagram.events.is_empty() {
                return Ok(datagram.events);
            }
        }
    }
}

impl NflogStats {
    fn add(&mut self, datagram: &Datagram, truncated: bool) {
        self.events += datagram.events.len() as u64;
        self.foreign += datagram.foreign;
        self.malformed += datagram.malformed + u64::from(truncated);
        self.overruns += datagram.overruns;
    }
}

/// The error for a negative acknowledgement of the bind request.
fn bind_error(group: u16, errno: i32) -> NflogError {
    let source = io::Error::from_raw_os_error(errno);
    match rustix::io::Errno::from_raw_os_error(errno) {
        // nfnetlink answers EPERM both to a sender without CAP_NET_ADMIN and to a bind of
        // a group another socket holds; the capability tells them apart.
        rustix::io::Errno::PERM => {
            let has_net_admin = rustix::thread::capabilities(None)
                .map(|c| {
                    c.effective
                        .contains(rustix::thread::CapabilitySet::NET_ADMIN)
                })
                .unwrap_or(false);
            if has_net_admin {
                NflogError::GroupBusy { group }
            } else {
                NflogError::NeedsCapability { group }
            }
        }
        rustix::io::Errno::BUSY => NflogError::GroupBusy { group },
        // Without the nfnetlink_log subsystem nfnetlink answers EINVAL (after trying to
        // load the module); the others are what older kernels and stubs say.
        rustix::io::Errno::INVAL
        | rustix::io::Errno::NOENT
        | rustix::io::Errno::OPNOTSUPP
        | rustix::io::Errno::PROTONOSUPPORT => NflogError::NoKernelSupport { group, source },
        _ => NflogError::Io {
            group,
            op: "bind",
            source,
        },
    }
}

/// The `NFULNL_MSG_CONFIG` request that binds `group` with packet copies of `copy_range`
/// bytes and a queue threshold of one packet.
fn config_request(group: u16, seq: u32, copy_range: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(40);
    // struct nfgenmsg: family (AF_UNSPEC: a plain bind), version, res_id = group (big endian).
    body.extend_from_slice(&[0, NFNETLINK_V0]);
    body.extend_from_slice(&group.to_be_bytes());
    // struct nfulnl_msg_config_cmd { __u8 command; }
    put_attr(&mut body, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    // struct nfulnl_msg_config_mode { __be32 copy_range; __u8 copy_mode; __u8 _pad; }
    let mut mode = copy_range.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    put_attr(&mut body, NFULA_CFG_MODE, &mode);
    put_attr(&mut body, NFULA_CFG_QTHRESH, &1u32.to_be_bytes());

    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    let len = u32::try_from(NLMSG_HDRLEN + body.len()).unwrap_or(u32::MAX);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&body);
    msg
}

/// Appends one netlink attribute (header, value, padding to 4 bytes).
fn put_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(NLA_HDRLEN + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A netlink acknowledgement: the request's sequence number and its errno (0: success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub seq: u32,
    pub errno: i32,
}

/// What one datagram from the socket held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    pub events: Vec<DropEvent>,
    pub acks: Vec<Ack>,
    pub foreign: u64,
    pub malformed: u64,
    pub overruns: u64,
}

/// Parses one datagram of netlink messages (as `recv` returned it). Never panics; what
/// it cannot parse is counted in [`Datagram::malformed`].
pub fn parse_datagram(mut buf: &[u8]) -> Datagram {
    let mut out = Datagram::default();
    while !buf.is_empty() {
        let (Some(len), Some(kind), Some(seq)) = (ne_u32(buf, 0), ne_u16(buf, 4), ne_u32(buf, 8))
        else {
            out.malformed += 1;
            break;
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let Some(body) = (len >= NLMSG_HDRLEN)
            .then(|| buf.get(NLMSG_HDRLEN..len))
            .flatten()
        else {
            out.malformed += 1;
            break;
        };
        match kind {
            NLMSG_NOOP | NLMSG_DONE => {}
            NLMSG_OVERRUN => out.overruns += 1,
            NLMSG_ERROR => match ne_i32(body, 0) {
                // struct nlmsgerr: int error (negative errno), then the request's header.
                Some(error) => out.acks.push(Ack {
                    seq,
                    errno: error.saturating_neg(),
                }),
                None => out.malformed += 1,
            },
            k if k == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET => match packet_message(body) {
                Message::Event(event) => out.events.push(event),
                Message::Foreign => out.foreign += 1,
                Message::Malformed => out.malformed += 1,
            },
            // Other nfnetlink messages are not sent to a log socket; not ours to judge.
            _ => {}
        }
        buf = buf.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

enum Message {
    Event(DropEvent),
    Foreign,
    Malformed,
}

/// One `NFULNL_MSG_PACKET` body: `struct nfgenmsg`, then attributes.
fn packet_message(body: &[u8]) -> Message {
    let Some(mut attrs) = body.get(NFGENMSG_LEN..) else {
        return Message::Malformed;
    };
    let mut prefix = None;
    let mut payload = None;
    let mut hw_protocol = None;
    while !attrs.is_empty() {
        let (Some(len), Some(kind)) = (ne_u16(attrs, 0), ne_u16(attrs, 2)) else {
            return Message::Malformed;
        };
        let len = usize::from(len);
        let Some(value) = (len >= NLA_HDRLEN)
            .then(|| attrs.get(NLA_HDRLEN..len))
            .flatten()
        else {
            return Message::Malformed;
        };
        match kind & NLA_TYPE_MASK {
            NFULA_PREFIX => prefix = Some(value),
            NFULA_PAYLOAD => payload = Some(value),
            // struct nfulnl_msg_packet_hdr { __be16 hw_protocol; __u8 hook; __u8 _pad; }
            NFULA_PACKET_HDR => hw_protocol = be_u16(value, 0),
            _ => {}
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    let Some((host, chain)) = prefix.and_then(parse_prefix) else {
        return Message::Foreign;
    };
    let Some(payload) = payload else {
        return Message::Malformed;
    };
    let Ok(packet) = parse_payload(payload) else {
        return Message::Malformed;
    };
    // The link layer's protocol, where it says IPv4 or IPv6, must agree with the packet.
    let contradicts = matches!(
        (hw_protocol, packet.src),
        (Some(0x0800), IpAddr::V6(_)) | (Some(0x86dd), IpAddr::V4(_))
    );
    if contradicts {
        return Message::Malformed;
    }
    Message::Event(DropEvent {
        host: host.to_owned(),
        chain: chain.to_owned(),
        src: packet.src,
        dst: packet.dst,
        proto: proto_name(packet.proto),
        sport: packet.sport,
        dport: packet.dport,
    })
}

/// The host and chain of a rampart drop prefix, `rampart {host} drop {chain}: ` (as the
/// kernel sends it: NUL-terminated); `None` for any other prefix.
pub fn parse_prefix(raw: &[u8]) -> Option<(&str, &str)> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let text = std::str::from_utf8(raw.get(..end)?).ok()?;
    let rest = text
        .strip_prefix(PREFIX_START)?
        .trim_end()
        .strip_suffix(':')?;
    let (host, chain) = rest.split_once(" drop ")?;
    let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    (word(host) && word(chain)).then_some((host, chain))
}

/// The addresses, protocol and ports of a packet as the network layer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number (for IPv6, of the header after the extension headers).
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Why a payload is not a packet [`parse_payload`] can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("empty payload")]
    Empty,
    #[error("ip version {0} is neither 4 nor 6")]
    Version(u8),
    #[error("ipv4 header length {0} is below 20 bytes")]
    HeaderLength(usize),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("more than {MAX_IPV6_EXTENSIONS} ipv6 extension headers")]
    TooManyExtensions,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// The protocol's name in events: `tcp`, `udp`, `icmp`, `icmpv6` or the number.
fn proto_name(proto: u8) -> String {
    match proto {
        TCP => "tcp".to_owned(),
        UDP => "udp".to_owned(),
        ICMP => "icmp".to_owned(),
        ICMPV6 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}

/// Parses an IPv4 or IPv6 packet (by its version nibble) up to the transport ports.
pub fn parse_payload(p: &[u8]) -> Result<Packet, PayloadError> {
    let first = *p.first().ok_or(PayloadError::Empty)?;
    match first >> 4 {
        4 => parse_ipv4(p),
        6 => parse_ipv6(p),
        v => Err(PayloadError::Version(v)),
    }
}

fn parse_ipv4(p: &[u8]) -> Result<Packet, PayloadError> {
    let first = *p.first().ok_or(PayloadError::Empty)?;
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 {
        return Err(PayloadError::HeaderLength(ihl));
    }
    let header = p.get(..ihl).ok_or(PayloadError::Truncated("ipv4 header"))?;
    let addr = |at: usize| -> Result<IpAddr, PayloadError> {
        let octets: [u8; 4] = header
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(PayloadError::Truncated("ipv4 header"))?;
        Ok(IpAddr::V4(Ipv4Addr::from(octets)))
    };
    let proto = *header
        .get(9)
        .ok_or(PayloadError::Truncated("ipv4 header"))?;
    let fragment_offset = be_u16(header, 6).ok_or(PayloadError::Truncated("ipv4 header"))? & 0x1fff;
    let (sport, dport) = if fragment_offset == 0 {
        ports(proto, p.get(ihl..).unwrap_or(&[]))?
    } else {
        (None, None)
    };
    Ok(Packet {
        src: addr(12)?,
        dst: addr(16)?,
        proto,
        sport,
        dport,
    })
}

fn parse_ipv6(p: &[u8]) -> Result<Packet, PayloadError> {
    let header = p.get(..40).ok_or(PayloadError::Truncated("ipv6 header"))?;
    let addr = |at: usize| -> Result<IpAddr, PayloadError> {
        let octets: [u8; 16] = header
            .get(at..at + 16)
            .and_then(|b| b.try_into().ok())
            .ok_or(PayloadError::Truncated("ipv6 header"))?;
        Ok(IpAddr::V6(Ipv6Addr::from(octets)))
    };
    let mut next = *header
        .get(6)
        .ok_or(PayloadError::Truncated("ipv6 header"))?;
    let mut at = 40usize;
    let mut later_fragment = false;
    let mut walked = 0;
    loop {
        let ext = p.get(at..).unwrap_or(&[]);
        let len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6: length in
            // 8-byte units after the first 8.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let units = *ext
                    .get(1)
                    .ok_or(PayloadError::Truncated("ipv6 extension header"))?;
                (usize::from(units) + 1) * 8
            }
            // Fragment: fixed 8 bytes; only the first fragment carries the ports.
            44 => {
                let offset =
                    be_u16(ext, 2).ok_or(PayloadError::Truncated("ipv6 fragment header"))? >> 3;
                later_fragment |= offset != 0;
                8
            }
            // Authentication header: length in 4-byte units after the first 8.
            51 => {
                let units = *ext
                    .get(1)
                    .ok_or(PayloadError::Truncated("ipv6 extension header"))?;
                (usize::from(units) + 2) * 4
            }
            _ => break,
        };
        if walked == MAX_IPV6_EXTENSIONS {
            return Err(PayloadError::TooManyExtensions);
        }
        walked += 1;
        next = *ext
            .first()
            .ok_or(PayloadError::Truncated("ipv6 extension header"))?;
        at = at.saturating_add(len);
    }
    let (sport, dport) = if later_fragment {
        (None, None)
    } else {
        ports(next, p.get(at..).unwrap_or(&[]))?
    };
    Ok(Packet {
        src: addr(8)?,
        dst: addr(24)?,
        proto: next,
        sport,
        dport,
    })
}

/// Source and destination port of a TCP or UDP header (the first four bytes of both).
fn ports(proto: u8, l4: &[u8]) -> Result<(Option<u16>, Option<u16>), PayloadError> {
    let what = match proto {
        TCP => "tcp header",
        UDP => "udp header",
        _ => return Ok((None, None)),
    };
    match (be_u16(l4, 0), be_u16(l4, 2)) {
        (Some(s), Some(d)) => Ok((Some(s), Some(d))),
        _ => Err(PayloadError::Truncated(what)),
    }
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn ne_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- builders --------------------------------------------------------------------

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]); // id, DF, ttl, proto, csum
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    fn ipv6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(rest);
        p
    }

    /// A TCP SYN header (20 bytes) or a UDP header (8 bytes) with the given ports.
    fn l4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut h = sport.to_be_bytes().to_vec();
        h.extend_from_slice(&dport.to_be_bytes());
        let len = if proto == TCP { 20 } else { 8 };
        h.resize(len, 0);
        h
    }

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_attr(&mut out, kind, value);
        out
    }

    fn nlmsg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = u32::try_from(NLMSG_HDRLEN + body.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    /// A `NFULNL_MSG_PACKET` the way the kernel builds one: nfgenmsg, packet header,
    /// timestamp, in-device, prefix and payload.
    fn packet(family: u8, prefix: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![family, NFNETLINK_V0];
        body.extend_from_slice(&1u16.to_be_bytes());
        let hw: u16 = if family == 10 { 0x86dd } else { 0x0800 };
        let mut hdr = hw.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[1, 0]); // NF_INET_LOCAL_IN
        body.extend(nla(NFULA_PACKET_HDR, &hdr));
        let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
        ts.extend_from_slice(&5u64.to_be_bytes());
        body.extend(nla(3, &ts)); // NFULA_TIMESTAMP
        body.extend(nla(4, &2u32.to_be_bytes())); // NFULA_IFINDEX_INDEV
        let mut p = prefix.as_bytes().to_vec();
        p.push(0);
        body.extend(nla(NFULA_PREFIX, &p));
        body.extend(nla(NFULA_PAYLOAD, payload));
        nlmsg((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET, 0, &body)
    }

    fn event(
        chain: &str,
        src: &str,
        dst: &str,
        proto: &str,
        ports: Option<(u16, u16)>,
    ) -> DropEvent {
        DropEvent {
            host: "web1".into(),
            chain: chain.into(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: proto.into(),
            sport: ports.map(|p| p.0),
            dport: ports.map(|p| p.1),
        }
    }

    const CLIENT: [u8; 4] = [203, 0, 113, 100];
    const WEB1: [u8; 4] = [198, 18, 0, 11];
    const PREFIX: &str = "rampart web1 drop input: ";

    // ---- prefixes --------------------------------------------------------------------

    #[test]
    fn prefixes() {
        fn check(raw: &[u8], expect: Option<(&str, &str)>) {
            assert_eq!(
                parse_prefix(raw),
                expect,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        check(b"rampart web1 drop input: \0", Some(("web1", "input")));
        check(b"rampart lb1 drop forward: ", Some(("lb1", "forward")));
        check(b"rampart db-2 drop output:\0\0", Some(("db-2", "output")));
        check(
            b"rampart web1 drop input: \0garbage after the nul",
            Some(("web1", "input")),
        );
        check(b"", None);
        check(b"\0", None);
        check(b"other web1 drop input: ", None);
        check(b"rampart web1 drop input", None); // cut before the colon
        check(b"rampart web1 accept input: ", None);
        check(b"rampart  drop input: ", None);
        check(b"rampart web1 drop : ", None);
        check(b"rampart web 1 drop input: ", None);
        check(b"rampart web1 drop in put: ", None);
        check(b"rampart \xff drop input: ", None);
    }

    // ---- payloads --------------------------------------------------------------------

    #[test]
    fn payloads() {
        /// Source, destination, protocol name and ports, or the error.
        type Expect<'a> = Result<(&'a str, &'a str, &'a str, Option<(u16, u16)>), PayloadError>;
        fn check(p: &[u8], expect: Expect<'_>) {
            let got = parse_payload(p).map(|pk| {
                (
                    pk.src.to_string(),
                    pk.dst.to_string(),
                    proto_name(pk.proto),
                    pk.sport.zip(pk.dport),
                )
            });
            let expect = expect
                .map(|(s, d, proto, ports)| (s.to_owned(), d.to_owned(), proto.to_owned(), ports));
            assert_eq!(got, expect, "{p:02x?}");
        }
        let v6a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6b: Ipv6Addr = "2001:db8::b".parse().unwrap();

        // IPv4: tcp, udp, icmp, another protocol by number, options in the header.
        check(
            &ipv4(TCP, CLIENT, WEB1, &l4(TCP, 40000, 8443)),
            Ok(("203.0.113.100", "198.18.0.11", "tcp", Some((40000, 8443)))),
        );
        check(
            &ipv4(UDP, CLIENT, WEB1, &l4(UDP, 5353, 53)),
            Ok(("203.0.113.100", "198.18.0.11", "udp", Some((5353, 53)))),
        );
        check(
            &ipv4(ICMP, CLIENT, WEB1, &[8, 0, 0, 0, 0, 1, 0, 1]),
            Ok(("203.0.113.100", "198.18.0.11", "icmp", None)),
        );
        check(
            &ipv4(47, CLIENT, WEB1, &[]),
            Ok(("203.0.113.100", "198.18.0.11", "47", None)),
        );
        let mut options = ipv4(UDP, CLIENT, WEB1, &[]);
        options[0] = 0x46;
        options.extend_from_slice(&[1, 1, 1, 1]); // four NOP options
        options.extend(l4(UDP, 1, 2));
        check(
            &options,
            Ok(("203.0.113.100", "198.18.0.11", "udp", Some((1, 2)))),
        );
        // A non-first fragment has no ports; a first fragment has.
        let mut later = ipv4(UDP, CLIENT, WEB1, b"middle of a datagram");
        later[6..8].copy_from_slice(&0x2010u16.to_be_bytes());
        check(&later, Ok(("203.0.113.100", "198.18.0.11", "udp", None)));
        let mut first = ipv4(TCP, CLIENT, WEB1, &l4(TCP, 1, 2));
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        check(
            &first,
            Ok(("203.0.113.100", "198.18.0.11", "tcp", Some((1, 2)))),
        );

        // IPv6: udp, tcp after hop-by-hop and destination options, icmpv6, first and
        // later fragments, AH.
        check(
            &ipv6(UDP, v6a, v6b, &l4(UDP, 40000, 53)),
            Ok(("2001:db8::1", "2001:db8::b", "udp", Some((40000, 53)))),
        );
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop → destination options
        ext.extend_from_slice(&[TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // 16 bytes
        ext.extend(l4(TCP, 50000, 443));
        check(
            &ipv6(0, v6a, v6b, &ext),
            Ok(("2001:db8::1", "2001:db8::b", "tcp", Some((50000, 443)))),
        );
        check(
            &ipv6(ICMPV6, v6a, v6b, &[128, 0, 0, 0, 0, 1, 0, 1]),
            Ok(("2001:db8::1", "2001:db8::b", "icmpv6", None)),
        );
        let mut frag = vec![UDP, 0, 0, 1, 0, 0, 0, 7]; // offset 0, more fragments
        frag.extend(l4(UDP, 7, 8));
        check(
            &ipv6(44, v6a, v6b, &frag),
            Ok(("2001:db8::1", "2001:db8::b", "udp", Some((7, 8)))),
        );
        let frag_later = [UDP, 0, 0x05, 0x68, 0, 0, 0, 7, 0xde, 0xad]; // offset 173
        check(
            &ipv6(44, v6a, v6b, &frag_later),
            Ok(("2001:db8::1", "2001:db8::b", "udp", None)),
        );
        let mut ah = vec![TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // (1 + 2) * 4 = 12 bytes
        ah.extend(l4(TCP, 9, 10));
        check(
            &ipv6(51, v6a, v6b, &ah),
            Ok(("2001:db8::1", "2001:db8::b", "tcp", Some((9, 10)))),
        );
        check(
            &ipv6(59, v6a, v6b, &[]),
            Ok(("2001:db8::1", "2001:db8::b", "59", None)),
        );

        // Garbled and truncated input.
        check(&[], Err(PayloadError::Empty));
        check(&[0x50; 40], Err(PayloadError::Version(5)));
        check(&[0x00], Err(PayloadError::Version(0)));
        check(&[0x44; 40], Err(PayloadError::HeaderLength(16)));
        check(&[0x45, 0, 0], Err(PayloadError::Truncated("ipv4 header")));
        check(
            &ipv4(TCP, CLIENT, WEB1, &[0x9c, 0x40, 0x20]),
            Err(PayloadError::Truncated("tcp header")),
        );
        check(
            &ipv4(UDP, CLIENT, WEB1, &[]),
            Err(PayloadError::Truncated("udp header")),
        );
        let mut long_ihl = ipv4(TCP, CLIENT, WEB1, &[]);
        long_ihl[0] = 0x4f; // 60-byte header in a 20-byte packet
        check(&long_ihl, Err(PayloadError::Truncated("ipv4 header")));
        check(
            &ipv6(UDP, v6a, v6b, &[])[..39],
            Err(PayloadError::Truncated("ipv6 header")),
        );
        check(
            &ipv6(UDP, v6a, v6b, &[0, 53]),
            Err(PayloadError::Truncated("udp header")),
        );
        check(
            &ipv6(0, v6a, v6b, &[]),
            Err(PayloadError::Truncated("ipv6 extension header")),
        );
        check(
            &ipv6(0, v6a, v6b, &[TCP, 4, 0, 0, 0, 0, 0, 0]),
            Err(PayloadError::Truncated("tcp header")),
        );
        check(
            &ipv6(44, v6a, v6b, &[UDP, 0, 0]),
            Err(PayloadError::Truncated("ipv6 fragment header")),
        );
        // A chain of extension headers that never ends is cut off.
        let chain: Vec<u8> = std::iter::repeat_n([60, 0, 0, 0, 0, 0, 0, 0], 20)
            .flatten()
            .collect();
        check(
            &ipv6(60, v6a, v6b, &chain),
            Err(PayloadError::TooManyExtensions),
        );
    }

    // ---- netlink messages ------------------------------------------------------------

    #[test]
    fn datagrams() {
        // Two packets in one datagram (the kernel batches), a foreign prefix, and the
        // end of a multipart batch.
        let mut buf = packet(2, PREFIX, &ipv4(TCP, CLIENT, WEB1, &l4(TCP, 40000, 8443)));
        let v6a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6b: Ipv6Addr = "2001:db8::b".parse().unwrap();
        buf.extend(packet(
            10,
            "rampart web1 drop forward: ",
            &ipv6(UDP, v6a, v6b, &l4(UDP, 1234, 53)),
        ));
        buf.extend(packet(
            2,
            "someone else: ",
            &ipv4(UDP, CLIENT, WEB1, &l4(UDP, 1, 2)),
        ));
        buf.extend(nlmsg(NLMSG_DONE, 0, &0u32.to_ne_bytes()));
        let got = parse_datagram(&buf);
        assert_eq!(
            got,
            Datagram {
                events: vec![
                    event(
                        "input",
                        "203.0.113.100",
                        "198.18.0.11",
                        "tcp",
                        Some((40000, 8443))
                    ),
                    event(
                        "forward",
                        "2001:db8::1",
                        "2001:db8::b",
                        "udp",
                        Some((1234, 53))
                    ),
                ],
                foreign: 1,
                ..Datagram::default()
            }
        );

        // Acknowledgements: success and EPERM, with the request's header after the errno.
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&config_request(1, 7, COPY_RANGE)[..NLMSG_HDRLEN]);
        let mut nak = (-1i32).to_ne_bytes().to_vec();
        nak.extend_from_slice(&config_request(1, 8, COPY_RANGE)[..NLMSG_HDRLEN]);
        let mut buf = nlmsg(NLMSG_ERROR, 7, &ack);
        buf.extend(nlmsg(NLMSG_ERROR, 8, &nak));
        buf.extend(nlmsg(NLMSG_OVERRUN, 0, &[]));
        buf.extend(nlmsg(NLMSG_NOOP, 0, &[]));
        let got = parse_datagram(&buf);
        assert_eq!(
            got.acks,
            [Ack { seq: 7, errno: 0 }, Ack { seq: 8, errno: 1 }]
        );
        assert_eq!((got.overruns, got.malformed), (1, 0));
    }

    #[test]
    fn garbled_datagrams_are_counted_not_parsed() {
        fn check(buf: &[u8], events: usize, foreign: u64, malformed: u64) {
            let got = parse_datagram(buf);
            assert_eq!(
                (got.events.len(), got.foreign, got.malformed),
                (events, foreign, malformed),
                "{buf:02x?}"
            );
        }
        let good = packet(2, PREFIX, &ipv4(TCP, CLIENT, WEB1, &l4(TCP, 40000, 8443)));
        check(&good, 1, 0, 0);
        check(&[], 0, 0, 0);
        check(&good[..10], 0, 0, 1); // shorter than a netlink header
        check(&good[..good.len() - 4], 0, 0, 1); // shorter than its length says
        let mut short_len = good.clone();
        short_len[..4].copy_from_slice(&8u32.to_ne_bytes()); // below the header length
        check(&short_len, 0, 0, 1);
        let mut huge_len = good.clone();
        huge_len[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        check(&huge_len, 0, 0, 1);
        // An attribute whose length runs past the message, or is below its header.
        let mut body = vec![2, 0, 0, 1];
        body.extend_from_slice(&200u16.to_ne_bytes());
        body.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        check(&nlmsg(0x400, 0, &body), 0, 0, 1);
        let mut body = vec![2, 0, 0, 1];
        body.extend_from_slice(&2u16.to_ne_bytes());
        body.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        check(&nlmsg(0x400, 0, &body), 0, 0, 1);
        check(&nlmsg(0x400, 0, &[2, 0]), 0, 0, 1); // no room for nfgenmsg
                                                   // Ours without a payload, or with a payload that is not a packet: malformed.
        let mut body = vec![2, 0, 0, 1];
        body.extend(nla(NFULA_PREFIX, b"rampart web1 drop input: \0"));
        check(&nlmsg(0x400, 0, &body), 0, 0, 1);
        check(&packet(2, PREFIX, b"\x45garbage"), 0, 0, 1);
        // A foreign prefix wins over a garbled payload: it is not ours to judge.
        check(&packet(2, "ssh drop: ", b"\x45"), 0, 1, 0);
        // No prefix at all: not ours.
        check(&nlmsg(0x400, 0, &[2, 0, 0, 1]), 0, 1, 0);
        // A link-layer protocol that contradicts the packet.
        let mut liar = packet(
            2,
            PREFIX,
            &ipv6(
                UDP,
                Ipv6Addr::LOCALHOST,
                Ipv6Addr::LOCALHOST,
                &l4(UDP, 1, 2),
            ),
        );
        assert_eq!(
            liar[NLMSG_HDRLEN + 8..NLMSG_HDRLEN + 10],
            0x0800u16.to_be_bytes()
        );
        check(&liar, 0, 0, 1);
        liar[NLMSG_HDRLEN + 8..NLMSG_HDRLEN + 10].copy_from_slice(&0x86ddu16.to_be_bytes());
        check(&liar, 1, 0, 0);
        // A NLMSG_ERROR too short for its errno.
        check(&nlmsg(NLMSG_ERROR, 1, &[0, 0]), 0, 0, 1);
        // Trailing bytes after a good message.
        let mut tail = good;
        tail.extend_from_slice(&[1, 2, 3]);
        check(&tail, 1, 0, 1);
    }

    #[test]
    fn no_truncation_or_corruption_panics() {
        let v6 = packet(
            10,
            PREFIX,
            &ipv6(
                0,
                Ipv6Addr::LOCALHOST,
                Ipv6Addr::LOCALHOST,
                &[TCP, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 10],
            ),
        );
        let mut buf = packet(2, PREFIX, &ipv4(UDP, CLIENT, WEB1, &l4(UDP, 1, 2)));
        buf.extend(v6);
        for len in 0..=buf.len() {
            let _ = parse_datagram(&buf[..len]);
            let _ = parse_payload(&buf[..len]);
        }
        // Deterministic byte flips (a small LCG): every position, many values.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let mut copy = buf.clone();
            let at = (state >> 33) as usize % copy.len();
            copy[at] = (state >> 13) as u8;
            let _ = parse_datagram(&copy);
        }
    }

    #[test]
    fn bind_request_bytes() {
        let req = config_request(1, 7, 128);
        let mut expect = Vec::new();
        expect.extend_from_slice(&48u32.to_ne_bytes()); // 16 + 4 + 8 + 12 + 8
        expect.extend_from_slice(&0x0401u16.to_ne_bytes()); // NFNL_SUBSYS_ULOG, CONFIG
        expect.extend_from_slice(&5u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
        expect.extend_from_slice(&7u32.to_ne_bytes());
        expect.extend_from_slice(&0u32.to_ne_bytes());
        expect.extend_from_slice(&[0, 0, 0, 1]); // AF_UNSPEC, v0, group 1 big endian
        expect.extend_from_slice(&5u16.to_ne_bytes());
        expect.extend_from_slice(&1u16.to_ne_bytes());
        expect.extend_from_slice(&[1, 0, 0, 0]); // BIND, padding
        expect.extend_from_slice(&10u16.to_ne_bytes());
        expect.extend_from_slice(&2u16.to_ne_bytes());
        expect.extend_from_slice(&[0, 0, 0, 128, 2, 0, 0, 0]); // range 128, COPY_PACKET, pad
        expect.extend_from_slice(&8u16.to_ne_bytes());
        expect.extend_from_slice(&5u16.to_ne_bytes());
        expect.extend_from_slice(&[0, 0, 0, 1]); // queue threshold 1
        assert_eq!(req, expect);
        // The group goes out in network byte order.
        assert_eq!(config_request(0x0102, 1, 128)[18..20], [1, 2]);
    }

    // ---- JSON ------------------------------------------------------------------------

    #[test]
    fn json_lines() {
        let names: HashMap<IpAddr, String> = [
            ("203.0.113.100".parse().unwrap(), "client".to_owned()),
            ("198.18.0.11".parse().unwrap(), "web1".to_owned()),
        ]
        .into_iter()
        .collect();
        fn check(e: &DropEvent, names: &HashMap<IpAddr, String>, expect: &str) {
            assert_eq!(e.json_line(names), expect);
        }
        let tcp = event(
            "input",
            "203.0.113.100",
            "198.18.0.11",
            "tcp",
            Some((40000, 8443)),
        );
        check(
            &tcp,
            &names,
            r#"{"event":"drop","chain":"input","proto":"tcp","src":"203.0.113.100","src_host":"client","dst":"198.18.0.11","dst_host":"web1","sport":40000,"dport":8443}"#,
        );
        check(
            &tcp,
            &HashMap::new(),
            r#"{"event":"drop","chain":"input","proto":"tcp","src":"203.0.113.100","dst":"198.18.0.11","sport":40000,"dport":8443}"#,
        );
        check(
            &event("forward", "2001:db8::1", "198.18.0.11", "icmpv6", None),
            &names,
            r#"{"event":"drop","chain":"forward","proto":"icmpv6","src":"2001:db8::1","dst":"198.18.0.11","dst_host":"web1"}"#,
        );
        let mut odd = event("input", "203.0.113.100", "198.18.0.11", "47", None);
        odd.chain = "in\"put".into();
        check(
            &odd,
            &names,
            r#"{"event":"drop","chain":"in\"put","proto":"47","src":"203.0.113.100","src_host":"client","dst":"198.18.0.11","dst_host":"web1"}"#,
        );
        // Every line is one JSON object on one line.
        let v: serde_json::Value = serde_json::from_str(&tcp.json_line(&names)).unwrap();
        assert_eq!(v["dport"], 8443);
    }

    #[test]
    fn bind_errors_name_the_fix() {
        let msg = |errno: i32| bind_error(1, errno).to_string();
        assert!(msg(16).contains("already bound"), "{}", msg(16)); // EBUSY
        assert!(msg(22).contains("nfnetlink_log"), "{}", msg(22)); // EINVAL
        assert!(msg(93).contains("modprobe nfnetlink_log"), "{}", msg(93)); // EPROTONOSUPPORT
        assert!(msg(5).starts_with("nflog group 1: bind: "), "{}", msg(5)); // EIO
        let eperm = msg(1);
        assert!(
            eperm.contains("CAP_NET_ADMIN") || eperm.contains("already bound"),
            "{eperm}"
        );
        assert!(NflogError::NeedsCapability { group: 1 }
            .to_string()
            .contains("AmbientCapabilities=CAP_NET_ADMIN"));
    }

    #[test]
    fn open_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            Nflog::open(1),
            Err(NflogError::NoRuntime { group: 1 })
        ));
    }
}
