//! A rule set from its files: each file's directives in order, a `chain`ed rule's links
//! gathered under it, `SecMarker`s kept in place for `skipAfter`, `SecDefaultAction` per
//! phase, and the directives that change rules defined before them (`SecRuleRemove*`,
//! `SecRuleUpdateTargetBy*`, `SecRuleUpdateActionById`) applied as they come. Any
//! directive, collection, operator, transformation or action the engine does not
//! support fails the load with the file, the line and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{parse_actions, parse_targets, sec_action, sec_rule, Action, Rule};
use crate::operator::Compiled;
use crate::plan::{self, ChainPlan, Interner};
use crate::seclang::directives;

/// The directives a rule file may use.
pub const DIRECTIVES: &[&str] = &[
    "SecAction",
    "SecCollectionTimeout",
    "SecComponentSignature",
    "SecDefaultAction",
    "SecMarker",
    "SecRule",
    "SecRuleRemoveById",
    "SecRuleRemoveByMsg",
    "SecRuleRemoveByTag",
    "SecRuleUpdateActionById",
    "SecRuleUpdateTargetById",
    "SecRuleUpdateTargetByMsg",
    "SecRuleUpdateTargetByTag",
];

/// Why a rule set did not load: the file, the line, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A rule with the rules `chain`ed to it, where it was defined, each one's compiled
/// operator (the rule's first, then its links'; `None` for `SecAction`), and the plan the
/// engine runs it by. The plan is rebuilt by [`RuleSet::add_text`] whenever a directive
/// changes the chain or a `SecDefaultAction`: change rules through directives, not by
/// editing these fields.
#[derive(Clone, Debug)]
pub struct Chain {
    pub rule: Rule,
    pub links: Vec<Rule>,
    pub ops: Vec<Option<Arc<Compiled>>>,
    pub file: PathBuf,
    pub line: usize,
    pub(crate) plan: Box<ChainPlan>,
    /// The plan no longer says what the rules say.
    stale: bool,
}

/// One entry of a rule set, in order.
#[derive(Clone, Debug)]
pub enum Entry {
    Chain(Chain),
    Marker(String),
}

/// A loaded rule set.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub entries: Vec<Entry>,
    /// `SecDefaultAction` by phase (1 to 5).
    pub defaults: [Vec<Action>; 5],
    /// `SecComponentSignature`s.
    pub components: Vec<String>,
    /// What the chains' plans share.
    interner: Interner,
}

impl RuleSet {
    /// Loads `files` in order into one rule set.
    pub fn load(files: &[PathBuf]) -> Result<RuleSet, LoadError> {
        let mut set = RuleSet::default();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| LoadError {
                file: f.clone(),
                line: 0,
                message: e.to_string(),
            })?;
            set.add_text(f, &text)?;
        }
        Ok(set)
    }

    /// The transaction keys the plans name, by slot.
    pub(crate) fn tx_keys(&self) -> &plan::TxKeys {
        &self.interner.tx
    }

    /// Every rule (chain heads), in order.
    pub fn chains(&self) -> impl Iterator<Item = &Chain> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Chain(c) => Some(c),
            Entry::Marker(_) => None,
        })
    }

    /// Adds the directives of `text`, read from `file`, and brings the chains' plans up
    /// to date (also when a directive fails, so the set stays runnable).
    pub fn add_text(&mut self, file: &Path, text: &str) -> Result<(), LoadError> {
        let r = self.add_directives(file, text);
        self.replan();
        r
    }

    /// Rebuilds the plans of the chains marked stale.
    fn replan(&mut self) {
        let Self {
            entries,
            defaults,
            interner,
            ..
        } = self;
        for e in entries {
            if let Entry::Chain(c) = e {
                if c.stale {
                    *c.plan = plan::chain(&c.rule, &c.links, defaults, interner);
                    c.stale = false;
                }
            }
        }
    }

    fn add_directives(&mut self, file: &Path, text: &str) -> Result<(), LoadError> {
        let err = |line: usize, message: String| LoadError {
            file: file.to_owned(),
            line,
            message,
        };
        let ds = directives(text).map_err(|e| err(e.line, e.message))?;
        // A chain still open (its last rule had `chain`).
        let mut open: Option<Chain> = None;
        for d in ds {
            let arg = |i: usize| d.args.get(i).map(String::as_str);
            let want = |n: std::ops::RangeInclusive<usize>| {
                if n.contains(&d.args.len()) {
                    Ok(())
                } else {
                    Err(err(
                        d.line,
                        format!(
                            "{} takes {} to {} arguments, got {}",
                            d.name,
                            n.start(),
                            n.end(),
                            d.args.len()
                        ),
                    ))
                }
            };
            if open.is_some() && d.name != "SecRule" {
                return Err(err(
                    d.line,
                    format!(
                        "{}: the rule before ends with `chain`, so a SecRule must follow",
                        d.name
                    ),
                ));
            }
            match d.name.as_str() {
                "SecRule" | "SecAction" => {
                    let rule = if d.name == "SecRule" {
                        want(2..=3)?;
                        sec_rule(&d.args[0], &d.args[1], arg(2))
                    } else {
                        want(1..=1)?;
                        sec_action(&d.args[0])
                    }
                    .map_err(|m| err(d.line, m))?;
                    let dir = file.parent().unwrap_or(Path::new("."));
                    let op = rule
                        .operator
                        .as_ref()
                        .map(|o| Compiled::new(o, dir).map(Arc::new))
                        .transpose()
                        .map_err(|m| err(d.line, m))?;
                    let chained = rule.chained();
                    match open.take() {
                        Some(mut c) => {
                            c.links.push(rule);
                            c.ops.push(op);
                            if chained {
                                open = Some(c);
                            } else {
                                self.entries.push(Entry::Chain(c));
                            }
                        }
                        None => {
                            if rule.id().is_none() {
                                return Err(err(d.line, "a rule needs an id action".into()));
                            }
                            if rule.phase().is_none() {
                                return Err(err(d.line, "a rule needs a phase action".into()));
                            }
                            let c = Chain {
                                rule,
                                links: Vec::new(),
                                ops: vec![op],
                                file: file.to_owned(),
                                line: d.line,
                                plan: Box::default(),
                                stale: true,
                            };
                            if chained {
                                open = Some(c);
                            } else {
                                self.entries.push(Entry::Chain(c));
                            }
                        }
                    }
                }
                "SecMarker" => {
                    want(1..=1)?;
                    self.entries.push(Entry::Marker(d.args[0].clone()));
                }
                "SecDefaultAction" => {
                    want(1..=1)?;
                    let actions = parse_actions(&d.args[0]).map_err(|m| err(d.line, m))?;
                    let phase = actions
                        .iter()
                        .find_map(|a| match a {
                            Action::Phase(p) => Some(*p),
                            _ => None,
                        })
                        .ok_or_else(|| err(d.line, "SecDefaultAction needs a phase".into()))?;
                    self.defaults[usize::from(phase - 1)] = actions;
                    // Every chain's transformations and `block` may read the defaults.
                    for e in &mut self.entries {
                        if let Entry::Chain(c) = e {
                            c.stale = true;
                        }
                    }
                }
                "SecComponentSignature" => {
                    want(1..=1)?;
                    self.components.push(d.args[0].clone());
                }
                "SecCollectionTimeout" => {
                    want(1..=1)?;
                    d.args[0].parse::<u64>().map_err(|_| {
                        err(
                            d.line,
                            format!("SecCollectionTimeout {}: not seconds", d.args[0]),
                        )
                    })?;
                }
                "SecRuleRemoveById" => {
                    let ids = id_ranges(&d.args).map_err(|m| err(d.line, m))?;
                    self.entries.retain(|e| match e {
                        Entry::Chain(c) => !c.rule.id().is_some_and(|id| in_ranges(&ids, id)),
                        Entry::Marker(_) => true,
                    });
                }
                "SecRuleRemoveByTag" | "SecRuleRemoveByMsg" => {
                    want(1..=1)?;
                    let by_tag = d.name == "SecRuleRemoveByTag";
                    let needle = d.args[0].clone();
                    self.entries.retain(|e| match e {
                        Entry::Chain(c) => !matches_meta(&c.rule, by_tag, &needle),
                        Entry::Marker(_) => true,
                    });
                }
                "SecRuleUpdateTargetById"
                | "SecRuleUpdateTargetByTag"
                | "SecRuleUpdateTargetByMsg" => {
                    want(2..=3)?;
                    if d.args.len() == 3 {
                        return Err(err(
                            d.line,
                            format!(
                                "{}: replacing a target is not supported; add or exclude targets",
                                d.name
                            ),
                        ));
                    }
                    let targets = parse_targets(&d.args[1]).map_err(|m| err(d.line, m))?;
                    let select = &d.args[0];
                    let ids = if d.name == "SecRuleUpdateTargetById" {
                        Some(id_ranges(std::slice::from_ref(select)).map_err(|m| err(d.line, m))?)
                    } else {
                        None
                    };
                    for e in &mut self.entries {
                        let Entry::Chain(c) = e else { continue };
                        let hit = match &ids {
                            Some(ids) => c.rule.id().is_some_and(|id| in_ranges(ids, id)),
                            None => matches_meta(&c.rule, d.name.ends_with("Tag"), select),
                        };
                        if hit {
                            c.rule.targets.extend(targets.iter().cloned());
                            c.stale = true;
                        }
                    }
                }
                "SecRuleUpdateActionById" => {
                    want(2..=2)?;
                    let ids =
                        id_ranges(std::slice::from_ref(&d.args[0])).map_err(|m| err(d.line, m))?;
                    let actions = parse_actions(&d.args[1]).map_err(|m| err(d.line, m))?;
                    for e in &mut self.entries {
                        let Entry::Chain(c) = e else { continue };
                        if c.rule.id().is_some_and(|id| in_ranges(&ids, id)) {
                            update_actions(&mut c.rule, &actions);
                            c.stale = true;
                        }
                    }
                }
                other => {
                    return Err(err(
                        d.line,
                        format!(
                            "unsupported directive {other}; supported: {}",
                            DIRECTIVES.join(", ")
                        ),
                    ))
                }
            }
        }
        if let Some(c) = open {
            return Err(err(
                c.line,
                "the file ends inside a chain (its last rule has `chain`)".into(),
            ));
        }
        Ok(())
    }
}

/// ModSecurity's update: the new disruptive action replaces the old one, transformations
/// given replace the old list, anything else is added or replaces its namesake.
fn update_actions(rule: &mut Rule, new: &[Action]) {
    let disruptive = new.iter().any(|a| matches!(a, Action::Disruptive(_)));
    let transforms = new.iter().any(|a| matches!(a, Action::Transform(_)));
    rule.actions.retain(|a| match a {
        Action::Disruptive(_) => !disruptive,
        Action::Transform(_) => !transforms,
        _ => true,
    });
    rule.actions.extend(new.iter().cloned());
}

fn matches_meta(rule: &Rule, tag: bool, needle: &str) -> bool {
    let want = if tag { "tag" } else { "msg" };
    rule.actions.iter().any(|a| match a {
        Action::Meta { name, value } => name == want && value == needle,
        _ => false,
    })
}

/// Ids and ranges (`941000-942999`), separated by blanks or commas.
fn id_ranges(args: &[String]) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    for word in args.iter().flat_map(|a| a.split([',', ' '])) {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        let parse = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| {
                format!("{word:?}: expected a rule id or a range such as 941000-942999")
            })
        };
        out.push(match word.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let id = parse(word)?;
                (id, id)
            }
        });
    }
    if out.is_empty() {
        return Err("no rule id given".into());
    }
    Ok(out)
}

fn in_ranges(ranges: &[(u64, u64)], id: u64) -> bool {
    ranges.iter().any(|(a, b)| (*a..=*b).contains(&id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn load(text: &str) -> Result<RuleSet, LoadError> {
        let mut s = RuleSet::default();
        s.add_text(Path::new("rules.conf"), text).map(|()| s)
    }

    #[test]
    fn chains_markers_defaults_and_updates() {
        let s = load(
            "SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
             SecRule ARGS \"@rx a\" \"id:1,phase:2,block,chain\"\n\
             \tSecRule MATCHED_VAR \"@rx b\" \"t:none\"\n\
             SecMarker \"END-1\"\n\
             SecRule ARGS \"@rx c\" \"id:2,phase:2,block,tag:'attack-sqli'\"\n\
             SecRuleUpdateTargetById 2 \"!ARGS:password\"\n\
             SecRuleUpdateActionById 1 \"deny,status:403\"\n",
        )
        .unwrap();
        let chains: Vec<&Chain> = s.chains().collect();
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].links.len(), 1);
        assert!(chains[0]
            .rule
            .actions
            .contains(&Action::Disruptive("deny".into())));
        assert!(!chains[0]
            .rule
            .actions
            .contains(&Action::Disruptive("block".into())));
        assert!(chains[1].rule.targets.iter().any(|t| t.exclude));
        assert!(matches!(&s.entries[1], Entry::Marker(m) if m == "END-1"));
        assert_eq!(chains[0].ops.len(), 2);
        assert_eq!(s.defaults[1].len(), 4);
        let s = load("SecRule ARGS \"@rx c\" \"id:941100,phase:2,tag:'x'\"\nSecRuleRemoveById 941000-942999\n").unwrap();
        assert_eq!(s.chains().count(), 0);
    }

    #[test]
    fn unsupported_input_fails_with_file_and_line() {
        let e = load("SecRule ARGS \"@rx a\" \"id:1,phase:2\"\n\nSecRuleEngine On\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string()
                .starts_with("rules.conf:3: unsupported directive SecRuleEngine"),
            "{e}"
        );
        let e = load("SecRule ARGS \"@verifyCC x\" \"id:1,phase:2\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rules.conf:1: unsupported operator @verifyCC"),
            "{e}"
        );
        let e = load("SecRule ARGS \"@rx (a\" \"id:1,phase:2\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rules.conf:1: @rx \"(a\" does not compile"),
            "{e}"
        );
        let e = load("SecRule ARGS \"@rx a\" \"id:1,phase:2,chain\"\n").unwrap_err();
        assert!(e.message.contains("inside a chain"), "{e}");
        let e = load("SecRule ARGS \"@rx a\" \"phase:2\"\n").unwrap_err();
        assert!(e.message.contains("needs an id"), "{e}");
    }
}
