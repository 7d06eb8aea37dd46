//! The agent in-process, in the shape every service has: listeners bound outside
//! (`Listeners::bind`, port 0), built from its config (`Agent::new`), served with a
//! shutdown future and a readiness callback (`Agent::serve`). Its own `/metrics` answers
//! the allow-listed source only, and with host collection on has job `node`'s families.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use rampart_agent::config::Config;
use rampart_agent::run::{Agent, Listeners};
use rampart_telemetry::config::ConfigFile;

/// Sends a bare GET from source `from` and returns everything read until the agent
/// closes (or 5 s pass).
fn get_from(from: &str, to: SocketAddr, path: &str) -> String {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&src.into()).unwrap();
    s.connect(&to.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// An address nothing listens on: pushes fail at connect, which the agent retries.
fn nowhere() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn agent_binds_outside_serve_answers_metrics_to_the_allow_list_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\ninstance = \"t1\"\ninterval = \"200ms\"\nstate_dir = \"state\"\n\
         [push]\nurl = \"http://{}/api/v1/write\"\n[host]\nenabled = false\n\
         [listen]\nmetrics = \"127.0.0.1:0\"\nallow_from = [\"127.0.0.1/32\"]\n",
        nowhere()
    );
    let config = Config::parse(&dir.path().join("agent.toml"), &text).unwrap();
    assert_eq!(config.state_dir, Path::new(dir.path()).join("state"));
    let (addr, stop_tx, thread) = start(config);

    let answer = get_from("127.0.0.1", addr, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("rampart_agent_heartbeat_timestamp_seconds"),
        "{answer}"
    );
    // Outside the allow-list: closed at accept, nothing answered.
    assert_eq!(get_from("127.0.0.2", addr, "/metrics"), "");

    let _ = stop_tx.send(());
    thread.join().unwrap().unwrap();
    // The listener went with the agent.
    assert!(TcpStream::connect(addr).is_err());
}

/// Dashboards built for node_exporter find its `process_*` in job `node`, beside the
/// host families and each collector's success.
#[test]
fn host_collection_serves_node_families_with_process_ones_in_job_node() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\ninstance = \"t1\"\ninterval = \"200ms\"\nstate_dir = \"state\"\n\
         [push]\nurl = \"http://{}/api/v1/write\"\n[host]\nenabled = true\nroot = \"/\"\n\
         [listen]\nmetrics = \"127.0.0.1:0\"\nallow_from = [\"127.0.0.1/32\"]\n",
        nowhere()
    );
    let config = Config::parse(&dir.path().join("agent.toml"), &text).unwrap();
    let (addr, stop_tx, thread) = start(config);
    let answer = rampart_test_support::eventually(
        "a collection with host metrics",
        Duration::from_secs(20),
        || {
            let a = get_from("127.0.0.1", addr, "/metrics");
            a.contains("node_boot_time_seconds").then_some(a)
        },
    );
    for want in [
        "process_resident_memory_bytes{job=\"node\"}",
        "process_max_fds{job=\"node\"}",
        "process_resident_memory_bytes{job=\"agent\"}",
        "node_scrape_collector_success{collector=\"cpu\"} 1\n",
        "node_uname_info{",
    ] {
        assert!(answer.contains(want), "no {want} in:\n{answer}");
    }
    let _ = stop_tx.send(());
    thread.join().unwrap().unwrap();
}

/// Runs the agent of `config` on a thread of its own until the sender is used: its
/// `/metrics` address, the stop sender and the thread (the serve result).
fn start(
    config: Config,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<std::io::Result<()>>,
) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listeners = Listeners::bind(&config).unwrap();
            let addr = listeners.local_addr().unwrap().unwrap();
            let agent = Agent::new(config).unwrap();
            agent
                .serve(
                    listeners,
                    async {
                        let _ = stop_rx.await;
                    },
                    move || ready_tx.send(addr).unwrap(),
                )
                .await
        })
    });
    let addr = ready_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    (addr, stop_tx, thread)
}
