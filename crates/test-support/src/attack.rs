//! The attack surface measured from outside with the tools operators use: `testssl.sh`
//! (Debian package `testssl.sh`) for the TLS configuration, and `slowhttptest` (Debian
//! package `slowhttptest`) for slow-client attacks. Both run under a command prefix such
//! as `rampart exec --state S client --`, so their traffic stays inside the topology.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::client::tool;

/// One testssl.sh finding (its flat JSON: `id`, `severity`, `finding`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    pub finding: String,
}

/// Findings accepted whatever their rating, each with why: they describe the scanner's
/// machine or the test's private CA, not the server's TLS configuration.
pub const ACCEPTED: &[(&str, &str)] = &[
    (
        "engine_problem",
        "Debian's OpenSSL 3 on the scanning host has no GOST engine",
    ),
    (
        "cert_revocation",
        "rampart's private CA publishes no CRL or OCSP responder; a certificate from a public (ACME) CA carries them",
    ),
];

/// Whether finding `id` is in [`ACCEPTED`].
pub fn accepted(id: &str) -> bool {
    ACCEPTED.iter().any(|(a, _)| *a == id)
}

/// Runs a full testssl.sh scan (everything but `-E`, its default) of `url` at `ip`,
/// trusting `ca` as well, and returns its findings. Seconds-bounded by `timeout`.
pub fn testssl(
    prefix: &[OsString],
    url: &str,
    ip: &str,
    ca: &Path,
    json: &Path,
) -> Result<Vec<Finding>, String> {
    let testssl = tool("testssl", None).ok_or("testssl.sh is not installed")?;
    let _ = std::fs::remove_file(json);
    // testssl.sh rates a certificate with under 30 days left HIGH and under 60 MEDIUM,
    // thresholds for year-long certificates (it halves them for Let's Encrypt's). rampart's
    // live 30 days and renew with 10 left; CertificateExpiringSoon fires at 7. Rate them
    // by that policy: MEDIUM once renewal is overdue, HIGH where the alert fires.
    let out = Command::new("timeout")
        .env("DAYS2WARN1", "10")
        .env("DAYS2WARN2", "7")
        .args(["-k", "5", "600"])
        .args(prefix)
        .arg(&testssl)
        .args(["--quiet", "--color", "0", "--warnings", "off", "--ip", ip])
        .arg("--add-ca")
        .arg(ca)
        .arg("--jsonfile")
        .arg(json)
        .arg(url)
        .output()
        .map_err(|e| format!("run testssl.sh: {e}"))?;
    let text = std::fs::read_to_string(json).map_err(|e| {
        format!(
            "testssl.sh wrote no {} ({e}; {}): {}{}",
            json.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    parse_testssl(&text)
}

/// The findings of testssl.sh's flat JSON file.
pub fn parse_testssl(text: &str) -> Result<Vec<Finding>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("testssl.sh JSON: {e}"))?;
    let list = v.as_array().ok_or("testssl.sh JSON: not an array")?;
    let field = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or_default().to_owned();
    Ok(list
        .iter()
        .map(|f| Finding {
            id: field(f, "id"),
            severity: field(f, "severity"),
            finding: field(f, "finding"),
        })
        .collect())
}

/// A slowhttptest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slow {
    /// `-H`, slow headers (slowloris).
    Headers,
    /// `-B`, slow body (R-U-Dead-Yet).
    Body,
    /// `-X`, slow read.
    Read,
}

impl Slow {
    pub fn flag(self) -> &'static str {
        match self {
            Slow::Headers => "-H",
            Slow::Body => "-B",
            Slow::Read => "-X",
        }
    }
}

/// What one slowhttptest run saw, second by second from its CSV report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowReport {
    /// Seconds of the run.
    pub seconds: u32,
    /// Seconds whose availability probe got an answer in time.
    pub available: u32,
    /// The most attack connections open at once.
    pub peak_connected: u32,
    /// The attack connections the server had closed by the end.
    pub closed: u32,
}

impl SlowReport {
    /// Whether the tool's own probe said YES for the whole run.
    pub fn always_available(&self) -> bool {
        self.seconds > 0 && self.available == self.seconds
    }
}

/// Runs slowhttptest in `mode` against `url` with `connections` connections opened at
/// `rate` per second, for `seconds`, probing availability with a `probe_secs` timeout;
/// the CSV goes to `out.csv`.
pub fn slowhttptest(
    prefix: &[OsString],
    mode: Slow,
    url: &str,
    connections: u32,
    rate: u32,
    seconds: u32,
    out: &Path,
) -> Result<(SlowReport, String), String> {
    let slow = tool("slowhttptest", None).ok_or("slowhttptest is not installed")?;
    let csv = out.with_extension("csv");
    let _ = std::fs::remove_file(&csv);
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &(seconds + 60).to_string()])
        .args(prefix)
        .arg(&slow)
        .arg(mode.flag())
        .args(["-c", &connections.to_string()])
        .args(["-r", &rate.to_string()])
        .args(["-l", &seconds.to_string()])
        .args(["-i", "5", "-p", "3", "-g", "-o"])
        .arg(out.with_extension(""))
        .args(["-u", url]);
    if mode == Slow::Read {
        // Advertise a tiny window and read a few bytes at a time.
        cmd.args(["-k", "2", "-n", "2", "-w", "1", "-y", "32", "-z", "8"]);
    }
    let run = cmd.output().map_err(|e| format!("run slowhttptest: {e}"))?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let text = std::fs::read_to_string(&csv).map_err(|e| {
        format!(
            "slowhttptest wrote no {} ({e}; {}): {stdout}{}",
            csv.display(),
            run.status,
            String::from_utf8_lossy(&run.stderr)
        )
    })?;
    Ok((parse_slow_csv(&text)?, stdout))
}

/// slowhttptest's CSV (`Seconds,Closed,Pending,Connected,Service Available`, one row per
/// second; the last column is the connection target while the probe is answered, 0
/// when it is not).
pub fn parse_slow_csv(text: &str) -> Result<SlowReport, String> {
    let mut lines = text.lines();
    let head = lines.next().ok_or("slowhttptest CSV: empty")?;
    if head.trim() != "Seconds,Closed,Pending,Connected,Service Available" {
        return Err(format!("slowhttptest CSV: unexpected header {head:?}"));
    }
    let mut r = SlowReport {
        seconds: 0,
        available: 0,
        peak_connected: 0,
        closed: 0,
    };
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<u32> = line
            .split(',')
            .map(|c| c.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("slowhttptest CSV: unparsable row {line:?}"))?;
        let [_, closed, _, connected, available] = cols[..] else {
            return Err(format!("slowhttptest CSV: row {line:?} has not 5 columns"));
        };
        r.seconds += 1;
        r.available += u32::from(available > 0);
        r.peak_connected = r.peak_connected.max(connected);
        r.closed = closed;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_csv_counts_available_seconds() {
        let csv = "Seconds,Closed,Pending,Connected,Service Available\n0,0,1,0,20\n1,0,1,11,20\n2,3,0,17,0\n3,5,0,15,20\n";
        assert_eq!(
            parse_slow_csv(csv),
            Ok(SlowReport {
                seconds: 4,
                available: 3,
                peak_connected: 17,
                closed: 5
            })
        );
        assert!(!parse_slow_csv(csv).unwrap().always_available());
        assert!(parse_slow_csv("a,b\n").is_err());
        assert!(
            parse_slow_csv("Seconds,Closed,Pending,Connected,Service Available\n1,2\n").is_err()
        );
    }

    #[test]
    fn testssl_flat_json() {
        let text = r#"[ {"id":"SSLv3","ip":"a/b","port":"443","severity":"OK","finding":"not offered"},
            {"id":"BREACH","ip":"a/b","port":"443","severity":"MEDIUM","finding":"potentially VULNERABLE","cve":"CVE-2013-3587"} ]"#;
        let f = parse_testssl(text).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].severity, "MEDIUM");
        assert!(parse_testssl("{").is_err());
    }
}
