//! The DNS server in-process on 127.0.0.1:0 (UDP and TCP), queried by the real `dig`
//! (Debian's bind9-dnsutils), plus raw sockets for what dig cannot do: garbage datagrams, idle
//! and surplus TCP connections, shutdown with a connection open. Every query leaves from
//! 127.0.0.1, which the allow-list tests leave out or let in.
//!
//! Without dig these tests print `SKIPPED: dig is not installed` and pass, unless `CI` is
//! set, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rampart_dns::{Config, Dns, Listeners};
use rampart_telemetry::config::ConfigFile;

/// A server running on its own runtime thread; stopped (and checked to stop) on drop.
struct Server {
    udp: SocketAddr,
    tcp: SocketAddr,
    dns: Arc<Dns>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves foobar.com with `extra` appended to the config (after `[zone]`).
    fn start(extra: &str) -> Server {
        Server::start_listening("", extra)
    }

    /// As `start`, with `listen` added to the `[listen]` table.
    fn start_listening(listen: &str, extra: &str) -> Server {
        let text = format!(
            r#"
[listen]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"
{listen}
[zone]
name = "foobar.com"
site = "203.0.113.10"
ns_address = "203.0.113.53"
{extra}
"#
        );
        let config = Config::parse(Path::new("dns.toml"), &text).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listeners = Listeners::bind(&config).unwrap();
                let addrs = listeners.local_addrs().unwrap();
                let dns = Arc::new(Dns::new(config));
                let shared = Arc::clone(&dns);
                dns.serve(
                    listeners,
                    async {
                        let _ = stop_rx.await;
                    },
                    move || addr_tx.send((addrs, shared)).unwrap(),
                )
                .await
                .unwrap();
            });
        });
        let ((udp, tcp), dns) = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            udp: udp.unwrap(),
            tcp: tcp.unwrap(),
            dns,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server and returns how long it took.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        t.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dig binary, or `None` (after saying so) where the test should be skipped.
fn dig_or_skip() -> Option<PathBuf> {
    rampart_test_support::client::tool("dig", None)
}

/// What dig printed, in parts.
#[derive(Debug)]
struct Dug {
    status: String,
    flags: Vec<String>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

/// Runs `dig @127.0.0.1 -p PORT ARGS +norecurse` and parses its output; records come
/// back as `name ttl class type rdata` with single spaces.
fn dig(dig: &Path, port: u16, args: &[&str]) -> Dug {
    let out = Command::new(dig)
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .args(args)
        .args(["+norecurse", "+time=3", "+tries=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dig {args:?} failed:\n{text}");
    let mut dug = Dug {
        status: String::new(),
        flags: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let mut section = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
            dug.status = rest
                .split(", ")
                .find_map(|p| p.strip_prefix("status: "))
                .unwrap_or_default()
                .to_owned();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            dug.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if line.starts_with(";; ANSWER SECTION:") {
            section = Some(&mut dug.answer);
        } else if line.starts_with(";; AUTHORITY SECTION:") {
            section = Some(&mut dug.authority);
        } else if line.starts_with(";; ADDITIONAL SECTION:") {
            section = Some(&mut dug.additional);
        } else if line.trim().is_empty() || line.starts_with(';') {
            section = None;
        } else if let Some(s) = section.as_mut() {
            s.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    assert!(!dug.status.is_empty(), "no header in dig's output:\n{text}");
    dug
}

const SOA: &str =
    "foobar.com. 300 IN SOA ns1.foobar.com. hostmaster.foobar.com. 2026112301 3600 900 1209600 300";

fn has(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x == f)
}

/// Asks (name, type) over UDP and over TCP and checks both answers are the same and as
/// expected; `aa` must be set unless the status is REFUSED, `ra` never.
fn check(
    bin: &Path,
    server: &Server,
    name: &str,
    qtype: &str,
    status: &str,
    answer: &[&str],
    authority: &[&str],
) {
    for tcp in [false, true] {
        let (port, mut args) = if tcp {
            (server.tcp.port(), vec!["+tcp"])
        } else {
            (server.udp.port(), vec![])
        };
        args.extend([name, qtype]);
        let d = dig(bin, port, &args);
        let ctx = format!("{name} {qtype} tcp={tcp}: {d:?}");
        assert_eq!(d.status, status, "{ctx}");
        assert_eq!(has(&d.flags, "aa"), status != "REFUSED", "{ctx}");
        assert!(has(&d.flags, "qr") && !has(&d.flags, "ra"), "{ctx}");
        assert_eq!(d.answer, answer, "{ctx}");
        assert_eq!(d.authority, authority, "{ctx}");
    }
}

#[test]
fn dig_gets_authoritative_answers_over_udp_and_tcp() {
    let Some(bin) = dig_or_skip() else { return };
    let s = Server::start("");
    let www = ["www.foobar.com. 300 IN A 203.0.113.10"];
    check(&bin, &s, "www.foobar.com", "A", "NOERROR", &www, &[]);
    // Any case matches; answers are served under the zone's own (lower case) names.
    check(&bin, &s, "WwW.FOOBAR.com", "A", "NOERROR", &www, &[]);
    check(
        &bin,
        &s,
        "foobar.com",
        "A",
        "NOERROR",
        &["foobar.com. 300 IN A 203.0.113.10"],
        &[],
    );
    check(
        &bin,
        &s,
        "ns1.foobar.com",
        "A",
        "NOERROR",
        &["ns1.foobar.com. 300 IN A 203.0.113.53"],
        &[],
    );
    check(&bin, &s, "foobar.com", "SOA", "NOERROR", &[SOA], &[]);
    check(
        &bin,
        &s,
        "foobar.com",
        "NS",
        "NOERROR",
        &["foobar.com. 300 IN NS ns1.foobar.com."],
        &[],
    );
    check(
        &bin,
        &s,
        "foobar.com",
        "CAA",
        "NOERROR",
        &["foobar.com. 300 IN CAA 0 issue \";\""],
        &[],
    );
    check(&bin, &s, "www.foobar.com", "AAAA", "NOERROR", &[], &[SOA]);
    check(&bin, &s, "nope.foobar.com", "A", "NXDOMAIN", &[], &[SOA]);
    check(&bin, &s, "example.org", "A", "REFUSED", &[], &[]);
    check(&bin, &s, "foobar.com.example.org", "A", "REFUSED", &[], &[]);
}

#[test]
fn ns_answer_carries_the_name_server_address() {
    let Some(bin) = dig_or_skip() else { return };
    let s = Server::start("");
    let d = dig(&bin, s.udp.port(), &["foobar.com", "NS"]);
    assert_eq!(
        d.additional,
        ["ns1.foobar.com. 300 IN A 203.0.113.53"],
        "{d:?}"
    );
}

#[test]
fn zone_transfers_are_refused() {
    let Some(bin) = dig_or_skip() else { return };
    let s = Server::start("");
    let out = Command::new(&bin)
        .args([
            "@127.0.0.1",
            "-p",
            &s.tcp.port().to_string(),
            "foobar.com",
            "AXFR",
            "+time=3",
            "+tries=1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Transfer failed"), "{text}");
    assert!(!text.contains("203.0.113"), "{text}");
}

#[test]
fn garbage_datagrams_do_not_stop_the_server() {
    let Some(bin) = dig_or_skip() else { return };
    let s = Server::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for junk in [
        &b""[..],
        b"\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 600],
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
    ] {
        sock.send_to(junk, s.udp).unwrap();
    }
    // A header with a broken question gets FORMERR, id kept: the server is alive.
    sock.send_to(
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www",
        s.udp,
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = loop {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        if n >= 12 && buf[..2] == [0x12, 0x34] && buf[3] & 0x0f == 1 {
            break n;
        }
    };
    assert_eq!(n, 12, "a header-only FORMERR");
    let d = dig(&bin, s.udp.port(), &["www.foobar.com", "A"]);
    assert_eq!(d.answer, ["www.foobar.com. 300 IN A 203.0.113.10"]);
}

/// One query over a TCP stream (length-prefixed); `None` if the server closed it.
fn tcp_query(stream: &mut TcpStream, name: &str) -> Option<Message> {
    let mut q = Message::new();
    q.set_id(99)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Waits until the server has closed `stream` (read returns end of file).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    matches!(stream.read(&mut [0u8; 1]), Ok(0))
}

#[test]
fn tcp_connections_answer_several_queries_and_close_when_idle() {
    let s = Server::start("[limits]\ntcp_idle_timeout = \"300ms\"");
    let mut c = connect(s.tcp);
    for name in ["www.foobar.com.", "foobar.com.", "nope.foobar.com."] {
        let r = tcp_query(&mut c, name).expect("an answer");
        assert_eq!(r.id(), 99);
    }
    let t = Instant::now();
    assert!(closed_by_server(&mut c));
    let idle = t.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "{idle:?}"
    );

    // A query trickling in more slowly than the timeout is cut off too.
    let mut c = connect(s.tcp);
    c.write_all(&[0]).unwrap();
    assert!(closed_by_server(&mut c));
}

#[test]
fn tcp_connections_beyond_the_cap_are_closed() {
    let s = Server::start("[limits]\nmax_tcp_connections = 1");
    let mut first = connect(s.tcp);
    assert!(tcp_query(&mut first, "www.foobar.com.").is_some());
    let mut second = connect(s.tcp);
    assert!(tcp_query(&mut second, "www.foobar.com.").is_none());
    drop(first);
    // The first connection's slot frees once the server sees it close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(s.tcp);
        match tcp_query(&mut c, "www.foobar.com.") {
            Some(r) => {
                assert_eq!(r.response_code(), ResponseCode::NoError);
                break;
            }
            None => assert!(Instant::now() < deadline, "the slot never freed"),
        }
        #[allow(clippy::disallowed_methods)] // polling with a deadline, in a test
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_is_prompt_with_a_connection_open() {
    let mut s = Server::start("[limits]\ntcp_idle_timeout = \"30s\"");
    let mut c = connect(s.tcp);
    assert!(tcp_query(&mut c, "www.foobar.com.").is_some());
    let took = s.stop();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(closed_by_server(&mut c));
}

/// Runs dig for `www.foobar.com A` (over TCP if `tcp`), waiting at most a second, and
/// returns whether it succeeded and what it printed.
fn dig_once(dig: &Path, port: u16, tcp: bool) -> (bool, String) {
    let out = Command::new(dig)
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .args(["www.foobar.com", "A", "+norecurse", "+time=1", "+tries=1"])
        .args(tcp.then_some("+tcp"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn queries_from_outside_allow_from_get_no_answer() {
    let Some(bin) = dig_or_skip() else { return };
    let s = Server::start_listening("allow_from = [\"127.0.0.2\", \"198.18.0.0/15\"]", "");
    for tcp in [false, true] {
        let (ok, text) = dig_once(&bin, if tcp { s.tcp.port() } else { s.udp.port() }, tcp);
        assert!(!ok, "tcp={tcp}: dig got an answer:\n{text}");
        assert!(!text.contains("->>HEADER<<-"), "tcp={tcp}: {text}");
        assert!(!text.contains("203.0.113.10"), "tcp={tcp}: {text}");
    }
    // A raw datagram is dropped too: no answer, not even FORMERR.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.send_to(
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www",
        s.udp,
    )
    .unwrap();
    assert!(
        sock.recv_from(&mut [0u8; 512]).is_err(),
        "a dropped datagram got an answer"
    );
    // A TCP connection is closed before it is read.
    let mut c = connect(s.tcp);
    assert!(closed_by_server(&mut c));
    // dig over UDP, dig over TCP, the raw datagram, the raw connection (at least: a dig
    // may try a refused TCP connection again).
    let counted = Instant::now() + Duration::from_secs(5);
    while s.dns.not_allowed() < 4 {
        assert!(Instant::now() < counted, "counted {}", s.dns.not_allowed());
        #[allow(clippy::disallowed_methods)] // polling with a deadline, in a test
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn queries_from_inside_allow_from_are_answered() {
    let Some(bin) = dig_or_skip() else { return };
    for allow in [
        "[\"127.0.0.1\"]",
        "[\"198.18.0.0/15\", \"127.0.0.0/8\"]",
        "[]",
    ] {
        let s = Server::start_listening(&format!("allow_from = {allow}"), "");
        for tcp in [false, true] {
            let port = if tcp { s.tcp.port() } else { s.udp.port() };
            let mut args = vec!["www.foobar.com", "A"];
            if tcp {
                args.push("+tcp");
            }
            let d = dig(&bin, port, &args);
            assert_eq!(
                d.answer,
                ["www.foobar.com. 300 IN A 203.0.113.10"],
                "allow_from = {allow} tcp={tcp}: {d:?}"
            );
        }
        assert_eq!(s.dns.not_allowed(), 0, "allow_from = {allow}");
    }
}
