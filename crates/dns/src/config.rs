//! The DNS server's configuration in two layers: `File*` structs that mirror the TOML
//! (unknown keys refused) and the validated [`Config`] the server runs on. Every problem
//! is collected and names the file, the key and what would be valid. Reading and parsing
//! are `rampart_telemetry::config::ConfigFile`'s, as for every service.
//!
//! Secure defaults: both listeners bind loopback unless told otherwise, TCP connections
//! are capped and closed when idle, and the zone's CAA record forbids every public CA from
//! issuing certificates for it (the site's certificates come from rampart's local CA, so
//! any publicly issued certificate for the zone would be a mis-issuance).
//!
//! `[listen] allow_from` is a source allow-list for both listeners (defence in depth
//! beside the firewall); empty or absent, the default, lets anyone ask.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::rdata::caa::CAA;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: FileListen,
    pub zone: Option<FileZone>,
    #[serde(default)]
    pub limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub udp: Option<String>,
    pub tcp: Option<String>,
    /// Source addresses or networks whose queries are answered, over UDP and TCP.
    pub allow_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileZone {
    /// The zone's apex, such as `foobar.com`.
    pub name: Option<String>,
    /// The name server's label inside the zone, such as `ns1`.
    pub ns: Option<String>,
    /// The load balancer's public address: A for the apex and `www`.
    pub site: Option<String>,
    /// The name server's own address: A for `<ns>.<zone>`.
    pub ns_address: Option<String>,
    pub ttl: Option<String>,
    /// CAA records at the apex in presentation form, such as `0 issue ";"`.
    pub caa: Option<Vec<String>>,
    #[serde(default)]
    pub soa: FileSoa,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSoa {
    pub mname: Option<String>,
    pub rname: Option<String>,
    pub serial: Option<i64>,
    pub refresh: Option<String>,
    pub retry: Option<String>,
    pub expire: Option<String>,
    pub minimum: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_tcp_connections: Option<usize>,
    pub tcp_idle_timeout: Option<String>,
}

/// The SOA record's fields; times in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// The negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// The zone's data, validated: every name is fully qualified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: Name,
    /// The name server's full name, `<ns>.<zone>.`.
    pub ns: Name,
    pub site: Ipv4Addr,
    pub ns_address: Ipv4Addr,
    /// TTL of every positive record, in seconds.
    pub ttl: u32,
    pub soa: Soa,
    pub caa: Vec<CAA>,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_tcp_connections: usize,
    /// How long a TCP connection may wait for its next query (a whole one must arrive in
    /// this time) and how long a response may take to write.
    pub tcp_idle_timeout: Duration,
}

/// A validated DNS server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Who may ask, over UDP and TCP; empty: anyone.
    pub allow_from: AllowList,
    pub zone: Zone,
    pub limits: Limits,
}

/// Every default in one place.
pub mod defaults {
    use std::time::Duration;
    pub const UDP: &str = "127.0.0.1:5353";
    pub const TCP: &str = "127.0.0.1:5353";
    pub const NS: &str = "ns1";
    pub const TTL: Duration = Duration::from_secs(300);
    /// No CA may issue for the zone: its certificates come from rampart's local CA.
    pub const CAA: &[&str] = &["0 issue \";\""];
    /// `hostmaster.<zone>.`
    pub const RNAME_LABEL: &str = "hostmaster";
    pub const SERIAL: u32 = 2026112301;
    pub const REFRESH: Duration = Duration::from_secs(3600);
    pub const RETRY: Duration = Duration::from_secs(900);
    pub const EXPIRE: Duration = Duration::from_secs(14 * 86_400);
    pub const MINIMUM: Duration = Duration::from_secs(300);
    pub const MAX_TCP_CONNECTIONS: usize = 256;
    pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
}

impl ConfigFile for Config {
    type File = FileConfig;

    /// Turns the raw file into a validated config, collecting every problem.
    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let l = &f.listen;
        let udp = listen::optional_addr(&mut c, "udp", l.udp.as_deref(), defaults::UDP);
        let tcp = listen::optional_addr(&mut c, "tcp", l.tcp.as_deref(), defaults::TCP);
        let allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());
        if f.listen.udp.as_deref() == Some("off") && f.listen.tcp.as_deref() == Some("off") {
            c.err(
                "listen",
                "udp and tcp are both \"off\"; a DNS server needs at least one (usually both)",
            );
        }

        let zone = match &f.zone {
            Some(z) => validate_zone(&mut c, z),
            None => {
                c.err(
                    "zone",
                    "missing; expected a [zone] table with name, site and ns_address",
                );
                None
            }
        };

        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let limits = Limits {
            max_tcp_connections: c.range(
                "limits.max_tcp_connections",
                f.limits.max_tcp_connections,
                defaults::MAX_TCP_CONNECTIONS,
                1,
                65_536,
            ),
            tcp_idle_timeout: c.duration(
                "limits.tcp_idle_timeout",
                f.limits.tcp_idle_timeout.as_ref(),
                defaults::TCP_IDLE_TIMEOUT,
                ms(100),
                s(300),
            ),
        };
        match zone {
            Some(zone) => c.finish(Config {
                file: path.to_owned(),
                udp,
                tcp,
                allow_from,
                zone,
                limits,
            }),
            None => {
                // An error was recorded for whatever made the zone unusable.
                Err(ConfigErrors(c.errors))
            }
        }
    }
}

/// Validates `[zone]`; `None` (with errors recorded) when a required part is unusable.
fn validate_zone(c: &mut Checker<'_>, z: &FileZone) -> Option<Zone> {
    let name = match z.name.as_deref() {
        None => {
            c.err(
                "zone.name",
                "missing; expected the zone's domain such as \"foobar.com\"",
            );
            None
        }
        Some(v) => domain(c, "zone.name", v),
    };
    let ns_label = z.ns.as_deref().unwrap_or(defaults::NS);
    let ns_ok = is_label(ns_label);
    if !ns_ok {
        c.err(
            "zone.ns",
            format!(
                "`{ns_label}` is not a single label; expected the name server's name inside the zone, such as \"ns1\""
            ),
        );
    }
    let site = ipv4(
        c,
        "zone.site",
        z.site.as_deref(),
        "the load balancer's public IPv4 address, such as \"203.0.113.10\"",
    );
    let ns_address = ipv4(
        c,
        "zone.ns_address",
        z.ns_address.as_deref(),
        "the name server's own IPv4 address, such as \"203.0.113.53\"",
    );
    let ttl = secs(c, "zone.ttl", z.ttl.as_ref(), defaults::TTL, 1, 7 * 86_400);

    let mut caa = Vec::new();
    match &z.caa {
        None => {
            for v in defaults::CAA {
                // The default is valid; a failure here would show as a config error.
                if let Ok(r) = parse_caa(v) {
                    caa.push(r);
                }
            }
        }
        Some(list) => {
            for (i, v) in list.iter().enumerate() {
                match parse_caa(v) {
                    Ok(r) => caa.push(r),
                    Err(e) => c.err(format!("zone.caa[{i}]"), e),
                }
            }
        }
    }

    let s = &z.soa;
    let serial = c.range(
        "zone.soa.serial",
        s.serial,
        i64::from(defaults::SERIAL),
        1,
        i64::from(u32::MAX),
    );
    let refresh = secs(
        c,
        "zone.soa.refresh",
        s.refresh.as_ref(),
        defaults::REFRESH,
        60,
        28 * 86_400,
    );
    let retry = secs(
        c,
        "zone.soa.retry",
        s.retry.as_ref(),
        defaults::RETRY,
        60,
        28 * 86_400,
    );
    let expire = secs(
        c,
        "zone.soa.expire",
        s.expire.as_ref(),
        defaults::EXPIRE,
        3600,
        365 * 86_400,
    );
    let minimum = secs(
        c,
        "zone.soa.minimum",
        s.minimum.as_ref(),
        defaults::MINIMUM,
        0,
        86_400,
    );
    if expire <= refresh.saturating_add(retry) {
        c.err(
            "zone.soa.expire",
            format!(
                "{expire}s must be longer than zone.soa.refresh + zone.soa.retry ({}s), or secondaries expire the zone before they retry",
                refresh.saturating_add(retry)
            ),
        );
    }

    // mname and rname are checked before giving up on a missing zone name, so their
    // errors are reported too; only their defaults need the zone name.
    let mname = s.mname.as_deref().map(|v| domain(c, "zone.soa.mname", v));
    let rname = s.rname.as_deref().map(|v| {
        if v.contains('@') {
            c.err(
                "zone.soa.rname",
                format!(
                    "`{v}` is an email address; write it as a name with the '@' as a dot, such as \"hostmaster.foobar.com\""
                ),
            );
            None
        } else {
            domain(c, "zone.soa.rname", v)
        }
    });
    let name = name?;
    let ns = if ns_ok {
        match Name::from_ascii(ns_label).and_then(|l| l.append_domain(&name)) {
            Ok(n) => Some(n.to_lowercase()),
            Err(_) => {
                c.err("zone.ns", format!("`{ns_label}.{name}` is too long a name"));
                None
            }
        }
    } else {
        None
    };
    let ns = ns?;
    let mname = match mname {
        None => ns.clone(),
        Some(m) => m?,
    };
    let rname = match rname {
        None => {
            match Name::from_ascii(defaults::RNAME_LABEL).and_then(|l| l.append_domain(&name)) {
                Ok(n) => n,
                Err(_) => {
                    c.err(
                        "zone.soa.rname",
                        format!(
                            "`{}.{name}` is too long a name; set zone.soa.rname",
                            defaults::RNAME_LABEL
                        ),
                    );
                    return None;
                }
            }
        }
        Some(r) => r?,
    };
    Some(Zone {
        name,
        ns,
        site: site?,
        ns_address: ns_address?,
        ttl,
        soa: Soa {
            mname,
            rname,
            // In range: checked against 1..=u32::MAX above.
            serial: u32::try_from(serial).unwrap_or(defaults::SERIAL),
            refresh,
            retry,
            expire,
            minimum,
        },
        caa,
    })
}

/// A hostname label: 1-63 letters, digits or '-', not starting or ending with '-'.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A fully qualified domain name of hostname labels (a trailing dot is optional).
fn domain(c: &mut Checker<'_>, key: &str, v: &str) -> Option<Name> {
    let trimmed = v.strip_suffix('.').unwrap_or(v);
    let ok = !trimmed.is_empty() && trimmed.len() <= 253 && trimmed.split('.').all(is_label);
    let name = if ok {
        Name::from_ascii(trimmed).ok().map(|mut n| {
            n.set_fqdn(true);
            // Served in lower case; queries match in any case.
            n.to_lowercase()
        })
    } else {
        None
    };
    if name.is_none() {
        c.err(
            key,
            format!(
                "`{v}` is not a domain name; expected dot-separated labels of letters, digits and '-', such as \"foobar.com\""
            ),
        );
    }
    name
}

/// `what` ends with an example address, such as "the name server's own address, such as
/// \"203.0.113.53\"".
fn ipv4(c: &mut Checker<'_>, key: &str, v: Option<&str>, what: &str) -> Option<Ipv4Addr> {
    let Some(v) = v else {
        c.err(key, format!("missing; expected {what}"));
        return None;
    };
    match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Some(a),
        Ok(IpAddr::V6(_)) => {
            c.err(
                key,
                format!("`{v}` is IPv6; expected an IPv4 address (the zone serves A records only)"),
            );
            None
        }
        Err(_) => {
            c.err(key, format!("`{v}` is not an address; expected {what}"));
            None
        }
    }
}

/// A duration in whole seconds within `min..=max` seconds.
fn secs(
    c: &mut Checker<'_>,
    key: &str,
    v: Option<&String>,
    default: Duration,
    min: u64,
    max: u64,
) -> u32 {
    let d = c.duration(
        key,
        v,
        default,
        Duration::from_secs(min),
        Duration::from_secs(max),
    );
    if d.subsec_nanos() != 0 {
        c.err(
            key,
            format!("{d:?} is not a whole number of seconds; DNS times are in seconds"),
        );
    }
    // `max` is at most a year, far below u32::MAX seconds.
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Parses a CAA record in presentation form (RFC 8659): `FLAGS TAG "VALUE"`, such as
/// `0 issue ";"` or `0 iodef "mailto:security@foobar.com"`.
pub fn parse_caa(s: &str) -> Result<CAA, String> {
    let expected = "expected FLAGS TAG \"VALUE\" such as `0 issue \";\"` (no CA may issue) or `0 issue \"letsencrypt.org\"`";
    let s = s.trim();
    let (flags, rest) = s
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{s}`: {expected}"))?;
    let flags: u8 = match flags.parse() {
        Ok(f @ (0 | 128)) => f,
        _ => {
            return Err(format!(
                "`{s}`: flags `{flags}` must be 0, or 128 (critical); {expected}"
            ))
        }
    };
    let rest = rest.trim_start();
    let (tag, value) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{s}`: {expected}"))?;
    if !matches!(tag, "issue" | "issuewild" | "iodef") {
        return Err(format!(
            "`{s}`: tag `{tag}` is not one of issue, issuewild, iodef; {expected}"
        ));
    }
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(v) if !v.contains('"') && !v.contains('\\') => v,
        Some(_) => return Err(format!("`{s}`: the value may not contain '\"' or '\\'")),
        None if !value.is_empty() && !value.contains(char::is_whitespace) => value,
        None => return Err(format!("`{s}`: {expected}")),
    };
    if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(format!(
            "`{s}`: the value must be printable ASCII; {expected}"
        ));
    }
    // Build the wire form and let hickory decode it, so what is served is exactly what
    // was written, and hickory's own checks of issuer names and URLs apply.
    let mut wire = vec![flags, tag.len() as u8];
    wire.extend_from_slice(tag.as_bytes());
    wire.extend_from_slice(value.as_bytes());
    let len = u16::try_from(wire.len()).map_err(|_| format!("`{s}`: too long"))?;
    let mut decoder = BinDecoder::new(&wire);
    let caa = match RData::read(&mut decoder, RecordType::CAA, Restrict::new(len)) {
        Ok(RData::CAA(caa)) => caa,
        Ok(_) => return Err(format!("`{s}`: not a CAA record; {expected}")),
        Err(e) => return Err(format!("`{s}`: {e}; {expected}")),
    };
    let valid = if caa.tag().is_iodef() {
        caa.value_as_iodef().is_ok()
    } else {
        caa.value_as_issue().is_ok()
    };
    if !valid {
        return Err(format!(
            "`{s}`: the value is not valid for `{tag}`; {expected}"
        ));
    }
    Ok(caa)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[zone]
name = "foobar.com"
site = "203.0.113.10"
ns_address = "203.0.113.53"
"#;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("/etc/rampart/dns.toml"), text)
    }

    /// Every error of `text` as `key: message`, one per line.
    fn errors(text: &str) -> String {
        match parse(text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                e.0.iter()
                    .map(|e| {
                        assert_eq!(e.file, Path::new("/etc/rampart/dns.toml"));
                        format!("{}: {}", e.key, e.message)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }

    /// `text` has exactly one error, at `key`, whose message contains `needle`.
    fn check_err(text: &str, key: &str, needle: &str) {
        let got = errors(text);
        let mut lines = got.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{key}: ")) && first.contains(needle),
            "for\n{text}\nexpected {key}: ...{needle}...\ngot:\n{got}"
        );
        assert_eq!(lines.next(), None, "more than one error:\n{got}");
    }

    fn with(extra_zone: &str, rest: &str) -> String {
        format!("{MINIMAL}{extra_zone}\n{rest}")
    }

    #[test]
    fn minimal_config_takes_every_default() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.udp, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(c.tcp, Some("127.0.0.1:5353".parse().unwrap()));
        assert!(c.allow_from.is_empty(), "anyone may ask");
        let z = &c.zone;
        assert_eq!(z.name.to_ascii(), "foobar.com.");
        assert_eq!(z.ns.to_ascii(), "ns1.foobar.com.");
        assert_eq!(z.site, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(z.ns_address, Ipv4Addr::new(203, 0, 113, 53));
        assert_eq!(z.ttl, 300);
        assert_eq!(z.soa.mname.to_ascii(), "ns1.foobar.com.");
        assert_eq!(z.soa.rname.to_ascii(), "hostmaster.foobar.com.");
        assert_eq!(
            (
                z.soa.serial,
                z.soa.refresh,
                z.soa.retry,
                z.soa.expire,
                z.soa.minimum
            ),
            (2026112301, 3600, 900, 1_209_600, 300)
        );
        assert_eq!(z.caa.len(), 1);
        assert!(z.caa[0].tag().is_issue());
        assert_eq!(z.caa[0].raw_value(), b";");
        assert_eq!(c.limits.max_tcp_connections, 256);
        assert_eq!(c.limits.tcp_idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn every_key_can_be_set() {
        let c = parse(
            r#"
[listen]
udp = "0.0.0.0:53"
tcp = "off"
allow_from = ["203.0.113.0/24", "2001:db8::/32"]
[zone]
name = "Example.NET."
ns = "dns"
site = "192.0.2.1"
ns_address = "192.0.2.2"
ttl = "1h"
caa = ['0 issue "letsencrypt.org"', '128 iodef "mailto:security@example.net"']
[zone.soa]
mname = "dns.example.net"
rname = "admin.example.net."
serial = 7
refresh = "2h"
retry = "30m"
expire = "7d"
minimum = "60s"
[limits]
max_tcp_connections = 10
tcp_idle_timeout = "500ms"
"#,
        )
        .unwrap();
        assert_eq!(c.udp, Some("0.0.0.0:53".parse().unwrap()));
        assert_eq!(c.tcp, None);
        assert!(c.allow_from.permits("203.0.113.100".parse().unwrap()));
        assert!(!c.allow_from.permits("198.51.100.1".parse().unwrap()));
        assert_eq!(c.zone.name.to_ascii(), "example.net.");
        assert_eq!(c.zone.ns.to_ascii(), "dns.example.net.");
        assert_eq!(c.zone.ttl, 3600);
        assert_eq!(c.zone.soa.serial, 7);
        assert_eq!(c.zone.soa.minimum, 60);
        assert_eq!(c.zone.caa.len(), 2);
        assert!(c.zone.caa[1].issuer_critical());
        assert_eq!(c.limits.max_tcp_connections, 10);
    }

    #[test]
    fn each_error_names_its_key() {
        check_err("", "zone", "missing; expected a [zone] table");
        check_err(
            "[zone]\nsite = \"1.2.3.4\"\nns_address = \"1.2.3.5\"",
            "zone.name",
            "missing",
        );
        check_err(
            "[zone]\nname = \"foobar.com\"\nns_address = \"1.2.3.5\"",
            "zone.site",
            "missing",
        );
        check_err(
            "[zone]\nname = \"foobar.com\"\nsite = \"1.2.3.5\"",
            "zone.ns_address",
            "missing",
        );
        check_err(
            &MINIMAL.replace("foobar.com", "foo bar.com"),
            "zone.name",
            "not a domain name",
        );
        check_err(
            &MINIMAL.replace("foobar.com", "-foo.com"),
            "zone.name",
            "not a domain name",
        );
        check_err(
            &MINIMAL.replace("foobar.com", "foo..com"),
            "zone.name",
            "not a domain name",
        );
        check_err(
            &MINIMAL.replace("203.0.113.10", "2001:db8::1"),
            "zone.site",
            "is IPv6",
        );
        check_err(
            &MINIMAL.replace("203.0.113.53", "ns1"),
            "zone.ns_address",
            "not an address",
        );
        check_err(
            &with("ns = \"ns1.sub\"", ""),
            "zone.ns",
            "not a single label",
        );
        check_err(&with("ns = \"\"", ""), "zone.ns", "not a single label");
        check_err(&with("ttl = \"0s\"", ""), "zone.ttl", "out of range");
        check_err(&with("ttl = \"300\"", ""), "zone.ttl", "not a duration");
        check_err(
            &with("ttl = \"1500ms\"", ""),
            "zone.ttl",
            "whole number of seconds",
        );
        check_err(
            &with("caa = [\"issue ;\"]", ""),
            "zone.caa[0]",
            "flags `issue`",
        );
        check_err(
            &with("caa = ['0 issue \";\"', '0 bogus \"x\"']", ""),
            "zone.caa[1]",
            "tag `bogus`",
        );
        check_err(
            &with("caa = ['1 issue \";\"']", ""),
            "zone.caa[0]",
            "must be 0, or 128",
        );
        check_err(
            &with("caa = ['0 issue']", ""),
            "zone.caa[0]",
            "expected FLAGS TAG",
        );
        check_err(
            &with("caa = ['0 issue \"a\"b\"']", ""),
            "zone.caa[0]",
            "may not contain",
        );
        check_err(
            &with("[zone.soa]\nserial = 0", ""),
            "zone.soa.serial",
            "out of range",
        );
        check_err(
            &with("[zone.soa]\nserial = 4294967296", ""),
            "zone.soa.serial",
            "out of range",
        );
        check_err(
            &with("[zone.soa]\nrname = \"me@foobar.com\"", ""),
            "zone.soa.rname",
            "email address",
        );
        check_err(
            &with("[zone.soa]\nmname = \"ns_1.foobar.com\"", ""),
            "zone.soa.mname",
            "not a domain name",
        );
        check_err(
            &with("[zone.soa]\nexpire = \"1h\"", ""),
            "zone.soa.expire",
            "must be longer than",
        );
        check_err(
            &with("[zone.soa]\nminimum = \"2d\"", ""),
            "zone.soa.minimum",
            "out of range",
        );
        check_err(
            &with("", "[listen]\nudp = \"localhost:53\""),
            "listen.udp",
            "expected IP:PORT",
        );
        check_err(
            &with("", "[listen]\nallow_from = [\"127.0.0.1\", \"resolver.example\"]"),
            "listen.allow_from[1]",
            "`resolver.example` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24",
        );
        check_err(
            &with("", "[listen]\nallow_from = [\"10.0.0.0/40\"]"),
            "listen.allow_from[0]",
            "`10.0.0.0/40` is not an address or network",
        );
        check_err(
            &with("", "[listen]\nudp = \"off\"\ntcp = \"off\""),
            "listen",
            "at least one",
        );
        check_err(
            &with("", "[limits]\nmax_tcp_connections = 0"),
            "limits.max_tcp_connections",
            "out of range",
        );
        check_err(
            &with("", "[limits]\ntcp_idle_timeout = \"1ms\""),
            "limits.tcp_idle_timeout",
            "out of range",
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        check_err(
            &with("addresses = 1", ""),
            "line 6",
            "unknown field `addresses`",
        );
        check_err(
            &with("", "[limits]\nmax_connections = 1"),
            "line 8",
            "unknown field `max_connections`",
        );
        check_err("[zone]\nname = 5", "line 2", "invalid type");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let got = errors(
            "[listen]\nudp = \"x\"\n[zone]\nname = \"a b\"\nsite = \"y\"\nns_address = \"z\"\nttl = \"q\"\n",
        );
        let keys: Vec<&str> = got
            .lines()
            .map(|l| l.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "listen.udp",
                "zone.name",
                "zone.site",
                "zone.ns_address",
                "zone.ttl"
            ],
            "{got}"
        );
    }

    #[test]
    fn load_names_the_file_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.toml");
        std::fs::write(&path, MINIMAL.replace("203.0.113.53", "nope")).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].file, path);
        assert_eq!(e.0[0].key, "zone.ns_address");
        assert!(e
            .to_string()
            .starts_with(&format!("{}: zone.ns_address: `nope`", path.display())));
        let e = Config::load(&dir.path().join("missing.toml")).unwrap_err();
        assert_eq!(e.0[0].key, "(file)");
    }

    #[test]
    fn caa_presentation_forms() {
        for (input, tag, value, critical) in [
            ("0 issue \";\"", "issue", ";", false),
            ("0 issue ;", "issue", ";", false),
            (
                "0 issue \"letsencrypt.org\"",
                "issue",
                "letsencrypt.org",
                false,
            ),
            ("0 issuewild \";\"", "issuewild", ";", false),
            (
                "128 issue \"ca.example; account=42\"",
                "issue",
                "ca.example; account=42",
                true,
            ),
            (
                "0 iodef \"mailto:security@foobar.com\"",
                "iodef",
                "mailto:security@foobar.com",
                false,
            ),
            ("  0   issue   \";\"  ", "issue", ";", false),
        ] {
            let caa = parse_caa(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(caa.tag().as_str(), tag, "{input}");
            assert_eq!(caa.raw_value(), value.as_bytes(), "{input}");
            assert_eq!(caa.issuer_critical(), critical, "{input}");
        }
        for bad in [
            "",
            "0",
            "0 issue",
            "x issue \";\"",
            "256 issue \";\"",
            "0 issue \"a b c",
            "0 iodef \"not a url\"",
        ] {
            assert!(parse_caa(bad).is_err(), "{bad} was accepted");
        }
    }
}
