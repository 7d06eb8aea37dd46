//! Log shipping end to end in process, with the real pieces: an agent tails a file
//! that a writer appends to steadily and ships it through the gate to `rampart logs`.
//! Meanwhile the store is stopped for two seconds and started again on the same
//! address, the agent is stopped and started again from its state, and the log is
//! rotated by rename. Every line written is stored exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_telemetry::config::ConfigFile;
use rampart_tls::pki::Ca;

/// A service running on a runtime of its own until dropped.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `serve(stop)` on a new two-thread runtime; `start` builds the service inside it
/// and returns its address(es).
fn run<S: Send + 'static, A: Send + 'static>(
    start: impl FnOnce() -> (S, A) + Send + 'static,
    serve: impl FnOnce(
            S,
            tokio::sync::oneshot::Receiver<()>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        + Send
        + 'static,
) -> (Running, A) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (s, addr) = start();
        tx.send(addr).unwrap();
        rt.block_on(serve(s, stopped));
    });
    let addr = rx.recv().unwrap();
    (
        Running {
            stop: Some(stop),
            thread: Some(thread),
        },
        addr,
    )
}

/// The store on `addr`, and its own `/metrics` on a port of its own.
fn logs(dir: &Path, addr: &str) -> (Running, (SocketAddr, SocketAddr)) {
    std::fs::write(
        dir.join("logs.toml"),
        format!(
            "[listen]\naddr = \"{addr}\"\nmetrics = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             client_ca = \"plane/ca.pem\"\n[store]\npath = \"logs.db\"\n"
        ),
    )
    .unwrap();
    let config = rampart_logs::Config::load(&dir.join("logs.toml")).unwrap();
    run(
        move || {
            let l = rampart_logs::Listeners::bind(&config).unwrap();
            let addr = l.https.local_addr().unwrap();
            let metrics = l.metrics.as_ref().unwrap().local_addr().unwrap();
            (
                (Arc::new(rampart_logs::Logs::new(config).unwrap()), l),
                (addr, metrics),
            )
        },
        |(logs, l), stopped| {
            Box::pin(async move {
                logs.serve(
                    l,
                    async {
                        let _ = stopped.await;
                    },
                    || {},
                )
                .await
                .unwrap();
            })
        },
    )
}

/// The agent of web1 shipping through `gate` what `sources` names (the rest of `[logs]`).
fn agent(dir: &Path, gate: SocketAddr, sources: &str) -> Running {
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "[agent]\ninstance = \"web1\"\ninterval = \"1s\"\nstate_dir = \"agent-state\"\n\
             [push]\nurl = \"https://{gate}/api/v1/write\"\nca = \"site/ca.pem\"\ncert = \"web1.pem\"\nkey = \"web1.key\"\ntimeout = \"2s\"\n\
             [host]\nenabled = false\n\
             [logs]\nurl = \"https://{gate}/loki/api/v1/push\"\npoll = \"100ms\"\n{sources}"
        ),
    )
    .unwrap();
    let config = rampart_agent::config::Config::load(&dir.join("agent.toml")).unwrap();
    run(
        move || {
            let l = rampart_agent::run::Listeners::bind(&config).unwrap();
            let a = Arc::new(rampart_agent::run::Agent::new(config).unwrap());
            ((a, l), ())
        },
        |(a, l), stopped| {
            Box::pin(async move {
                a.serve(
                    l,
                    async {
                        let _ = stopped.await;
                    },
                    || {},
                )
                .await
                .unwrap();
            })
        },
    )
    .0
}

/// Every `{service="web"}` line in the store, by paging forward through time.
fn stored(dir: &Path) -> Vec<String> {
    stored_at(dir, r#"{service="web"}"#)
        .into_iter()
        .map(|(_, _, l)| l)
        .collect()
}

/// Every line of `selector` in the store, oldest first: its stream, time and text.
fn stored_at(dir: &Path, selector: &str) -> Vec<(String, i64, String)> {
    let store = rampart_logs::Store::open(&dir.join("logs.db")).unwrap();
    let rampart_logs::logql::Query::Log(q) = rampart_logs::logql::parse(selector).unwrap() else {
        panic!()
    };
    let mut lines: Vec<(String, i64, String)> = store
        .select(
            &q,
            0,
            i64::MAX,
            usize::MAX,
            rampart_logs::store::Direction::Forward,
        )
        .unwrap()
        .into_iter()
        .flat_map(|(s, v)| {
            let s = s.to_string();
            v.into_iter().map(move |(t, l)| (s.clone(), t, l))
        })
        .collect();
    lines.sort_by_key(|(_, t, _)| *t);
    lines
}

/// The site's CA with the store's certificate and web1's, the plane's CA with the gate's.
fn pki(d: &Path) {
    let site = Ca::create(&d.join("site"), "test CA").unwrap();
    site.issue(d, "server", &["127.0.0.1".into()], false)
        .unwrap();
    site.issue_client(d, "web1", &["web1".into()]).unwrap();
    let plane = Ca::create(&d.join("plane"), "test plane CA").unwrap();
    plane
        .issue_client(d, "plane-gate", &["gate.plane.rampart".into()])
        .unwrap();
}

/// The ingest gate, forwarding log pushes to the store at `store_addr`.
fn gate(d: &Path, store_addr: SocketAddr) -> (Running, SocketAddr) {
    std::fs::write(
        d.join("gate.toml"),
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             client_ca = \"site/ca.pem\"\n[upstream]\nurl = \"https://127.0.0.1:9/api/v1/write\"\n\
             ca = \"site/ca.pem\"\ncert = \"plane-gate.pem\"\nkey = \"plane-gate.key\"\n\
             [logs]\nurl = \"https://{store_addr}/loki/api/v1/push\"\nca = \"site/ca.pem\"\n\
             cert = \"plane-gate.pem\"\nkey = \"plane-gate.key\"\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let gate_config = rampart_gate::Config::load(&d.join("gate.toml")).unwrap();
    run(
        move || {
            let l = rampart_gate::Listeners::bind(&gate_config).unwrap();
            let addr = l.https.local_addr().unwrap();
            (
                (Arc::new(rampart_gate::Gate::new(gate_config).unwrap()), l),
                addr,
            )
        },
        |(g, l), stopped| {
            Box::pin(async move {
                g.serve(
                    l,
                    async {
                        let _ = stopped.await;
                    },
                    || {},
                )
                .await
                .unwrap();
            })
        },
    )
}

#[test]
fn every_line_is_stored_once_across_a_store_outage_an_agent_restart_and_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    pki(&d);
    let (store, (store_addr, _)) = logs(&d, "127.0.0.1:0");
    let (_gate, gate_addr) = gate(&d, store_addr);
    const FILE: &str = "[[logs.files]]\npath = \"app.log\"\nservice = \"web\"\nstream = \"app\"\n";
    let agent1 = agent(&d, gate_addr, FILE);

    // The writer: 200 lines a second for 8 s, each unique; it reopens the path when
    // told (after the rotation's rename), as a logrotate `create` client would.
    const LINES: usize = 1600;
    let log: PathBuf = d.join("app.log");
    let reopen = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, reopen) = (log.clone(), Arc::clone(&reopen));
        std::thread::spawn(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap()
            };
            let mut f = open();
            let start = Instant::now();
            for i in 0..LINES {
                if reopen.swap(false, Ordering::SeqCst) {
                    f = open();
                }
                writeln!(f, "line-{i:05} {}", "x".repeat(40)).unwrap();
                let due = start + Duration::from_millis(5 * i as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // The store goes away for two seconds.
    drop(store);
    std::thread::sleep(Duration::from_secs(2));
    let (store, _) = logs(&d, &store_addr.to_string());
    std::thread::sleep(Duration::from_millis(700));
    // The agent restarts from its state.
    drop(agent1);
    std::thread::sleep(Duration::from_millis(500));
    let _agent2 = agent(&d, gate_addr, FILE);
    std::thread::sleep(Duration::from_millis(1500));
    // The log is rotated by rename; the writer goes on in a new file.
    std::fs::rename(&log, d.join("app.log.1")).unwrap();
    reopen.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let end = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = stored(&d);
        if lines.len() >= LINES || Instant::now() > end {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    println!(
        "shipping: {LINES} lines written, {} stored, {} distinct",
        lines.len(),
        unique.len()
    );
    assert_eq!(unique.len(), LINES, "every line stored");
    assert_eq!(lines.len(), LINES, "none stored twice");
    drop(store);
}

/// systemd-journal-remote (Debian: systemd-journal-remote), which writes journal files
/// from the export format; `None` (said) outside CI when missing.
fn journal_remote() -> Option<PathBuf> {
    let p = PathBuf::from("/lib/systemd/systemd-journal-remote");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "systemd-journal-remote is not installed; `./run test` installs it"
    );
    eprintln!("SKIPPED: systemd-journal-remote is not installed (`./run test` installs it)");
    None
}

/// Appends `entries` (each the fields of one, beside its time and this boot's id) to the
/// journal file in `dir` with the real systemd-journal-remote. Returns each entry's
/// realtime in microseconds: two seconds ago (after the kernel's boot, which a new
/// agent reads from), so that it differs from any time of reading.
fn journal_append(tool: &Path, dir: &Path, first: i64, entries: &[&[(&str, &str)]]) -> Vec<i64> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "");
    let ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
        - 2_000_000;
    let mut export = String::new();
    let mut times = Vec::new();
    for (i, fields) in entries.iter().enumerate() {
        let t = ago + first + i as i64;
        times.push(t);
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={boot}\n",
            1000 + first + i as i64
        ));
        for (k, v) in *fields {
            export.push_str(&format!("{k}={v}\n"));
        }
        export.push('\n');
    }
    let out = rampart_test_support::run_with_stdin(
        std::process::Command::new(tool)
            .arg(format!("--output={}", dir.join("remote.journal").display()))
            .arg("-"),
        &export,
    );
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    times
}

/// The value of the store's counter `name` from its own `/metrics`.
fn store_counter(metrics: SocketAddr, name: &str) -> f64 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits (30 s at most) until `selector` has `n` lines in the store.
fn wait_for(d: &Path, selector: &str, n: usize) -> Vec<(String, i64, String)> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = stored_at(d, selector);
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn journal_entries_are_stored_once_with_their_own_time_across_an_agent_restart() {
    let Some(tool) = journal_remote() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    pki(&d);
    let (store, (store_addr, store_metrics)) = logs(&d, "127.0.0.1:0");
    let (_gate, gate_addr) = gate(&d, store_addr);
    let jdir = d.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    const JOURNAL: &str = "[logs.journal]\ndirectory = \"journal\"\n[logs.journal.units]\n\
                           \"rampart-web.service\" = \"web\"\n\"prometheus.service\" = \"prometheus\"\n";
    let web = |m: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("_SYSTEMD_UNIT", "rampart-web.service"), ("MESSAGE", m)]
    };
    // Before the agent's first start: the web server's lines, systemd's line about
    // Prometheus, and a unit the agent does not follow.
    let systemd = [
        ("_PID", "1"),
        ("_SYSTEMD_UNIT", "init.scope"),
        ("UNIT", "prometheus.service"),
        ("MESSAGE", "Started prometheus.service - Prometheus."),
    ];
    let cron = [
        ("_SYSTEMD_UNIT", "cron.service"),
        ("MESSAGE", "not followed"),
    ];
    let (a1, a2) = (web("journal a1"), web("journal a2"));
    let t = journal_append(&tool, &jdir, 0, &[&a1, &systemd, &cron, &a2]);
    let agent1 = agent(&d, gate_addr, JOURNAL);
    let sel = r#"{host="web1", stream="log"}"#;
    let lines = wait_for(&d, sel, 3);
    let want = |w: &[(&str, i64, &str)]| -> Vec<(String, i64, String)> {
        w.iter()
            .map(|(s, t, l)| {
                (
                    format!(r#"{{host="web1", service="{s}", stream="log"}}"#),
                    *t,
                    (*l).to_owned(),
                )
            })
            .collect()
    };
    // Each line keeps its entry's time (the microseconds; the sequence number is in the
    // last three digits of the nanoseconds).
    let us = |l: Vec<(String, i64, String)>| -> Vec<(String, i64, String)> {
        l.into_iter().map(|(s, t, x)| (s, t / 1000, x)).collect()
    };
    let before = [
        ("web", t[0], "journal a1"),
        (
            "prometheus",
            t[1],
            "Started prometheus.service - Prometheus.",
        ),
        ("web", t[3], "journal a2"),
    ];
    assert_eq!(us(lines), want(&before));
    // Followed: an entry written while the agent runs.
    let live = web("journal live");
    let t_live = journal_append(&tool, &jdir, 10, &[&live]);
    let lines = wait_for(&d, sel, 4);
    assert_eq!(us(lines)[3], want(&[("web", t_live[0], "journal live")])[0]);
    // Stopped, entries written meanwhile, started again from its cursor.
    drop(agent1);
    let (b1, b2) = (web("journal b1"), web("journal b2"));
    let tb = journal_append(&tool, &jdir, 20, &[&b1, &b2]);
    let _agent2 = agent(&d, gate_addr, JOURNAL);
    let lines = wait_for(&d, sel, 6);
    let mut all = before.to_vec();
    all.extend([
        ("web", t_live[0], "journal live"),
        ("web", tb[0], "journal b1"),
        ("web", tb[1], "journal b2"),
    ]);
    assert_eq!(us(lines), want(&all));
    // None was sent twice: the restarted agent continued after its cursor.
    std::thread::sleep(Duration::from_secs(1));
    let stored = store_counter(store_metrics, "rampart_logs_lines_stored_total");
    let again = store_counter(store_metrics, "rampart_logs_lines_duplicate_total");
    println!("journal: 6 entries followed, {stored} lines stored, {again} sent again");
    assert_eq!((stored, again), (6.0, 0.0));
    drop(store);
}
