//! A blocking HTTPS/1.1 client for tests that need exact bytes on the wire (malformed and
//! slow requests), and helpers to find external tools (curl, openssl, promtool, sslyze).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One TLS connection to the load balancer.
pub struct Https {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Https {
    /// Connects to `addr` with SNI `sni`; reads time out after 10 s.
    pub fn connect(
        addr: SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Self::over(tcp, cfg, sni)
    }

    /// Runs the TLS handshake over an already connected `tcp`; reads time out after 10 s.
    /// Lets a test hold a connection the server accepted but has not yet shaken hands on.
    pub fn over(
        tcp: TcpStream,
        cfg: Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> std::io::Result<Self> {
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
        let conn = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let mut s = Self {
            stream: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        };
        // Finish the handshake now so connection errors surface here.
        while s.stream.conn.is_handshaking() {
            s.stream.conn.complete_io(&mut s.stream.sock)?;
        }
        Ok(s)
    }

    /// The DER of the certificate the server presented.
    pub fn peer_certificate(&self) -> Vec<u8> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }

    pub fn set_read_timeout(&self, d: Duration) {
        let _ = self.stream.sock.set_read_timeout(Some(d));
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (Content-Length, chunked, or close-delimited body).
    pub fn response(&mut self) -> std::io::Result<Resp> {
        self.read_response(false)
    }

    /// Reads the response to a HEAD request: a head, never a body.
    pub fn head_response(&mut self) -> std::io::Result<Resp> {
        self.read_response(true)
    }

    fn read_response(&mut self, head: bool) -> std::io::Result<Resp> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let hs: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    if status == 100 {
                        continue;
                    }
                    let mut resp = Resp {
                        status,
                        headers: hs,
                        body: Vec::new(),
                    };
                    if head {
                        return Ok(resp);
                    }
                    if let Some(len) = resp
                        .header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                    {
                        while self.buf.len() < len {
                            if self.fill()? == 0 {
                                return Err(std::io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        resp.body = self.buf.drain(..len).collect();
                    } else if resp.header("transfer-encoding").is_some() {
                        resp.body = self.chunked()?;
                    } else if status != 204 && status != 304 {
                        while self.fill().unwrap_or(0) > 0 {}
                        resp.body = std::mem::take(&mut self.buf);
                    }
                    return Ok(resp);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(std::io::Error::other(format!("bad response: {e}"))),
            }
        }
    }

    fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill()? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&self.buf[..line_end])
                    .unwrap_or("x")
                    .trim(),
                16,
            )
            .map_err(std::io::Error::other)?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    /// Sends a GET for `path` with Host www.foobar.com and reads the response.
    pub fn get(&mut self, path: &str) -> std::io::Result<Resp> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n").as_bytes())?;
        self.response()
    }

    /// True when the server has closed the connection (EOF or reset) within the read
    /// timeout; false when data arrived or the timeout passed with the connection open.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// The path of an external tool, or `None` (after saying so) when it is missing outside
/// CI. In CI (`CI` set) a missing tool fails the test: `./run test` installs them all.
pub fn tool(name: &str, env: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = env.and_then(std::env::var_os).map(PathBuf::from) {
        if p.exists() {
            return Some(p);
        }
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; `./run test` installs it"
        );
        eprintln!("SKIPPED: {name} is not installed (`./run test` installs it)");
    }
    found
}

/// A tool from `./run test`'s PyPI virtualenv (`RAMPART_PYTHON_TOOLS`, its `bin`), else
/// from PATH, as [`tool`] finds it.
pub fn python_tool(name: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RAMPART_PYTHON_TOOLS") {
        let p = std::path::Path::new(&dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    tool(name, None)
}

#[derive(Debug)]
/// curl's output with `-D -`: status, lowercased headers, body, and stderr for
/// assertion messages.
pub struct CurlOut {
    pub ok: bool,
    pub status: u16,
    pub headers: String,
    pub body: String,
    pub stderr: String,
}

impl CurlOut {
    pub fn parse(out: &std::process::Output) -> Self {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        CurlOut {
            ok: out.status.success(),
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A header's value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
    }
}
