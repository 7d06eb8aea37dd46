//! The agent's config file (`rampart agent --config agent.toml`): raw `File*` structs
//! with unknown keys refused, validated into [`Config`] with every problem named by file
//! and key. Every default lives in [`defaults`]. Reading and parsing are
//! `rampart_telemetry::config::ConfigFile`'s, as for every service.
//!
//! Choices: the agent pushes every `interval` (15 s, node_exporter's usual scrape
//! interval); everything it collects goes through the on-disk buffer first, so a push
//! that fails loses nothing. The buffer holds at most 256 MiB or 2 h of batches; the
//! monitor's Prometheus accepts samples up to 3 h old (its out-of-order window), so a
//! drained buffer is never refused for age.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub agent: FileAgent,
    #[serde(default)]
    pub push: FilePush,
    #[serde(default)]
    pub host: FileHost,
    #[serde(default)]
    pub scrape: Vec<FileScrape>,
    #[serde(default)]
    pub access_log: Vec<FileAccessLog>,
    pub mysql: Option<FileMysql>,
    /// keepalived's state on a load balancer of a pair.
    pub vrrp: Option<FileVrrp>,
    #[serde(default)]
    pub buffer: FileBuffer,
    #[serde(default)]
    pub listen: FileListen,
    #[serde(default)]
    pub certificates: FileCertificates,
    /// Log shipping to the central log store (issue 18).
    pub logs: Option<FileLogs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogs {
    /// Loki's push URL, through the ingest gate (`https://198.18.9.2:9090/loki/api/v1/push`),
    /// reached with `[push]`'s CA and client certificate.
    pub url: Option<String>,
    /// How often the files are read.
    pub poll: Option<String>,
    pub max_line_bytes: Option<usize>,
    pub lines_per_second: Option<f64>,
    pub burst: Option<f64>,
    /// Mask the client address (the `client` field of JSON lines) to its /24 or /48.
    pub mask_client_ip: Option<bool>,
    #[serde(default)]
    pub files: Vec<FileLogFile>,
    /// The firewall's drops from nflog, shipped as events.
    pub firewall: Option<FileFirewall>,
    /// Units' output from the systemd journal (hosts whose services run under systemd).
    pub journal: Option<FileJournal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJournal {
    /// The `service` label of each unit's entries, by unit name
    /// (`"rampart-web.service" = "web"`).
    #[serde(default)]
    pub units: std::collections::BTreeMap<String, String>,
    /// The `journalctl` to run (default: `journalctl`, found on `PATH`).
    pub command: Option<String>,
    /// Read the journal files in this directory instead of the system journal.
    pub directory: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFirewall {
    /// The nflog group the ruleset logs drops to.
    pub group: Option<u16>,
    /// The site's addresses and their hosts' names, for the events and the metric.
    #[serde(default)]
    pub hosts: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogFile {
    pub path: Option<String>,
    /// The `service` label (`lb`, `web`, `mariadb`, `prometheus`, ...).
    pub service: Option<String>,
    /// The `stream` label: which of the service's logs (`access`, `app`, `error`, `slow`).
    pub stream: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificates {
    /// Certificate files (PEM) whose expiry to report, each as one series.
    pub files: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgent {
    /// The `instance` label of every series: the host's name.
    pub instance: Option<String>,
    pub interval: Option<String>,
    /// Where the buffer and the log offsets live.
    pub state_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePush {
    /// The remote-write URL, such as `https://198.18.9.2:9090/api/v1/write`.
    pub url: Option<String>,
    /// With an `https` URL: the CA the ingest gate's certificate must chain to.
    pub ca: Option<String>,
    /// With an `https` URL: this host's client certificate and key (0600), the
    /// credentials the gate identifies the host by.
    pub cert: Option<String>,
    pub key: Option<String>,
    pub timeout: Option<String>,
    /// At most this many buffered batches go in one request when catching up.
    pub max_batches_per_request: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHost {
    pub enabled: Option<bool>,
    /// Where `proc/` and `sys/` are found; `/` on a real host.
    pub root: Option<String>,
    /// node_exporter's `--collector.textfile.directory`: `*.prom` files to add.
    pub textfile_dir: Option<String>,
    /// CPU and memory from the agent's own cgroup instead of the machine's.
    pub cgroup: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScrape {
    /// The `job` label of the scraped series, such as `lb` or `web`.
    pub job: Option<String>,
    /// `http://ADDR/metrics`.
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    /// The `service` label, such as `web` or `lb`.
    pub service: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMysql {
    /// The server's unix socket (the agent runs on the database host).
    pub socket: Option<String>,
    /// Or the server's TCP address, reached over TLS verified against `ca`.
    pub addr: Option<String>,
    pub ca: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVrrp {
    /// The file `rampart vrrp-notify` writes keepalived's state to (`MASTER`, `BACKUP`,
    /// `FAULT`).
    pub state_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBuffer {
    pub max_bytes: Option<u64>,
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    /// The agent's own `/metrics` (what it would push, for a look by hand and for
    /// `promtool check metrics`): an address, or "off" (the default).
    pub metrics: Option<String>,
    pub allow_from: Option<Vec<String>>,
}

/// A service's `/metrics` to scrape each interval.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub job: String,
    pub url: Uri,
}

/// An access log to derive request metrics from.
#[derive(Clone, Debug)]
pub struct AccessLog {
    pub service: String,
    pub path: PathBuf,
}

/// The database to report health for, as the monitoring user.
#[derive(Clone, Debug)]
pub struct Mysql {
    /// The unix socket, when the agent connects there (empty with `tcp`).
    pub socket: PathBuf,
    /// The server's address and the CA its certificate must chain to: TCP with
    /// verified TLS (what a server requiring secure transport accepts).
    pub tcp: Option<(std::net::SocketAddr, PathBuf)>,
    pub user: String,
    pub password_file: PathBuf,
    pub timeout: Duration,
}

/// A log file to ship, under its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    pub service: String,
    pub stream: String,
}

/// Log shipping, validated.
#[derive(Clone, Debug)]
pub struct Logs {
    pub url: Uri,
    pub poll: Duration,
    pub limits: crate::logship::Limits,
    pub files: Vec<LogFile>,
    pub firewall: Option<Firewall>,
    pub journal: Option<Journal>,
}

/// `[logs.journal]`: which units' entries are shipped, under which `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    /// Unit name → `service` label.
    pub units: std::collections::BTreeMap<String, String>,
    pub command: PathBuf,
    pub directory: Option<PathBuf>,
}

/// The `stream` label of journal lines: a service's own output, as its file is under
/// `rampart up`.
pub const JOURNAL_STREAM: &str = "log";

/// The unit types whose output a journal source can follow.
const UNIT_SUFFIXES: [&str; 4] = [".service", ".socket", ".scope", ".timer"];

/// `[logs.firewall]`: the nflog group read and the names of the site's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firewall {
    pub group: u16,
    pub hosts: std::collections::HashMap<std::net::IpAddr, String>,
}

/// A validated agent config.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub instance: String,
    pub interval: Duration,
    pub state_dir: PathBuf,
    pub push_url: Uri,
    /// How to reach an `https` push URL: the CA and the host's client certificate.
    pub push_tls: Option<rampart_tls::ClientTls>,
    pub push_timeout: Duration,
    pub max_batches_per_request: usize,
    /// Host metrics from this root, or none.
    pub host_root: Option<PathBuf>,
    /// `[host] textfile_dir`: the textfile collector's directory, if any.
    pub textfile_dir: Option<PathBuf>,
    /// `[host] cgroup`: the host's CPU and memory from the agent's cgroup
    /// ([`crate::cgroup`]).
    pub host_cgroup: bool,
    pub scrapes: Vec<Scrape>,
    pub access_logs: Vec<AccessLog>,
    pub mysql: Option<Mysql>,
    /// keepalived's state file on a load balancer of a pair.
    pub vrrp_state_file: Option<PathBuf>,
    pub buffer_max_bytes: u64,
    pub buffer_max_age: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_allow_from: AllowList,
    /// Certificate files whose expiry is reported (`crate::certs`).
    pub certificates: Vec<PathBuf>,
    /// `[logs]`: log files shipped to the log store.
    pub logs: Option<Logs>,
}

/// Every default in one place.
pub mod defaults {
    use std::time::Duration;
    pub const INTERVAL: Duration = Duration::from_secs(15);
    pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
    /// 30 batches: a 2-minute outage at a 2 s interval drains in 2 requests.
    pub const MAX_BATCHES_PER_REQUEST: usize = 30;
    pub const HOST_ROOT: &str = "/";
    pub const MYSQL_USER: &str = "rampart_monitor";
    pub const MYSQL_TIMEOUT: Duration = Duration::from_secs(5);
    pub const BUFFER_MAX_BYTES: u64 = 256 << 20;
    pub const BUFFER_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
    pub const METRICS_LISTEN: &str = "off";
    /// At most this many certificate files: one series each.
    pub const MAX_CERTIFICATES: usize = 64;
}

/// Label values: what Prometheus accepts as a label value and keeps readable.
fn name_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl ConfigFile for Config {
    type File = FileConfig;

    /// Turns the raw file into a validated config, collecting every problem.
    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;

        let instance = match f.agent.instance.as_deref() {
            Some(i) if name_like(i) => i.to_owned(),
            Some(i) => {
                c.err(
                    "agent.instance",
                    format!(
                        "`{i}` is not a host name; expected 1-64 letters, digits, `-`, `_` or `.`"
                    ),
                );
                String::new()
            }
            None => {
                c.err(
                    "agent.instance",
                    "missing; expected the host's name, such as \"web1\"",
                );
                String::new()
            }
        };
        let interval = c.duration(
            "agent.interval",
            f.agent.interval.as_ref(),
            defaults::INTERVAL,
            ms(200),
            s(300),
        );
        let state_dir = match f.agent.state_dir.as_deref() {
            Some(d) if !d.is_empty() => c.resolve(Path::new(d)),
            _ => {
                c.err(
                    "agent.state_dir",
                    "missing; expected a directory for the buffer and log offsets",
                );
                PathBuf::new()
            }
        };

        let push_url = match f.push.url.as_deref() {
            Some(u) => match u.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some_and(|a| a.port_u16().is_some()) =>
                {
                    uri
                }
                _ => {
                    c.err(
                        "push.url",
                        format!("`{u}` is not usable; expected https://ADDR:PORT/api/v1/write (or http://)"),
                    );
                    Uri::default()
                }
            },
            None => {
                c.err(
                    "push.url",
                    "missing; expected the monitor's remote-write URL, such as https://198.18.9.2:9090/api/v1/write",
                );
                Uri::default()
            }
        };
        let push_tls = push_tls(&mut c, &f.push, &push_url);
        let push_timeout = c.duration(
            "push.timeout",
            f.push.timeout.as_ref(),
            defaults::PUSH_TIMEOUT,
            ms(100),
            s(120),
        );
        let max_batches_per_request = c.range(
            "push.max_batches_per_request",
            f.push.max_batches_per_request,
            defaults::MAX_BATCHES_PER_REQUEST,
            1,
            1000,
        );

        let host_root = if f.host.enabled.unwrap_or(true) {
            Some(c.resolve(Path::new(
                f.host.root.as_deref().unwrap_or(defaults::HOST_ROOT),
            )))
        } else {
            None
        };
        let textfile_dir = match f.host.textfile_dir.as_deref() {
            Some("") => {
                c.err(
                    "host.textfile_dir",
                    "empty; expected a directory of *.prom files, or leave the key out",
                );
                None
            }
            Some(d) => Some(c.resolve(Path::new(d))),
            None => None,
        };

        let mut scrapes = Vec::new();
        for (i, sc) in f.scrape.iter().enumerate() {
            let key = |k: &str| format!("scrape[{i}].{k}");
            let job = match sc.job.as_deref() {
                Some(j) if name_like(j) => j.to_owned(),
                _ => {
                    c.err(
                        key("job"),
                        "missing or not a name; expected such as \"web\"",
                    );
                    continue;
                }
            };
            match sc.url.as_deref().map(str::parse::<Uri>) {
                Some(Ok(url))
                    if url.scheme_str() == Some("http")
                        && url.authority().is_some_and(|a| a.port_u16().is_some()) =>
                {
                    scrapes.push(Scrape { job, url });
                }
                _ => c.err(
                    key("url"),
                    "missing or unusable; expected http://ADDR:PORT/metrics",
                ),
            }
        }

        let mut access_logs = Vec::new();
        for (i, l) in f.access_log.iter().enumerate() {
            let key = |k: &str| format!("access_log[{i}].{k}");
            let service = match l.service.as_deref() {
                Some(s) if name_like(s) => s.to_owned(),
                _ => {
                    c.err(
                        key("service"),
                        "missing or not a name; expected \"web\" or \"lb\"",
                    );
                    continue;
                }
            };
            match l.path.as_deref() {
                Some(p) if !p.is_empty() => access_logs.push(AccessLog {
                    service,
                    path: c.resolve(Path::new(p)),
                }),
                _ => c.err(key("path"), "missing; expected the access log's file path"),
            }
        }
        let mut services: Vec<&str> = access_logs.iter().map(|l| l.service.as_str()).collect();
        services.sort_unstable();
        if services.windows(2).any(|w| w[0] == w[1]) {
            c.err(
                "access_log",
                "two logs with the same service; each service's counters come from one log",
            );
        }

        let vrrp_state_file = f.vrrp.as_ref().and_then(|v| match v.state_file.as_deref() {
            Some(p) if !p.is_empty() => Some(c.resolve(Path::new(p))),
            _ => {
                c.err(
                    "vrrp.state_file",
                    "missing; expected the file `rampart vrrp-notify` writes keepalived's state to",
                );
                None
            }
        });
        let mut certificates: Vec<PathBuf> = Vec::new();
        let files = f.certificates.files.as_deref().unwrap_or_default();
        if files.len() > defaults::MAX_CERTIFICATES {
            c.err(
                "certificates.files",
                format!(
                    "{} files; expected at most {} (one series each)",
                    files.len(),
                    defaults::MAX_CERTIFICATES
                ),
            );
        }
        for (i, p) in files.iter().enumerate() {
            let path = c.resolve(Path::new(p));
            if p.is_empty() {
                c.err(
                    format!("certificates.files[{i}]"),
                    "empty; expected a PEM certificate file's path",
                );
            } else if certificates.contains(&path) {
                c.err(
                    format!("certificates.files[{i}]"),
                    format!("`{p}` is listed twice; expected each file once"),
                );
            } else {
                certificates.push(path);
            }
        }
        let mysql = f.mysql.as_ref().map(|m| Mysql {
            tcp: match (m.addr.as_deref(), m.ca.as_deref()) {
                (None, None) => None,
                (Some(a), Some(ca)) if !ca.is_empty() => c
                    .addr("mysql.addr", a)
                    .map(|a| (a, c.resolve(Path::new(ca)))),
                (Some(_), _) => {
                    c.err(
                        "mysql.ca",
                        "missing; with mysql.addr the connection is TLS verified against this CA file",
                    );
                    None
                }
                (None, Some(_)) => {
                    c.err("mysql.ca", "only with mysql.addr");
                    None
                }
            },
            socket: match (m.socket.as_deref(), m.addr.as_deref()) {
                (Some(p), None) if !p.is_empty() => c.resolve(Path::new(p)),
                (None, Some(_)) => PathBuf::new(),
                (Some(_), Some(_)) => {
                    c.err(
                        "mysql.socket",
                        "give either mysql.socket or mysql.addr, not both",
                    );
                    PathBuf::new()
                }
                _ => {
                    c.err(
                        "mysql.socket",
                        "missing; expected the server's unix socket path, or mysql.addr and mysql.ca",
                    );
                    PathBuf::new()
                }
            },
            user: m
                .user
                .clone()
                .unwrap_or_else(|| defaults::MYSQL_USER.to_owned()),
            password_file: match m.password_file.as_deref() {
                Some(p) if !p.is_empty() => c.resolve(Path::new(p)),
                _ => {
                    c.err(
                        "mysql.password_file",
                        "missing; expected the monitoring user's password file",
                    );
                    PathBuf::new()
                }
            },
            timeout: c.duration(
                "mysql.timeout",
                m.timeout.as_ref(),
                defaults::MYSQL_TIMEOUT,
                ms(100),
                s(60),
            ),
        });

        let buffer_max_bytes = c.range(
            "buffer.max_bytes",
            f.buffer.max_bytes,
            defaults::BUFFER_MAX_BYTES,
            1 << 20,
            64 << 30,
        );
        let buffer_max_age = c.duration(
            "buffer.max_age",
            f.buffer.max_age.as_ref(),
            defaults::BUFFER_MAX_AGE,
            s(60),
            s(7 * 86_400),
        );
        let l = &f.listen;
        let metrics_listen = listen::optional_addr(
            &mut c,
            "metrics",
            l.metrics.as_deref(),
            defaults::METRICS_LISTEN,
        );
        let metrics_allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());

        let logs = f.logs.as_ref().map(|l| logs(&mut c, l, &push_url));
        c.finish(Config {
            logs,
            file: path.to_owned(),
            instance,
            interval,
            state_dir,
            push_url,
            push_tls,
            push_timeout,
            max_batches_per_request,
            host_root,
            textfile_dir,
            host_cgroup: f.host.cgroup.unwrap_or(false),
            scrapes,
            access_logs,
            mysql,
            vrrp_state_file,
            certificates,
            buffer_max_bytes,
            buffer_max_age,
            metrics_listen,
            metrics_allow_from,
        })
    }
}

/// `[logs]`: the push URL (the scheme of `[push]`'s, whose TLS it shares), the bounds,
/// and each file with its labels (no two with the same labels).
fn logs(c: &mut Checker<'_>, l: &FileLogs, push_url: &Uri) -> Logs {
    let url = match l.url.as_deref().map(str::parse::<Uri>) {
        Some(Ok(u))
            if u.scheme_str().is_some()
                && u.scheme_str() == push_url.scheme_str()
                && u.authority().is_some_and(|a| a.port_u16().is_some()) =>
        {
            u
        }
        _ => {
            c.err(
                "logs.url",
                "missing or unusable; expected the gate's https://ADDR:PORT/loki/api/v1/push, \
                 with the scheme of push.url",
            );
            Uri::default()
        }
    };
    let d = crate::logship::Limits::default();
    let poll = c.duration(
        "logs.poll",
        l.poll.as_ref(),
        Duration::from_secs(1),
        Duration::from_millis(100),
        Duration::from_secs(60),
    );
    let max_line_bytes = c.range(
        "logs.max_line_bytes",
        l.max_line_bytes,
        d.max_line_bytes,
        256,
        crate::logtail::MAX_LINE,
    );
    let lines_per_second = c.range(
        "logs.lines_per_second",
        l.lines_per_second,
        d.lines_per_second,
        1.0,
        1e6,
    );
    let burst = c.range("logs.burst", l.burst, d.burst, 1.0, 1e7);
    let mask_fields = if l.mask_client_ip.unwrap_or(false) {
        vec!["client".to_owned()]
    } else {
        Vec::new()
    };
    let mut files: Vec<LogFile> = Vec::new();
    for (i, f) in l.files.iter().enumerate() {
        let key = |k: &str| format!("logs.files[{i}].{k}");
        let label = |c: &mut Checker<'_>, k: &str, v: Option<&str>, example: &str| match v {
            Some(v) if name_like(v) => Some(v.to_owned()),
            _ => {
                c.err(
                    key(k),
                    format!("missing or not a name; expected such as \"{example}\""),
                );
                None
            }
        };
        let service = label(c, "service", f.service.as_deref(), "web");
        let stream = label(c, "stream", f.stream.as_deref(), "access");
        let path = match f.path.as_deref() {
            Some(p) if !p.is_empty() => Some(c.resolve(Path::new(p))),
            _ => {
                c.err(key("path"), "missing; expected the log file's path");
                None
            }
        };
        if let (Some(service), Some(stream), Some(path)) = (service, stream, path) {
            if files
                .iter()
                .any(|o| o.service == service && o.stream == stream)
            {
                c.err(
                    key("stream"),
                    format!("{service}/{stream} twice; each file needs its own service and stream"),
                );
            }
            files.push(LogFile {
                path,
                service,
                stream,
            });
        }
    }
    let firewall = l.firewall.as_ref().map(|f| {
        let group = f.group.unwrap_or(1);
        if group == 0 {
            c.err(
                "logs.firewall.group",
                "0; expected an nflog group from 1 to 65535",
            );
        }
        let mut hosts = std::collections::HashMap::new();
        for (addr, name) in &f.hosts {
            match addr.parse::<std::net::IpAddr>() {
                Ok(ip) if name_like(name) => {
                    hosts.insert(ip, name.clone());
                }
                Ok(_) => c.err(
                    format!("logs.firewall.hosts.\"{addr}\""),
                    format!("`{name}` is not a host name; expected such as \"web1\""),
                ),
                Err(_) => c.err(
                    format!("logs.firewall.hosts.\"{addr}\""),
                    "not an IP address; expected such as \"198.18.1.11\"",
                ),
            }
        }
        Firewall { group, hosts }
    });
    let journal = l.journal.as_ref().map(|j| journal(c, j, &files));
    Logs {
        firewall,
        journal,
        url,
        poll,
        limits: crate::logship::Limits {
            max_line_bytes,
            lines_per_second,
            burst,
            mask_fields,
        },
        files,
    }
}

/// `[logs.journal]`: unit names (a name with a unit type's suffix, never an option),
/// each with a `service` label not already used by a file's `log` stream.
fn journal(c: &mut Checker<'_>, j: &FileJournal, files: &[LogFile]) -> Journal {
    if j.units.is_empty() {
        c.err(
            "logs.journal.units",
            "empty; expected the units to follow, such as \"rampart-web.service\" = \"web\"",
        );
    }
    for (unit, service) in &j.units {
        let key = format!("logs.journal.units.\"{unit}\"");
        if !name_like(unit)
            || unit.starts_with('-')
            || !UNIT_SUFFIXES
                .iter()
                .any(|s| unit.ends_with(s) && unit.len() > s.len())
        {
            c.err(
                key.clone(),
                format!(
                    "not a unit name; expected a name ending in one of {}, such as \"prometheus.service\"",
                    UNIT_SUFFIXES.join(", ")
                ),
            );
        }
        if !name_like(service) {
            c.err(
                key,
                format!("`{service}` is not a service name; expected such as \"web\""),
            );
        } else if files
            .iter()
            .any(|f| f.service == *service && f.stream == JOURNAL_STREAM)
        {
            c.err(
                key,
                format!(
                    "{service}/{JOURNAL_STREAM} is also a file's; each stream needs one source"
                ),
            );
        }
    }
    let command = match j.command.as_deref() {
        None => PathBuf::from("journalctl"),
        // A bare name is looked up on PATH.
        Some(p) if !p.is_empty() && !p.contains('/') => PathBuf::from(p),
        Some(p) if !p.is_empty() => c.resolve(Path::new(p)),
        Some(_) => {
            c.err(
                "logs.journal.command",
                "empty; expected the journalctl to run",
            );
            PathBuf::new()
        }
    };
    let directory = match j.directory.as_deref() {
        None => None,
        Some(p) if !p.is_empty() => Some(c.resolve(Path::new(p))),
        Some(_) => {
            c.err(
                "logs.journal.directory",
                "empty; expected a directory of journal files, or no key for the system journal",
            );
            None
        }
    };
    Journal {
        units: j.units.clone(),
        command,
        directory,
    }
}

/// `push.ca`, `push.cert` and `push.key`: all three with an `https` URL (the gate takes
/// only clients with a certificate), none with `http`.
fn push_tls(c: &mut Checker<'_>, p: &FilePush, url: &Uri) -> Option<rampart_tls::ClientTls> {
    let [ca, cert, key] = c.client_cert(
        "push",
        url.scheme_str() == Some("https"),
        [&p.ca, &p.cert, &p.key].map(|v| v.as_deref().map(Path::new)),
    )?;
    Some(rampart_tls::ClientTls {
        ca,
        client_cert: Some((cert, key)),
    })
}

/// Validates the config at `path` without starting anything (`rampart check`).
pub fn check(path: &Path) -> Result<Config, ConfigErrors> {
    Config::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("/etc/rampart/agent.toml"), text)
    }

    const MINIMAL: &str = r#"
[agent]
instance = "web1"
state_dir = "/var/lib/rampart/agent"
[push]
url = "http://198.18.9.2:9090/api/v1/write"
"#;

    fn check_err(text: &str, key: &str, needle: &str) {
        let Err(errors) = parse(text) else {
            panic!("expected an error for {key}")
        };
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.key == key && e.message.contains(needle)),
            "no error for {key} containing {needle:?} in:\n{errors}"
        );
        assert!(errors.to_string().contains("/etc/rampart/agent.toml"));
    }

    #[test]
    fn minimal_config_takes_every_default() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.instance, "web1");
        assert_eq!(c.interval, defaults::INTERVAL);
        assert_eq!(
            c.push_url.to_string(),
            "http://198.18.9.2:9090/api/v1/write"
        );
        assert_eq!(c.host_root.as_deref(), Some(Path::new("/")));
        assert!(!c.host_cgroup);
        assert!(c.scrapes.is_empty() && c.access_logs.is_empty() && c.mysql.is_none());
        assert_eq!(c.buffer_max_bytes, defaults::BUFFER_MAX_BYTES);
        assert_eq!(c.buffer_max_age, defaults::BUFFER_MAX_AGE);
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn every_key_can_be_set() {
        let c = parse(
            r#"
[agent]
instance = "db1"
interval = "2s"
state_dir = "state"
[push]
url = "http://127.0.0.1:9090/api/v1/write"
timeout = "3s"
max_batches_per_request = 5
[host]
enabled = true
root = "/"
cgroup = true
[[scrape]]
job = "web"
url = "http://127.0.0.1:9181/metrics"
[[access_log]]
service = "web"
path = "access.log"
[mysql]
socket = "/run/db1.sock"
user = "mon"
password_file = "mon.password"
timeout = "2s"
[buffer]
max_bytes = 1048576
max_age = "30m"
[listen]
metrics = "127.0.0.1:9100"
allow_from = ["127.0.0.1/32"]
"#,
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.state_dir, Path::new("/etc/rampart/state"));
        assert_eq!(c.max_batches_per_request, 5);
        assert!(c.host_cgroup);
        assert_eq!(c.scrapes[0].job, "web");
        assert_eq!(c.access_logs[0].path, Path::new("/etc/rampart/access.log"));
        let m = c.mysql.unwrap();
        assert_eq!(
            (m.user.as_str(), m.timeout),
            ("mon", Duration::from_secs(2))
        );
        assert_eq!(m.password_file, Path::new("/etc/rampart/mon.password"));
        assert_eq!(c.buffer_max_age, Duration::from_secs(1800));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
    }

    #[test]
    fn an_https_push_takes_the_ca_and_the_hosts_certificate() {
        let c = parse(&MINIMAL.replace("http://", "https://").replace(
            "[push]",
            "[push]\nca = \"ca.pem\"\ncert = \"/s/agent.pem\"\nkey = \"/s/agent.key\"",
        ))
        .unwrap();
        let tls = c.push_tls.unwrap();
        assert_eq!(tls.ca, Path::new("/etc/rampart/ca.pem"));
        assert_eq!(
            tls.client_cert,
            Some((PathBuf::from("/s/agent.pem"), PathBuf::from("/s/agent.key")))
        );
        assert!(parse(MINIMAL).unwrap().push_tls.is_none());
    }

    #[test]
    fn certificate_files_resolve_and_are_checked() {
        let c = parse(&format!(
            "{MINIMAL}\n[certificates]\nfiles = [\"ca.pem\", \"/s/agent.pem\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.certificates,
            [
                PathBuf::from("/etc/rampart/ca.pem"),
                PathBuf::from("/s/agent.pem")
            ]
        );
        assert!(parse(MINIMAL).unwrap().certificates.is_empty());
        let with = |files: &str| format!("{MINIMAL}\n[certificates]\nfiles = [{files}]\n");
        check_err(&with("\"\""), "certificates.files[0]", "empty");
        check_err(
            &with("\"a.pem\", \"a.pem\""),
            "certificates.files[1]",
            "listed twice",
        );
        let many: Vec<String> = (0..65).map(|i| format!("\"c{i}.pem\"")).collect();
        check_err(&with(&many.join(",")), "certificates.files", "at most 64");
    }

    #[test]
    fn each_error_names_its_key() {
        check_err(
            "[push]\nurl = \"http://a:1/\"\n[agent]\nstate_dir=\"x\"",
            "agent.instance",
            "missing",
        );
        check_err(
            &MINIMAL.replace("web1", "web 1"),
            "agent.instance",
            "not a host name",
        );
        check_err(
            &MINIMAL.replace("[push]", "[push]\ntimeout = \"9\""),
            "push.timeout",
            "not a duration",
        );
        check_err(
            &MINIMAL.replace("http://198.18.9.2:9090", "https://x"),
            "push.url",
            "expected https://ADDR:PORT",
        );
        check_err(
            &MINIMAL.replace("http://", "https://"),
            "push.cert",
            "this client's certificate",
        );
        check_err(
            &MINIMAL.replace("[push]", "[push]\nca = \"ca.pem\""),
            "push.ca",
            "plain http",
        );
        check_err(&format!("{MINIMAL}[agent2]"), "line 7", "unknown field");
        check_err(
            &format!("{MINIMAL}[[scrape]]\njob = \"web\"\nurl = \"ftp://x\"\n"),
            "scrape[0].url",
            "http://ADDR:PORT/metrics",
        );
        check_err(
            &format!("{MINIMAL}[[access_log]]\nservice = \"web\"\n"),
            "access_log[0].path",
            "missing",
        );
        check_err(
            &format!("{MINIMAL}[[access_log]]\nservice = \"web\"\npath=\"a\"\n[[access_log]]\nservice = \"web\"\npath=\"b\"\n"),
            "access_log",
            "same service",
        );
        check_err(
            &format!("{MINIMAL}[mysql]\naddr = \"127.0.0.1:3306\"\npassword_file = \"p\"\n"),
            "mysql.ca",
            "verified against this CA file",
        );
        check_err(
            &format!("{MINIMAL}[mysql]\nsocket = \"s\"\naddr = \"127.0.0.1:3306\"\nca = \"c\"\npassword_file = \"p\"\n"),
            "mysql.socket",
            "not both",
        );
        let tcp = Config::parse(
            Path::new("/etc/agent.toml"),
            &format!("{MINIMAL}[mysql]\naddr = \"127.0.0.1:3306\"\nca = \"ca.pem\"\npassword_file = \"p\"\n"),
        )
        .unwrap()
        .mysql
        .unwrap();
        assert_eq!(
            tcp.tcp,
            Some((
                "127.0.0.1:3306".parse().unwrap(),
                PathBuf::from("/etc/ca.pem")
            ))
        );
        check_err(
            &format!("{MINIMAL}[mysql]\nuser = \"x\"\n"),
            "mysql.socket",
            "missing",
        );
        check_err(
            &format!("{MINIMAL}[buffer]\nmax_bytes = 5\n"),
            "buffer.max_bytes",
            "out of range",
        );
        check_err(
            &format!("{MINIMAL}[listen]\nmetrics = \"nowhere\"\n"),
            "listen.metrics",
            "not an address",
        );
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let e = parse("[agent]\ninterval = \"0s\"\n").unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "agent.instance",
                "agent.interval",
                "agent.state_dir",
                "push.url"
            ]
        );
    }

    #[test]
    fn logs_name_their_files_and_bounds() {
        let c = parse(&format!(
            "{MINIMAL}[logs]\nurl = \"http://198.18.9.2:9090/loki/api/v1/push\"\nmask_client_ip = true\n\
             [[logs.files]]\npath = \"access.log\"\nservice = \"web\"\nstream = \"access\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let l = c.logs.unwrap();
        assert_eq!(l.files[0].path, Path::new("/etc/rampart/access.log"));
        assert_eq!(l.limits.mask_fields, ["client"]);
        assert_eq!(l.poll, Duration::from_secs(1));
        assert_eq!(l.journal, None);
        let c = parse(&format!(
            "{MINIMAL}[logs]\nurl = \"http://198.18.9.2:9090/loki/api/v1/push\"\n\
             [logs.journal.units]\n\"rampart-web.service\" = \"web\"\n\"etcd.service\" = \"etcd\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let j = c.logs.unwrap().journal.unwrap();
        assert_eq!(j.command, Path::new("journalctl"));
        assert_eq!(j.directory, None);
        assert_eq!(
            j.units.get("etcd.service").map(String::as_str),
            Some("etcd")
        );
        for (text, key, needle) in [
            ("[logs]\nurl = \"https://x:1/loki/api/v1/push\"\n", "logs.url", "scheme of push.url"),
            ("[logs]\nurl = \"http://x:1/p\"\nmax_line_bytes = 10\n", "logs.max_line_bytes", ""),
            ("[logs]\nurl = \"http://x:1/p\"\n[[logs.files]]\npath = \"a\"\nservice = \"a b\"\nstream = \"s\"\n", "logs.files[0].service", "not a name"),
            ("[logs]\nurl = \"http://x:1/p\"\n[[logs.files]]\nservice = \"w\"\nstream = \"s\"\n", "logs.files[0].path", "missing"),
            ("[logs]\nurl = \"http://x:1/p\"\n[[logs.files]]\npath = \"a\"\nservice = \"w\"\nstream = \"s\"\n[[logs.files]]\npath = \"b\"\nservice = \"w\"\nstream = \"s\"\n", "logs.files[1].stream", "twice"),
            ("[logs]\nurl = \"http://x:1/p\"\n[logs.journal]\n", "logs.journal.units", "empty"),
            ("[logs]\nurl = \"http://x:1/p\"\n[logs.journal.units]\n\"--boot\" = \"web\"\n", "logs.journal.units.\"--boot\"", "not a unit name"),
            ("[logs]\nurl = \"http://x:1/p\"\n[logs.journal.units]\n\"web\" = \"web\"\n", "logs.journal.units.\"web\"", ".service"),
            ("[logs]\nurl = \"http://x:1/p\"\n[logs.journal.units]\n\"w.service\" = \"a b\"\n", "logs.journal.units.\"w.service\"", "not a service name"),
            ("[logs]\nurl = \"http://x:1/p\"\n[[logs.files]]\npath = \"a\"\nservice = \"w\"\nstream = \"log\"\n[logs.journal.units]\n\"w.service\" = \"w\"\n", "logs.journal.units.\"w.service\"", "also a file's"),
            ("[logs]\nurl = \"http://x:1/p\"\n[logs.journal]\ndirectory = \"\"\n[logs.journal.units]\n\"w.service\" = \"w\"\n", "logs.journal.directory", "empty"),
        ] {
            check_err(&format!("{MINIMAL}{text}"), key, needle);
        }
    }
}
