//! The agent's database metrics against the real mysqld_exporter (Debian 12's
//! `prometheus-mysqld-exporter` 0.14, default collectors plus
//! `--collect.info_schema.processlist`) on the same real MariaDB: a primary (with the
//! query response time plugin on) and a delayed replica, each in a temporary directory,
//! both read as a monitoring user with rampart's grants. Every family the exporter emits
//! must be ours with the same type and label names (the few exceptions are listed with
//! their reasons and printed), and stable values must agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::config::Mysql;
use rampart_agent::{expo, mysql};
use rampart_test_support::exposition;
use rampart_test_support::{eventually, free_port, Proc};

/// rampart's monitoring user and its grants (`rampart_topology::plan`'s).
const MONITOR_USER: &str = "rampart_monitor";
const MONITOR_GRANTS: &str = "PROCESS, BINLOG MONITOR, REPLICA MONITOR ON *.*";
const MONITOR_PASSWORD: &str = "monitor-secret";
/// The replica's `MASTER_DELAY`, which `mysql_slave_status_sql_delay` must show.
const SQL_DELAY: u32 = 7;

/// What the exporter emits that the agent does not, and why.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "mysqld_exporter_build_info",
        "the exporter binary's own version; the agent's is not a database metric",
    ),
    (
        "go_*, process_*, promhttp_*",
        "the exporter process's Go runtime and HTTP handler, not the database",
    ),
];

/// A family of a text exposition: its type and its samples (name with suffix, labels
/// without empty values, as Prometheus stores them, and value).
#[derive(Debug, Default)]
struct Fam {
    kind: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn parse(text: &str) -> BTreeMap<String, Fam> {
    let mut fams: BTreeMap<String, Fam> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            fams.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        let Some((name, mut labels, value)) = exposition::sample(line) else {
            continue;
        };
        // Empty label values dropped, as Prometheus stores them.
        labels.retain(|_, v| !v.is_empty());
        let name = name.as_str();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| fams.get(*base).is_some_and(|f| f.kind == "histogram"))
            .unwrap_or(name);
        fams.entry(family.to_owned())
            .or_default()
            .samples
            .push((name.to_owned(), labels, value));
    }
    fams
}

/// The label-name sets of a family's samples.
fn label_sets(f: &Fam) -> BTreeSet<Vec<String>> {
    f.samples
        .iter()
        .map(|(n, l, _)| {
            let mut k: Vec<String> = l.keys().cloned().collect();
            k.insert(0, n.clone());
            k
        })
        .collect()
}

fn value(fams: &BTreeMap<String, Fam>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams.get(name)?
        .samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A mariadbd in a temporary directory, on its own socket (and on 127.0.0.1 when it is
/// the primary a replica connects to); stopped with SIGTERM by its PID when dropped.
struct Server {
    proc: Proc,
    dir: PathBuf,
    socket: PathBuf,
}

impl Server {
    fn start(dir: &Path, server_id: u32, port: Option<u16>) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let datadir = dir.join("data");
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--user={}", user()))
            .args(["--skip-test-db", "--auth-root-authentication-method=normal"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = dir.join("s.sock");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("p.pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--user={}", user()))
            .arg(format!("--server-id={server_id}"))
            .arg(format!("--log-bin={}", datadir.join("bin").display()))
            .args(["--innodb-buffer-pool-size=64M", "--max-connections=77"]);
        match port {
            Some(p) => cmd.args(["--bind-address=127.0.0.1", &format!("--port={p}")]),
            None => cmd.arg("--skip-networking"),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            proc: Proc {
                child,
                name: format!("mariadbd{server_id}"),
            },
            dir: dir.to_owned(),
            socket,
        };
        eventually(
            &format!("mariadbd {server_id} answering"),
            Duration::from_secs(60),
            || server.try_sql("SELECT 1"),
        );
        server
    }

    fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-B", "-uroot", "--connect-timeout=2"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-e", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|| {
            let err = std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default();
            panic!("{sql} failed on {}; error log:\n{err}", self.proc.name)
        })
    }

    /// The monitoring user with rampart's grants, its password file and the exporter's
    /// `.my.cnf` (credentials in files, never on a command line).
    fn monitor(&self) -> (Mysql, PathBuf) {
        self.sql(&format!(
            "SET SESSION sql_log_bin = 0; \
             CREATE USER {MONITOR_USER}@localhost IDENTIFIED BY '{MONITOR_PASSWORD}'; \
             GRANT {MONITOR_GRANTS} TO {MONITOR_USER}@localhost;"
        ));
        let password_file = self.dir.join("monitor.password");
        std::fs::write(&password_file, format!("{MONITOR_PASSWORD}\n")).unwrap();
        let my_cnf = self.dir.join("my.cnf");
        std::fs::write(
            &my_cnf,
            format!(
                "[client]\nuser={MONITOR_USER}\npassword={MONITOR_PASSWORD}\nsocket={}\n",
                self.socket.display()
            ),
        )
        .unwrap();
        let config = Mysql {
            socket: self.socket.clone(),
            tcp: None,
            user: MONITOR_USER.into(),
            password_file,
            timeout: Duration::from_secs(10),
        };
        (config, my_cnf)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.proc.signal("TERM");
        if self.proc.wait_exit(Duration::from_secs(60)).is_none() {
            self.proc.kill();
        }
    }
}

/// The real exporter on a free 127.0.0.1 port, reading `my_cnf`.
fn exporter(my_cnf: &Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("prometheus-mysqld-exporter")
        .arg(format!("--config.my-cnf={}", my_cnf.display()))
        .arg("--collect.info_schema.processlist")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        name: "mysqld_exporter".into(),
    };
    eventually("the exporter listening", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (proc, port)
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// What one comparison found, for the summary line.
#[derive(Default)]
struct Tally {
    families: usize,
    matched: usize,
    values: usize,
    ours_only: Vec<String>,
    series: usize,
}

/// Compares names, types and label names of every family the exporter emitted;
/// returns the problems found (empty when the agent matches).
fn compare_shape(
    theirs: &BTreeMap<String, Fam>,
    ours: &BTreeMap<String, Fam>,
    tally: &mut Tally,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, f) in theirs {
        if !name.starts_with("mysql_") {
            continue; // EXCEPTIONS
        }
        tally.families += 1;
        let Some(o) = ours.get(name) else {
            problems.push(format!("missing {name} ({})", f.kind));
            continue;
        };
        if o.kind != f.kind {
            problems.push(format!(
                "{name}: type {} here, {} in the exporter",
                o.kind, f.kind
            ));
            continue;
        }
        let (t, u) = (label_sets(f), label_sets(o));
        // Duration and processlist label values differ by what each side sees; names
        // must agree.
        if t != u && !t.is_subset(&u) {
            problems.push(format!(
                "{name}: label names {u:?} here, {t:?} in the exporter"
            ));
            continue;
        }
        tally.matched += 1;
    }
    for name in ours.keys() {
        if !theirs.contains_key(name) {
            tally.ours_only.push(name.clone());
            if !name.starts_with("rampart_") {
                problems.push(format!("{name} here but not in the exporter"));
            }
        }
    }
    problems
}

/// A value that must agree: family, labels, tolerance.
type Check<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Values that must agree.
fn compare_values(
    theirs: &BTreeMap<String, Fam>,
    ours: &BTreeMap<String, Fam>,
    checks: &[Check],
    tally: &mut Tally,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, labels, tolerance) in checks {
        match (value(theirs, name, labels), value(ours, name, labels)) {
            (Some(t), Some(o)) if (t - o).abs() <= *tolerance => tally.values += 1,
            (t, o) => problems.push(format!(
                "{name}{labels:?}: {o:?} here, {t:?} in the exporter"
            )),
        }
    }
    problems
}

#[test]
fn database_metrics_match_the_real_mysqld_exporter() {
    for (tool, package) in [
        ("mariadbd", "mariadb-server-core"),
        ("mariadb-install-db", "mariadb-server"),
        ("prometheus-mysqld-exporter", "prometheus-mysqld-exporter"),
    ] {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
        if !found {
            assert!(std::env::var_os("CI").is_none(), "{tool} is not installed");
            println!("SKIPPED: {tool} not installed (apt-get install {package})");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let primary_port = free_port();
    let primary = Server::start(&tmp.path().join("p"), 1, Some(primary_port));
    primary.sql(
        "SET SESSION sql_log_bin = 0; \
         CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'repl-secret'; \
         GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'; \
         INSTALL SONAME 'query_response_time'; \
         SET GLOBAL query_response_time_stats = ON;",
    );
    let (primary_config, primary_cnf) = primary.monitor();

    let replica = Server::start(&tmp.path().join("r"), 2, None);
    let (replica_config, replica_cnf) = replica.monitor();
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary_port}, \
         MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos, \
         MASTER_DELAY={SQL_DELAY}; START SLAVE;"
    ));
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let s = replica.sql(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE command IN ('Slave_IO', 'Slave_SQL')",
        );
        if s.trim() == "2"
            && replica
                .sql("SHOW STATUS LIKE 'Slave_running'")
                .contains("ON")
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the replica's threads never ran:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A transaction in the primary's binary log, for rampart's GTID family.
    primary.sql("CREATE DATABASE foobar");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An idle client session on each server, which both processlists must count.
    let idle: Vec<_> = [&primary, &replica]
        .iter()
        .map(|s| {
            let mut cmd = Command::new("mariadb");
            cmd.args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", s.socket.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            Proc {
                child: cmd.spawn().unwrap(),
                name: "idle client".into(),
            }
        })
        .collect();

    println!("exceptions (exported by mysqld_exporter, not by the agent):");
    for (what, why) in EXCEPTIONS {
        println!("  {what}: {why}");
    }
    let mut all_problems = Vec::new();
    for (role, config, cnf, server) in [
        ("primary", primary_config, primary_cnf, &primary),
        (
            "replica",
            replica_config.clone(),
            replica_cnf.clone(),
            &replica,
        ),
    ] {
        let (_exporter, port) = exporter(&cnf);
        let mut collector = mysql::Collector::new(config);
        // Both sessions settled: a first collection of each, then the pair compared.
        let _ = runtime.block_on(collector.collect());
        let _ = scrape(port);
        eventually(
            &format!("{role}'s idle session listed"),
            Duration::from_secs(20),
            || {
                server
                .sql("SELECT COUNT(*) FROM information_schema.processlist WHERE command = 'Sleep'")
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 2)
            },
        );
        let theirs_text = scrape(port);
        let started = Instant::now();
        let ours_families = runtime.block_on(collector.collect());
        let took = started.elapsed();
        let ours_text = expo::text(&ours_families);
        let (theirs, ours) = (parse(&theirs_text), parse(&ours_text));

        let mut tally = Tally {
            series: ours.values().map(|f| f.samples.len()).sum(),
            ..Tally::default()
        };
        let mut problems = compare_shape(&theirs, &ours, &mut tally);

        // Stable values: every global variable, the version, the isolation level, the
        // compression tables, counters that don't move while the server idles, uptime.
        let variables: Vec<(String, f64)> = theirs
            .iter()
            .filter(|(n, _)| n.starts_with("mysql_global_variables_"))
            .map(|(n, _)| (n.clone(), 0.0))
            .collect();
        let mut checks: Vec<Check> = variables
            .iter()
            .map(|(n, t)| (n.as_str(), &[][..], *t))
            .collect();
        let steady: &[Check] = &[
            ("mysql_global_status_uptime", &[], 3.0),
            (
                "mysql_global_status_commands_total",
                &[("command", "insert")],
                0.0,
            ),
            (
                "mysql_global_status_commands_total",
                &[("command", "create_user")],
                0.0,
            ),
            (
                "mysql_global_status_commands_total",
                &[("command", "grant")],
                0.0,
            ),
            (
                "mysql_global_status_commands_total",
                &[("command", "change_master")],
                0.0,
            ),
            (
                "mysql_global_status_commands_total",
                &[("command", "delete")],
                0.0,
            ),
            (
                "mysql_global_status_connection_errors_total",
                &[("error", "max_connections")],
                0.0,
            ),
            ("mysql_global_status_acl_users", &[], 0.0),
            ("mysql_global_status_innodb_page_size", &[], 0.0),
            ("mysql_global_status_rpl_semi_sync_master_status", &[], 0.0),
            ("mysql_global_status_wsrep_cluster_status", &[], 0.0),
            (
                "mysql_info_schema_innodb_cmp_compress_ops_total",
                &[("page_size", "8192")],
                0.0,
            ),
            (
                "mysql_info_schema_innodb_cmpmem_pages_used_total",
                &[("buffer_pool", "0"), ("page_size", "1024")],
                0.0,
            ),
            ("mysql_up", &[], 0.0),
            ("mysql_exporter_last_scrape_error", &[], 0.0),
        ];
        checks.extend_from_slice(steady);
        let replica_checks: &[Check] = &[
            (
                "mysql_slave_status_sql_delay",
                &[("master_host", "127.0.0.1")],
                0.0,
            ),
            (
                "mysql_slave_status_slave_io_running",
                &[("master_host", "127.0.0.1")],
                0.0,
            ),
            (
                "mysql_slave_status_slave_sql_running",
                &[("master_host", "127.0.0.1")],
                0.0,
            ),
            (
                "mysql_slave_status_master_port",
                &[("master_host", "127.0.0.1")],
                0.0,
            ),
            (
                "mysql_slave_status_master_server_id",
                &[("master_host", "127.0.0.1")],
                0.0,
            ),
            (
                "mysql_slave_status_seconds_behind_master",
                &[("master_host", "127.0.0.1")],
                2.0,
            ),
        ];
        if role == "replica" {
            checks.extend_from_slice(replica_checks);
        }
        problems.extend(compare_values(&theirs, &ours, &checks, &mut tally));

        let label_values = |f: &BTreeMap<String, Fam>, name: &str| {
            f.get(name)
                .and_then(|f| f.samples.first())
                .map(|s| s.1.clone())
        };
        for name in [
            "mysql_version_info",
            "mysql_transaction_isolation",
            "mysql_galera_variables_info",
        ] {
            let (t, o) = (label_values(&theirs, name), label_values(&ours, name));
            if t == o {
                tally.values += 1;
            } else {
                problems.push(format!("{name}: labels {o:?} here, {t:?} in the exporter"));
            }
        }
        // The idle session is in both processlists (each also sees the other reader).
        for (who, f) in [("exporter", &theirs), ("agent", &ours)] {
            let sleeping = value(
                f,
                "mysql_info_schema_processlist_threads",
                &[("command", "sleep"), ("state", "unknown")],
            );
            if sleeping.unwrap_or(0.0) < 1.0 {
                problems.push(format!("the {who} counts no idle session: {sleeping:?}"));
            }
        }
        if role == "replica" {
            assert_eq!(
                value(
                    &ours,
                    "mysql_slave_status_sql_delay",
                    &[("master_host", "127.0.0.1")]
                ),
                Some(f64::from(SQL_DELAY))
            );
        } else {
            let seq = value(
                &ours,
                "rampart_mysql_gtid_seq_no",
                &[
                    ("domain_id", "0"),
                    ("position", "binlog"),
                    ("server_id", "1"),
                ],
            );
            if seq.unwrap_or(0.0) < 1.0 {
                problems.push(format!("rampart_mysql_gtid_seq_no of the binlog: {seq:?}"));
            }
            let qrt = "mysql_info_schema_query_response_time_seconds";
            if !theirs.contains_key(qrt) {
                problems.push(format!(
                    "the exporter has no {qrt}: the plugin did not load"
                ));
            }
        }

        println!(
            "{role}: {} exporter families, {} matched by name, type and label names, {} \
             exceptions, {} values agreeing, {} rampart-only families ({}), {} series \
             pushed, collected in {took:?}",
            tally.families,
            tally.matched,
            EXCEPTIONS.len(),
            tally.values,
            tally.ours_only.len(),
            tally.ours_only.join(", "),
            tally.series,
        );
        for p in &problems {
            println!("  {role} PROBLEM: {p}");
        }
        all_problems.extend(problems.into_iter().map(|p| format!("{role}: {p}")));
    }
    drop(idle);
    assert!(all_problems.is_empty(), "{}", all_problems.join("\n"));

    // Failure paths, side by side: a sub-collector refused (the monitoring user without
    // REPLICA MONITOR can't read slave status) fails alone; a stopped server leaves
    // `mysql_up 0` and the exporter's own families.
    replica.sql(&format!(
        "REVOKE REPLICA MONITOR ON *.* FROM {MONITOR_USER}@localhost"
    ));
    let (exporter_proc, port) = exporter(&replica_cnf);
    // A new collector: privileges are read when a session starts.
    let mut collector = mysql::Collector::new(replica_config);
    let theirs = parse(&scrape(port));
    let ours = parse(&expo::text(&runtime.block_on(collector.collect())));
    let refused = [("collector", "collect.slave_status")];
    for (who, f) in [("exporter", &theirs), ("agent", &ours)] {
        assert_eq!(value(f, "mysql_up", &[]), Some(1.0), "{who}");
        assert_eq!(
            value(f, "mysql_exporter_last_scrape_error", &[]),
            Some(1.0),
            "{who}"
        );
        assert_eq!(
            value(f, "mysql_exporter_scrape_errors_total", &refused),
            Some(1.0),
            "{who}"
        );
        assert!(!f.contains_key("mysql_slave_status_sql_delay"), "{who}");
        assert!(f.contains_key("mysql_global_status_uptime"), "{who}");
        assert!(
            f.contains_key("mysql_global_variables_max_connections"),
            "{who}"
        );
    }
    drop(replica);
    let theirs = parse(&scrape(port));
    let ours = parse(&expo::text(&runtime.block_on(collector.collect())));
    let names = |f: &BTreeMap<String, Fam>| -> BTreeSet<String> {
        f.keys()
            .filter(|n| n.starts_with("mysql_"))
            .cloned()
            .collect()
    };
    assert_eq!(names(&ours), names(&theirs));
    for (who, f) in [("exporter", &theirs), ("agent", &ours)] {
        assert_eq!(value(f, "mysql_up", &[]), Some(0.0), "{who}");
        assert_eq!(
            value(f, "mysql_exporter_last_scrape_error", &[]),
            Some(1.0),
            "{who}"
        );
        assert_eq!(
            value(f, "mysql_exporter_scrapes_total", &[]),
            Some(2.0),
            "{who}"
        );
    }
    println!(
        "failures: a refused slave status fails alone in both; a stopped server leaves {:?} in both",
        names(&ours)
    );
    drop(exporter_proc);
}
