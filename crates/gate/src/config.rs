//! The gate's configuration: `File*` structs that mirror the TOML (unknown keys refused)
//! and the validated [`Config`]. Every problem is collected and names the file, the key
//! and what would be valid; relative paths resolve against the config file's directory.
//!
//! Secure defaults: TLS with a client certificate required (`[tls]` is mandatory), an
//! upstream reached over TLS with the gate's own client certificate, a connection cap, a
//! header deadline, a deadline for the whole request, bounded bodies (compressed and
//! decompressed), and a bound on requests decoded at once.

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
    pub listen: FileListen,
    pub tls: Option<FileTls>,
    pub upstream: Option<FileUpstream>,
    /// The log store's push URL (`rampart logs`), for `POST /loki/api/v1/push`; absent:
    /// the gate takes no logs.
    pub logs: Option<FileUpstream>,
    #[serde(default)]
    pub limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub addr: Option<String>,
    /// Source addresses allowed to connect, checked at accept. Empty or absent: anyone
    /// (a client certificate is still required).
    pub allow_from: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    /// The internal plain-HTTP listener of the gate's own `/metrics`, or `off`.
    pub metrics: Option<String>,
    pub metrics_allow_from: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA every client certificate must chain to.
    pub client_ca: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// Prometheus's remote-write receiver, such as `https://127.0.0.1:9091/api/v1/write`.
    pub url: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_body_bytes: Option<usize>,
    pub max_decoded_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
}

/// What the gate serves with: its certificate and the CA clients must chain to.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// Where accepted writes go.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub url: Uri,
    /// For an `https` URL: the CA and the gate's client certificate.
    pub tls: Option<rampart_tls::ClientTls>,
    pub timeout: Duration,
}

/// A validated gate configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub addr: SocketAddr,
    pub allow_from: AllowList,
    pub max_connections: usize,
    /// Deadline for the TLS handshake, a request's head, and idle keep-alive.
    pub header_timeout: Duration,
    /// Deadline for reading a request's body and forwarding it.
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub metrics: Option<SocketAddr>,
    pub metrics_allow_from: AllowList,
    pub tls: Tls,
    pub upstream: Upstream,
    /// Where checked log pushes go (`[logs]`), if the gate takes logs.
    pub logs: Option<Upstream>,
    /// The largest request body (snappy-compressed) read; 413 beyond.
    pub max_body_bytes: usize,
    /// The largest body once decompressed; 413 beyond, checked before decompressing.
    pub max_decoded_bytes: usize,
    /// Requests being read, decoded and forwarded at once; the rest wait their turn.
    pub max_in_flight: usize,
}

/// Every default in one place.
pub mod defaults {
    use std::time::Duration;
    pub const ADDR: &str = "127.0.0.1:9090";
    pub const MAX_CONNECTIONS: usize = 256;
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const METRICS: &str = "off";
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
    /// An agent sends at most 16 MiB of buffered batches in one request.
    pub const MAX_BODY_BYTES: usize = 32 << 20;
    pub const MAX_DECODED_BYTES: usize = 128 << 20;
    pub const MAX_IN_FLIGHT: usize = 4;
}

impl ConfigFile for Config {
    type File = FileConfig;

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
        let request_timeout = c.duration(
            "listen.request_timeout",
            l.request_timeout.as_ref(),
            defaults::REQUEST_TIMEOUT,
            ms(100),
            s(600),
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
                client_ca: c.resolve(&t.client_ca),
            },
            None => {
                c.err(
                    "tls",
                    "missing; the gate takes only clients with a certificate: set tls.cert, tls.key and tls.client_ca",
                );
                Tls {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                    client_ca: PathBuf::new(),
                }
            }
        };
        let upstream = upstream(&mut c, "upstream", f.upstream.as_ref());
        let logs = f
            .logs
            .as_ref()
            .map(|l| upstream_at(&mut c, "logs", l, "https://127.0.0.1:3100/loki/api/v1/push"));
        let lim = &f.limits;
        let max_body_bytes = c.range(
            "limits.max_body_bytes",
            lim.max_body_bytes,
            defaults::MAX_BODY_BYTES,
            1024,
            1 << 30,
        );
        let max_decoded_bytes = c.range(
            "limits.max_decoded_bytes",
            lim.max_decoded_bytes,
            defaults::MAX_DECODED_BYTES,
            1024,
            4 << 30,
        );
        let max_in_flight = c.range(
            "limits.max_in_flight",
            lim.max_in_flight,
            defaults::MAX_IN_FLIGHT,
            1,
            1024,
        );
        c.finish(Config {
            file: path.to_owned(),
            addr,
            allow_from,
            max_connections,
            header_timeout,
            request_timeout,
            shutdown_grace,
            metrics,
            metrics_allow_from,
            tls,
            upstream,
            logs,
            max_body_bytes,
            max_decoded_bytes,
            max_in_flight,
        })
    }
}

fn upstream(c: &mut Checker<'_>, key: &str, u: Option<&FileUpstream>) -> Upstream {
    let Some(u) = u else {
        c.err(
            key,
            "missing; set upstream.url to Prometheus's remote-write receiver, such as https://127.0.0.1:9091/api/v1/write",
        );
        return Upstream {
            url: Uri::default(),
            tls: None,
            timeout: defaults::UPSTREAM_TIMEOUT,
        };
    };
    upstream_at(c, key, u, "https://127.0.0.1:9091/api/v1/write")
}

/// `[<key>]`: a URL the gate forwards to, with its CA and the gate's client certificate
/// for https.
fn upstream_at(c: &mut Checker<'_>, key: &str, u: &FileUpstream, example: &str) -> Upstream {
    let empty = Upstream {
        url: Uri::default(),
        tls: None,
        timeout: defaults::UPSTREAM_TIMEOUT,
    };
    let timeout = c.duration(
        &format!("{key}.timeout"),
        u.timeout.as_ref(),
        defaults::UPSTREAM_TIMEOUT,
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    let url = match u.url.parse::<Uri>() {
        Ok(url)
            if matches!(url.scheme_str(), Some("http" | "https"))
                && url.authority().is_some_and(|a| a.port_u16().is_some()) =>
        {
            url
        }
        _ => {
            c.err(
                format!("{key}.url"),
                format!(
                    "`{}` is not usable; expected a URL such as {example}",
                    u.url
                ),
            );
            return empty;
        }
    };
    let tls = c
        .client_cert(
            key,
            url.scheme_str() == Some("https"),
            [u.ca.as_deref(), u.cert.as_deref(), u.key.as_deref()],
        )
        .map(|[ca, cert, key]| rampart_tls::ClientTls {
            ca,
            client_cert: Some((cert, key)),
        });
    Upstream { url, tls, timeout }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("/etc/rampart/gate.toml"), text)
    }

    const MINIMAL: &str = r#"
[tls]
cert = "monitor.pem"
key = "monitor.key"
client_ca = "ca.pem"
[upstream]
url = "https://127.0.0.1:9091/api/v1/write"
ca = "ca.pem"
cert = "plane-gate.pem"
key = "plane-gate.key"
"#;

    #[test]
    fn minimal_config_takes_every_default_and_resolves_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.addr.to_string(), defaults::ADDR);
        assert_eq!(c.tls.client_ca, Path::new("/etc/rampart/ca.pem"));
        let tls = c.upstream.tls.unwrap();
        assert_eq!(
            tls.client_cert.unwrap().1,
            Path::new("/etc/rampart/plane-gate.key")
        );
        assert_eq!(c.max_body_bytes, defaults::MAX_BODY_BYTES);
        assert_eq!(c.metrics, None);
    }

    #[test]
    fn each_error_names_its_key() {
        let cases = [
            ("", "tls"),
            ("", "upstream"),
            (
                "[upstream]\nurl = \"https://127.0.0.1:9091/api/v1/write\"\n",
                "upstream.cert",
            ),
            (
                "[upstream]\nurl = \"http://127.0.0.1:9091/\"\nca = \"x\"\n",
                "upstream.ca",
            ),
            ("[upstream]\nurl = \"ftp://x\"\n", "upstream.url"),
            ("[logs]\nurl = \"nowhere\"\n", "logs.url"),
            (
                "[logs]\nurl = \"https://127.0.0.1:3100/loki/api/v1/push\"\n",
                "logs.cert",
            ),
            ("[limits]\nmax_in_flight = 0\n", "limits.max_in_flight"),
            ("[listen]\naddr = \"nowhere\"\n", "listen.addr"),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.0.iter().any(|e| e.key == key), "{key}: {err}");
            assert!(err.to_string().contains("/etc/rampart/gate.toml"), "{err}");
        }
    }
}
