//! ACME against the real `pebble` (Let's Encrypt's test CA, Debian's package), all on
//! loopback: pebble resolves the site's name through `pebble-challtestsrv` (to
//! 127.0.0.1) and validates HTTP-01 on the load balancer's plain-HTTP port. The load
//! balancer starts before pebble (its orders fail and back off), then gets a
//! certificate of pebble's issuing root and, pebble's certificates living 60 s, renews it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_lb::{Config, Lb, Listeners};
use rampart_telemetry::config::ConfigFile;
use rampart_test_support::{eventually, free_port, Pki, Proc};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Proc {
        child,
        name: name.into(),
    }
}

/// The certificate chain lb serves for www.foobar.com, if it verifies against `root`.
fn served_chain(https: SocketAddr, root: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            root,
        )
    {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(rampart_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls::pki_types::ServerName::try_from("www.foobar.com").unwrap(),
    )
    .unwrap();
    let mut sock =
        TcpStream::connect_timeout(&https, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    Ok(conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_vec())
        .collect())
}

fn metric(lb: &Lb, line_start: &str) -> f64 {
    lb.metrics()
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A load balancer in-process whose `[acme]` orders from `directory`, its plain HTTP on
/// `http` (an `IP:PORT`, `:0` for any port), asking `peers` for challenges it does not
/// know; its files (placeholder site certificate, account) live in `pki`.
struct TestLb {
    lb: Arc<Lb>,
    https: SocketAddr,
    http: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start_lb(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    http: &str,
    directory: &str,
    peers: &[SocketAddr],
) -> Option<TestLb> {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        pki.path("lb.toml"),
        format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"{http}\"\nadmin = \"off\"\n\
             [[tls.certificates]]\ncert = \"site.pem\"\nkey = \"site.key\"\n\
             [log]\naccess_log = \"off\"\n[[backends]]\nname = \"web1\"\naddress = \"127.0.0.1:9\"\n\
             [acme]\ndirectory = \"{directory}\"\ndirectory_ca = \"ca.pem\"\n\
             account = \"acme/account.json\"\nnames = [\"www.foobar.com\"]\n\
             contact = [\"mailto:ops@foobar.com\"]\npeers = [{}]\n\
             check_every = \"1s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n",
            peers.join(", ")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(pki.path("acme")).unwrap();
    let config = Config::load(&pki.path("lb.toml")).unwrap();
    let (lb, listeners) = rt.block_on(async {
        let l = Listeners::bind(&config).ok()?;
        Some((Lb::new(config).unwrap(), l))
    })?;
    let https = listeners.https.local_addr().unwrap();
    let http = listeners.http.as_ref().unwrap().local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let lb = Arc::clone(&lb);
        rt.spawn(async move {
            let _ = lb
                .serve(
                    listeners,
                    async {
                        let _ = stop_rx.await;
                    },
                    || {},
                )
                .await;
        });
    }
    Some(TestLb {
        lb,
        https,
        http,
        _stop: stop_tx,
    })
}

/// pebble and its DNS (every name resolves to 127.0.0.1), validating HTTP-01 on
/// `http_port`; its HTTPS certificate from `pki`'s CA.
struct Pebble {
    _procs: [Proc; 2],
    log: std::path::PathBuf,
    root: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Pebble {
    fn ports() -> (u16, u16, u16) {
        (free_port(), free_port(), free_port())
    }

    fn start(
        pki: &Pki,
        (dir_port, mgmt_port, dns_port): (u16, u16, u16),
        http_port: u16,
    ) -> Pebble {
        let ca = rampart_tls::pki::Ca::load(pki.dir.path()).unwrap();
        ca.issue(pki.dir.path(), "pebble", &["127.0.0.1".into()], false)
            .unwrap();
        let logs = tempfile::tempdir().unwrap();
        let dns = spawn(
            "pebble-challtestsrv",
            Command::new(CHALLTESTSRV).args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
            ]),
            &logs.path().join("challtestsrv.log"),
        );
        let cfg = logs.path().join("pebble.json");
        std::fs::write(
            &cfg,
            serde_json::json!({ "pebble": {
                "listenAddress": format!("127.0.0.1:{dir_port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": pki.path("pebble.pem"),
                "privateKey": pki.path("pebble.key"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": 60,
            }})
            .to_string(),
        )
        .unwrap();
        let log = logs.path().join("pebble.log");
        let pebble = spawn(
            "pebble",
            Command::new(PEBBLE)
                .args(["-config"])
                .arg(&cfg)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            &log,
        );
        let root = eventually("pebble's root", Duration::from_secs(30), || {
            let out = Command::new("curl")
                .args(["-sf", "--cacert"])
                .arg(pki.path("ca.pem"))
                .arg(format!("https://127.0.0.1:{mgmt_port}/roots/0"))
                .output()
                .ok()?;
            (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
        });
        Pebble {
            _procs: [dns, pebble],
            log,
            root,
            _dir: logs,
        }
    }

    fn said(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The chain `https` serves, once it verifies against pebble's root (60 s at most).
    fn served(&self, what: &str, https: SocketAddr) -> Vec<Vec<u8>> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(chain) = served_chain(https, &self.root) {
                return chain;
            }
            assert!(
                Instant::now() < end,
                "{what}: no certificate from pebble in 60 s; pebble's log:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn pebble_installed() -> bool {
    let found = Path::new(PEBBLE).exists() && Path::new(CHALLTESTSRV).exists();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "pebble is not installed; `./run test` installs it"
        );
        eprintln!("SKIPPED: pebble is not installed (Debian package pebble)");
    }
    found
}

#[test]
fn the_site_certificate_comes_from_pebble_and_renews() {
    if !pebble_installed() {
        return;
    }
    let pki = Pki::new(&[]);
    // No site pair at all: the lb starts on a self-signed placeholder it writes.
    for f in ["site.pem", "site.key"] {
        std::fs::remove_file(pki.path(f)).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ports = Pebble::ports();
    let directory = format!("https://127.0.0.1:{}/dir", ports.0);
    let TestLb {
        lb,
        https,
        http,
        _stop,
    } = start_lb(&rt, &pki, "127.0.0.1:0", &directory, &[]).unwrap();
    let placeholder = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-issuer", "-in"])
        .arg(pki.path("site.pem"))
        .output()
        .unwrap();
    let placeholder = String::from_utf8_lossy(&placeholder.stdout).into_owned();
    assert_eq!(
        placeholder
            .matches("CN = rampart placeholder (ACME order pending)")
            .count(),
        2,
        "a self-signed placeholder expected: {placeholder}"
    );

    // No CA yet: orders fail, are counted, and back off.
    eventually("two failed orders", Duration::from_secs(30), || {
        (metric(&lb, "rampart_lb_acme_orders_total{outcome=\"failure\"}") >= 2.0).then_some(())
    });
    assert!(metric(&lb, "rampart_lb_acme_consecutive_failures ") >= 2.0);
    assert!(metric(&lb, "rampart_lb_acme_next_attempt_timestamp_seconds ") > 1.7e9);
    // An unknown challenge token is a 404 on plain HTTP; other paths still redirect.
    let get = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: www.foobar.com",
            ])
            .arg(format!("http://{http}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/.well-known/acme-challenge/nothing-here"), "404");
    assert_eq!(get("/"), "308");

    let pebble = Pebble::start(&pki, ports, http.port());
    // Issued: the lb serves a chain that verifies against pebble's root.
    let first = pebble.served("lb", https);
    let issued_at = Instant::now();
    assert!(first.len() >= 2, "leaf and intermediate expected");
    assert_eq!(metric(&lb, "rampart_lb_acme_consecutive_failures "), 0.0);
    for f in ["acme/account.json", "site.key"] {
        let mode = std::fs::metadata(pki.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let account = std::fs::read_to_string(pki.path("acme/account.json")).unwrap();
    assert!(account.contains("key_pkcs8"), "account credentials kept");

    // Renewed at two thirds of its 60 s: a new leaf, still from pebble, with no restart.
    let second = eventually("the renewal", Duration::from_secs(90), || {
        served_chain(https, &pebble.root)
            .ok()
            .filter(|c| c[0] != first[0])
    });
    let renewed_after = issued_at.elapsed();
    let successes = metric(&lb, "rampart_lb_acme_orders_total{outcome=\"success\"}");
    eprintln!(
        "acme: issued, then renewed after {:.1} s; {successes} successful orders, {} failed before pebble ran",
        renewed_after.as_secs_f64(),
        metric(&lb, "rampart_lb_acme_orders_total{outcome=\"failure\"}")
    );
    assert!(second.len() >= 2);
    assert!(successes >= 2.0);
    // Renewal waits for two thirds of the life: not long before 40 s.
    assert!(renewed_after > Duration::from_secs(25), "{renewed_after:?}");
    // pebble validated HTTP-01 on the load balancer's port, for both orders.
    let log = pebble.said();
    let asked = format!(
        "Attempting to validate w/ HTTP: http://www.foobar.com:{}/.well-known/acme-challenge/",
        http.port()
    );
    assert!(
        log.matches(&asked).count() >= 2,
        "{asked} missing from pebble's log:\n{log}"
    );
}

/// A pair: pebble's DNS sends every validation to lb A (as the floating address would
/// be on it), yet lb B gets its certificate too: A does not know B's challenge and asks
/// its peer B for it. Without `peers`, B's orders fail.
#[test]
fn both_load_balancers_of_a_pair_get_certificates_through_one_address() {
    if !pebble_installed() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a_pki, b_pki) = (Pki::new(&[]), Pki::new(&[]));
    // Both verify pebble's HTTPS against the CA that issued it, A's.
    std::fs::copy(a_pki.path("ca.pem"), b_pki.path("ca.pem")).unwrap();
    let ports = Pebble::ports();
    let directory = format!("https://127.0.0.1:{}/dir", ports.0);
    // The same plain-HTTP port on two loopback addresses, as on two hosts.
    let (a, b) = eventually(
        "one port free on both addresses",
        Duration::from_secs(10),
        || {
            let port = free_port();
            let b_http = SocketAddr::from(([127, 0, 0, 2], port));
            let a_http = SocketAddr::from(([127, 0, 0, 1], port));
            let a = start_lb(&rt, &a_pki, &a_http.to_string(), &directory, &[b_http])?;
            let b = start_lb(&rt, &b_pki, &b_http.to_string(), &directory, &[a_http])?;
            Some((a, b))
        },
    );
    let pebble = Pebble::start(&a_pki, ports, a.http.port());
    let a_chain = pebble.served("lb A", a.https);
    let b_chain = pebble.served("lb B (its challenges relayed by A)", b.https);
    assert_ne!(a_chain[0], b_chain[0], "each orders its own");
    let relayed = format!("http://www.foobar.com:{}/", a.http.port());
    assert!(pebble.said().contains(&relayed));
    eprintln!(
        "acme pair: A {} and B {} successful orders, every validation sent to A",
        metric(&a.lb, "rampart_lb_acme_orders_total{outcome=\"success\"}"),
        metric(&b.lb, "rampart_lb_acme_orders_total{outcome=\"success\"}")
    );
}
