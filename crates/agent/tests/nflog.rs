//! The firewall's drop log read back for real: a network namespace of the test's own with
//! an nftables input chain that logs to nflog group 1 and drops, packets sent to its
//! loopback from inside it, and [`Nflog`] bound in it returning them as [`DropEvent`]s.
//! Needs root and `nft`; skips visibly without them. Nothing leaves the namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rampart_agent::nflog::{DropEvent, Nflog, NflogError, NflogStats};

const GROUP: u16 = 1;

/// The ruleset: what rampart's `drop_tail` does, per protocol, plus one rule with a
/// prefix that is not rampart's (which the reader must count and ignore).
const RULESET: &str = r#"
table inet rnflog {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 9 log prefix "rampart web1 drop input: " group 1 drop
        udp dport 9 log prefix "rampart web1 drop input: " group 1 drop
        icmp type echo-request log prefix "rampart web1 drop input: " group 1 drop
        udp dport 10 log prefix "someone else: " group 1 drop
    }
}
"#;

/// The namespace, deleted when the test ends however it ends.
struct Netns {
    name: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "nflog test: could not delete netns {}: {status:?}",
                self.name
            );
        }
    }
}

fn run(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{args:?}: {status}");
}

/// Moves the calling thread (only) into the namespace.
fn enter(netns: &str) {
    let file = File::open(format!("/run/netns/{netns}")).unwrap();
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap();
}

fn can_run() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping nflog test: needs root (network namespaces, nftables, nflog)");
        return false;
    }
    for (tool, version) in [("nft", "--version"), ("ip", "-V")] {
        if Command::new(tool)
            .arg(version)
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!(
                "skipping nflog test: `{tool}` is not installed (Debian: nftables, iproute2)"
            );
            return false;
        }
    }
    true
}

/// What the sender sent: the UDP source ports it used, and whether IPv6 loopback works.
struct Sent {
    udp_ports: Vec<u16>,
    udp6_ports: Vec<u16>,
}

/// Events the reader must see before it stops.
fn complete(events: &[DropEvent], stats: NflogStats, want_v6: bool) -> bool {
    let has = |proto: &str, v6: bool| {
        events
            .iter()
            .any(|e| e.proto == proto && e.src.is_ipv6() == v6)
    };
    has("tcp", false)
        && has("udp", false)
        && has("icmp", false)
        && (!want_v6 || has("udp", true))
        && stats.foreign > 0
}

#[test]
fn nft_drops_logged_to_nflog_arrive_as_drop_events() {
    if !can_run() {
        return;
    }
    let name = format!("rnflog-{}", std::process::id());
    run(&["ip", "netns", "add", &name], None);
    let netns = Netns { name: name.clone() };
    run(
        &[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ],
        None,
    );
    run(
        &["ip", "netns", "exec", &name, "nft", "-f", "-"],
        Some(RULESET),
    );
    // IPv6 on the namespace's loopback, where the kernel has it.
    let want_v6 = Command::new("ip")
        .args([
            "netns", "exec", &name, "ip", "-6", "addr", "show", "dev", "lo",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("::1"))
        .unwrap_or(false);

    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();

    // The reader: bound in the namespace, reads until it has every kind or 15 s pass.
    let reader = {
        let name = name.clone();
        let done = done.clone();
        thread::spawn(move || {
            enter(&name);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut log = match Nflog::open(GROUP) {
                    Ok(log) => log,
                    Err(e) => {
                        ready_tx.send(Err(e.to_string())).unwrap();
                        return (Vec::new(), NflogStats::default());
                    }
                };
                assert_eq!(log.group(), GROUP);
                // A second reader of the same group in the same namespace is refused, and
                // says why.
                match Nflog::open(GROUP) {
                    Err(e @ NflogError::GroupBusy { .. }) => {
                        assert!(e.to_string().contains("already bound"), "{e}");
                    }
                    other => panic!("a second bind of group {GROUP}: {:?}", other.map(|_| ())),
                }
                ready_tx.send(Ok(())).unwrap();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                let mut events = Vec::new();
                while !complete(&events, log.stats(), want_v6) {
                    match tokio::time::timeout_at(deadline, log.next()).await {
                        Ok(batch) => events.extend(batch.unwrap()),
                        Err(_elapsed) => break,
                    }
                }
                done.store(true, Ordering::SeqCst);
                (events, log.stats())
            })
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|e| panic!("opening the nflog reader: {e}"));

    // The sender: in the namespace too, at its loopback only, a few rounds at most (each
    // paced by the dropped connect's one-second timeout) until the reader has it all.
    let sender = thread::spawn(move || {
        enter(&name);
        let mut sent = Sent {
            udp_ports: Vec::new(),
            udp6_ports: Vec::new(),
        };
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _round in 0..5 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            let to = SocketAddr::new(lo4, 9);
            let tcp = TcpStream::connect_timeout(&to, Duration::from_secs(1));
            assert!(tcp.is_err(), "the SYN to port 9 was not dropped: {tcp:?}");

            let udp = UdpSocket::bind((lo4, 0)).unwrap();
            udp.send_to(b"dropped", (lo4, 9)).unwrap();
            udp.send_to(b"foreign", (lo4, 10)).unwrap();
            sent.udp_ports.push(udp.local_addr().unwrap().port());

            icmp_echo(Ipv4Addr::LOCALHOST);

            if want_v6 {
                let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
                let udp6 = UdpSocket::bind((lo6, 0)).unwrap();
                udp6.send_to(b"dropped", (lo6, 9)).unwrap();
                sent.udp6_ports.push(udp6.local_addr().unwrap().port());
            }
        }
        sent
    });
    let sent = sender.join().unwrap();
    let (events, stats) = reader.join().unwrap();
    eprintln!("nflog test: {} events, {stats:?}", events.len());
    for e in &events {
        eprintln!("  {e:?}");
    }

    let lo4: IpAddr = Ipv4Addr::LOCALHOST.into();
    let find = |proto: &str, v6: bool| {
        events
            .iter()
            .find(|e| e.proto == proto && e.src.is_ipv6() == v6)
            .unwrap_or_else(|| panic!("no {proto} event (ipv6: {v6}) among {events:?}"))
    };
    for e in &events {
        assert_eq!(
            (e.host.as_str(), e.chain.as_str()),
            ("web1", "input"),
            "{e:?}"
        );
    }
    let tcp = find("tcp", false);
    assert_eq!(
        (tcp.src, tcp.dst, tcp.dport),
        (lo4, lo4, Some(9)),
        "{tcp:?}"
    );
    assert!(tcp.sport.is_some_and(|p| p != 0), "{tcp:?}");

    let udp = find("udp", false);
    assert_eq!(
        (udp.src, udp.dst, udp.dport),
        (lo4, lo4, Some(9)),
        "{udp:?}"
    );
    let sport = udp.sport.unwrap();
    assert!(
        sent.udp_ports.contains(&sport),
        "{sport} not in {:?}",
        sent.udp_ports
    );
    // Port 10's packets carried the foreign prefix: counted, never an event.
    assert!(stats.foreign > 0, "{stats:?}");
    assert!(!events.iter().any(|e| e.dport == Some(10)), "{events:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");

    let icmp = find("icmp", false);
    assert_eq!(
        (icmp.src, icmp.dst, icmp.sport, icmp.dport),
        (lo4, lo4, None, None)
    );

    let names: HashMap<IpAddr, String> = [(lo4, "web1".to_owned())].into_iter().collect();
    assert_eq!(
        udp.json_line(&names),
        format!(
            r#"{{"event":"drop","chain":"input","proto":"udp","src":"127.0.0.1","src_host":"web1","dst":"127.0.0.1","dst_host":"web1","sport":{sport},"dport":9}}"#
        )
    );
    assert_eq!(
        icmp.json_line(&HashMap::new()),
        r#"{"event":"drop","chain":"input","proto":"icmp","src":"127.0.0.1","dst":"127.0.0.1"}"#
    );

    if want_v6 {
        let lo6: IpAddr = Ipv6Addr::LOCALHOST.into();
        let udp6 = find("udp", true);
        assert_eq!(
            (udp6.src, udp6.dst, udp6.dport),
            (lo6, lo6, Some(9)),
            "{udp6:?}"
        );
        assert!(sent.udp6_ports.contains(&udp6.sport.unwrap()), "{udp6:?}");
        assert_eq!(
            udp6.json_line(&names),
            format!(
                r#"{{"event":"drop","chain":"input","proto":"udp","src":"::1","dst":"::1","sport":{},"dport":9}}"#,
                udp6.sport.unwrap()
            )
        );
    } else {
        eprintln!("nflog test: no IPv6 on the namespace's loopback, IPv6 part skipped");
    }
    drop(netns);
}

/// Sends one ICMP echo request to `to` from a raw socket (root only); the ruleset drops it.
fn icmp_echo(to: Ipv4Addr) {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    // type 8 (echo request), code 0, checksum, identifier, sequence
    let mut echo = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    let sum = !echo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>() as u16;
    echo[2..4].copy_from_slice(&sum.to_be_bytes());
    socket
        .send_to(&echo, &SocketAddr::new(to.into(), 0).into())
        .unwrap();
}
