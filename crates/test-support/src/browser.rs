//! A real headless browser for end-to-end tests: Debian's Chromium opens a URL (under a
//! command prefix such as `ip netns exec NS`), trusting only the CA it is given, and
//! returns the rendered DOM and a PNG screenshot.
//!
//! **Trust.** Chromium on Linux verifies certificates against the NSS database in
//! `$HOME/.pki/nssdb` (plus the bundled roots). [`open`] gives every run a fresh `HOME`
//! under its work directory, creates that database with `certutil -N --empty-password`
//! and adds the CA with trust `C,,` (a CA trusted to issue server certificates). Headless
//! Chromium 156 (`--headless`, the new headless mode) honours it: with the CA imported the
//! page loads; with the same fresh database minus the CA, Chromium logs `handshake failed
//! ... net_error -202` and `Page load failed: net::ERR_CERT_AUTHORITY_INVALID` and dumps
//! an empty DOM, which [`open`] returns as an error. Other builds (Debian 12's 148) log
//! nothing and dump the certificate interstitial; [`open`] recognises Chromium's error
//! pages by their `errorCode` and returns that as the same error. No flag weakens verification (no
//! `--ignore-certificate-errors`, no SPKI pinning): the imported CA is what makes a page
//! load. `tests/browser_scan.rs` checks both cases.
//!
//! **Binary.** `/usr/bin/chromium` is Debian's shell wrapper: it sources
//! `/etc/chromium.d` (Google API keys, `--enable-remote-extensions`, GPU rasterization,
//! and a `/dev/shm` check that prints shell errors on some machines) before exec'ing
//! `/usr/lib/chromium/chromium`. [`open`] runs the real binary directly so the flags are
//! exactly the ones listed in [`FLAGS`] (`RAMPART_CHROMIUM` overrides the path); the
//! wrapper on `PATH` only tells [`available`] that the package is installed.
//!
//! **One run.** `--dump-dom` (to stdout) and `--screenshot` work in the same run, after
//! the load event plus `--virtual-time-budget` of virtual (not wall-clock) time. The run is
//! bounded by `timeout`, which kills Chromium's whole process group. Chromium exits 0 even
//! when the page fails to load, so failure is read from stderr (`Page load failed: ...`)
//! and from an empty DOM. Errors carry the tail of stderr without the D-Bus complaints
//! every run prints (there is no bus in a test namespace).
//!
//! Packages: `chromium`, `libnss3-tools` (certutil), `fonts-dejavu-core` (text in
//! screenshots; also pulled in through fontconfig).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::tool;

/// The flags every run gets, besides `--user-data-dir`, `--screenshot` and `--dump-dom`.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--virtual-time-budget=10000",
];

/// Seconds one Chromium run may take before `timeout` kills it.
pub const RUN_LIMIT_SECS: u32 = 60;

/// The real Chromium binary behind Debian's `/usr/bin/chromium` wrapper.
const DEBIAN_BINARY: &str = "/usr/lib/chromium/chromium";

/// The PNG signature (RFC 2083, section 3.1).
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A page as Chromium rendered it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The serialized DOM after load (`--dump-dom`).
    pub dom: String,
    /// The screenshot, a PNG checked to be non-empty.
    pub screenshot: PathBuf,
}

/// Whether Chromium and certutil are installed; outside CI a missing one prints
/// `SKIPPED` (see [`tool`]) and the caller returns.
pub fn available() -> bool {
    chromium().is_some() && tool("certutil", None).is_some()
}

/// The Chromium binary to run: `RAMPART_CHROMIUM`, else Debian's real binary, else
/// whatever `chromium` is on `PATH`.
fn chromium() -> Option<PathBuf> {
    let on_path = tool("chromium", Some("RAMPART_CHROMIUM"))?;
    if std::env::var_os("RAMPART_CHROMIUM").is_none() && Path::new(DEBIAN_BINARY).is_file() {
        return Some(PathBuf::from(DEBIAN_BINARY));
    }
    Some(on_path)
}

/// Opens `url` in headless Chromium run under `prefix` (e.g. `ip netns exec client`),
/// trusting `ca_pem` (and nothing added beyond Chromium's own roots). See [`open_with`].
pub fn open(prefix: &[OsString], url: &str, ca_pem: &Path, workdir: &Path) -> Result<Page, String> {
    open_with(prefix, url, ca_pem, workdir, &[])
}

/// [`open`] with extra Chromium flags, e.g.
/// `--host-resolver-rules=MAP www.foobar.com 198.18.200.2` where there is no DNS.
///
/// Each call works in a fresh directory `workdir/browser-N` (HOME with the NSS
/// database, the profile, `screenshot.png`), kept for inspection after the test.
pub fn open_with(
    prefix: &[OsString],
    url: &str,
    ca_pem: &Path,
    workdir: &Path,
    extra: &[&str],
) -> Result<Page, String> {
    let chromium = chromium().ok_or("chromium is not installed")?;
    let certutil = tool("certutil", None).ok_or("certutil (libnss3-tools) is not installed")?;
    let dir = fresh_dir(workdir)?;
    let home = dir.join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).map_err(|e| format!("{}: {e}", nssdb.display()))?;
    let db = format!("sql:{}", nssdb.display());
    run_certutil(
        Command::new(&certutil).args(["-d", &db, "-N", "--empty-password"]),
        "create the NSS database",
    )?;
    run_certutil(
        Command::new(&certutil)
            .args(["-d", &db, "-A", "-t", "C,,", "-n", "rampart test CA", "-i"])
            .arg(ca_pem),
        "add the CA",
    )?;

    let screenshot = dir.join("screenshot.png");
    let mut shot = OsString::from("--screenshot=");
    shot.push(&screenshot);
    let mut profile = OsString::from("--user-data-dir=");
    profile.push(dir.join("profile"));
    let mut home_env = OsString::from("HOME=");
    home_env.push(&home);

    // `env` after the prefix, so HOME survives prefixes that reset the environment.
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &RUN_LIMIT_SECS.to_string()])
        .args(prefix)
        .arg("env")
        .arg(home_env)
        .arg(&chromium)
        .args(FLAGS)
        .arg(profile)
        .args(extra)
        .arg(shot)
        .arg("--dump-dom")
        .arg(url);
    let out = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", chromium.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = stderr_tail(&stderr, 15);
    if !out.status.success() {
        let why = if out.status.code() == Some(124) {
            format!("timed out after {RUN_LIMIT_SECS} s")
        } else {
            format!("exited with {}", out.status)
        };
        return Err(format!("chromium {url}: {why}; stderr:\n{tail}"));
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("Page load failed")) {
        let reason = line.rsplit("] ").next().unwrap_or(line);
        return Err(format!("chromium {url}: {reason}; stderr:\n{tail}"));
    }
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(code) = error_page_code(&dom) {
        return Err(format!(
            "chromium {url}: Page load failed: {code} (Chromium's error page); stderr:\n{tail}"
        ));
    }
    if dom.trim().is_empty() {
        return Err(format!("chromium {url}: empty DOM; stderr:\n{tail}"));
    }
    let png = std::fs::read(&screenshot).map_err(|e| {
        format!(
            "chromium {url}: screenshot {}: {e}; stderr:\n{tail}",
            screenshot.display()
        )
    })?;
    if png.len() <= PNG_MAGIC.len() || !png.starts_with(PNG_MAGIC) {
        return Err(format!(
            "chromium {url}: {} is not a PNG ({} bytes)",
            screenshot.display(),
            png.len()
        ));
    }
    Ok(Page { dom, screenshot })
}

/// The error code when `dom` is one of Chromium's own error pages rather than the site's.
///
/// Older Chromium dumps an empty DOM for a failed load and logs `Page load failed`; newer
/// builds (148 on Debian 12) log nothing and dump the certificate interstitial or the
/// net-error page instead. Both pages are built from a `loadTimeDataRaw` object whose
/// `errorCode` field carries the `net::ERR_...` (or `ERR_...`) code.
fn error_page_code(dom: &str) -> Option<String> {
    if !dom.contains("var loadTimeDataRaw") {
        return None;
    }
    let start = dom.find("\"errorCode\":\"")? + "\"errorCode\":\"".len();
    let code: String = dom[start..]
        .chars()
        .take_while(|&c| c != '"')
        .take(80)
        .collect();
    (code.contains("ERR_")).then_some(code)
}

/// Creates `workdir/browser-N` for the first N not taken (bounded).
fn fresh_dir(workdir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(workdir).map_err(|e| format!("{}: {e}", workdir.display()))?;
    for n in 1..=1000 {
        let dir = workdir.join(format!("browser-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Err(format!(
        "{}: no free browser-N directory",
        workdir.display()
    ))
}

fn run_certutil(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("certutil: {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "certutil: {what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The last `n` lines of Chromium's stderr, without the D-Bus noise of every run.
fn stderr_tail(stderr: &str, n: usize) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("dbus/") && !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_drops_dbus_noise() {
        let err = "[1:2:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n\
                   [1:2:ERROR:net/socket/ssl_client_socket_impl.cc:949] handshake failed\n\
                   \n\
                   [1:1:ERROR:components/headless/command_handler/headless_command_handler.cc:403] Page load failed: net::ERR_CERT_AUTHORITY_INVALID\n";
        let tail = stderr_tail(err, 1);
        assert!(
            tail.ends_with("Page load failed: net::ERR_CERT_AUTHORITY_INVALID"),
            "{tail}"
        );
        assert_eq!(stderr_tail(err, 5).lines().count(), 2);
    }

    #[test]
    fn chromium_error_pages_are_recognised_and_site_pages_are_not() {
        let interstitial = r#"<html><body id="body" class="ssl"><script>var loadTimeDataRaw = {"bad_clock":false,"errorCode":"net::ERR_CERT_AUTHORITY_INVALID","type":"SSL"};</script></body></html>"#;
        assert_eq!(
            error_page_code(interstitial).as_deref(),
            Some("net::ERR_CERT_AUTHORITY_INVALID")
        );
        let site = r#"<html><body><pre>{"errorCode":"net::ERR_X"}</pre></body></html>"#;
        assert_eq!(error_page_code(site), None);
        let no_code = "<script>var loadTimeDataRaw = {\"errorCode\":\"\"};</script>";
        assert_eq!(error_page_code(no_code), None);
    }
}
