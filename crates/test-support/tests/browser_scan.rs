//! The headless-browser and nmap helpers against a real HTTPS server in a pair of network
//! namespaces this test creates (198.18.200.0/24 on a veth pair, no route out): Chromium
//! trusts rampart's CA through its NSS database and nothing else, and a full SYN scan
//! through a drop-everything firewall finds exactly the one allowed port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_test_support::client::tool;
use rampart_test_support::{backend_bin, browser, require_root, scan, Pki, Proc};

const CLIENT_ADDR: &str = "198.18.200.1";
const SERVER_ADDR: &str = "198.18.200.2";
const PAGE: &str = "rampart-browser-check";

/// The two namespaces and the processes started in them; dropping it stops the
/// processes (each by its own PID) and then deletes the namespaces by name.
struct Net {
    a: String,
    b: String,
    procs: Vec<Proc>,
}

/// Turns IPv6 off for `confs` (`all`, `default` or a device) in namespace `ns`, through
/// that namespace's own `/proc/sys/net`. The test uses IPv4 only, and a link coming up
/// otherwise gets an IPv6 link-local address a moment later (after duplicate address
/// detection): Chromium, started right after, saw that change during its page load and
/// failed it with `net::ERR_NETWORK_CHANGED` (seen once in CI-like runs).
fn no_ipv6(ns: &str, confs: &[&str]) {
    let script: Vec<String> = confs
        .iter()
        .map(|c| format!("echo 1 > /proc/sys/net/ipv6/conf/{c}/disable_ipv6"))
        .collect();
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", &script.join("; ")])
        .status()
        .unwrap();
    assert!(status.success(), "disabling ipv6 in {ns}: {status}");
}

impl Net {
    fn new() -> Net {
        let pid = std::process::id();
        let net = Net {
            a: format!("bt{pid}-a"),
            b: format!("bt{pid}-b"),
            procs: Vec::new(),
        };
        for ns in [&net.a, &net.b] {
            ip(&["netns", "add", ns]);
            no_ipv6(ns, &["all", "default"]);
        }
        // The veth pair is created inside the namespaces: the root namespace never gets
        // an interface, address or route into 198.18.200.0/24.
        ip(&[
            "-n", &net.a, "link", "add", "bt-va", "type", "veth", "peer", "name", "bt-vb", "netns",
            &net.b,
        ]);
        ip(&[
            "-n",
            &net.a,
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            "bt-va",
        ]);
        ip(&[
            "-n",
            &net.b,
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            "bt-vb",
        ]);
        for (ns, dev) in [(&net.a, "bt-va"), (&net.b, "bt-vb")] {
            no_ipv6(ns, &[dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        net
    }

    fn prefix(ns: &str) -> Vec<OsString> {
        ["ip", "netns", "exec", ns].map(OsString::from).to_vec()
    }

    /// Starts `rampart-test-backend` with TLS in namespace b on `port`, answering every
    /// path with `name`.
    fn https_backend(&mut self, name: &str, port: u16, cert: PathBuf, key: PathBuf) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.b])
            .arg(backend_bin())
            .args(["--name", name, "--listen", &format!("{SERVER_ADDR}:{port}")])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rampart-test-backend");
        let stdout = child.stdout.take().unwrap();
        // `ip netns exec` execs the backend, so this PID is the backend's own.
        self.procs.push(Proc {
            child,
            name: name.to_owned(),
        });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening "), "backend {name}: {line:?}");
    }

    fn nft(&self, ns: &str, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft in {ns}:\n{ruleset}");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.procs.clear();
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {}", args.join(" "));
}

#[test]
fn chromium_trusts_only_the_given_ca_and_nmap_finds_only_the_allowed_port() {
    if !require_root("network namespaces, nftables and nmap SYN scans")
        || tool("ip", None).is_none()
        || tool("nft", None).is_none()
        || !browser::available()
        || !scan::available()
    {
        return;
    }
    let trusted = Pki::new(&[]);
    let other = Pki::new(&[]);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser_scan");
    let _ = std::fs::remove_dir_all(&work);

    let mut net = Net::new();
    net.https_backend(
        PAGE,
        443,
        trusted.path("site.pem"),
        trusted.path("site.key"),
    );
    net.https_backend(
        "untrusted-site",
        8443,
        other.path("site.pem"),
        other.path("site.key"),
    );
    let a = Net::prefix(&net.a);
    let map = format!("--host-resolver-rules=MAP www.foobar.com {SERVER_ADDR}");

    // The site signed by the CA in the NSS database loads and renders.
    let start = Instant::now();
    let page = browser::open_with(
        &a,
        "https://www.foobar.com/",
        &trusted.path("ca.pem"),
        &work,
        &[&map],
    )
    .unwrap_or_else(|e| panic!("trusted page: {e}"));
    println!(
        "browser: trusted page in {:?}, screenshot {} ({} bytes), dom: {}",
        start.elapsed(),
        page.screenshot.display(),
        std::fs::metadata(&page.screenshot).unwrap().len(),
        page.dom.trim()
    );
    assert!(page.dom.contains(PAGE), "{}", page.dom);

    // The same site with another CA in the database fails: the import is what trusts it.
    let err = browser::open_with(
        &a,
        "https://www.foobar.com/",
        &other.path("ca.pem"),
        &work,
        &[&map],
    )
    .expect_err("a site signed by a CA not in the NSS database must not load");
    println!(
        "browser: same site, other CA trusted: {}",
        err.lines().next().unwrap_or("")
    );
    assert!(err.contains("ERR_CERT_AUTHORITY_INVALID"), "{err}");

    // A site signed by another CA fails with ours trusted.
    let err = browser::open_with(
        &a,
        "https://www.foobar.com:8443/",
        &trusted.path("ca.pem"),
        &work,
        &[&map],
    )
    .expect_err("a site signed by an untrusted CA must not load");
    println!(
        "browser: other CA's site: {}",
        err.lines().next().unwrap_or("")
    );
    assert!(err.contains("ERR_CERT_AUTHORITY_INVALID"), "{err}");

    // Without a firewall both listeners are open.
    let (open, raw) = scan::open_tcp_ports(&a, SERVER_ADDR, "1-1024,8443").unwrap();
    assert_eq!(open, vec![443, 8443], "{raw}");

    // The server drops everything but 443: a full scan finds only 443, well within a minute.
    net.nft(
        &net.b,
        "table inet bt {\n  chain input {\n    type filter hook input priority 0; policy drop;\n    \
         iif lo accept\n    ct state established,related accept\n    tcp dport 443 accept\n  }\n}\n",
    );
    let start = Instant::now();
    let (open, raw) = scan::open_tcp_ports(&a, SERVER_ADDR, "-").unwrap();
    let took = start.elapsed();
    println!("scan: all 65535 ports in {took:?}: open {open:?}");
    print!("{raw}");
    assert_eq!(open, vec![443], "{raw}");
    assert!(took < Duration::from_secs(60), "full scan took {took:?}");

    // The client's own OUTPUT chain refuses the probes to other ports: nmap's sendto gets
    // EPERM, and those ports are not reported open.
    net.nft(
        &net.a,
        "table inet bt {\n  chain output {\n    type filter hook output priority 0; policy drop;\n    \
         oif lo accept\n    ct state established,related accept\n    tcp dport 443 accept\n  }\n}\n",
    );
    let (open, raw) = scan::open_tcp_ports(&a, SERVER_ADDR, "1-1024,8443").unwrap();
    println!(
        "scan: own OUTPUT chain dropping probes: open {open:?}, {} sendto EPERM lines",
        raw.lines()
            .filter(|l| l.contains("Operation not permitted"))
            .count()
    );
    assert_eq!(open, vec![443], "{raw}");
    assert!(raw.contains("Operation not permitted"), "{raw}");
}
