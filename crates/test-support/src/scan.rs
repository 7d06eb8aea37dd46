//! nmap TCP SYN and UDP scans for end-to-end tests, run under a command prefix such as
//! `ip netns exec client`, and the parsing of nmap's grepable output into open ports.
//!
//! **Speed.** A target whose firewall silently drops a port gives nmap nothing to wait
//! for but its own timeouts. With `-T4 --max-retries 1` alone, all 65535 ports against a
//! host that drops all but one took 88 s over a veth pair; [`FLAGS`] add
//! `--min-rate 10000 --max-rtt-timeout 100ms` (the test networks are veth pairs and
//! bridges on one machine, with RTTs far below a millisecond), which takes 13 s for the
//! same scan with the same result (`--min-rate 20000` took 7 s).
//!
//! **The scanner's own firewall.** nmap on Linux sends its SYN probes through a raw IP
//! socket (`send_ip_packet_sd`), and raw sockets still traverse netfilter's OUTPUT hook.
//! When the scanning host's own ruleset drops a probe there, `sendto` fails with EPERM and
//! nmap prints `sendto in send_ip_packet_sd: ... Operation not permitted` (the first ten,
//! then "Omitting future Sendto error messages") on stderr and reports the port
//! `filtered`. Such ports are therefore not open in the result: the scan measures what this
//! client can reach, through both its own and the target's firewall. (`--send-eth`, raw
//! Ethernet frames, would bypass the client's OUTPUT chain; it is not used.)
//!
//! Package: `nmap`. SYN scans need root (raw sockets).

use std::ffi::OsString;
use std::process::Command;

use crate::client::tool;

/// nmap's flags besides `-p` and the target.
pub const FLAGS: &[&str] = &[
    "-n",
    "-Pn",
    "-sS",
    "--max-retries",
    "1",
    "-T4",
    "--min-rate",
    "10000",
    "--max-rtt-timeout",
    "100ms",
    "-oG",
    "-",
];

/// Seconds one scan may take before `timeout` kills it.
pub const SCAN_LIMIT_SECS: u32 = 120;

/// Whether nmap is installed; outside CI a missing one prints `SKIPPED` (see [`tool`]).
pub fn available() -> bool {
    tool("nmap", None).is_some()
}

/// SYN-scans `ports` of `target` (nmap syntax: `-` for all, `3306`, `22,80-90`) from
/// under `prefix`, and returns the open ports, sorted, with nmap's stdout and stderr
/// (for messages). An error when nmap fails, times out, or did not scan the target
/// (no route, for one).
pub fn open_tcp_ports(
    prefix: &[OsString],
    target: &str,
    ports: &str,
) -> Result<(Vec<u16>, String), String> {
    open_ports(prefix, target, ports, Proto::Tcp, false)
}

/// UDP-scans (`-sU`) `ports` of `target` like [`open_tcp_ports`]. A UDP port counts as
/// open only when something answered it (nmap's `open`: a DNS server answers nmap's DNS
/// probe); a port whose datagrams the firewall drops is `open|filtered` to nmap, which
/// is not open.
pub fn open_udp_ports(
    prefix: &[OsString],
    target: &str,
    ports: &str,
) -> Result<(Vec<u16>, String), String> {
    open_ports(prefix, target, ports, Proto::Udp, false)
}

/// Which scan: SYN or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Scans `ports` of `target` over `proto`. With `send_eth`, nmap sends raw Ethernet
/// frames (`--send-eth`) and reads answers by packet capture, so neither direction
/// passes the scanning host's own netfilter: the result is what the *target's* firewall
/// lets through, as an attacker's machine without rampart's client ruleset would see.
pub fn open_ports(
    prefix: &[OsString],
    target: &str,
    ports: &str,
    proto: Proto,
    send_eth: bool,
) -> Result<(Vec<u16>, String), String> {
    let nmap = tool("nmap", None).ok_or("nmap is not installed")?;
    let mut flags: Vec<&str> = FLAGS
        .iter()
        .map(|f| match (*f, proto) {
            ("-sS", Proto::Udp) => "-sU",
            (f, _) => f,
        })
        .collect();
    if send_eth {
        flags.push("--send-eth");
    }
    let out = Command::new("timeout")
        .args(["-k", "5", &SCAN_LIMIT_SECS.to_string()])
        .args(prefix)
        .arg(&nmap)
        .args(&flags)
        .arg(format!("-p{ports}"))
        .arg(target)
        .output()
        .map_err(|e| format!("run nmap: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let raw = format!("{stdout}{stderr}");
    if !out.status.success() {
        let why = if out.status.code() == Some(124) {
            format!("timed out after {SCAN_LIMIT_SECS} s")
        } else {
            format!("exited with {}", out.status)
        };
        return Err(format!("nmap {target} -p{ports}: {why}:\n{raw}"));
    }
    let open = parse_grepable(&stdout, proto)
        .map_err(|e| format!("nmap {target} -p{ports}: {e}:\n{raw}"))?;
    Ok((open, raw))
}

/// The open `proto` ports in nmap's grepable output (`-oG -`) for a scan of one host
/// that completed: `# Nmap done` present and the host `Status: Up`.
pub fn parse_grepable(out: &str, proto: Proto) -> Result<Vec<u16>, String> {
    if !out.lines().any(|l| l.starts_with("# Nmap done")) {
        return Err("scan did not complete".into());
    }
    if !out
        .lines()
        .any(|l| l.starts_with("Host: ") && l.contains("\tStatus: Up"))
    {
        return Err("target not scanned (no `Status: Up` line)".into());
    }
    let mut open = Vec::new();
    for field in out
        .lines()
        .filter(|l| l.starts_with("Host: "))
        .flat_map(|l| l.split('\t'))
    {
        let Some(list) = field.strip_prefix("Ports: ") else {
            continue;
        };
        // Each entry: port/state/protocol/owner/service/rpc info/version/
        for entry in list.split(", ").filter(|e| !e.trim().is_empty()) {
            let mut parts = entry.trim().split('/');
            let (Some(port), Some(state), Some(protocol)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("unparsable port entry {entry:?}"));
            };
            let port: u16 = port
                .parse()
                .map_err(|_| format!("unparsable port entry {entry:?}"))?;
            if state == "open" && protocol == proto.name() {
                open.push(port);
            }
        }
    }
    open.sort_unstable();
    open.dedup();
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(out: &str, expected: Result<Vec<u16>, &str>) {
        let got = parse_grepable(out, Proto::Tcp);
        match expected {
            Ok(ports) => assert_eq!(got, Ok(ports), "{out}"),
            Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{got:?}"),
        }
    }

    const HEAD: &str = "# Nmap 7.93 scan initiated Mon Nov 23 08:50:40 2026 as: nmap -n -Pn -sS -p- -oG - 198.18.200.2\n";
    const DONE: &str = "# Nmap done at Mon Nov 23 08:52:07 2026 -- 1 IP address (1 host up) scanned in 13.39 seconds\n";

    #[test]
    fn grepable_output() {
        let up = "Host: 198.18.200.2 ()\tStatus: Up\n";
        // One open port, the rest filtered (ignored).
        check(
            &format!("{HEAD}{up}Host: 198.18.200.2 ()\tPorts: 443/open/tcp//https///\tIgnored State: filtered (65534)\n{DONE}"),
            Ok(vec![443]),
        );
        // Listed ports in several states; only open counts.
        check(
            &format!("{HEAD}{up}Host: 198.18.200.2 ()\tPorts: 1/filtered/tcp//tcpmux///, 443/open/tcp//https///, 22/open/tcp//ssh///, 8443/closed/tcp//https-alt///\n{DONE}"),
            Ok(vec![22, 443]),
        );
        // Everything filtered: no Ports field at all, or only ignored states.
        check(&format!("{HEAD}{up}{DONE}"), Ok(vec![]));
        check(
            &format!("{HEAD}{up}Host: 198.18.200.2 ()\tIgnored State: filtered (65535)\n{DONE}"),
            Ok(vec![]),
        );
        // The client's own OUTPUT chain refused the probes: those ports are filtered
        // (the sendto errors go to stderr, which is not parsed).
        check(
            &format!("{HEAD}{up}Host: 198.18.200.2 ()\tPorts: 443/open/tcp//https///\tIgnored State: filtered (1999)\n{DONE}"),
            Ok(vec![443]),
        );
        // No route: nmap scanned nothing.
        check(
            &format!("{HEAD}# Nmap done at Mon Nov 23 08:54:47 2026 -- 0 IP addresses (0 hosts up) scanned in 0.02 seconds\n"),
            Err("not scanned"),
        );
        // UDP: only a port that answered is open; open|filtered (dropped) is not.
        let udp = format!("{HEAD}{up}Host: 203.0.113.53 ()\tPorts: 53/open/udp//domain///, 123/open|filtered/udp//ntp///\tIgnored State: open|filtered (65533)\n{DONE}");
        assert_eq!(parse_grepable(&udp, Proto::Udp), Ok(vec![53]));
        assert_eq!(parse_grepable(&udp, Proto::Tcp), Ok(vec![]));
        // Every port ignored: an empty Ports field.
        let none = format!("{HEAD}{up}Host: 203.0.113.10 ()\tPorts: \tIgnored State: open|filtered (65535)\n{DONE}");
        assert_eq!(parse_grepable(&none, Proto::Udp), Ok(vec![]));
        // Killed before the end.
        check(&format!("{HEAD}{up}"), Err("did not complete"));
        check(
            &format!("{HEAD}{up}Host: 198.18.200.2 ()\tPorts: x/open/tcp//https///\n{DONE}"),
            Err("unparsable"),
        );
    }
}
