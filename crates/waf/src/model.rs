//! The typed rule: what a `SecRule`/`SecAction` means, parsed from its arguments. Every
//! target collection, operator, transformation, action and `ctl` option the engine
//! knows is listed here; anything else is an error naming it (a rule file that uses it
//! fails to load rather than running without it).

use crate::seclang::{split_actions, split_targets};

/// The collections a target may name.
pub const COLLECTIONS: &[&str] = &[
    "ARGS",
    "ARGS_COMBINED_SIZE",
    "ARGS_GET",
    "ARGS_GET_NAMES",
    "ARGS_NAMES",
    "ARGS_POST",
    "ARGS_POST_NAMES",
    "DURATION",
    "FILES",
    "FILES_COMBINED_SIZE",
    "FILES_NAMES",
    "FILES_SIZES",
    "GEO",
    "GLOBAL",
    "IP",
    "MATCHED_VAR",
    "MATCHED_VARS",
    "MATCHED_VARS_NAMES",
    "MATCHED_VAR_NAME",
    "MULTIPART_PART_HEADERS",
    "MULTIPART_STRICT_ERROR",
    "MULTIPART_UNMATCHED_BOUNDARY",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REQBODY_ERROR",
    "REQBODY_ERROR_MSG",
    "REQBODY_PROCESSOR",
    "REQUEST_BASENAME",
    "REQUEST_BODY",
    "REQUEST_BODY_LENGTH",
    "REQUEST_COOKIES",
    "REQUEST_COOKIES_NAMES",
    "REQUEST_FILENAME",
    "REQUEST_HEADERS",
    "REQUEST_HEADERS_NAMES",
    "REQUEST_LINE",
    "REQUEST_METHOD",
    "REQUEST_PROTOCOL",
    "REQUEST_URI",
    "REQUEST_URI_RAW",
    "RESPONSE_BODY",
    "RESPONSE_CONTENT_TYPE",
    "RESPONSE_HEADERS",
    "RESPONSE_HEADERS_NAMES",
    "RESPONSE_PROTOCOL",
    "RESPONSE_STATUS",
    "SESSION",
    "TX",
    "UNIQUE_ID",
    "USER",
    "XML",
];

/// The operators the engine implements.
pub const OPERATORS: &[&str] = &[
    "beginsWith",
    "contains",
    "containsWord",
    "detectSQLi",
    "detectXSS",
    "endsWith",
    "eq",
    "ge",
    "geoLookup",
    "gt",
    "ipMatch",
    "ipMatchFromFile",
    "le",
    "lt",
    "pm",
    "pmFromFile",
    "pmf",
    "rbl",
    "rx",
    "streq",
    "strmatch",
    "unconditionalMatch",
    "validateByteRange",
    "validateUrlEncoding",
    "validateUtf8Encoding",
    "within",
];

/// The transformations the engine implements (`normalisePath` is ModSecurity's alias).
pub const TRANSFORMS: &[&str] = &[
    "base64Decode",
    "base64DecodeExt",
    "cmdLine",
    "compressWhitespace",
    "cssDecode",
    "escapeSeqDecode",
    "hexDecode",
    "hexEncode",
    "htmlEntityDecode",
    "jsDecode",
    "length",
    "lowercase",
    "none",
    "normalisePath",
    "normalisePathWin",
    "normalizePath",
    "normalizePathWin",
    "removeComments",
    "removeCommentsChar",
    "removeNulls",
    "removeWhitespace",
    "replaceComments",
    "replaceNulls",
    "sha1",
    "trim",
    "trimLeft",
    "trimRight",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
    "urlEncode",
    "utf8toUnicode",
];

/// The `ctl:` options the engine implements.
pub const CTL_OPTIONS: &[&str] = &[
    "auditEngine",
    "auditLogParts",
    "forceRequestBodyVariable",
    "requestBodyAccess",
    "requestBodyProcessor",
    "ruleEngine",
    "ruleRemoveById",
    "ruleRemoveByMsg",
    "ruleRemoveByTag",
    "ruleRemoveTargetById",
    "ruleRemoveTargetByMsg",
    "ruleRemoveTargetByTag",
];

/// How a target selects within its collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The whole collection.
    All,
    /// One key (case-insensitive for headers, cookies and args, as ModSecurity).
    Key(String),
    /// Keys matching a regex (`/re/`, or `'/re/'`).
    Regex(String),
    /// An XPath expression (the XML collection).
    XPath(String),
}

/// One target of a rule: `ARGS`, `!REQUEST_COOKIES:/__utm/`, `&TX:foo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub collection: String,
    pub selector: Selector,
    /// `&`: the number of matching variables, not their values.
    pub count: bool,
    /// `!`: removes matching variables from the others of the rule.
    pub exclude: bool,
}

/// A rule's operator: `@name arg`, negated with `!`; a bare string is `@rx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub arg: String,
    pub negated: bool,
}

/// One action, by name, with its value (quotes removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Id(u64),
    Phase(u8),
    Chain,
    Transform(String),
    SetVar(String),
    SkipAfter(String),
    Skip(u32),
    Ctl {
        option: String,
        value: String,
    },
    Capture,
    MultiMatch,
    InitCol(String),
    ExpireVar(String),
    Status(u16),
    /// A disruptive action: `block`, `deny`, `drop`, `pass`, `allow`, `redirect`.
    Disruptive(String),
    /// Logging switches: `log`, `nolog`, `auditlog`, `noauditlog`.
    Logging(String),
    /// Metadata: `msg`, `logdata`, `tag`, `ver`, `rev`, `severity`, `maturity`,
    /// `accuracy` (macros in `msg`/`logdata` expand at match time).
    Meta {
        name: String,
        value: String,
    },
}

/// A rule: `SecRule` (targets and operator) or `SecAction` (neither, always matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub targets: Vec<Target>,
    pub operator: Option<Operator>,
    pub actions: Vec<Action>,
}

impl Rule {
    pub fn id(&self) -> Option<u64> {
        self.actions.iter().find_map(|a| match a {
            Action::Id(id) => Some(*id),
            _ => None,
        })
    }

    pub fn phase(&self) -> Option<u8> {
        self.actions.iter().find_map(|a| match a {
            Action::Phase(p) => Some(*p),
            _ => None,
        })
    }

    pub fn chained(&self) -> bool {
        self.actions.contains(&Action::Chain)
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|a| match a {
            Action::Meta { name, value } if name == "tag" => Some(value.as_str()),
            _ => None,
        })
    }
}

/// `SecRule TARGETS OPERATOR [ACTIONS]`.
pub fn sec_rule(targets: &str, operator: &str, actions: Option<&str>) -> Result<Rule, String> {
    Ok(Rule {
        targets: parse_targets(targets)?,
        operator: Some(parse_operator(operator)?),
        actions: parse_actions(actions.unwrap_or_default())?,
    })
}

/// `SecAction ACTIONS`.
pub fn sec_action(actions: &str) -> Result<Rule, String> {
    Ok(Rule {
        targets: Vec::new(),
        operator: None,
        actions: parse_actions(actions)?,
    })
}

/// A target list, `A|!B:x|&C:/re/`.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    split_targets(text)
        .iter()
        .map(|t| parse_target(t))
        .collect()
}

fn parse_target(text: &str) -> Result<Target, String> {
    let (exclude, rest) = match text.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (count, rest) = match rest.strip_prefix('&') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (name, selector) = match rest.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let collection = name.trim().to_ascii_uppercase();
    if !COLLECTIONS.contains(&collection.as_str()) {
        return Err(format!(
            "target {text:?}: unsupported collection {name:?}; supported: {}",
            COLLECTIONS.join(", ")
        ));
    }
    let selector = match selector.map(str::trim) {
        None | Some("") => Selector::All,
        Some(s) if collection == "XML" => Selector::XPath(s.to_owned()),
        Some(s) => {
            let s = s
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(s);
            match s.strip_prefix('/').and_then(|v| v.strip_suffix('/')) {
                Some(re) if s.len() >= 2 => Selector::Regex(re.to_owned()),
                _ => Selector::Key(s.to_owned()),
            }
        }
    };
    Ok(Target {
        collection,
        selector,
        count,
        exclude,
    })
}

/// An operator string, `[!]@name arg` or a bare regex.
pub fn parse_operator(text: &str) -> Result<Operator, String> {
    let (negated, rest) = match text.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let Some(named) = rest.strip_prefix('@') else {
        return Ok(Operator {
            name: "rx".into(),
            arg: rest.to_owned(),
            negated,
        });
    };
    let (name, arg) = match named.split_once(|c: char| c.is_whitespace()) {
        Some((n, a)) => (n, a.trim_start()),
        None => (named, ""),
    };
    if !OPERATORS.contains(&name) {
        return Err(format!(
            "unsupported operator @{name}; supported: @{}",
            OPERATORS.join(", @")
        ));
    }
    Ok(Operator {
        name: name.to_owned(),
        arg: arg.to_owned(),
        negated,
    })
}

/// An action list.
pub fn parse_actions(text: &str) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    for (name, value) in split_actions(text)? {
        out.push(action(&name, value)?);
    }
    Ok(out)
}

fn action(name: &str, value: Option<String>) -> Result<Action, String> {
    let need = |v: Option<String>| v.ok_or_else(|| format!("action {name} needs a value"));
    Ok(match name {
        "id" => {
            let v = need(value)?;
            Action::Id(
                v.trim()
                    .parse()
                    .map_err(|_| format!("id:{v}: not a rule id"))?,
            )
        }
        "phase" => {
            let v = need(value)?;
            Action::Phase(match v.trim() {
                "request" => 2,
                "response" => 4,
                "logging" => 5,
                n => n
                    .parse()
                    .ok()
                    .filter(|p| (1..=5).contains(p))
                    .ok_or_else(|| format!("phase:{v}: expected 1 to 5"))?,
            })
        }
        "chain" => Action::Chain,
        "capture" => Action::Capture,
        "multiMatch" => Action::MultiMatch,
        "t" => {
            let v = need(value)?;
            if !TRANSFORMS.contains(&v.as_str()) {
                return Err(format!(
                    "unsupported transformation t:{v}; supported: {}",
                    TRANSFORMS.join(", ")
                ));
            }
            Action::Transform(v)
        }
        "setvar" => Action::SetVar(need(value)?),
        "skipAfter" => Action::SkipAfter(need(value)?),
        "skip" => {
            let v = need(value)?;
            Action::Skip(
                v.trim()
                    .parse()
                    .map_err(|_| format!("skip:{v}: not a count"))?,
            )
        }
        "ctl" => {
            let v = need(value)?;
            let (option, arg) = v
                .split_once('=')
                .ok_or_else(|| format!("ctl:{v}: expected option=value"))?;
            if !CTL_OPTIONS.contains(&option) {
                return Err(format!(
                    "unsupported ctl:{option}; supported: {}",
                    CTL_OPTIONS.join(", ")
                ));
            }
            Action::Ctl {
                option: option.to_owned(),
                value: arg.to_owned(),
            }
        }
        "initcol" => Action::InitCol(need(value)?),
        "expirevar" => Action::ExpireVar(need(value)?),
        "status" => {
            let v = need(value)?;
            Action::Status(
                v.trim()
                    .parse()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| format!("status:{v}: expected an HTTP status"))?,
            )
        }
        "block" | "deny" | "drop" | "pass" | "allow" | "redirect" => {
            Action::Disruptive(name.to_owned())
        }
        "log" | "nolog" | "auditlog" | "noauditlog" => Action::Logging(name.to_owned()),
        "msg" | "logdata" | "tag" | "ver" | "rev" | "severity" | "maturity" | "accuracy" => {
            Action::Meta {
                name: name.to_owned(),
                value: need(value)?,
            }
        }
        other => return Err(format!("unsupported action {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn targets_with_counts_exclusions_and_selectors() {
        let t = parse_targets(
            "ARGS|!REQUEST_COOKIES:/__utm/|&TX:'/WEB_ATTACK/'|REQUEST_HEADERS:User-Agent|XML://@*",
        )
        .unwrap();
        assert_eq!(t[0].selector, Selector::All);
        assert!(t[1].exclude && t[1].selector == Selector::Regex("__utm".into()));
        assert!(t[2].count && t[2].selector == Selector::Regex("WEB_ATTACK".into()));
        assert_eq!(t[3].selector, Selector::Key("User-Agent".into()));
        assert_eq!(t[4].selector, Selector::XPath("//@*".into()));
        let e = parse_targets("ARGS|NOPE").unwrap_err();
        assert!(e.contains("unsupported collection \"NOPE\""), "{e}");
    }

    #[test]
    fn operators_default_to_rx_and_unknown_ones_fail() {
        let o = parse_operator("!@within |GET| |HEAD|").unwrap();
        assert!(o.negated && o.name == "within" && o.arg == "|GET| |HEAD|");
        assert_eq!(parse_operator("^abc").unwrap().name, "rx");
        assert!(parse_operator("@verifyCC x")
            .unwrap_err()
            .contains("@verifyCC"));
    }

    #[test]
    fn actions_are_typed_and_unknown_ones_fail() {
        let a = parse_actions(
            "id:942100,phase:2,block,capture,t:none,t:urlDecodeUni,ctl:ruleRemoveTargetById=942100;ARGS:pass,\
             msg:'SQL Injection Attack Detected via libinjection',setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'",
        )
        .unwrap();
        assert_eq!(a[0], Action::Id(942100));
        assert_eq!(a[1], Action::Phase(2));
        assert_eq!(a[4], Action::Transform("none".into()));
        assert_eq!(
            a[6],
            Action::Ctl {
                option: "ruleRemoveTargetById".into(),
                value: "942100;ARGS:pass".into()
            }
        );
        assert!(parse_actions("id:1,t:rot13")
            .unwrap_err()
            .contains("t:rot13"));
        assert!(parse_actions("id:1,exec:/bin/sh")
            .unwrap_err()
            .contains("exec"));
        assert!(parse_actions("phase:7").is_err());
    }
}
