//! The dashboard's configuration in two layers: `File*` structs that mirror the TOML
//! (unknown keys refused) and the validated [`Config`] the server runs on. Every problem
//! is collected and names the file, the key and what would be valid. Relative paths are
//! resolved against the config file's directory; every default is in [`defaults`].
//! Reading and parsing are `rampart_telemetry::config::ConfigFile`'s, as for every
//! service.
//!
//! Secure defaults: HTTPS only (`[tls]` is required: the session cookie is `Secure`),
//! loopback unless told otherwise, a connection cap, a header deadline that also bounds
//! idle keep-alive, small body caps, sessions that expire, and a failed-login limit.
//! Secrets (the password, the webhook token) live in 0600 files, never in the config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: FileListen,
    pub tls: Option<FileTls>,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub prometheus: FilePrometheus,
    #[serde(default)]
    pub alerts: FileAlerts,
    #[serde(default)]
    pub page: FilePage,
    /// The log store to search (issue 18); absent: the search page says so.
    pub logs: Option<FileLogs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub addr: Option<String>,
    /// Source addresses allowed to connect, checked at accept. Empty or absent: anyone.
    pub allow_from: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    /// The internal plain-HTTP listener of the dashboard's own `/metrics`, or `off`.
    pub metrics: Option<String>,
    /// Who may connect to the metrics listener. Empty or absent: anyone.
    pub metrics_allow_from: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub session_lifetime: Option<String>,
    pub session_idle: Option<String>,
    pub max_failures: Option<u32>,
    pub failure_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrometheus {
    pub url: Option<String>,
    /// With an `https` URL: the CA Prometheus's certificate chains to, and the
    /// dashboard's client certificate and key (Prometheus takes only its clients').
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogs {
    /// The store's Loki API, such as `https://127.0.0.1:3100`.
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<usize>,
    /// Lines shown per search, newest first.
    pub max_lines: Option<usize>,
    /// How often the live tail reloads.
    pub tail_refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAlerts {
    pub webhook_token_file: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub max_alerts: Option<usize>,
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePage {
    pub title: Option<String>,
    pub refresh: Option<String>,
    pub range: Option<String>,
}

/// The certificate the dashboard serves.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The login.
#[derive(Clone, Debug)]
pub struct Auth {
    pub user: String,
    /// Holds the password; created (random, 0600) when missing.
    pub password_file: PathBuf,
    /// A session ends this long after login, whatever happens.
    pub session_lifetime: Duration,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// Failed logins a client may make per `failure_window` before it must wait.
    pub max_failures: u32,
    pub failure_window: Duration,
}

/// Where Prometheus's HTTP API is, on the monitor host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromUrl {
    /// Over TLS (`https`), with [`Prometheus::tls`].
    pub tls: bool,
    /// `host:port` to connect to.
    pub addr: String,
    /// The `Host` header.
    pub host: String,
    /// A path prefix without a trailing slash (`""` or `/prometheus`).
    pub prefix: String,
}

impl std::fmt::Display for PromUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host, self.prefix)
    }
}

#[derive(Clone, Debug)]
pub struct Prometheus {
    pub url: PromUrl,
    /// For an `https` URL: the CA and the dashboard's client certificate.
    pub tls: Option<rampart_tls::ClientTls>,
    /// Bounds every page's queries together (they run in parallel).
    pub timeout: Duration,
    /// The largest answer read from one query.
    pub max_response_bytes: usize,
}

/// The log store the search page asks (its Loki API).
#[derive(Clone, Debug)]
pub struct Logs {
    pub url: PromUrl,
    /// For an `https` URL: the CA and the dashboard's client certificate.
    pub tls: Option<rampart_tls::ClientTls>,
    /// Bounds a search's queries together (they run in parallel).
    pub timeout: Duration,
    pub max_response_bytes: usize,
    pub max_lines: usize,
    pub tail_refresh: Duration,
}

#[derive(Clone, Debug)]
pub struct Alerts {
    /// Holds the bearer token Alertmanager sends; created (random, 0600) when missing.
    pub webhook_token_file: PathBuf,
    /// The recorded alerts, rewritten (atomically) after every webhook call.
    pub state_file: PathBuf,
    /// Alerts kept; past this the oldest resolved go first, then the oldest firing.
    pub max_alerts: usize,
    /// The largest webhook body accepted (413 beyond).
    pub max_body_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct Page {
    pub title: String,
    /// The page reloads itself this often.
    pub refresh: Duration,
    /// The time span the charts show.
    pub range: Duration,
}

/// A validated dashboard configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub addr: SocketAddr,
    /// Who may connect; empty: anyone.
    pub allow_from: AllowList,
    pub max_connections: usize,
    /// The internal `/metrics` listener (plain HTTP, its own allow-list), if any.
    pub metrics: Option<SocketAddr>,
    pub metrics_allow_from: AllowList,
    /// Deadline for the TLS handshake, a request's head and body, and idle keep-alive.
    pub header_timeout: Duration,
    /// How long open requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
    pub tls: Tls,
    pub auth: Auth,
    pub prometheus: Prometheus,
    pub alerts: Alerts,
    pub page: Page,
    pub logs: Option<Logs>,
}

/// Every default in one place.
pub mod defaults {
    use std::time::Duration;
    pub const ADDR: &str = "127.0.0.1:3000";
    pub const MAX_CONNECTIONS: usize = 256;
    /// Off unless configured: the topology puts it on the monitor host's management
    /// address, where its agent scrapes it.
    pub const METRICS: &str = "off";
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const USER: &str = "admin";
    /// Relative to the config file's directory.
    pub const PASSWORD_FILE: &str = "dashboard.password";
    pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
    pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
    pub const MAX_FAILURES: u32 = 5;
    pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
    pub const PROMETHEUS_URL: &str = "http://127.0.0.1:9090";
    pub const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(5);
    pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
    /// Relative to the config file's directory.
    pub const WEBHOOK_TOKEN_FILE: &str = "alert-webhook.token";
    /// Relative to the config file's directory.
    pub const STATE_FILE: &str = "alerts.json";
    pub const MAX_ALERTS: usize = 500;
    pub const MAX_BODY_BYTES: usize = 1 << 20;
    pub const TITLE: &str = "rampart";
    pub const REFRESH: Duration = Duration::from_secs(15);
    pub const RANGE: Duration = Duration::from_secs(30 * 60);
    pub const LOGS_TIMEOUT: Duration = Duration::from_secs(5);
    pub const LOGS_MAX_LINES: usize = 500;
    pub const TAIL_REFRESH: Duration = Duration::from_secs(2);
}

impl ConfigFile for Config {
    type File = FileConfig;

    /// Turns the raw file into a validated config, collecting every problem.
    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let l = &f.listen;
        let addr = listen::addr(&mut c, "addr", l.addr.as_deref(), defaults::ADDR);
        let allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());
        let metrics =
            listen::optional_addr(&mut c, "metrics", l.metrics.as_deref(), defaults::METRICS);
        let metrics_allow_from = listen::allow_list(
            &mut c,
            "metrics_allow_from",
            l.metrics_allow_from.as_deref(),
        );
        let max_connections = c.range(
            "listen.max_connections",
            l.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            100_000,
        );
        let header_timeout = c.duration(
            "listen.header_timeout",
            l.header_timeout.as_ref(),
            defaults::HEADER_TIMEOUT,
            ms(100),
            s(300),
        );
        let shutdown_grace = c.duration(
            "listen.shutdown_grace",
            l.shutdown_grace.as_ref(),
            defaults::SHUTDOWN_GRACE,
            ms(0),
            s(600),
        );
        let tls = match &f.tls {
            Some(t) => Tls {
                cert: c.resolve(&t.cert),
                key: c.resolve(&t.key),
            },
            None => {
                c.err(
                    "tls",
                    "missing; the dashboard serves HTTPS only: set tls.cert and tls.key",
                );
                Tls {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                }
            }
        };

        let a = &f.auth;
        let user = a.user.clone().unwrap_or_else(|| defaults::USER.to_owned());
        if user.is_empty() || user.len() > 64 || !user.bytes().all(|b| b.is_ascii_graphic()) {
            c.err(
                "auth.user",
                "expected 1-64 printable ASCII characters without spaces",
            );
        }
        let auth = Auth {
            user,
            password_file: c.resolve(
                a.password_file
                    .as_deref()
                    .unwrap_or(Path::new(defaults::PASSWORD_FILE)),
            ),
            session_lifetime: c.duration(
                "auth.session_lifetime",
                a.session_lifetime.as_ref(),
                defaults::SESSION_LIFETIME,
                s(60),
                s(30 * 86_400),
            ),
            session_idle: c.duration(
                "auth.session_idle",
                a.session_idle.as_ref(),
                defaults::SESSION_IDLE,
                s(60),
                s(30 * 86_400),
            ),
            max_failures: c.range(
                "auth.max_failures",
                a.max_failures,
                defaults::MAX_FAILURES,
                1,
                1000,
            ),
            failure_window: c.duration(
                "auth.failure_window",
                a.failure_window.as_ref(),
                defaults::FAILURE_WINDOW,
                s(1),
                s(86_400),
            ),
        };
        if auth.session_idle > auth.session_lifetime {
            c.err(
                "auth.session_idle",
                format!(
                    "{:?} is longer than auth.session_lifetime ({:?}); expected at most that",
                    auth.session_idle, auth.session_lifetime
                ),
            );
        }

        let p = &f.prometheus;
        let (url, prom_tls) = api_endpoint(
            &mut c,
            "prometheus",
            p.url.as_deref().unwrap_or(defaults::PROMETHEUS_URL),
            "https://127.0.0.1:9091",
            [p.ca.as_deref(), p.cert.as_deref(), p.key.as_deref()],
        );
        let prometheus = Prometheus {
            url,
            tls: prom_tls,
            timeout: c.duration(
                "prometheus.timeout",
                p.timeout.as_ref(),
                defaults::PROMETHEUS_TIMEOUT,
                ms(100),
                s(120),
            ),
            max_response_bytes: c.range(
                "prometheus.max_response_bytes",
                p.max_response_bytes,
                defaults::MAX_RESPONSE_BYTES,
                4096,
                256 << 20,
            ),
        };

        let al = &f.alerts;
        let alerts = Alerts {
            webhook_token_file: c.resolve(
                al.webhook_token_file
                    .as_deref()
                    .unwrap_or(Path::new(defaults::WEBHOOK_TOKEN_FILE)),
            ),
            state_file: c.resolve(
                al.state_file
                    .as_deref()
                    .unwrap_or(Path::new(defaults::STATE_FILE)),
            ),
            max_alerts: c.range(
                "alerts.max_alerts",
                al.max_alerts,
                defaults::MAX_ALERTS,
                1,
                100_000,
            ),
            max_body_bytes: c.range(
                "alerts.max_body_bytes",
                al.max_body_bytes,
                defaults::MAX_BODY_BYTES,
                1024,
                64 << 20,
            ),
        };
        for (key, p) in [
            ("alerts.webhook_token_file", &alerts.webhook_token_file),
            ("alerts.state_file", &alerts.state_file),
        ] {
            if *p == auth.password_file {
                c.err(key, format!("{} is also auth.password_file", p.display()));
            }
        }

        let pg = &f.page;
        let title = pg
            .title
            .clone()
            .unwrap_or_else(|| defaults::TITLE.to_owned());
        if title.is_empty() || title.chars().count() > 80 || title.chars().any(char::is_control) {
            c.err(
                "page.title",
                "expected 1-80 characters, no control characters",
            );
        }
        let page = Page {
            title,
            refresh: c.duration(
                "page.refresh",
                pg.refresh.as_ref(),
                defaults::REFRESH,
                s(2),
                s(3600),
            ),
            range: c.duration(
                "page.range",
                pg.range.as_ref(),
                defaults::RANGE,
                s(300),
                s(7 * 86_400),
            ),
        };

        let logs = f.logs.as_ref().map(|lg| {
            let (url, tls) = api_endpoint(
                &mut c,
                "logs",
                lg.url.as_deref().unwrap_or(""),
                "https://127.0.0.1:3100",
                [lg.ca.as_deref(), lg.cert.as_deref(), lg.key.as_deref()],
            );
            Logs {
                url,
                tls,
                timeout: c.duration(
                    "logs.timeout",
                    lg.timeout.as_ref(),
                    defaults::LOGS_TIMEOUT,
                    ms(100),
                    s(120),
                ),
                max_response_bytes: c.range(
                    "logs.max_response_bytes",
                    lg.max_response_bytes,
                    defaults::MAX_RESPONSE_BYTES,
                    4096,
                    256 << 20,
                ),
                max_lines: c.range(
                    "logs.max_lines",
                    lg.max_lines,
                    defaults::LOGS_MAX_LINES,
                    1,
                    5000,
                ),
                tail_refresh: c.duration(
                    "logs.tail_refresh",
                    lg.tail_refresh.as_ref(),
                    defaults::TAIL_REFRESH,
                    s(1),
                    s(60),
                ),
            }
        });

        let config = Config {
            file: path.to_owned(),
            addr,
            allow_from,
            max_connections,
            metrics,
            metrics_allow_from,
            header_timeout,
            shutdown_grace,
            tls,
            auth,
            prometheus,
            alerts,
            page,
            logs,
        };
        c.finish(config)
    }
}

/// An API the dashboard asks (`table`: `prometheus` or `logs`): its URL, and for an
/// `https` one the CA and the dashboard's client certificate, every problem named
/// under the table's keys.
fn api_endpoint(
    c: &mut Checker<'_>,
    table: &str,
    text: &str,
    example: &str,
    tls: [Option<&Path>; 3],
) -> (PromUrl, Option<rampart_tls::ClientTls>) {
    let url = match parse_prom_url(text) {
        Ok(u) => u,
        Err(why) => {
            c.err(
                format!("{table}.url"),
                format!(
                    "`{text}` {why}; expected https://HOST:PORT such as {example} (or http://)"
                ),
            );
            PromUrl {
                tls: false,
                addr: String::new(),
                host: String::new(),
                prefix: String::new(),
            }
        }
    };
    let tls = c
        .client_cert(table, url.tls, tls)
        .map(|[ca, cert, key]| rampart_tls::ClientTls {
            ca,
            client_cert: Some((cert, key)),
        });
    (url, tls)
}

/// Parses `https://host:port[/prefix]` or `http://...`: no credentials, query or
/// fragment; the port defaults to 443 or 80.
pub fn parse_prom_url(s: &str) -> Result<PromUrl, &'static str> {
    let uri: http::Uri = s.parse().map_err(|_| "is not a URL")?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("is not http or https"),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry credentials");
    }
    if authority.host().is_empty() {
        return Err("has no host");
    }
    if uri.query().is_some() || s.contains('#') {
        return Err("must not have a query or fragment");
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = authority.host();
    let addr = format!("{host}:{port}");
    Ok(PromUrl {
        tls,
        addr,
        host: authority.as_str().to_owned(),
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = "[tls]\ncert = \"monitor.crt\"\nkey = \"monitor.key\"\n";

    fn check(text: &str, expected: &str) {
        let got = match Config::parse(Path::new("/etc/rampart/dashboard.toml"), text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "config:\n{text}");
    }

    #[test]
    fn defaults_are_secure_and_paths_resolve_next_to_the_config() {
        let c = Config::parse(Path::new("/x/dashboard.toml"), TLS).unwrap();
        assert_eq!(c.addr.to_string(), defaults::ADDR);
        assert!(c.allow_from.is_empty());
        assert_eq!(c.tls.cert, Path::new("/x/monitor.crt"));
        assert_eq!(c.auth.user, "admin");
        assert_eq!(c.auth.password_file, Path::new("/x/dashboard.password"));
        assert_eq!(
            c.alerts.webhook_token_file,
            Path::new("/x/alert-webhook.token")
        );
        assert_eq!(c.alerts.state_file, Path::new("/x/alerts.json"));
        assert_eq!(c.prometheus.url.addr, "127.0.0.1:9090");
        assert_eq!(c.prometheus.timeout, Duration::from_secs(5));
        assert_eq!(c.page.refresh, Duration::from_secs(15));
        assert_eq!(c.page.range, Duration::from_secs(1800));
        assert_eq!(c.max_connections, 256);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../examples/dashboard.toml");
        let c = Config::parse(Path::new("/etc/rampart/dashboard.toml"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.addr.to_string(), "198.18.9.2:3000");
        assert_eq!(c.prometheus.url.to_string(), "https://127.0.0.1:9091");
        let tls = c.prometheus.tls.unwrap();
        assert_eq!(tls.ca, Path::new("/etc/rampart/ca.pem"));
        assert!(c.allow_from.permits("198.18.9.2".parse().unwrap()));
        assert!(!c.allow_from.permits("198.18.1.11".parse().unwrap()));
    }

    #[test]
    fn prometheus_urls() {
        for (input, expected) in [
            ("http://198.18.9.2:9090", Ok(("198.18.9.2:9090", ""))),
            ("http://127.0.0.1:9090/", Ok(("127.0.0.1:9090", ""))),
            ("http://prom/prometheus/", Ok(("prom:80", "/prometheus"))),
            ("https://127.0.0.1:9091", Ok(("127.0.0.1:9091", ""))),
            ("https://prom/prometheus", Ok(("prom:443", "/prometheus"))),
            ("ftp://127.0.0.1:9090", Err("is not http or https")),
            (
                "http://u:p@127.0.0.1:9090",
                Err("must not carry credentials"),
            ),
            (
                "http://127.0.0.1:9090/?x=1",
                Err("must not have a query or fragment"),
            ),
            ("127.0.0.1:9090", Err("is not http or https")),
            ("not a url", Err("is not a URL")),
        ] {
            let got = parse_prom_url(input);
            let got = got
                .as_ref()
                .map(|u| (u.addr.as_str(), u.prefix.as_str()))
                .map_err(|e| *e);
            assert_eq!(got, expected, "{input}");
        }
    }

    #[test]
    fn config_errors() {
        check(TLS, "ok");
        check(
            &format!("{TLS}[logs]\nurl = \"https://127.0.0.1:3100\"\nca = \"ca.pem\"\nmax_lines = 0\ntail_refresh = \"1ms\"\n"),
            "/etc/rampart/dashboard.toml: logs.cert: missing; an https logs.url needs logs.ca, logs.cert and logs.key (the CA to verify the server, this client's certificate and key)\n\
             /etc/rampart/dashboard.toml: logs.key: missing; an https logs.url needs logs.ca, logs.cert and logs.key (the CA to verify the server, this client's certificate and key)\n\
             /etc/rampart/dashboard.toml: logs.max_lines: 0 is out of range; expected between 1 and 5000\n\
             /etc/rampart/dashboard.toml: logs.tail_refresh: `1ms` is out of range; expected between 1s and 60s",
        );
        check(
            &format!("{TLS}[logs]\n"),
            "/etc/rampart/dashboard.toml: logs.url: `` is not a URL; expected https://HOST:PORT such as https://127.0.0.1:3100 (or http://)",
        );
        check(
            "",
            "/etc/rampart/dashboard.toml: tls: missing; the dashboard serves HTTPS only: set tls.cert and tls.key",
        );
        check(
            &format!("{TLS}[page]\nrefresh_seconds = 15\n"),
            "/etc/rampart/dashboard.toml: line 5: unknown field `refresh_seconds`, expected one of `title`, `refresh`, `range`",
        );
        check(
            &format!("{TLS}[listen]\naddr = \"monitor:3000\"\nallow_from = [\"198.18.9.0/40\"]\n"),
            "/etc/rampart/dashboard.toml: listen.addr: `monitor:3000` is not an address; expected IP:PORT such as 0.0.0.0:443\n\
             /etc/rampart/dashboard.toml: listen.allow_from[0]: `198.18.9.0/40` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24",
        );
        check(
            &format!("{TLS}[prometheus]\nurl = \"ftp://198.18.9.2:9090\"\ntimeout = \"soon\"\n"),
            "/etc/rampart/dashboard.toml: prometheus.url: `ftp://198.18.9.2:9090` is not http or https; expected https://HOST:PORT such as https://127.0.0.1:9091 (or http://)\n\
             /etc/rampart/dashboard.toml: prometheus.timeout: `soon` is not a duration; expected a number with ms, s, m, h or d, such as \"10s\"",
        );
        check(
            &format!("{TLS}[prometheus]\nurl = \"https://127.0.0.1:9091\"\nca = \"ca.pem\"\n"),
            "/etc/rampart/dashboard.toml: prometheus.cert: missing; an https prometheus.url needs prometheus.ca, prometheus.cert and prometheus.key (the CA to verify the server, this client's certificate and key)\n\
             /etc/rampart/dashboard.toml: prometheus.key: missing; an https prometheus.url needs prometheus.ca, prometheus.cert and prometheus.key (the CA to verify the server, this client's certificate and key)",
        );
        check(
            &format!("{TLS}[auth]\nuser = \"an admin\"\nsession_lifetime = \"1h\"\nsession_idle = \"2h\"\n"),
            "/etc/rampart/dashboard.toml: auth.user: expected 1-64 printable ASCII characters without spaces\n\
             /etc/rampart/dashboard.toml: auth.session_idle: 7200s is longer than auth.session_lifetime (3600s); expected at most that",
        );
        check(
            &format!("{TLS}[alerts]\nmax_alerts = 0\nstate_file = \"dashboard.password\"\n[page]\nrange = \"1m\"\n"),
            "/etc/rampart/dashboard.toml: alerts.max_alerts: 0 is out of range; expected between 1 and 100000\n\
             /etc/rampart/dashboard.toml: alerts.state_file: /etc/rampart/dashboard.password is also auth.password_file\n\
             /etc/rampart/dashboard.toml: page.range: `1m` is out of range; expected between 300s and 604800s",
        );
    }
}
