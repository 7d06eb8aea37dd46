//! The login: secrets in 0600 files (generated when missing, never logged), constant-time
//! comparison, sessions with an absolute and an idle expiry, one-time login links, and a
//! per-client limit on failed logins. Pure logic apart from the secret files; every
//! time-dependent method takes `now` so tests drive the clock.
//!
//! **Sessions.** A session id is 256 random bits sent once as a cookie (`HttpOnly;
//! Secure; SameSite=Strict`). The server keeps only SHA-256 of each id, so neither a
//! memory dump nor a timing difference in the map lookup reveals a usable id.
//!
//! **Login links.** A logged-in client may mint a link (`POST /api/login-link`) that logs
//! in whoever opens it once within [`LINK_LIFETIME`]: what a headless browser or a kiosk
//! screen uses, since neither can fill in the form. The link carries 256 random bits,
//! is single-use and short-lived, and only its hash is stored.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// How long a login link may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::from_secs(60);
/// Sessions kept at once; past it the oldest is ended.
pub const MAX_SESSIONS: usize = 1024;
/// Unredeemed login links kept at once; past it the oldest is dropped.
pub const MAX_LINKS: usize = 64;
/// Clients whose failed logins are remembered; past it the stalest is forgotten.
pub const MAX_CLIENTS: usize = 4096;
/// Random bytes of a generated password (144 bits, 24 URL-safe characters).
pub const PASSWORD_BYTES: usize = 18;
/// Random bytes of a generated webhook token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// The shortest secret accepted from an existing file.
pub const MIN_SECRET_CHARS: usize = 16;

/// Fills `buf` from the system's secure random source (through aws-lc-rs).
pub fn random(buf: &mut [u8]) -> std::io::Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| std::io::Error::other("the secure random source failed"))
}

/// URL-safe base64 without padding.
pub fn url_safe(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `a` and `b` are equal, in time independent of where they differ and of their
/// lengths (both are hashed first).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(a), &sha256(b)).is_ok()
}

/// A secret read from (or generated into) a file. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        ct_eq(self.0.as_bytes(), given)
    }
}

/// How a secret was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Read,
    Generated,
}

/// Reads the secret in `path` (see [`read_secret`]); when the file does not exist,
/// generates `bytes` random bytes as URL-safe text and writes them there, created 0600
/// (parent directories 0700), never replacing a file that appeared meanwhile.
pub fn load_or_create_secret(path: &Path, bytes: usize) -> std::io::Result<(Secret, Origin)> {
    match read_secret(path) {
        Ok(s) => return Ok((s, Origin::Read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let ctx = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(ctx)?;
    }
    let mut raw = vec![0u8; bytes];
    random(&mut raw)?;
    let text = url_safe(&raw);
    // Someone else created it between the read and here: theirs wins.
    if !rampart_telemetry::fs::write_new(path, format!("{text}\n").as_bytes(), 0o600)
        .map_err(ctx)?
    {
        return read_secret(path).map(|s| (s, Origin::Read));
    }
    Ok((Secret(text), Origin::Generated))
}

/// Reads a secret file: one line (surrounding whitespace ignored), at least
/// [`MIN_SECRET_CHARS`] characters, and not readable or writable by group or others.
pub fn read_secret(path: &Path) -> std::io::Result<Secret> {
    let invalid = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(format!(
            "mode {mode:o} lets others read it; expected 600 (chmod 600 it)"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let secret = text.trim();
    if secret.chars().count() < MIN_SECRET_CHARS || secret.contains(['\n', '\r']) {
        return Err(invalid(format!(
            "expected one line of at least {MIN_SECRET_CHARS} characters"
        )));
    }
    Ok(Secret(secret.to_owned()))
}

/// A random 256-bit token as 64 hex digits, with the hash it is stored under.
fn new_token() -> std::io::Result<(String, [u8; 32])> {
    let mut raw = [0u8; 32];
    random(&mut raw)?;
    let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let hash = sha256(text.as_bytes());
    Ok((text, hash))
}

#[derive(Clone, Copy, Debug)]
struct Session {
    created: Instant,
    last_seen: Instant,
}

/// The live sessions, by the hash of their id.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
    idle: Duration,
}

impl Sessions {
    pub fn new(lifetime: Duration, idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            lifetime,
            idle,
        }
    }

    /// Starts a session and returns its id (the cookie value).
    pub fn create(&self, now: Instant) -> std::io::Result<String> {
        let (id, hash) = new_token()?;
        let mut map = lock(&self.map);
        map.retain(|_, s| self.live(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            hash,
            Session {
                created: now,
                last_seen: now,
            },
        );
        Ok(id)
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.created) < self.lifetime
            && now.saturating_duration_since(s.last_seen) < self.idle
    }

    /// Whether `id` is a live session; a live one counts as used now, an expired one is
    /// ended.
    pub fn check(&self, id: &str, now: Instant) -> bool {
        let hash = sha256(id.as_bytes());
        let mut map = lock(&self.map);
        let Some(s) = map.get_mut(&hash) else {
            return false;
        };
        if now.saturating_duration_since(s.created) < self.lifetime
            && now.saturating_duration_since(s.last_seen) < self.idle
        {
            s.last_seen = now;
            true
        } else {
            map.remove(&hash);
            false
        }
    }

    /// Ends the session `id` (logout).
    pub fn end(&self, id: &str) {
        lock(&self.map).remove(&sha256(id.as_bytes()));
    }

    /// Seconds a new session's cookie should live.
    pub fn cookie_max_age(&self) -> u64 {
        self.lifetime.as_secs()
    }

    /// Live sessions (expired ones still in the map are not counted).
    pub fn count(&self, now: Instant) -> usize {
        lock(&self.map)
            .values()
            .filter(|s| self.live(s, now))
            .count()
    }
}

/// Unredeemed one-time login links, by the hash of their token.
#[derive(Debug, Default)]
pub struct LoginLinks {
    map: Mutex<HashMap<[u8; 32], Instant>>,
}

impl LoginLinks {
    /// Mints a link token valid until `now + LINK_LIFETIME`.
    pub fn mint(&self, now: Instant) -> std::io::Result<String> {
        let (token, hash) = new_token()?;
        let mut map = lock(&self.map);
        map.retain(|_, expires| *expires > now);
        if map.len() >= MAX_LINKS {
            if let Some(first) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) {
                map.remove(&first);
            }
        }
        map.insert(hash, now + LINK_LIFETIME);
        Ok(token)
    }

    /// Whether `token` is an unexpired link; either way it cannot be used again.
    pub fn redeem(&self, token: &str, now: Instant) -> bool {
        lock(&self.map)
            .remove(&sha256(token.as_bytes()))
            .is_some_and(|expires| expires > now)
    }
}

/// The client a failed login is counted against: the IPv4 address, or the /64 of an
/// IPv6 address (one host usually has a whole /64).
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | 1,
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

/// At most `max` failed logins per client per `window`; once there, the client's
/// attempts (right or wrong) are refused until the window that began with its first
/// failure ends. A success forgets the client's failures.
#[derive(Debug)]
pub struct Limiter {
    map: Mutex<HashMap<u128, Failures>>,
    max: u32,
    window: Duration,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter {
            map: Mutex::new(HashMap::new()),
            max,
            window,
        }
    }

    /// `Ok` if `ip` may try to log in now, else how long it must wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = lock(&self.map);
        match map.get(&client_key(ip)) {
            Some(f) if f.count >= self.max => {
                let ends = f.since + self.window;
                if ends > now {
                    Err(ends - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = lock(&self.map);
        let key = client_key(ip);
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS {
            let window = self.window;
            map.retain(|_, f| now.saturating_duration_since(f.since) < window);
            if map.len() >= MAX_CLIENTS {
                if let Some(stalest) = map.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
                    map.remove(&stalest);
                }
            }
        }
        let f = map.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(f.since) >= self.window {
            *f = Failures {
                count: 0,
                since: now,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    /// Forgets the failures of `ip` after it logged in.
    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.map).remove(&client_key(ip));
    }
}

/// Locks `m`, recovering the data if a panicking thread poisoned it (every critical
/// section here leaves the map consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        for (a, b, eq) in [
            ("secret", "secret", true),
            ("secret", "secreT", false),
            ("secret", "secret2", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(ct_eq(a.as_bytes(), b.as_bytes()), eq, "{a:?} {b:?}");
        }
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn secrets_are_generated_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/dashboard.password");
        let (s, origin) = load_or_create_secret(&path, PASSWORD_BYTES).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert_eq!(s.expose().len(), 24);
        assert!(s
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let (again, origin) = load_or_create_secret(&path, PASSWORD_BYTES).unwrap();
        assert_eq!(origin, Origin::Read);
        assert_eq!(again.expose(), s.expose());
        // Two generated secrets differ.
        let other = dir.path().join("other");
        let (o, _) = load_or_create_secret(&other, PASSWORD_BYTES).unwrap();
        assert_ne!(o.expose(), s.expose());
    }

    #[test]
    fn unsafe_secret_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, content: &str, mode: u32, expected: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = match read_secret(&p) {
                Ok(s) => format!("ok {}", s.expose()),
                Err(e) => e.to_string().replace(&format!("{}: ", p.display()), ""),
            };
            assert_eq!(got, expected, "{name}");
        };
        check(
            "good",
            "  abcdefghijklmnopqrstuvwx\n",
            0o600,
            "ok abcdefghijklmnopqrstuvwx",
        );
        check(
            "readonly",
            "abcdefghijklmnopqrstuvwx",
            0o400,
            "ok abcdefghijklmnopqrstuvwx",
        );
        check(
            "world",
            "abcdefghijklmnopqrstuvwx",
            0o644,
            "mode 644 lets others read it; expected 600 (chmod 600 it)",
        );
        check(
            "short",
            "short\n",
            0o600,
            "expected one line of at least 16 characters",
        );
        check(
            "two-lines",
            "abcdefghijklmnop\nqrstuvwxyz\n",
            0o600,
            "expected one line of at least 16 characters",
        );
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_lifetime() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let sessions = Sessions::new(secs(3600), secs(600));
        let id = sessions.create(t0).unwrap();
        assert_eq!(id.len(), 64);
        // (seconds after login, expected) in order; each check that passes refreshes idle.
        for (at, live) in [
            (0, true),
            (599, true),
            (1198, true),
            (1797, true),
            (2396, true),
            (2995, true),
            (3594, true),
            (3600, false), // lifetime reached, though used 6 s ago
            (3601, false), // ended for good
        ] {
            assert_eq!(sessions.check(&id, t0 + secs(at)), live, "at {at} s");
        }
        let idle = sessions.create(t0).unwrap();
        assert!(!sessions.check(&idle, t0 + secs(600)), "idle for 600 s");
        assert!(!sessions.check("nonsense", t0));
        let ended = sessions.create(t0).unwrap();
        sessions.end(&ended);
        assert!(!sessions.check(&ended, t0));
        assert_eq!(sessions.count(t0), 0);
    }

    #[test]
    fn sessions_are_bounded() {
        let t0 = Instant::now();
        let sessions = Sessions::new(Duration::from_secs(3600), Duration::from_secs(600));
        let first = sessions.create(t0).unwrap();
        for i in 1..=MAX_SESSIONS {
            sessions
                .create(t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(sessions.count(t0), MAX_SESSIONS);
        assert!(!sessions.check(&first, t0), "the oldest made room");
    }

    #[test]
    fn login_links_are_single_use_and_short_lived() {
        let t0 = Instant::now();
        let links = LoginLinks::default();
        let a = links.mint(t0).unwrap();
        let b = links.mint(t0).unwrap();
        assert_ne!(a, b);
        assert!(links.redeem(&a, t0 + Duration::from_secs(59)));
        assert!(
            !links.redeem(&a, t0 + Duration::from_secs(59)),
            "used twice"
        );
        assert!(!links.redeem(&b, t0 + LINK_LIFETIME), "expired");
        assert!(!links.redeem("", t0));
    }

    #[test]
    fn limiter_counts_failures_per_client() {
        let t0 = Instant::now();
        let limiter = Limiter::new(3, Duration::from_secs(300));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (client, seconds, event, expected check before the event)
        #[derive(Clone, Copy)]
        enum Ev {
            Fail,
            Ok,
            Check,
        }
        let cases: &[(&str, u64, Ev, Result<(), u64>)] = &[
            ("198.18.9.2", 0, Ev::Fail, Ok(())),
            ("198.18.9.2", 1, Ev::Fail, Ok(())),
            ("198.18.9.2", 2, Ev::Fail, Ok(())),
            ("198.18.9.2", 3, Ev::Check, Err(297)),
            ("198.18.9.3", 3, Ev::Check, Ok(())), // another client is not affected
            ("::ffff:198.18.9.2", 10, Ev::Check, Err(290)), // mapped IPv4 is the same
            ("198.18.9.2", 300, Ev::Check, Ok(())), // the window has passed
            ("198.18.9.2", 300, Ev::Fail, Ok(())), // a new window: one failure
            ("198.18.9.2", 301, Ev::Check, Ok(())),
            ("2001:db8::1", 0, Ev::Fail, Ok(())),
            ("2001:db8::2", 0, Ev::Fail, Ok(())),
            ("2001:db8::3", 0, Ev::Fail, Ok(())),
            ("2001:db8::ffff", 5, Ev::Check, Err(295)), // same /64
            ("2001:db8:0:1::1", 5, Ev::Check, Ok(())),  // another /64
            ("2001:db8::1", 6, Ev::Ok, Err(294)),
            ("2001:db8::1", 7, Ev::Check, Ok(())), // a success forgot them
        ];
        for (i, &(client, at, ev, expected)) in cases.iter().enumerate() {
            let now = t0 + Duration::from_secs(at);
            let got = limiter
                .check(ip(client), now)
                .map_err(|d| d.as_secs_f64().round() as u64);
            assert_eq!(got, expected, "case {i}: {client} at {at}");
            match ev {
                Ev::Fail => limiter.failed(ip(client), now),
                Ev::Ok => limiter.succeeded(ip(client)),
                Ev::Check => {}
            }
        }
    }
}
