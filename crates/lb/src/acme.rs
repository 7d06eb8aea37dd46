//! ACME (RFC 8555) for the site certificate: the load balancer orders it from an ACME CA
//! (Let's Encrypt, or `pebble` in tests) with instant-acme, answers the CA's HTTP-01
//! challenge on its plain-HTTP listener (`/.well-known/acme-challenge/<token>`, see
//! [`Challenges`]), and writes the certificate and key over the files its `[tls]` serves,
//! which `rampart_tls::Reloading` loads at the next handshake.
//!
//! - An order is placed when the certificate file is missing, does not parse, or is past
//!   two thirds of its life (`rampart_tls::pki::renewal_due`); otherwise the task looks
//!   again every `check_every`.
//! - A failed order (the CA unreachable, rate-limited, a challenge that did not validate)
//!   is retried after `retry_min`, doubling up to `retry_max`, and counted:
//!   `rampart_lb_acme_orders_total{outcome}`, `rampart_lb_acme_consecutive_failures`,
//!   `rampart_lb_acme_next_attempt_timestamp_seconds` (the AcmeRenewalFailing alert).
//! - The account's credentials (its private key) live in `account`, written 0600 and
//!   never logged; the certificate's key is written 0600 before its certificate, so a
//!   handshake never loads a pair that does not match.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::Deserialize;

use crate::metrics::Metrics;

/// `[acme]` of lb.toml as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAcme {
    /// The CA's directory URL, such as
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: Option<String>,
    /// Contact URIs for the account (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// Where the account's credentials are kept (0600).
    pub account: Option<String>,
    /// A CA certificate (PEM) the directory's HTTPS is verified against instead of the
    /// system's roots (a test CA such as pebble's).
    pub directory_ca: Option<String>,
    /// The names the certificate covers.
    #[serde(default)]
    pub names: Vec<String>,
    pub check_every: Option<String>,
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
    /// The plain-HTTP listeners (`IP:PORT`) of the other load balancers of a pair: a
    /// challenge this one does not know is asked of them, since the CA reaches whichever
    /// holds the floating address.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `[acme]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory: String,
    pub contact: Vec<String>,
    pub account: PathBuf,
    pub directory_ca: Option<PathBuf>,
    pub names: Vec<String>,
    /// The certificate and key it writes: `tls.certificates[0]`.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub check_every: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub peers: Vec<std::net::SocketAddr>,
}

/// Defaults of `[acme]`.
pub mod defaults {
    use std::time::Duration;
    pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
    pub const RETRY_MIN: Duration = Duration::from_secs(60);
    pub const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
}

impl AcmeConfig {
    /// Checks `[acme]`; `first` is `tls.certificates[0]`, the pair it renews.
    pub fn validate(
        c: &mut rampart_telemetry::config::Checker<'_>,
        f: Option<&FileAcme>,
        first: Option<&(PathBuf, PathBuf)>,
    ) -> Option<AcmeConfig> {
        let f = f?;
        let directory = match f.directory.as_deref() {
            Some(d) if d.starts_with("https://") && d.len() > 8 => d.to_owned(),
            other => {
                c.err(
                    "acme.directory",
                    format!(
                        "{other:?} is not an ACME directory; expected an https:// URL such as \
                         \"https://acme-v02.api.letsencrypt.org/directory\""
                    ),
                );
                String::new()
            }
        };
        for (i, contact) in f.contact.iter().enumerate() {
            if !contact.starts_with("mailto:") || contact.len() < 10 {
                c.err(
                    format!("acme.contact[{i}]"),
                    format!("{contact:?} is not a contact; expected \"mailto:ops@example.com\""),
                );
            }
        }
        let account = match f.account.as_deref() {
            Some(a) if !a.is_empty() => c.resolve(std::path::Path::new(a)),
            _ => {
                c.err(
                    "acme.account",
                    "missing; expected the file that keeps the account's credentials",
                );
                PathBuf::new()
            }
        };
        let directory_ca = f
            .directory_ca
            .as_deref()
            .map(|p| c.resolve(std::path::Path::new(p)));
        if f.names.is_empty() || f.names.len() > 100 {
            c.err(
                "acme.names",
                "expected 1 to 100 DNS names for the certificate, such as [\"www.foobar.com\"]",
            );
        }
        for (i, n) in f.names.iter().enumerate() {
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.split('.').count() >= 2
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                c.err(
                    format!("acme.names[{i}]"),
                    format!("{n:?} is not a DNS name; expected a name such as \"www.foobar.com\""),
                );
            }
        }
        let Some((cert, key)) = first.cloned() else {
            c.err(
                "acme",
                "needs tls.certificates: its first pair is the one ACME writes and renews",
            );
            return None;
        };
        let day = Duration::from_secs(86_400);
        let check_every = c.duration(
            "acme.check_every",
            f.check_every.as_ref(),
            defaults::CHECK_EVERY,
            Duration::from_secs(1),
            day,
        );
        let retry_min = c.duration(
            "acme.retry_min",
            f.retry_min.as_ref(),
            defaults::RETRY_MIN,
            Duration::from_secs(1),
            day,
        );
        let retry_max = c.duration(
            "acme.retry_max",
            f.retry_max.as_ref(),
            defaults::RETRY_MAX,
            retry_min,
            7 * day,
        );
        let peers = f
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| c.addr(&format!("acme.peers[{i}]"), p))
            .collect();
        Some(AcmeConfig {
            peers,
            directory,
            contact: f.contact.clone(),
            account,
            directory_ca,
            names: f.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            cert,
            key,
            check_every,
            retry_min,
            retry_max,
        })
    }
}

/// The HTTP-01 answers of the orders in progress: token → key authorization.
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<String, String>>);

/// The path prefix of HTTP-01 challenges (RFC 8555 section 8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Marks a challenge request one load balancer asks of its peer: never relayed again.
pub const RELAY_HEADER: &str = "x-rampart-acme-relay";

/// How long a peer may take to answer a relayed challenge.
const RELAY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `token` can be a challenge token: base64url, 16 to 128 characters (RFC 8555
/// asks for at least 128 bits). Nothing else is ever put into a relayed request.
fn token_like(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Asks each peer's plain-HTTP listener for `token`'s answer (one request each, with
/// [`RELAY_HEADER`], at most [`RELAY_TIMEOUT`] and 4 KiB); the first 200 wins.
pub async fn ask_peers(peers: &[std::net::SocketAddr], token: &str) -> Option<String> {
    if !token_like(token) {
        return None;
    }
    for peer in peers {
        let ask = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(peer).await.ok()?;
            let req = format!(
                "GET {CHALLENGE_PREFIX}{token} HTTP/1.1\r\nHost: {peer}\r\n{RELAY_HEADER}: 1\r\n\
                 Connection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.ok()?;
            let mut buf = Vec::new();
            s.take(4096).read_to_end(&mut buf).await.ok()?;
            let text = String::from_utf8(buf).ok()?;
            let (head, body) = text.split_once("\r\n\r\n")?;
            let ok = head.lines().next()?.split(' ').nth(1)? == "200";
            (ok && !body.is_empty() && body.len() <= 512).then(|| body.to_owned())
        };
        match tokio::time::timeout(RELAY_TIMEOUT, ask).await {
            Ok(Some(answer)) => return Some(answer),
            _ => tracing::debug!(%peer, "no answer to a relayed ACME challenge"),
        }
    }
    None
}

impl Challenges {
    /// The key authorization for `token`, while its order is in progress.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn set(&self, token: &str, answer: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Some(a) => {
                map.insert(token.to_owned(), a);
            }
            None => {
                map.remove(token);
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The wait after `failures` consecutive failures: `retry_min` doubling up to `retry_max`.
pub fn backoff(cfg: &AcmeConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    cfg.retry_min.saturating_mul(factor).min(cfg.retry_max)
}

/// Keeps the certificate ordered and renewed until `shutdown` resolves.
pub async fn run(
    cfg: AcmeConfig,
    challenges: Arc<Challenges>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    loop {
        let due = !issued_here(&cfg)
            || rampart_tls::pki::renewal_due(&cfg.cert).unwrap_or(true)
            || rampart_tls::load_certified_key(&cfg.cert, &cfg.key).is_err();
        let wait = if due {
            match order(&cfg, &challenges).await {
                Ok(not_after) => {
                    failures = 0;
                    metrics.acme_orders.get_or_create(&outcome("success")).inc();
                    tracing::info!(names = ?cfg.names, not_after, "ACME certificate issued");
                    cfg.check_every
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    metrics.acme_orders.get_or_create(&outcome("failure")).inc();
                    let wait = backoff(&cfg, failures);
                    tracing::warn!(error = %e, failures, retry_in_s = wait.as_secs(), "ACME order failed");
                    wait
                }
            }
        } else {
            cfg.check_every
        };
        metrics.acme_failures.set(i64::from(failures));
        metrics
            .acme_next_attempt
            .set(unix_now() + wait.as_secs() as i64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return,
        }
    }
}

fn outcome(o: &str) -> crate::metrics::OutcomeLabels {
    crate::metrics::OutcomeLabels {
        outcome: o.to_owned(),
    }
}

async fn account(cfg: &AcmeConfig) -> Result<Account, String> {
    let builder = || match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let builder = builder().map_err(|e| format!("ACME client: {e}"))?;
    if let Ok(bytes) = std::fs::read(&cfg.account) {
        let creds: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: not ACME account credentials: {e}",
                cfg.account.display()
            )
        })?;
        return builder
            .from_credentials(creds)
            .await
            .map_err(|e| format!("ACME account: {e}"));
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating the ACME account: {e}"))?;
    let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
    rampart_tls::pki::write_private(&cfg.account, &json).map_err(|e| e.to_string())?;
    tracing::info!(id = account.id(), "ACME account created");
    Ok(account)
}

/// How long the placeholder [`placeholder`] writes is valid: past the first week the
/// CertificateExpiringSoon alert joins AcmeRenewalFailing.
pub const PLACEHOLDER_LIFE: Duration = Duration::from_secs(14 * 86_400);

/// Before the first order: when the pair `[tls]` serves is missing or does not load, a
/// self-signed placeholder for the names (see [`rampart_tls::pki::self_signed`]), so the
/// listeners start and answer the CA's challenges. Returns whether it wrote one.
pub fn placeholder(cfg: &AcmeConfig) -> Result<bool, String> {
    if rampart_tls::load_certified_key(&cfg.cert, &cfg.key).is_ok() {
        return Ok(false);
    }
    rampart_tls::pki::self_signed(&cfg.cert, &cfg.key, &cfg.names, PLACEHOLDER_LIFE)
        .map_err(|e| format!("writing a placeholder certificate: {e}"))?;
    tracing::info!(cert = %cfg.cert.display(), "wrote a self-signed placeholder until the first ACME order");
    Ok(true)
}

/// Where the last chain this task wrote is kept: beside the account's credentials.
fn issued_copy(cfg: &AcmeConfig) -> PathBuf {
    cfg.account.with_extension("issued.pem")
}

/// Whether the served certificate is the one this task last wrote (not the placeholder
/// the site starts with, nor one put there by hand).
fn issued_here(cfg: &AcmeConfig) -> bool {
    match (std::fs::read(&cfg.cert), std::fs::read(issued_copy(cfg))) {
        (Ok(served), Ok(issued)) => served == issued,
        _ => false,
    }
}

/// One order: account, HTTP-01 for every name, finalize with a new P-256 key, and the
/// chain written over the served pair. Returns the new certificate's notAfter.
async fn order(cfg: &AcmeConfig, challenges: &Challenges) -> Result<i64, String> {
    let account = account(cfg).await?;
    let ids: Vec<Identifier> = cfg.names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut tokens = Vec::new();
    let ready = async {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            if a.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no http-01 challenge")?;
            challenges.set(&ch.token, Some(ch.key_authorization().as_str().to_owned()));
            tokens.push(ch.token.clone());
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge ready: {e}"))?;
        }
        let policy = RetryPolicy::new().timeout(Duration::from_secs(90));
        match order.poll_ready(&policy).await {
            Ok(OrderStatus::Ready) => Ok(()),
            Ok(other) => Err(format!("the order is {other:?}, not ready")),
            Err(e) => Err(format!("waiting for validation: {e}")),
        }
    }
    .await;
    for t in &tokens {
        challenges.set(t, None);
    }
    ready?;
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(cfg.names.clone()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain = order
        .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(90)))
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    // Check the pair before it replaces the served one.
    let dir = tempfile_dir(&cfg.cert)?;
    let (tmp_cert, tmp_key) = (dir.join("acme.pem"), dir.join("acme.key"));
    rampart_tls::pki::write_private(&tmp_key, &key.serialize_pem()).map_err(|e| e.to_string())?;
    rampart_telemetry::fs::write_atomic(&tmp_cert, chain.as_bytes(), 0o644)
        .map_err(|e| e.to_string())?;
    let loaded = rampart_tls::load_certified_key(&tmp_cert, &tmp_key);
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded.map_err(|e| format!("the issued certificate does not load: {e}"))?;
    rampart_tls::pki::write_private(&cfg.key, &key.serialize_pem()).map_err(|e| e.to_string())?;
    rampart_telemetry::fs::write_atomic(&cfg.cert, chain.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", cfg.cert.display()))?;
    let copy = issued_copy(cfg);
    rampart_telemetry::fs::write_atomic(&copy, chain.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", copy.display()))?;
    Ok(loaded.info.not_after_unix)
}

/// A private scratch directory next to `path` (same filesystem, mode 0700).
fn tempfile_dir(path: &std::path::Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = path.parent().unwrap_or(std::path::Path::new("."));
    let dir = parent.join(format!(".acme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(min: u64, max: u64) -> AcmeConfig {
        AcmeConfig {
            directory: "https://ca.test/dir".into(),
            contact: Vec::new(),
            account: PathBuf::from("a.json"),
            directory_ca: None,
            names: vec!["www.foobar.com".into()],
            cert: PathBuf::from("c.pem"),
            key: PathBuf::from("c.key"),
            check_every: Duration::from_secs(60),
            retry_min: Duration::from_secs(min),
            retry_max: Duration::from_secs(max),
            peers: Vec::new(),
        }
    }

    #[test]
    fn failures_back_off_doubling_to_the_maximum() {
        let c = cfg(60, 3600);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(&c, n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(&c, u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn only_token_shaped_paths_are_relayed() {
        assert!(token_like("AAonWCc1mGKGrmhhiAXW5rohn-aadykfFKbkUVNqbbI"));
        for bad in [
            "short",
            "a b c d e f g h i j",
            "tok/../../admin-xxxxxxx",
            "tok%0d%0aHost:x-xx",
        ] {
            assert!(!token_like(bad), "{bad}");
        }
        assert!(!token_like(&"a".repeat(129)));
    }

    #[test]
    fn challenges_answer_only_while_set() {
        let c = Challenges::default();
        c.set("tok", Some("tok.thumb".into()));
        assert_eq!(c.answer("tok").as_deref(), Some("tok.thumb"));
        assert_eq!(c.answer("other"), None);
        c.set("tok", None);
        assert_eq!(c.answer("tok"), None);
    }
}
