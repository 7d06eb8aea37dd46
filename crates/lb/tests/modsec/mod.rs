//! Real ModSecurity v3 for differential tests: Debian's nginx with
//! `libnginx-mod-http-modsecurity` (libmodsecurity3) and Debian's CRS 3.3.4, as one
//! nginx process owned by the test (`daemon off; master_process off;`, its own prefix
//! in a temporary directory, killed by its PID on drop) on a free 127.0.0.1 port, plain
//! HTTP. ModSecurity runs with the recommended configuration's engine settings and body
//! processors (`modsecurity.conf-recommended`, which Debian ships as
//! `/etc/nginx/modsecurity.conf`), response inspection and audit logging off, then the
//! CRS as Debian lays it out; a request it lets through is proxied to a second server
//! block of the same nginx that answers 200 (`return` in the inspected server would
//! answer before ModSecurity reads the body).
//!
//! Each request goes on a new connection from a source address of its own
//! (`127.100.x.y`), so the rule ids ModSecurity logged for it (nginx's error log at
//! level `info`: one line per rule that matched and logs, each with the connection
//! number) are found again through the access log (connection number, client
//! address). A unique address also keeps ModSecurity's persistent `IP` collection from
//! carrying state from one request to the next.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rampart_test_support::eventually;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const MODULE: &str = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so";
pub const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
pub const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
/// The recommended configuration's unicode map (code page 20127, US-ASCII).
pub const UNICODE_MAP: &str = "/usr/share/nginx/docs/modsecurity/unicode.mapping";

/// How long one request may take, each way.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// ModSecurity's configuration: the engine and body settings of the recommended
/// configuration (request bodies inspected up to 1 MiB, 128 KiB without files, refused
/// past it; the JSON and XML processors by content type; a body that does not parse,
/// a multipart body a strict parser refuses, or more than 1000 arguments refused with
/// 400), responses not inspected, no audit log; then Debian's CRS 3.3.4 (paranoia
/// level 1, inbound threshold 5, as `crs-setup.conf` leaves them).
fn main_conf(engine: &str, setup: &str) -> String {
    let unicode = if Path::new(UNICODE_MAP).is_file() {
        format!("SecUnicodeMapFile {UNICODE_MAP} 20127\n")
    } else {
        String::new()
    };
    format!(
        r#"SecRuleEngine {engine}
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" \
    "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \
    "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 1048576
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule &ARGS "@ge 1000" \
    "id:'200007',phase:2,t:none,log,deny,status:400,msg:'Failed to fully parse request body due to large argument count',severity:2"
SecRule REQBODY_ERROR "!@eq 0" \
    "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{{reqbody_error_msg}}',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \
    "id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" \
    "id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecRule TX:/^MSC_/ "!@streq 0" \
    "id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged: %{{MATCHED_VAR_NAME}}'"
SecResponseBodyAccess Off
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
{unicode}
Include {CRS_SETUP}
{setup}
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include {CRS_RULES}/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
"#
    )
}

fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"load_module {MODULE};
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format parity '$connection $remote_addr $status';
    access_log {d}/access.log parity;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 8m;
    client_body_buffer_size 8m;
    client_header_timeout 8s;
    client_body_timeout 8s;
    large_client_header_buffers 8 64k;
    ignore_invalid_headers off;
    underscores_in_headers on;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        modsecurity on;
        modsecurity_rules_file {d}/main.conf;
        location / {{ proxy_pass http://unix:{d}/app.sock:; }}
    }}
    server {{
        listen unix:{d}/app.sock;
        location / {{ return 200 "ok\n"; }}
    }}
}}
"#
    )
}

/// Whether nginx, its ModSecurity module and Debian's CRS are installed. Without them
/// this prints SKIPPED (the caller returns); with `CI` and `RAMPART_MODSEC_PARITY=1` set
/// it fails the test instead.
pub fn installed() -> bool {
    let missing: Vec<&str> = [NGINX, MODULE, CRS_RULES, CRS_SETUP]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        && std::env::var_os("RAMPART_MODSEC_PARITY").is_some_and(|v| v == "1");
    assert!(
        !required,
        "{missing:?} missing: apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs"
    );
    println!(
        "SKIPPED: {missing:?} missing (apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs)"
    );
    false
}

/// One request's answer from nginx: the status (`None`: closed or timed out without
/// one) and the source address the request came from.
#[derive(Clone, Debug)]
pub struct Sent {
    pub source: Ipv4Addr,
    pub status: Option<u16>,
}

/// nginx with ModSecurity and the CRS; dropping it kills the process.
pub struct ModSec {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl ModSec {
    /// Starts nginx and waits (up to 60 s: the CRS takes a few seconds to load) until it
    /// accepts connections; `None` when it is not installed.
    pub fn start() -> Option<ModSec> {
        Self::start_with("On", "")
    }

    /// [`ModSec::start`] with the rule engine `On` or `DetectionOnly` and `setup` (rules)
    /// right after `crs-setup.conf`.
    pub fn start_with(engine: &str, setup: &str) -> Option<ModSec> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.conf"), main_conf(engine, setup)).unwrap();
        // Hold the port until nginx is about to bind it.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), port)).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut m = ModSec {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child,
        };
        eventually("nginx accepts connections", Duration::from_secs(60), || {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}{}",
                    m.read("stderr.log"),
                    m.read("error.log")
                );
            }
            TcpStream::connect_timeout(&m.addr, Duration::from_millis(200))
                .is_ok()
                .then_some(())
        });
        Some(m)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Sends `raw` on a new connection from `source` and reads the status line.
    pub fn send(&self, raw: &[u8], source: Ipv4Addr) -> Sent {
        let status = self.exchange(raw, source).ok().flatten();
        Sent { source, status }
    }

    fn exchange(&self, raw: &[u8], source: Ipv4Addr) -> std::io::Result<Option<u16>> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
        s.connect_timeout(&self.addr.into(), TIMEOUT)?;
        let mut c: TcpStream = s.into();
        c.set_read_timeout(Some(TIMEOUT))?;
        c.set_write_timeout(Some(TIMEOUT))?;
        c.set_nodelay(true)?;
        // nginx may answer (and close) before it has read all of a body it refuses.
        let _ = c.write_all(raw);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 65536 {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let line = String::from_utf8_lossy(&buf);
        Ok(line
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|s| s.parse().ok()))
    }

    /// Sends every request of `raws` on `threads` client threads, request `i` from the
    /// source address [`source`]`(i)`.
    pub fn send_all(&self, raws: &[Vec<u8>], threads: usize) -> Vec<Sent> {
        let chunk = raws.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = raws
                .chunks(chunk)
                .enumerate()
                .map(|(n, part)| {
                    s.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(i, r)| self.send(r, source(n * chunk + i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    }

    /// The ids of the rules ModSecurity logged for each source address, once the access
    /// log names every request of `sent` that was answered.
    pub fn matched(&self, sent: &[Sent]) -> HashMap<Ipv4Addr, Vec<u64>> {
        let want: Vec<Ipv4Addr> = sent
            .iter()
            .filter(|s| s.status.is_some())
            .map(|s| s.source)
            .collect();
        let conns = eventually(
            "nginx's access log has every request",
            Duration::from_secs(30),
            || {
                let mut conns: HashMap<String, Ipv4Addr> = HashMap::new();
                for line in self.read("access.log").lines() {
                    let mut f = line.split(' ');
                    if let (Some(c), Some(a)) = (f.next(), f.next()) {
                        if let Ok(a) = a.parse() {
                            conns.insert(c.to_owned(), a);
                        }
                    }
                }
                let seen: std::collections::HashSet<&Ipv4Addr> = conns.values().collect();
                want.iter().all(|w| seen.contains(w)).then_some(conns)
            },
        );
        let mut out: HashMap<Ipv4Addr, Vec<u64>> = HashMap::new();
        for line in self.read("error.log").lines() {
            let Some(at) = line.find("ModSecurity: ") else {
                continue;
            };
            // `2026/01/01 00:00:00 [info] 1#1: *42 ModSecurity: Warning. ...`, or
            // `... [error] 1#1: *42 [client 127.100.0.7] ModSecurity: Access denied ...`.
            let Some(conn) = line[..at].split_once(": *").map(|(_, c)| {
                let n = c.bytes().take_while(u8::is_ascii_digit).count();
                &c[..n]
            }) else {
                continue;
            };
            let Some(addr) = conns.get(conn) else {
                continue;
            };
            if let Some(id) = rule_id(&line[at..]) {
                let ids = out.entry(*addr).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        out
    }

    /// nginx's error log, for reports.
    pub fn error_log(&self) -> String {
        self.read("error.log")
    }
}

impl Drop for ModSec {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The source address of request `i`: 127.100.0.0 onwards (4 Mi of them), all on the
/// loopback.
pub fn source(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap_or(u32::MAX) & 0x003f_ffff;
    Ipv4Addr::from(0x7f64_0000 + i)
}

/// The rule id of a ModSecurity message: the `[id "N"]` right after `[file ..] [line
/// "N"]` (the matched value before it is the client's text, and may hold anything).
fn rule_id(msg: &str) -> Option<u64> {
    let mut rest = msg;
    while let Some(p) = rest.find("[line \"") {
        let after = &rest[p + 7..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(id) = after[digits..].strip_prefix("\"] [id \"") {
            let n = id.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 && id[n..].starts_with('"') {
                return id[..n].parse().ok();
            }
        }
        rest = after;
    }
    None
}
