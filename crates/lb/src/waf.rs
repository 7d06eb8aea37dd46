//! The load balancer's web application firewall: the OWASP Core Rule Set, loaded
//! unmodified by `rampart_waf`, run over each request the load balancer is about to
//! forward (the same request target, the client's header fields, the body it de-framed),
//! before a backend is picked.
//!
//! - `[waf]` in the config: the mode (`off`, `detect`, `block`), the rule files (Debian's
//!   `modsecurity-crs` by default), the blocking and detection paranoia levels and the
//!   inbound anomaly threshold (set by a rule rampart adds right after the setup file,
//!   so they win over it), the inspection limits, and per-route modes, allowed methods
//!   and content types (`[[waf.routes]]`) and exclusions (`[[waf.exclusions]]`).
//! - A request past the limits (body longer than `body_limit`, more than `max_args`
//!   arguments) is refused with 413 (`over_limit = "reject"`, the default) or inspected
//!   on its first `body_limit` bytes (`"partial"`). A body the WAF cannot parse as its
//!   content type says is refused with 400 (`body_error = "reject"`, the default) or
//!   inspected as far as it parsed (`"pass"`). In detect mode both are only logged.
//! - A block is a 403 (413, 400 for the limits) whose body and `X-Request-Id` carry the
//!   request id; the access log line of a flagged request carries the evidence
//!   ([`WafEvent`]): decision, score, and per matched rule its id, paranoia level and
//!   the name of the target. Values only with `log_excerpt`, and then redacted when the
//!   name looks like a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use serde::Deserialize;

use rampart_telemetry::access_log::{WafEvent, WafMatch};
use rampart_telemetry::config::{Checker, ConfigError};
use rampart_waf::engine::{self, Mode, Policy, Scope};
use rampart_waf::model::Target;
use rampart_waf::RuleSet;

use crate::metrics::Metrics;

/// `[waf]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWaf {
    pub mode: Option<String>,
    pub setup: Option<PathBuf>,
    pub rules: Option<Vec<String>>,
    pub paranoia_level: Option<u8>,
    pub detection_paranoia_level: Option<u8>,
    pub inbound_threshold: Option<u32>,
    pub body_limit: Option<usize>,
    pub over_limit: Option<String>,
    pub max_args: Option<usize>,
    pub body_error: Option<String>,
    pub log_excerpt: Option<bool>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_content_types: Option<Vec<String>>,
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    #[serde(default)]
    pub exclusions: Vec<FileExclusion>,
}

/// `[[waf.routes]]`: what differs for a host and/or path prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub mode: Option<String>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_content_types: Option<Vec<String>>,
}

/// A rule id (`942100`) or an inclusive range (`"942100-942199"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileId {
    One(u64),
    Range(String),
}

/// `[[waf.exclusions]]`: rules or targets taken out for a host and/or path prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExclusion {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub rule_ids: Vec<FileId>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    /// Why: documentation for the next operator, required.
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WafMode {
    Off,
    Detect,
    Block,
}

impl WafMode {
    fn name(self) -> &'static str {
        match self {
            WafMode::Off => "off",
            WafMode::Detect => "detect",
            WafMode::Block => "block",
        }
    }
}

/// Where a route or exclusion applies: a host (any when `None`) and a path prefix.
#[derive(Clone, Debug)]
pub struct Scoped {
    pub host: Option<String>,
    pub path_prefix: String,
}

impl Scoped {
    fn matches(&self, host: &str, path: &str) -> bool {
        self.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && path.starts_with(&self.path_prefix)
    }

    /// Host-specific beats any host; then the longer prefix.
    fn rank(&self) -> (bool, usize) {
        (self.host.is_some(), self.path_prefix.len())
    }
}

#[derive(Clone, Debug)]
pub struct Route {
    pub scope: Scoped,
    pub mode: Option<WafMode>,
    pub allowed_methods: Option<String>,
    pub allowed_content_types: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Exclusion {
    pub scope: Scoped,
    pub ids: Vec<(u64, u64)>,
    pub tags: Vec<String>,
    pub targets: Vec<Target>,
}

/// A validated `[waf]`.
#[derive(Clone, Debug)]
pub struct WafConfig {
    pub mode: WafMode,
    pub setup: PathBuf,
    /// Rule files in include order; the last path component may be a `*.conf` pattern.
    pub rules: Vec<PathBuf>,
    pub paranoia_level: u8,
    pub detection_paranoia_level: u8,
    pub inbound_threshold: u32,
    pub body_limit: usize,
    pub reject_over_limit: bool,
    pub max_args: usize,
    pub reject_body_errors: bool,
    pub log_excerpt: bool,
    pub allowed_methods: Option<String>,
    pub allowed_content_types: Option<String>,
    pub routes: Vec<Route>,
    pub exclusions: Vec<Exclusion>,
}

/// Defaults, documented once: Debian's `modsecurity-crs` (CRS 3.3.4) in the order its
/// `owasp-crs.load` includes it; limits as ModSecurity's recommended configuration.
pub mod defaults {
    pub const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
    pub const RULES: [&str; 3] = [
        "/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf",
        "/usr/share/modsecurity-crs/rules/*.conf",
        "/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf",
    ];
    pub const PARANOIA_LEVEL: u8 = 1;
    pub const INBOUND_THRESHOLD: u32 = 5;
    /// ModSecurity's `SecRequestBodyNoFilesLimit` default.
    pub const BODY_LIMIT: usize = 128 * 1024;
    /// ModSecurity's `SecArgumentsLimit` default.
    pub const MAX_ARGS: usize = 1000;
}

impl WafConfig {
    /// The WAF when `[waf]` is absent: off.
    pub fn off() -> Self {
        Self {
            mode: WafMode::Off,
            setup: PathBuf::from(defaults::SETUP),
            rules: defaults::RULES.iter().map(PathBuf::from).collect(),
            paranoia_level: defaults::PARANOIA_LEVEL,
            detection_paranoia_level: defaults::PARANOIA_LEVEL,
            inbound_threshold: defaults::INBOUND_THRESHOLD,
            body_limit: defaults::BODY_LIMIT,
            reject_over_limit: true,
            max_args: defaults::MAX_ARGS,
            reject_body_errors: true,
            log_excerpt: false,
            allowed_methods: None,
            allowed_content_types: None,
            routes: Vec::new(),
            exclusions: Vec::new(),
        }
    }

    /// Whether any route can turn the WAF on.
    pub fn enabled(&self) -> bool {
        self.mode != WafMode::Off
            || self
                .routes
                .iter()
                .any(|r| r.mode.is_some_and(|m| m != WafMode::Off))
    }

    /// Validates `[waf]`, collecting every problem in `c`.
    pub fn validate(c: &mut Checker<'_>, f: Option<&FileWaf>) -> Self {
        let Some(f) = f else {
            return Self::off();
        };
        let mode = parse_mode(c, "waf.mode", f.mode.as_deref()).unwrap_or(WafMode::Block);
        let setup = f
            .setup
            .as_ref()
            .map_or_else(|| PathBuf::from(defaults::SETUP), |p| c.resolve(p));
        let rules = match &f.rules {
            Some(r) if r.is_empty() => {
                c.err(
                    "waf.rules",
                    "is empty; list the CRS rule files (`/usr/share/modsecurity-crs/rules/*.conf`)",
                );
                Vec::new()
            }
            Some(r) => r.iter().map(|p| c.resolve(Path::new(p))).collect(),
            None => defaults::RULES.iter().map(PathBuf::from).collect(),
        };
        let paranoia_level = c.range(
            "waf.paranoia_level",
            f.paranoia_level,
            defaults::PARANOIA_LEVEL,
            1,
            4,
        );
        let detection_paranoia_level = c.range(
            "waf.detection_paranoia_level",
            f.detection_paranoia_level,
            paranoia_level,
            1,
            4,
        );
        if detection_paranoia_level < paranoia_level {
            c.err(
                "waf.detection_paranoia_level",
                format!("{detection_paranoia_level} is below paranoia_level {paranoia_level}; expected {paranoia_level} to 4"),
            );
        }
        let over_limit = f.over_limit.as_deref().unwrap_or("reject");
        if !["reject", "partial"].contains(&over_limit) {
            c.err(
                "waf.over_limit",
                format!("`{over_limit}` is not a choice; expected reject or partial"),
            );
        }
        let body_error = f.body_error.as_deref().unwrap_or("reject");
        if !["reject", "pass"].contains(&body_error) {
            c.err(
                "waf.body_error",
                format!("`{body_error}` is not a choice; expected reject or pass"),
            );
        }
        let mut routes = Vec::new();
        for (i, r) in f.routes.iter().enumerate() {
            let key = |k: &str| format!("waf.routes[{i}].{k}");
            routes.push(Route {
                scope: scoped(c, &key(""), r.host.as_deref(), r.path_prefix.as_deref()),
                mode: parse_mode(c, &key("mode"), r.mode.as_deref()),
                allowed_methods: methods(c, &key("allowed_methods"), r.allowed_methods.as_deref()),
                allowed_content_types: content_types(
                    c,
                    &key("allowed_content_types"),
                    r.allowed_content_types.as_deref(),
                ),
            });
        }
        let mut exclusions = Vec::new();
        for (i, x) in f.exclusions.iter().enumerate() {
            let key = |k: &str| format!("waf.exclusions[{i}].{k}");
            if x.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                c.err(
                    key("reason"),
                    "is required: say why the exclusion is needed",
                );
            }
            if x.rule_ids.is_empty() && x.tags.is_empty() && x.targets.is_empty() {
                c.err(
                    key("rule_ids"),
                    "an exclusion needs rule_ids, tags or targets (or several)",
                );
            }
            let mut ids = Vec::new();
            for (j, id) in x.rule_ids.iter().enumerate() {
                match parse_id(id) {
                    Some(r) => ids.push(r),
                    None => c.err(
                        format!("waf.exclusions[{i}].rule_ids[{j}]"),
                        "is not a rule id; expected a number such as 942100 or a range \"942100-942199\"",
                    ),
                }
            }
            let mut targets = Vec::new();
            for (j, t) in x.targets.iter().enumerate() {
                match rampart_waf::model::parse_targets(t) {
                    Ok(ts) if ts.len() == 1 && !ts[0].count && !ts[0].exclude => {
                        targets.extend(ts);
                    }
                    Ok(_) => c.err(
                        format!("waf.exclusions[{i}].targets[{j}]"),
                        format!("`{t}` is not one target; expected one such as ARGS:password or REQUEST_COOKIES:/^session/"),
                    ),
                    Err(e) => c.err(
                        format!("waf.exclusions[{i}].targets[{j}]"),
                        format!("`{t}`: {e}; expected a target such as ARGS:password"),
                    ),
                }
            }
            exclusions.push(Exclusion {
                scope: scoped(c, &key(""), x.host.as_deref(), x.path_prefix.as_deref()),
                ids,
                tags: x.tags.clone(),
                targets,
            });
        }
        Self {
            mode,
            setup,
            rules,
            paranoia_level,
            detection_paranoia_level,
            inbound_threshold: c.range(
                "waf.inbound_threshold",
                f.inbound_threshold,
                defaults::INBOUND_THRESHOLD,
                1,
                10_000,
            ),
            body_limit: c.range(
                "waf.body_limit",
                f.body_limit,
                defaults::BODY_LIMIT,
                0,
                64 * 1024 * 1024,
            ),
            reject_over_limit: over_limit != "partial",
            max_args: c.range("waf.max_args", f.max_args, defaults::MAX_ARGS, 1, 100_000),
            reject_body_errors: body_error != "pass",
            log_excerpt: f.log_excerpt.unwrap_or(false),
            allowed_methods: methods(c, "waf.allowed_methods", f.allowed_methods.as_deref()),
            allowed_content_types: content_types(
                c,
                "waf.allowed_content_types",
                f.allowed_content_types.as_deref(),
            ),
            routes,
            exclusions,
        }
    }
}

fn parse_mode(c: &mut Checker<'_>, key: &str, v: Option<&str>) -> Option<WafMode> {
    match v? {
        "off" => Some(WafMode::Off),
        "detect" => Some(WafMode::Detect),
        "block" => Some(WafMode::Block),
        other => {
            c.err(
                key,
                format!("`{other}` is not a mode; expected off, detect or block"),
            );
            None
        }
    }
}

fn scoped(c: &mut Checker<'_>, key: &str, host: Option<&str>, prefix: Option<&str>) -> Scoped {
    let prefix = prefix.unwrap_or("/");
    if !prefix.starts_with('/') {
        c.err(
            format!("{key}path_prefix"),
            format!("`{prefix}` is not a path prefix; expected one starting with '/'"),
        );
    }
    if let Some(h) = host {
        if h.is_empty() || h.contains(['/', ':', ' ']) {
            c.err(
                format!("{key}host"),
                format!("`{h}` is not a host name; expected one such as www.foobar.com"),
            );
        }
    }
    Scoped {
        host: host.map(str::to_ascii_lowercase),
        path_prefix: prefix.to_owned(),
    }
}

/// Methods as CRS's `tx.allowed_methods` holds them: space-separated.
fn methods(c: &mut Checker<'_>, key: &str, v: Option<&[String]>) -> Option<String> {
    let v = v?;
    for m in v {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            c.err(
                key,
                format!("`{m}` is not a method; expected upper-case names such as GET, POST"),
            );
        }
    }
    Some(v.join(" "))
}

/// Content types as CRS's `tx.allowed_request_content_type` holds them: `|type|`, space
/// separated, lower case.
fn content_types(c: &mut Checker<'_>, key: &str, v: Option<&[String]>) -> Option<String> {
    let v = v?;
    for t in v {
        if !t.contains('/') || t.contains(['|', ' ', ';']) {
            c.err(
                key,
                format!("`{t}` is not a media type; expected ones such as application/json"),
            );
        }
    }
    Some(
        v.iter()
            .map(|t| format!("|{}|", t.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn parse_id(id: &FileId) -> Option<(u64, u64)> {
    match id {
        FileId::One(n) => Some((*n, *n)),
        FileId::Range(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        }
    }
}

/// The rule files `rules` names, patterns expanded (sorted, as Apache's `Include`).
fn expand(rules: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in rules {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref().and_then(|n| n.split_once('*')) {
            Some((pre, post)) => {
                let dir = p.parent().unwrap_or(Path::new("."));
                let rd = std::fs::read_dir(dir).map_err(|e| {
                    format!(
                        "{}: {e} (Debian's CRS is the package modsecurity-crs)",
                        dir.display()
                    )
                })?;
                let mut found: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|f| {
                        f.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                            n.starts_with(pre)
                                && n.ends_with(post)
                                && n.len() >= pre.len() + post.len()
                        })
                    })
                    .collect();
                if found.is_empty() {
                    return Err(format!("{} matches no file", p.display()));
                }
                found.sort();
                out.extend(found);
            }
            None => out.push(p.clone()),
        }
    }
    Ok(out)
}

/// What the WAF decided about one request.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The status to answer with instead of forwarding.
    pub status: Option<u16>,
    /// The evidence, when the request was flagged.
    pub event: Option<WafEvent>,
}

/// A loaded WAF: the rule set and the config it runs with.
pub struct Waf {
    config: WafConfig,
    set: RuleSet,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Waf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waf")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The rule rampart adds after the setup file: the levels and the threshold, under the
/// names CRS 3 and CRS 4 read (each ignores the other's).
fn levels_rule(c: &WafConfig) -> String {
    format!(
        "SecAction \"id:99001,phase:1,pass,nolog,t:none,\
         setvar:tx.paranoia_level={p},setvar:tx.blocking_paranoia_level={p},\
         setvar:tx.executing_paranoia_level={d},setvar:tx.detection_paranoia_level={d},\
         setvar:tx.inbound_anomaly_score_threshold={t}\"\n",
        p = c.paranoia_level,
        d = c.detection_paranoia_level,
        t = c.inbound_threshold,
    )
}

impl Waf {
    /// Loads the rule set; `None` when the WAF is off everywhere. An unreadable file or
    /// a rule the engine does not support is an error naming the file and line.
    pub fn build(
        config: &WafConfig,
        config_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Waf>>, ConfigError> {
        if !config.enabled() {
            return Ok(None);
        }
        let err = |key: &str, message: String| ConfigError {
            file: config_path.to_path_buf(),
            key: key.to_owned(),
            message,
        };
        let files = expand(&config.rules).map_err(|e| err("waf.rules", e))?;
        let mut set = RuleSet::default();
        let read = |p: &Path, key: &str| {
            std::fs::read_to_string(p).map_err(|e| {
                err(
                    key,
                    format!(
                        "{}: {e} (Debian's CRS is the package modsecurity-crs)",
                        p.display()
                    ),
                )
            })
        };
        let setup = read(&config.setup, "waf.setup")?;
        set.add_text(&config.setup, &setup)
            .map_err(|e| err("waf.setup", e.to_string()))?;
        set.add_text(Path::new("rampart-waf-levels.conf"), &levels_rule(config))
            .map_err(|e| err("waf", e.to_string()))?;
        for f in &files {
            let text = read(f, "waf.rules")?;
            set.add_text(f, &text)
                .map_err(|e| err("waf.rules", e.to_string()))?;
        }
        Ok(Some(Arc::new(Waf {
            config: config.clone(),
            set,
            metrics,
        })))
    }

    /// The mode and policy for a request to `host` (no port) and `path`.
    fn policy(&self, host: &str, path: &str) -> (WafMode, Policy) {
        let c = &self.config;
        let mut mode = c.mode;
        let mut methods = c.allowed_methods.as_ref();
        let mut types = c.allowed_content_types.as_ref();
        let mut best = None;
        for r in c.routes.iter().filter(|r| r.scope.matches(host, path)) {
            if best.is_none_or(|b| r.scope.rank() >= b) {
                best = Some(r.scope.rank());
                mode = r.mode.unwrap_or(mode);
                methods = r.allowed_methods.as_ref().or(methods);
                types = r.allowed_content_types.as_ref().or(types);
            }
        }
        let mut p = Policy::default();
        if let Some(m) = methods {
            p.tx.push(("allowed_methods".into(), m.clone().into_bytes()));
        }
        if let Some(t) = types {
            p.tx.push((
                "allowed_request_content_type".into(),
                t.clone().into_bytes(),
            ));
        }
        for x in c.exclusions.iter().filter(|x| x.scope.matches(host, path)) {
            if x.targets.is_empty() {
                p.remove_ids.extend(&x.ids);
                p.remove_tags.extend(x.tags.iter().cloned());
                continue;
            }
            for t in &x.targets {
                let mut scopes: Vec<Scope> =
                    x.ids.iter().map(|(a, b)| Scope::Ids(*a, *b)).collect();
                scopes.extend(x.tags.iter().cloned().map(Scope::Tag));
                if scopes.is_empty() {
                    scopes.push(Scope::All);
                }
                p.remove_targets
                    .extend(scopes.into_iter().map(|s| (s, t.clone())));
            }
        }
        (mode, p)
    }

    /// Inspects `req` as it will be forwarded.
    pub fn inspect(
        &self,
        req: &Request<Bytes>,
        host: &str,
        client: SocketAddr,
        request_id: &str,
    ) -> Verdict {
        let path = req.uri().path();
        let (mode, policy) = self.policy(host, path);
        if mode == WafMode::Off {
            return Verdict::default();
        }
        let start = Instant::now();
        let verdict = self.run(req, host, client, request_id, mode, &policy);
        let m = &self.metrics;
        m.waf_inspection.observe(start.elapsed().as_secs_f64());
        let outcome = verdict.event.as_ref().map_or("allow", |e| e.decision);
        m.waf_decisions
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(e) = &verdict.event {
            for x in &e.matches {
                m.waf_matches
                    .get_or_create(&crate::metrics::FamilyLabels {
                        family: family(x.id).to_owned(),
                    })
                    .inc();
            }
        }
        verdict
    }

    fn run(
        &self,
        req: &Request<Bytes>,
        host: &str,
        client: SocketAddr,
        request_id: &str,
        mode: WafMode,
        policy: &Policy,
    ) -> Verdict {
        let c = &self.config;
        let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(req.headers().len() + 1);
        if req.headers().get(http::header::HOST).is_none() {
            headers.push(("Host".into(), host.as_bytes().to_vec()));
        }
        for (k, v) in req.headers() {
            headers.push((k.as_str().to_owned(), v.as_bytes().to_vec()));
        }
        let body = req.body();
        let over = body.len() > c.body_limit;
        let blocking = mode == WafMode::Block;
        if over && c.reject_over_limit {
            // Refused before anything is parsed.
            return limit_verdict(blocking, mode, 413, "over_limit");
        }
        let limited = if over {
            &body[..c.body_limit]
        } else {
            &body[..]
        };
        let uri = req
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let protocol = match req.version() {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let remote = client.ip().to_string();
        let vars = rampart_waf::request::build(&rampart_waf::request::Parts {
            method: req.method().as_str(),
            uri,
            protocol,
            headers: &headers,
            body: limited,
            remote_addr: &remote,
            unique_id: request_id,
        });
        let args = vars.vars.get("ARGS").map_or(0, Vec::len);
        let limit_status = if args > c.max_args && c.reject_over_limit {
            Some((413, "over_limit"))
        } else if c.reject_body_errors
            && vars
                .vars
                .get("REQBODY_ERROR")
                .and_then(|v| v.first())
                .is_some_and(|(_, v)| v == b"1")
        {
            Some((400, "body_error"))
        } else {
            None
        };
        if let Some((status, reason)) = limit_status {
            return limit_verdict(blocking, mode, status, reason);
        }
        let out = engine::inspect_with(
            &self.set,
            &vars,
            if blocking {
                Mode::On
            } else {
                Mode::DetectionOnly
            },
            2,
            policy,
        );
        let matches: Vec<WafMatch> = out
            .hits
            .iter()
            .filter(|h| h.logged)
            .map(|h| {
                let target = h.targets.first().map_or("", String::as_str);
                WafMatch {
                    id: h.id,
                    paranoia: h.paranoia,
                    target: truncate(target, 96),
                    excerpt: c.log_excerpt.then(|| excerpt(target, &h.value)),
                }
            })
            .collect();
        if matches.is_empty() && out.decided_by.is_none() {
            return Verdict::default();
        }
        let decision = match (out.decided_by.is_some(), blocking) {
            (true, true) => "block",
            (true, false) => "would_block",
            (false, _) => "flag",
        };
        Verdict {
            status: (decision == "block").then_some(403),
            event: Some(WafEvent {
                decision,
                reason: "rules",
                mode: mode.name(),
                score: out.score,
                matches,
            }),
        }
    }
}

/// The verdict on a request past a limit or with a body that does not parse.
fn limit_verdict(blocking: bool, mode: WafMode, status: u16, reason: &'static str) -> Verdict {
    Verdict {
        status: blocking.then_some(status),
        event: Some(WafEvent {
            decision: if blocking { "block" } else { "would_block" },
            reason,
            mode: mode.name(),
            score: 0,
            matches: Vec::new(),
        }),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Whether a target's name looks like it holds a secret.
fn secret_name(target: &str) -> bool {
    let t = target.to_ascii_lowercase();
    [
        "pass", "pwd", "token", "secret", "key", "cookie", "auth", "session", "csrf", "jwt",
        "bearer", "sid",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A short excerpt of a matched value: redacted when the name looks like a secret,
/// otherwise its first 32 characters with control characters escaped.
fn excerpt(target: &str, value: &[u8]) -> String {
    if secret_name(target) {
        return "[redacted]".into();
    }
    let text = String::from_utf8_lossy(value).escape_debug().to_string();
    truncate(&text, 32)
}

/// The CRS family of a rule id, a bounded label set for metrics.
pub fn family(id: u64) -> &'static str {
    match id / 1000 {
        911 => "method-enforcement",
        913 => "scanner-detection",
        920 => "protocol-enforcement",
        921 => "protocol-attack",
        922 => "multipart-attack",
        930 => "lfi",
        931 => "rfi",
        932 => "rce",
        933 => "php",
        934 => "generic",
        941 => "xss",
        942 => "sqli",
        943 => "session-fixation",
        944 => "java",
        949 => "blocking-evaluation",
        950..=956 => "data-leakage",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_other_values_cut_short() {
        assert_eq!(excerpt("ARGS:password", b"hunter2"), "[redacted]");
        assert_eq!(excerpt("REQUEST_COOKIES:sessionid", b"x"), "[redacted]");
        assert_eq!(excerpt("REQUEST_HEADERS:Authorization", b"x"), "[redacted]");
        assert!(excerpt("ARGS:q", b"1' or '1'='1").contains(" or "));
        assert_eq!(excerpt("ARGS:q", &[b'a'; 100]).chars().count(), 33);
        assert_eq!(excerpt("ARGS:q", b"a\nb"), "a\\nb");
    }

    #[test]
    fn ids_and_ranges() {
        assert_eq!(parse_id(&FileId::One(942100)), Some((942100, 942100)));
        assert_eq!(
            parse_id(&FileId::Range("942100-942199".into())),
            Some((942100, 942199))
        );
        assert_eq!(parse_id(&FileId::Range("9-1".into())), None);
        assert_eq!(parse_id(&FileId::Range("x".into())), None);
    }

    #[test]
    fn families_are_a_bounded_set() {
        assert_eq!(family(942100), "sqli");
        assert_eq!(family(941100), "xss");
        assert_eq!(family(99001), "other");
        assert_eq!(family(u64::MAX), "other");
    }
}
