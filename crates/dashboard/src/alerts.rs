//! Alerts from Alertmanager: the webhook body (version 4) parsed and bounded
//! ([`parse_webhook`]), and the [`AlertStore`] that records them by fingerprint, bounded
//! in count, persisted to a state file (written to a temporary file and renamed, so a
//! crash leaves the old or the new state, never half of one) and loaded on start.
//!
//! **Updates.** The latest notification about a fingerprint wins: Alertmanager sends a
//! group's notifications in order, and a firing alert that comes back after it resolved
//! is a new notification. Resolved alerts stay listed (until room is needed) so the page
//! shows what happened, not only what is happening.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Alerts one webhook call may carry.
pub const MAX_ALERTS_PER_CALL: usize = 1000;
/// Labels or annotations one alert may carry.
pub const MAX_PAIRS: usize = 64;
/// The longest label or annotation name.
pub const MAX_NAME: usize = 256;
/// The longest label or annotation value.
pub const MAX_VALUE: usize = 4096;
/// The longest fingerprint (Alertmanager's are 16 hex digits).
pub const MAX_FINGERPRINT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert as last notified.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Unix seconds.
    pub starts_at: i64,
    /// Unix seconds; `None` while firing with no end known.
    pub ends_at: Option<i64>,
    /// When the dashboard last heard about it, Unix seconds.
    pub updated_at: i64,
}

impl Alert {
    /// The `alertname` label, or `(unnamed)`.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map_or("(unnamed)", String::as_str)
    }
}

/// Why a webhook body was refused (400), naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WebhookError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> WebhookError {
    WebhookError {
        field: field.into(),
        message: message.into(),
    }
}

/// The webhook body as Alertmanager sends it; other fields are ignored.
#[derive(Deserialize)]
struct WireMessage {
    version: String,
    alerts: Vec<WireAlert>,
}

#[derive(Deserialize)]
struct WireAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", default)]
    ends_at: String,
    fingerprint: String,
}

/// Parses an RFC 3339 time into Unix seconds; Go's zero time (`0001-01-01T00:00:00Z`,
/// what Alertmanager sends for "no end") and an empty string are `None`.
pub fn parse_time(s: &str) -> Result<Option<i64>, time::error::Parse> {
    if s.is_empty() {
        return Ok(None);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339)?;
    if t.year() <= 1 {
        return Ok(None);
    }
    Ok(Some(t.unix_timestamp()))
}

fn check_pairs(
    field: &str,
    pairs: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, WebhookError> {
    if pairs.len() > MAX_PAIRS {
        return Err(bad(field, format!("more than {MAX_PAIRS} entries")));
    }
    for (k, v) in &pairs {
        if k.is_empty() || k.len() > MAX_NAME {
            return Err(bad(field, format!("a name must be 1-{MAX_NAME} bytes")));
        }
        if v.len() > MAX_VALUE {
            return Err(bad(
                format!("{field}.{k}"),
                format!("longer than {MAX_VALUE} bytes"),
            ));
        }
    }
    Ok(pairs)
}

/// Parses an Alertmanager webhook body (version 4), received at `now` (Unix seconds).
pub fn parse_webhook(body: &[u8], now: i64) -> Result<Vec<Alert>, WebhookError> {
    let msg: WireMessage = serde_json::from_slice(body)
        .map_err(|e| bad("body", format!("not a webhook message: {e}")))?;
    if msg.version != "4" {
        return Err(bad(
            "version",
            format!("`{}` is not supported; expected \"4\"", msg.version),
        ));
    }
    if msg.alerts.len() > MAX_ALERTS_PER_CALL {
        return Err(bad(
            "alerts",
            format!("more than {MAX_ALERTS_PER_CALL} alerts in one call"),
        ));
    }
    let mut out = Vec::with_capacity(msg.alerts.len());
    for (i, a) in msg.alerts.into_iter().enumerate() {
        let field = |name: &str| format!("alerts[{i}].{name}");
        let status = match a.status.as_str() {
            "firing" => Status::Firing,
            "resolved" => Status::Resolved,
            other => {
                return Err(bad(
                    field("status"),
                    format!("`{other}`; expected \"firing\" or \"resolved\""),
                ))
            }
        };
        if a.fingerprint.is_empty()
            || a.fingerprint.len() > MAX_FINGERPRINT
            || !a.fingerprint.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad(
                field("fingerprint"),
                format!("expected 1-{MAX_FINGERPRINT} letters or digits"),
            ));
        }
        let starts_at = parse_time(&a.starts_at)
            .ok()
            .flatten()
            .ok_or_else(|| bad(field("startsAt"), "not an RFC 3339 time"))?;
        let ends_at =
            parse_time(&a.ends_at).map_err(|_| bad(field("endsAt"), "not an RFC 3339 time"))?;
        out.push(Alert {
            fingerprint: a.fingerprint,
            status,
            labels: check_pairs(&field("labels"), a.labels)?,
            annotations: check_pairs(&field("annotations"), a.annotations)?,
            starts_at,
            ends_at,
            updated_at: now,
        });
    }
    Ok(out)
}

/// The state file's shape (versioned, separate from [`Alert`] so the domain type carries
/// no serde).
#[derive(Serialize, Deserialize)]
struct StoredState {
    version: u32,
    alerts: Vec<StoredAlert>,
}

#[derive(Serialize, Deserialize)]
struct StoredAlert {
    fingerprint: String,
    status: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: i64,
    ends_at: Option<i64>,
    updated_at: i64,
}

const STATE_VERSION: u32 = 1;

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an alert state file: {what}")]
    Invalid { path: PathBuf, what: String },
}

struct Inner {
    alerts: HashMap<String, Alert>,
    /// Bumped by every change; a save writes the newest state and records its version.
    version: u64,
}

/// The recorded alerts.
pub struct AlertStore {
    path: PathBuf,
    max: usize,
    inner: Mutex<Inner>,
    /// Serializes saves; holds the version last written.
    saved: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStore")
            .field("path", &self.path)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl AlertStore {
    /// Loads the state in `path` (none yet: empty), keeping at most `max` alerts.
    pub fn load(path: &Path, max: usize) -> Result<AlertStore, StateError> {
        let alerts = match std::fs::read(path) {
            Ok(bytes) => decode_state(path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut map = HashMap::new();
        for a in alerts {
            map.insert(a.fingerprint.clone(), a);
        }
        evict(&mut map, max);
        Ok(AlertStore {
            path: path.to_owned(),
            max,
            inner: Mutex::new(Inner {
                alerts: map,
                version: 0,
            }),
            saved: tokio::sync::Mutex::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `alerts` and saves the state before returning.
    pub async fn record(&self, alerts: Vec<Alert>) -> Result<(), StateError> {
        {
            let mut inner = lock(&self.inner);
            for a in alerts {
                inner.alerts.insert(a.fingerprint.clone(), a);
            }
            evict(&mut inner.alerts, self.max);
            inner.version += 1;
        }
        self.save().await
    }

    /// Writes the newest state unless a save since this change already did.
    async fn save(&self) -> Result<(), StateError> {
        let mut saved = self.saved.lock().await;
        let (version, text) = {
            let inner = lock(&self.inner);
            if inner.version <= *saved {
                return Ok(());
            }
            (inner.version, encode_state(inner.alerts.values()))
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            rampart_telemetry::fs::write_atomic(&path, text.as_bytes(), 0o600)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written)
        .map_err(|source| StateError::Io {
            path: self.path.clone(),
            source,
        })?;
        *saved = version;
        Ok(())
    }

    /// The alerts: firing (newest start first), then resolved (newest end first).
    pub fn list(&self) -> Vec<Alert> {
        let mut all: Vec<Alert> = lock(&self.inner).alerts.values().cloned().collect();
        sort_for_display(&mut all);
        all
    }
}

/// Firing first, newest start first; then resolved, newest end first; ties by name.
pub fn sort_for_display(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        let key = |x: &Alert| match x.status {
            Status::Firing => (0, -x.starts_at),
            Status::Resolved => (1, -x.ends_at.unwrap_or(x.updated_at)),
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.name().cmp(b.name()))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
}

/// Drops alerts beyond `max`: resolved ones first (oldest update first), then firing.
fn evict(map: &mut HashMap<String, Alert>, max: usize) {
    if map.len() <= max {
        return;
    }
    let mut order: Vec<(bool, i64, String)> = map
        .values()
        .map(|a| {
            (
                a.status == Status::Firing,
                a.updated_at,
                a.fingerprint.clone(),
            )
        })
        .collect();
    order.sort();
    let excess = map.len() - max;
    for (_, _, fp) in order.into_iter().take(excess) {
        map.remove(&fp);
    }
}

fn encode_state<'a>(alerts: impl Iterator<Item = &'a Alert>) -> String {
    let mut stored: Vec<StoredAlert> = alerts
        .map(|a| StoredAlert {
            fingerprint: a.fingerprint.clone(),
            status: a.status.as_str().to_owned(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            updated_at: a.updated_at,
        })
        .collect();
    stored.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let state = StoredState {
        version: STATE_VERSION,
        alerts: stored,
    };
    // Serializing plain strings, maps and integers cannot fail.
    serde_json::to_string_pretty(&state).unwrap_or_default()
}

fn decode_state(path: &Path, bytes: &[u8]) -> Result<Vec<Alert>, StateError> {
    let invalid = |what: String| StateError::Invalid {
        path: path.to_owned(),
        what,
    };
    let state: StoredState = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if state.version != STATE_VERSION {
        return Err(invalid(format!(
            "version {} (expected {STATE_VERSION})",
            state.version
        )));
    }
    state
        .alerts
        .into_iter()
        .map(|s| {
            let status = match s.status.as_str() {
                "firing" => Status::Firing,
                "resolved" => Status::Resolved,
                other => return Err(invalid(format!("alert status `{other}`"))),
            };
            Ok(Alert {
                fingerprint: s.fingerprint,
                status,
                labels: s.labels,
                annotations: s.annotations,
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                updated_at: s.updated_at,
            })
        })
        .collect()
}

/// Validates a state file without loading it into a store (`rampart check`).
pub fn check_state_file(path: &Path) -> Result<(), StateError> {
    match std::fs::read(path) {
        Ok(bytes) => decode_state(path, &bytes).map(|_| ()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn body(alerts: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"X\"}}","truncatedAlerts":0,
               "status":"firing","receiver":"dashboard","groupLabels":{{}},
               "commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am",
               "alerts":[{alerts}]}}"#
        )
    }

    const FIRING: &str = r#"{"status":"firing","labels":{"alertname":"BackendDown","instance":"lb1","severity":"critical"},
        "annotations":{"summary":"web1 is out of rotation"},"startsAt":"2023-11-14T22:13:20.123456789Z",
        "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"a1b2c3d4e5f60718"}"#;

    /// Parses `body` and renders the outcome as one line per alert or the error.
    fn check(body: &str, expected: &str) {
        let got = match parse_webhook(body.as_bytes(), NOW) {
            Ok(alerts) => alerts
                .iter()
                .map(|a| {
                    format!(
                        "{} {} {} {:?} {:?}",
                        a.fingerprint,
                        a.status.as_str(),
                        a.starts_at,
                        a.ends_at,
                        a.labels
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(got, expected, "body: {body}");
    }

    #[test]
    fn webhook_bodies() {
        check(
            &body(FIRING),
            r#"a1b2c3d4e5f60718 firing 1700000000 None {"alertname": "BackendDown", "instance": "lb1", "severity": "critical"}"#,
        );
        check(
            &body(
                r#"{"status":"resolved","labels":{"alertname":"X"},"startsAt":"2023-11-14T22:13:20Z",
                    "endsAt":"2023-11-14T22:15:00+01:00","fingerprint":"ff"}"#,
            ),
            r#"ff resolved 1700000000 Some(1699996500) {"alertname": "X"}"#,
        );
        check(&body(""), "");
        check(
            "",
            "error body: not a webhook message: EOF while parsing a value at line 1 column 0",
        );
        check(
            "{",
            "error body: not a webhook message: EOF while parsing an object at line 1 column 1",
        );
        check(
            "[1,2]",
            "error body: not a webhook message: invalid type: integer `1`, expected a string at line 1 column 2",
        );
        check(
            r#"{"version":"3","alerts":[]}"#,
            "error version: `3` is not supported; expected \"4\"",
        );
        check(
            r#"{"version":"4"}"#,
            "error body: not a webhook message: missing field `alerts` at line 1 column 15",
        );
        check(
            &body(&FIRING.replace("\"status\":\"firing\"", "\"status\":\"pending\"")),
            "error alerts[0].status: `pending`; expected \"firing\" or \"resolved\"",
        );
        check(
            &body(&format!(
                "{FIRING},{}",
                FIRING.replace("2023-11-14T22:13:20.123456789Z", "yesterday")
            )),
            "error alerts[1].startsAt: not an RFC 3339 time",
        );
        check(
            &body(&FIRING.replace("0001-01-01T00:00:00Z", "2023-13-01T00:00:00Z")),
            "error alerts[0].endsAt: not an RFC 3339 time",
        );
        check(
            &body(&FIRING.replace("a1b2c3d4e5f60718", "../../etc")),
            "error alerts[0].fingerprint: expected 1-64 letters or digits",
        );
        check(
            &body(&FIRING.replace("web1 is out of rotation", &"x".repeat(MAX_VALUE + 1))),
            "error alerts[0].annotations.summary: longer than 4096 bytes",
        );
        check(
            &body(&FIRING.replace("\"severity\"", "\"\"")),
            "error alerts[0].labels: a name must be 1-256 bytes",
        );
    }

    fn alert(fp: &str, status: Status, starts: i64, updated: i64) -> Alert {
        Alert {
            fingerprint: fp.into(),
            status,
            labels: BTreeMap::from([("alertname".into(), format!("A{fp}"))]),
            annotations: BTreeMap::new(),
            starts_at: starts,
            ends_at: (status == Status::Resolved).then_some(updated),
            updated_at: updated,
        }
    }

    #[tokio::test]
    async fn store_records_persists_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let store = AlertStore::load(&path, 3).unwrap();
        assert!(store.list().is_empty());
        store
            .record(vec![
                alert("1", Status::Firing, 100, 100),
                alert("2", Status::Firing, 200, 200),
            ])
            .await
            .unwrap();
        store
            .record(vec![alert("1", Status::Resolved, 100, 300)])
            .await
            .unwrap();
        let order = |s: &AlertStore| {
            s.list()
                .iter()
                .map(|a| format!("{}:{}", a.fingerprint, a.status.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(order(&store), "2:firing 1:resolved");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Reloaded from the file: the same.
        let again = AlertStore::load(&path, 3).unwrap();
        assert_eq!(again.list(), store.list());

        // Over the bound: the resolved one goes first, then the oldest firing.
        store
            .record(vec![
                alert("3", Status::Firing, 300, 400),
                alert("4", Status::Firing, 400, 500),
            ])
            .await
            .unwrap();
        assert_eq!(order(&store), "4:firing 3:firing 2:firing");
        store
            .record(vec![alert("5", Status::Firing, 500, 600)])
            .await
            .unwrap();
        assert_eq!(order(&store), "5:firing 4:firing 3:firing");
        assert_eq!(AlertStore::load(&path, 3).unwrap().list(), store.list());
        // A smaller bound on load applies at once.
        assert_eq!(AlertStore::load(&path, 1).unwrap().list().len(), 1);
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        for (content, expected) in [
            (
                "{",
                "not an alert state file: EOF while parsing an object at line 1 column 1",
            ),
            (
                r#"{"version":9,"alerts":[]}"#,
                "not an alert state file: version 9 (expected 1)",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = AlertStore::load(&path, 10).unwrap_err().to_string();
            assert_eq!(err, format!("{}: {expected}", path.display()));
            assert!(check_state_file(&path).is_err());
        }
        assert!(check_state_file(&dir.path().join("missing.json")).is_ok());
    }
}
