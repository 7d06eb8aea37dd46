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
/// and returns its address.
fn run<S: Send + 'static>(
    start: impl FnOnce() -> (S, SocketAddr) + Send + 'static,
    serve: impl FnOnce(
            S,
            tokio::sync::oneshot::Receiver<()>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        + Send
        + 'static,
) -> (Running, SocketAddr) {
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

fn logs(dir: &Path, addr: &str) -> (Running, SocketAddr) {
    std::fs::write(
        dir.join("logs.toml"),
        format!(
            "[listen]\naddr = \"{addr}\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             client_ca = \"plane/ca.pem\"\n[store]\npath = \"logs.db\"\n"
        ),
    )
    .unwrap();
    let config = rampart_logs::Config::load(&dir.join("logs.toml")).unwrap();
    run(
        move || {
            let l = rampart_logs::Listeners::bind(&config).unwrap();
            let addr = l.https.local_addr().unwrap();
            (
                (Arc::new(rampart_logs::Logs::new(config).unwrap()), l),
                addr,
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

fn agent(dir: &Path, gate: SocketAddr) -> Running {
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "[agent]\ninstance = \"web1\"\ninterval = \"1s\"\nstate_dir = \"agent-state\"\n\
             [push]\nurl = \"https://{gate}/api/v1/write\"\nca = \"site/ca.pem\"\ncert = \"web1.pem\"\nkey = \"web1.key\"\ntimeout = \"2s\"\n\
             [host]\nenabled = false\n\
             [logs]\nurl = \"https://{gate}/loki/api/v1/push\"\npoll = \"100ms\"\n\
             [[logs.files]]\npath = \"app.log\"\nservice = \"web\"\nstream = \"app\"\n"
        ),
    )
    .unwrap();
    let config = rampart_agent::config::Config::load(&dir.join("agent.toml")).unwrap();
    run(
        move || {
            let l = rampart_agent::run::Listeners::bind(&config).unwrap();
            let a = Arc::new(rampart_agent::run::Agent::new(config).unwrap());
            ((a, l), "127.0.0.1:9".parse().unwrap())
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
    let store = rampart_logs::Store::open(&dir.join("logs.db")).unwrap();
    let rampart_logs::logql::Query::Log(q) =
        rampart_logs::logql::parse(r#"{service="web"}"#).unwrap()
    else {
        panic!()
    };
    store
        .select(
            &q,
            0,
            i64::MAX,
            usize::MAX,
            rampart_logs::store::Direction::Forward,
        )
        .unwrap()
        .into_iter()
        .flat_map(|(_, v)| v.into_iter().map(|(_, l)| l))
        .collect()
}

#[test]
fn every_line_is_stored_once_across_a_store_outage_an_agent_restart_and_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    let site = Ca::create(&d.join("site"), "test CA").unwrap();
    site.issue(&d, "server", &["127.0.0.1".into()], false)
        .unwrap();
    site.issue_client(&d, "web1", &["web1".into()]).unwrap();
    let plane = Ca::create(&d.join("plane"), "test plane CA").unwrap();
    plane
        .issue_client(&d, "plane-gate", &["gate.plane.rampart".into()])
        .unwrap();

    let (store, store_addr) = logs(&d, "127.0.0.1:0");
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
    let (_gate, gate_addr) = run(
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
    );
    let agent1 = agent(&d, gate_addr);

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
    let _agent2 = agent(&d, gate_addr);
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
