//! The load balancer's configuration in two layers: `File*` structs that mirror the TOML
//! (unknown keys refused), and the validated [`Config`] the data plane runs on. Every
//! problem is collected, not just the first, and names the file, the key and what would
//! be valid. Relative paths are resolved against the config file's directory. Reading
//! and parsing are `rampart_telemetry::config::ConfigFile`'s, as for every service.
//!
//! `[listen] allow_from` and `admin_allow_from` are source allow-lists (defence in depth
//! beside the firewall): the first for the public listeners (https and http), the second
//! for the admin listener. Empty or absent: anyone may connect.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use rampart_telemetry::config::Checker;
pub use rampart_telemetry::config::{ConfigError, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: FileListen,
    #[serde(default)]
    pub tls: FileTls,
    #[serde(default)]
    pub redirect: FileRedirect,
    #[serde(default)]
    pub hsts: FileHsts,
    #[serde(default)]
    pub balance: FileBalance,
    #[serde(default)]
    pub backends: Vec<FileBackend>,
    #[serde(default)]
    pub backend_tls: Option<FileBackendTls>,
    #[serde(default)]
    pub health: FileHealth,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub runtime: FileRuntime,
    pub waf: Option<crate::waf::FileWaf>,
    pub acme: Option<crate::acme::FileAcme>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub https: Option<String>,
    pub http: Option<String>,
    /// A second plain-HTTP listener, on the load balancer's own address (`IP:PORT`), for
    /// a pair whose `http` is the floating address: the other load balancer relays ACME
    /// challenges here, since it holds the floating address. Off by default.
    pub http_own: Option<String>,
    pub admin: Option<String>,
    /// Source addresses or networks allowed to connect to `https` and `http`.
    pub allow_from: Option<Vec<String>>,
    /// Source addresses or networks allowed to connect to `admin`.
    pub admin_allow_from: Option<Vec<String>>,
    /// Bind `https` and `http` even when their address is not (yet) on this host: a
    /// floating address that keepalived moves here (IP_FREEBIND). Default false.
    pub freebind: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    #[serde(default)]
    pub certificates: Vec<FileCert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedirect {
    pub enabled: Option<bool>,
    pub status: Option<u16>,
    pub https_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHsts {
    pub enabled: Option<bool>,
    pub max_age: Option<String>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBalance {
    pub policy: Option<String>,
    pub served_by_header: Option<String>,
    pub retry: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackend {
    pub name: Option<String>,
    pub address: String,
    pub weight: Option<u32>,
    pub tls: Option<bool>,
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackendTls {
    pub ca: PathBuf,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub eject_cooldown: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub header_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub body_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub handshake_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub rate_limit_per_second: Option<f64>,
    pub rate_limit_burst: Option<f64>,
    pub backend_connect_timeout: Option<String>,
    pub backend_response_timeout: Option<String>,
    pub max_h2_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub access_log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuntime {
    pub worker_threads: Option<usize>,
    pub shutdown_grace: Option<String>,
}

/// The balancing policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
}

/// Where the access log goes.
pub use rampart_telemetry::access_log::LogTarget as AccessLog;

#[derive(Clone, Debug)]
pub struct Listen {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    /// `listen.http_own`: plain HTTP like `http`, on this load balancer's own address.
    pub http_own: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Who may connect to `https` and `http`; empty: anyone.
    pub allow_from: AllowList,
    /// Who may connect to `admin`; empty: anyone.
    pub admin_allow_from: AllowList,
    /// `https` and `http` bind with IP_FREEBIND (a floating address).
    pub freebind: bool,
}

#[derive(Clone, Debug)]
pub struct Redirect {
    pub enabled: bool,
    pub status: u16,
    /// The port in `Location`; `None` means the HTTPS listener's bound port.
    pub https_port: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Hsts {
    /// The full header value, or `None` when disabled.
    pub header: Option<String>,
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub tls: bool,
    pub tls_server_name: String,
}

#[derive(Clone, Debug)]
pub struct Health {
    pub enabled: bool,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub eject_cooldown: Duration,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// Requests per second per client address (IPv6: per /64); `None` when disabled.
    pub rate_limit: Option<(f64, f64)>,
    pub backend_connect_timeout: Duration,
    pub backend_response_timeout: Duration,
    pub max_h2_streams: u32,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub listen: Listen,
    pub certificates: Vec<(PathBuf, PathBuf)>,
    pub redirect: Redirect,
    pub hsts: Hsts,
    pub policy: Policy,
    pub served_by_header: Option<http::HeaderName>,
    pub retry: bool,
    pub backends: Vec<BackendConfig>,
    pub backend_tls: Option<rampart_tls::ClientTls>,
    pub health: Health,
    pub limits: Limits,
    pub access_log: AccessLog,
    pub worker_threads: usize,
    pub shutdown_grace: Duration,
    pub waf: crate::waf::WafConfig,
    /// `[acme]`: the site certificate (`tls.certificates[0]`) from an ACME CA.
    pub acme: Option<crate::acme::AcmeConfig>,
}

/// Defaults, documented here once (README and ARCHITECTURE.md point at this list).
/// `listen.allow_from` and `listen.admin_allow_from` default to empty: anyone may connect
/// (the firewall is the first line; the admin listener's default address is loopback).
pub mod defaults {
    use std::time::Duration;
    pub const HTTPS: &str = "0.0.0.0:443";
    pub const HTTP: &str = "0.0.0.0:80";
    pub const ADMIN: &str = "127.0.0.1:9180";
    pub const HSTS_MAX_AGE: u64 = 63_072_000; // two years
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_HEADER_BYTES: usize = 16 * 1024;
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const RATE_PER_SECOND: f64 = 100.0;
    pub const RATE_BURST: f64 = 200.0;
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_H2_STREAMS: u32 = 128;
    pub const HEALTH_PATH: &str = "/healthz";
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const FALL: u32 = 3;
    pub const RISE: u32 = 2;
    pub const EJECT_COOLDOWN: Duration = Duration::from_secs(10);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
}

impl ConfigFile for Config {
    type File = FileConfig;

    /// Turns the raw file into a validated config, collecting every problem.
    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let l = &f.listen;
        let https = listen::addr(&mut c, "https", l.https.as_deref(), defaults::HTTPS);
        // The redirect listener and the admin listener are on unless set to "off".
        let http = listen::optional_addr(&mut c, "http", l.http.as_deref(), defaults::HTTP);
        let admin = listen::optional_addr(&mut c, "admin", l.admin.as_deref(), defaults::ADMIN);
        let http_own = listen::optional_addr(&mut c, "http_own", l.http_own.as_deref(), "off");
        let allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());
        let admin_allow_from =
            listen::allow_list(&mut c, "admin_allow_from", l.admin_allow_from.as_deref());

        if f.tls.certificates.is_empty() {
            c.err(
                "tls.certificates",
                "at least one [[tls.certificates]] with cert and key is required (`rampart cert` makes one)",
            );
        }
        let certificates: Vec<_> = f
            .tls
            .certificates
            .iter()
            .map(|x| (c.resolve(&x.cert), c.resolve(&x.key)))
            .collect();

        let redirect_status = f.redirect.status.unwrap_or(308);
        if ![301, 302, 307, 308].contains(&redirect_status) {
            c.err(
                "redirect.status",
                format!("{redirect_status} is not a redirect; expected 301, 302, 307 or 308"),
            );
        }
        let redirect = Redirect {
            enabled: f.redirect.enabled.unwrap_or(true),
            status: redirect_status,
            https_port: f.redirect.https_port,
        };

        let max_age = c.duration(
            "hsts.max_age",
            f.hsts.max_age.as_ref(),
            Duration::from_secs(defaults::HSTS_MAX_AGE),
            Duration::ZERO,
            Duration::from_secs(10 * 365 * 86_400),
        );
        let hsts = Hsts {
            header: f.hsts.enabled.unwrap_or(true).then(|| {
                let mut v = format!("max-age={}", max_age.as_secs());
                if f.hsts.include_subdomains.unwrap_or(true) {
                    v.push_str("; includeSubDomains");
                }
                if f.hsts.preload.unwrap_or(false) {
                    v.push_str("; preload");
                }
                v
            }),
        };

        let policy = match f.balance.policy.as_deref().unwrap_or("round_robin") {
            "round_robin" => Policy::RoundRobin,
            "weighted_round_robin" => Policy::WeightedRoundRobin,
            "least_connections" => Policy::LeastConnections,
            other => {
                c.err(
                    "balance.policy",
                    format!("`{other}` is not a policy; expected round_robin, weighted_round_robin or least_connections"),
                );
                Policy::RoundRobin
            }
        };
        let served_by_header = f.balance.served_by_header.as_deref().and_then(|h| {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    c.err(
                        "balance.served_by_header",
                        format!("`{h}` is not a header name; expected letters, digits and dashes such as X-Served-By"),
                    );
                    None
                }
            }
        });

        if f.backends.is_empty() {
            c.err(
                "backends",
                "at least one [[backends]] with an address is required",
            );
        }
        let mut backends = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, b) in f.backends.iter().enumerate() {
            let key = |k: &str| format!("backends[{i}].{k}");
            let Some(address) = c.addr(&key("address"), &b.address) else {
                continue;
            };
            let name = b.name.clone().unwrap_or_else(|| address.to_string());
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|x| x.is_ascii_alphanumeric() || b"-_.:[]".contains(&x));
            if !name_ok {
                c.err(
                    key("name"),
                    format!("`{name}` is not a backend name; expected 1-64 letters, digits, '-', '_' or '.'"),
                );
            }
            if !names.insert(name.clone()) {
                c.err(
                    key("name"),
                    format!("`{name}` is used by another backend; names must be unique"),
                );
            }
            let weight = c.range(&key("weight"), b.weight, 1, 1, 1000);
            let tls = b.tls.unwrap_or(false);
            if tls && f.backend_tls.is_none() {
                c.err(
                    key("tls"),
                    "a TLS backend needs [backend_tls] with the ca that signs it",
                );
            }
            backends.push(BackendConfig {
                tls_server_name: b.tls_server_name.clone().unwrap_or_else(|| name.clone()),
                name,
                address,
                weight,
                tls,
            });
        }
        let backend_tls = f.backend_tls.as_ref().and_then(|t| {
            let client_cert = match (&t.client_cert, &t.client_key) {
                (Some(cert), Some(key)) => Some((c.resolve(cert), c.resolve(key))),
                (None, None) => None,
                _ => {
                    c.err(
                        "backend_tls.client_cert",
                        "client_cert and client_key go together; set both or neither",
                    );
                    return None;
                }
            };
            Some(rampart_tls::ClientTls {
                ca: c.resolve(&t.ca),
                client_cert,
            })
        });

        let h = &f.health;
        let health_path = h
            .path
            .clone()
            .unwrap_or_else(|| defaults::HEALTH_PATH.into());
        if !health_path.starts_with('/')
            || http::uri::PathAndQuery::try_from(health_path.as_str()).is_err()
        {
            c.err(
                "health.path",
                format!("`{health_path}` is not a request path; expected one starting with '/'"),
            );
        }
        let health = Health {
            enabled: h.enabled.unwrap_or(true),
            path: health_path,
            interval: c.duration(
                "health.interval",
                h.interval.as_ref(),
                defaults::HEALTH_INTERVAL,
                Duration::from_millis(50),
                Duration::from_secs(3600),
            ),
            timeout: c.duration(
                "health.timeout",
                h.timeout.as_ref(),
                defaults::HEALTH_TIMEOUT,
                Duration::from_millis(10),
                Duration::from_secs(60),
            ),
            fall: c.range("health.fall", h.fall, defaults::FALL, 1, 100),
            rise: c.range("health.rise", h.rise, defaults::RISE, 1, 100),
            eject_cooldown: c.duration(
                "health.eject_cooldown",
                h.eject_cooldown.as_ref(),
                defaults::EJECT_COOLDOWN,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            ),
        };

        let l = &f.limits;
        let hour = Duration::from_secs(3600);
        let rate = c.range(
            "limits.rate_limit_per_second",
            l.rate_limit_per_second,
            defaults::RATE_PER_SECOND,
            0.0,
            1e9,
        );
        let burst = c.range(
            "limits.rate_limit_burst",
            l.rate_limit_burst,
            defaults::RATE_BURST.max(rate),
            1.0,
            1e9,
        );
        let limits = Limits {
            header_timeout: c.duration(
                "limits.header_timeout",
                l.header_timeout.as_ref(),
                defaults::HEADER_TIMEOUT,
                Duration::from_millis(10),
                hour,
            ),
            max_header_bytes: c.range(
                "limits.max_header_bytes",
                l.max_header_bytes,
                defaults::MAX_HEADER_BYTES,
                1024,
                1024 * 1024,
            ),
            max_body_bytes: c.range(
                "limits.max_body_bytes",
                l.max_body_bytes,
                defaults::MAX_BODY_BYTES,
                0,
                1024 * 1024 * 1024,
            ),
            body_timeout: c.duration(
                "limits.body_timeout",
                l.body_timeout.as_ref(),
                defaults::BODY_TIMEOUT,
                Duration::from_millis(10),
                hour,
            ),
            idle_timeout: c.duration(
                "limits.idle_timeout",
                l.idle_timeout.as_ref(),
                defaults::IDLE_TIMEOUT,
                Duration::from_millis(10),
                hour,
            ),
            handshake_timeout: c.duration(
                "limits.handshake_timeout",
                l.handshake_timeout.as_ref(),
                defaults::HANDSHAKE_TIMEOUT,
                Duration::from_millis(10),
                Duration::from_secs(300),
            ),
            max_connections: c.range(
                "limits.max_connections",
                l.max_connections,
                defaults::MAX_CONNECTIONS,
                1,
                10_000_000,
            ),
            rate_limit: (rate > 0.0).then_some((rate, burst)),
            backend_connect_timeout: c.duration(
                "limits.backend_connect_timeout",
                l.backend_connect_timeout.as_ref(),
                defaults::CONNECT_TIMEOUT,
                Duration::from_millis(10),
                Duration::from_secs(300),
            ),
            backend_response_timeout: c.duration(
                "limits.backend_response_timeout",
                l.backend_response_timeout.as_ref(),
                defaults::RESPONSE_TIMEOUT,
                Duration::from_millis(10),
                hour,
            ),
            max_h2_streams: c.range(
                "limits.max_h2_streams",
                l.max_h2_streams,
                defaults::MAX_H2_STREAMS,
                1,
                10_000,
            ),
        };

        let access_log = c.log_target("log.access_log", f.log.access_log.as_deref());

        let worker_threads = c.range(
            "runtime.worker_threads",
            f.runtime.worker_threads,
            0,
            0,
            1024,
        );
        let shutdown_grace = c.duration(
            "runtime.shutdown_grace",
            f.runtime.shutdown_grace.as_ref(),
            defaults::SHUTDOWN_GRACE,
            Duration::ZERO,
            hour,
        );
        let waf = crate::waf::WafConfig::validate(&mut c, f.waf.as_ref());
        let acme = crate::acme::AcmeConfig::validate(&mut c, f.acme.as_ref(), certificates.first());

        c.finish(Config {
            path: path.to_owned(),
            listen: Listen {
                https,
                http,
                http_own,
                admin,
                allow_from,
                admin_allow_from,
                freebind: f.listen.freebind.unwrap_or(false),
            },
            certificates,
            redirect,
            hsts,
            policy,
            served_by_header,
            retry: f.balance.retry.unwrap_or(true),
            backends,
            backend_tls,
            health,
            limits,
            access_log,
            worker_threads,
            shutdown_grace,
            waf,
            acme,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MINIMAL: &str = r#"
[[tls.certificates]]
cert = "site.pem"
key = "site.key"
[[backends]]
address = "127.0.0.1:8081"
"#;

    /// Parses `text` and compares the rendered errors (or "ok") with `expected`.
    fn check(text: &str, expected: &str) {
        let got = match Config::parse(Path::new("/etc/rampart/lb.toml"), text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected.trim(), "for config:\n{text}");
    }

    #[test]
    fn the_example_config_is_valid_and_its_waf_matches_the_defaults() {
        let c = Config::parse(
            Path::new("examples/lb.toml"),
            include_str!("../../../examples/lb.toml"),
        )
        .unwrap();
        let w = &c.waf;
        let d = crate::waf::WafConfig::off();
        assert_eq!(w.mode, crate::waf::WafMode::Block);
        assert_eq!((&w.setup, &w.rules), (&d.setup, &d.rules));
        assert_eq!(
            (
                w.paranoia_level,
                w.detection_paranoia_level,
                w.inbound_threshold
            ),
            (
                d.paranoia_level,
                d.detection_paranoia_level,
                d.inbound_threshold
            )
        );
        assert_eq!((w.body_limit, w.max_args), (d.body_limit, d.max_args));
        assert!(w.reject_over_limit && w.reject_body_errors && !w.log_excerpt);
        // Without [waf], the WAF is off.
        assert_eq!(
            Config::parse(Path::new("lb.toml"), MINIMAL)
                .unwrap()
                .waf
                .mode,
            crate::waf::WafMode::Off
        );
    }

    #[test]
    fn minimal_config_is_valid_with_secure_defaults() {
        let c = Config::parse(Path::new("/etc/rampart/lb.toml"), MINIMAL).unwrap();
        assert_eq!(c.listen.https.port(), 443);
        assert_eq!(c.listen.http.map(|a| a.port()), Some(80));
        assert_eq!(
            c.listen.admin.map(|a| a.to_string()),
            Some("127.0.0.1:9180".into())
        );
        assert_eq!(c.certificates[0].0, Path::new("/etc/rampart/site.pem"));
        assert_eq!(
            c.hsts.header.as_deref(),
            Some("max-age=63072000; includeSubDomains")
        );
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.max_header_bytes, 16 * 1024);
        assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
        assert!(c.limits.rate_limit.is_some());
        assert_eq!(c.policy, Policy::RoundRobin);
        assert!(c.served_by_header.is_none());
        assert_eq!(c.redirect.status, 308);
        assert!(c.listen.allow_from.is_empty(), "anyone may connect");
        assert!(c.listen.admin_allow_from.is_empty(), "anyone may connect");
    }

    #[test]
    fn allow_lists() {
        let c = Config::parse(
            Path::new("/etc/rampart/lb.toml"),
            &format!("[listen]\nallow_from = [\"198.18.1.0/24\", \"2001:db8::1\"]\nadmin_allow_from = [\"127.0.0.1\"]\n{MINIMAL}"),
        )
        .unwrap();
        let (a, admin) = (&c.listen.allow_from, &c.listen.admin_allow_from);
        assert!(a.permits("198.18.1.77".parse().unwrap()));
        assert!(a.permits("2001:db8::1".parse().unwrap()));
        assert!(!a.permits("127.0.0.1".parse().unwrap()));
        assert!(admin.permits("127.0.0.1".parse().unwrap()));
        assert!(!admin.permits("198.18.1.77".parse().unwrap()));

        check(
            &format!("[listen]\nallow_from = [\"198.18.1.0/24\", \"lb1\"]\nadmin_allow_from = [\"127.0.0.1/33\", \"10.0.0.0/8\", \"\"]\n{MINIMAL}"),
            r#"
/etc/rampart/lb.toml: listen.allow_from[1]: `lb1` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24
/etc/rampart/lb.toml: listen.admin_allow_from[0]: `127.0.0.1/33` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24
/etc/rampart/lb.toml: listen.admin_allow_from[2]: `` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24"#,
        );
        check(
            &format!("[listen]\nallow_from = \"127.0.0.1\"\n{MINIMAL}"),
            "/etc/rampart/lb.toml: line 2: invalid type: string \"127.0.0.1\", expected a sequence",
        );
    }

    #[test]
    fn config_errors() {
        check(MINIMAL, "ok");
        check(
            &format!("{MINIMAL}[acme]\ndirectory = \"https://acme.test/dir\"\naccount = \"acme.json\"\nnames = [\"www.foobar.com\"]\n"),
            "ok",
        );
        check(
            &format!("{MINIMAL}[acme]\ndirectory = \"http://acme.test/dir\"\ncontact = [\"ops@foobar.com\"]\nnames = [\"www\", \"a b.com\"]\nretry_min = \"0s\"\n"),
            r#"
/etc/rampart/lb.toml: acme.directory: Some("http://acme.test/dir") is not an ACME directory; expected an https:// URL such as "https://acme-v02.api.letsencrypt.org/directory"
/etc/rampart/lb.toml: acme.contact[0]: "ops@foobar.com" is not a contact; expected "mailto:ops@example.com"
/etc/rampart/lb.toml: acme.account: missing; expected the file that keeps the account's credentials
/etc/rampart/lb.toml: acme.names[0]: "www" is not a DNS name; expected a name such as "www.foobar.com"
/etc/rampart/lb.toml: acme.names[1]: "a b.com" is not a DNS name; expected a name such as "www.foobar.com"
/etc/rampart/lb.toml: acme.retry_min: `0s` is out of range; expected between 1s and 86400s"#,
        );
        check(
            "[listen]\nhttps = \"0.0.0.0:443\"\nbogus = 1\n",
            "/etc/rampart/lb.toml: line 3: unknown field `bogus`, expected one of `https`, `http`, `http_own`, `admin`, `allow_from`, `admin_allow_from`, `freebind`",
        );
        check(
            "",
            r#"
/etc/rampart/lb.toml: tls.certificates: at least one [[tls.certificates]] with cert and key is required (`rampart cert` makes one)
/etc/rampart/lb.toml: backends: at least one [[backends]] with an address is required"#,
        );
        check(
            &format!("{MINIMAL}[limits]\nmax_body_bytes = 5000000000\nheader_timeout = \"ten\"\n[balance]\npolicy = \"random\"\n"),
            r#"
/etc/rampart/lb.toml: balance.policy: `random` is not a policy; expected round_robin, weighted_round_robin or least_connections
/etc/rampart/lb.toml: limits.header_timeout: `ten` is not a duration; expected a number with ms, s, m, h or d, such as "10s"
/etc/rampart/lb.toml: limits.max_body_bytes: 5000000000 is out of range; expected between 0 and 1073741824"#,
        );
        check(
            "[[tls.certificates]]\ncert = \"a\"\nkey = \"b\"\n[[backends]]\naddress = \"web1:80\"\n[[backends]]\naddress = \"127.0.0.1:1\"\ntls = true\nweight = 0\n",
            r#"
/etc/rampart/lb.toml: backends[0].address: `web1:80` is not an address; expected IP:PORT such as 0.0.0.0:443
/etc/rampart/lb.toml: backends[1].weight: 0 is out of range; expected between 1 and 1000
/etc/rampart/lb.toml: backends[1].tls: a TLS backend needs [backend_tls] with the ca that signs it"#,
        );
        check(
            &format!("{MINIMAL}[redirect]\nstatus = 200\n[health]\npath = \"healthz\"\n"),
            r#"
/etc/rampart/lb.toml: redirect.status: 200 is not a redirect; expected 301, 302, 307 or 308
/etc/rampart/lb.toml: health.path: `healthz` is not a request path; expected one starting with '/'"#,
        );
        check(
            &format!("{MINIMAL}[[backends]]\nname = \"127.0.0.1:8081\"\naddress = \"127.0.0.1:8082\"\n"),
            "/etc/rampart/lb.toml: backends[1].name: `127.0.0.1:8081` is used by another backend; names must be unique",
        );
    }
}
