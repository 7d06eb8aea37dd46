//! A chain's compiled form: what the engine would otherwise work out from each rule's
//! actions on every request (id, phase, tags, paranoia level, logging, `skipAfter`, the
//! disruptive status, the transformation list with the phase's defaults, the flags), and
//! each target's `TX` key in lower case and selector regex compiled. `load` builds it
//! whenever a directive adds or changes a rule or a `SecDefaultAction`; the engine only
//! reads it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Action, Rule, Selector, COLLECTIONS};

/// One chain's plan: the head's metadata, then a [`RulePlan`] per rule (head, links).
#[derive(Clone, Debug, Default)]
pub struct ChainPlan {
    /// The head's `id` (0 without one).
    pub id: u64,
    /// The head's `phase`.
    pub phase: Option<u8>,
    /// Whether the head logs (no `nolog`).
    pub logged: bool,
    /// The CRS paranoia level, from a `paranoia-level/N` tag (0 without one).
    pub paranoia: u8,
    /// The head's `tag`s.
    pub tags: Vec<String>,
    /// The head's last `skipAfter` marker.
    pub skip_after: Option<String>,
    /// The status the chain stops the request with when it matches (`deny`, `drop`,
    /// `redirect`; `block` as its phase's `SecDefaultAction` says), `None` if it does not.
    pub disruption: Option<u16>,
    pub rules: Vec<RulePlan>,
}

/// One rule's plan.
#[derive(Clone, Debug, Default)]
pub struct RulePlan {
    /// The phase's default transformations and the rule's, `t:none` clearing the ones
    /// before it.
    pub transforms: Vec<String>,
    /// A number for that list, equal for equal lists within a rule set: the per-request
    /// cache of transformed values is keyed by it.
    pub transforms_id: u32,
    pub negated: bool,
    pub multi: bool,
    pub capture: bool,
    /// The `setvar` and `ctl` actions to run when it matches, in order.
    pub acts: Vec<Act>,
    /// Per target of the rule, in order.
    pub targets: Vec<TargetPlan>,
}

/// One target's plan.
#[derive(Clone, Debug, Default)]
pub struct TargetPlan {
    /// Where its variables come from.
    pub source: Source,
    /// `TX:key`'s key in lower case (the transaction's keys are kept so).
    pub tx_key: Option<String>,
    /// That key's slot in the transaction ([`TxKeys`]).
    pub tx_slot: Option<u32>,
    /// A `/re/` selector compiled (case-insensitive); `None` for other selectors and for
    /// a regex that does not compile (the engine's fallback then selects nothing, as
    /// before).
    pub regex: Option<Arc<regex::Regex>>,
}

/// A non-disruptive action a matching rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    SetVar(SetVar),
    Ctl { option: String, value: String },
}

/// A `setvar` as far as it is known before the request: the whole text when its name
/// holds a macro, otherwise the name read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetVar {
    /// The name has a macro: expanded and read when it runs.
    Dynamic(String),
    /// `tx.name`: `!` (delete) or the value after the first `=` (empty without one),
    /// which may hold macros (`value_macros`), and the name's slot.
    Tx {
        slot: u32,
        delete: bool,
        value: String,
        value_macros: bool,
    },
    /// A collection other than `tx` (`ip`, `global`): not kept.
    Ignored,
}

/// The transaction keys a rule set names (`TX:key` targets, `setvar:tx.key` without a
/// macro in the name), each with a slot number, so the engine keeps their values in a
/// vector rather than searching a map by text. Keys are in lower case.
#[derive(Clone, Debug, Default)]
pub struct TxKeys {
    slots: HashMap<String, u32>,
    names: Vec<String>,
    /// The slots in the order of their keys.
    order: Vec<u32>,
}

impl TxKeys {
    /// The slot of `key` (lower case), added if new.
    pub fn intern(&mut self, key: &str) -> u32 {
        if let Some(i) = self.slots.get(key) {
            return *i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let names = &self.names;
        let at = self
            .order
            .partition_point(|j| names.get(*j as usize).map_or("", String::as_str) < key);
        self.order.insert(at, i);
        self.slots.insert(key.to_owned(), i);
        self.names.push(key.to_owned());
        i
    }

    /// The slots in the order of their keys.
    pub fn ordered(&self) -> &[u32] {
        &self.order
    }

    /// The slot of `key` (lower case), if the rule set names it.
    pub fn slot(&self, key: &str) -> Option<u32> {
        self.slots.get(key).copied()
    }

    /// The key of slot `i`.
    pub fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", String::as_str)
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where a target's variables come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Not planned: found from the collection's name when used.
    #[default]
    Unplanned,
    Tx,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    /// A collection of the request, by its position in [`COLLECTIONS`].
    Request(usize),
    /// A collection of the request not in [`COLLECTIONS`] (a macro may name one).
    Other,
}

/// Where the collection `name` (upper case) comes from.
pub fn source(name: &str) -> Source {
    match name {
        "TX" => Source::Tx,
        "MATCHED_VAR" => Source::MatchedVar,
        "MATCHED_VAR_NAME" => Source::MatchedVarName,
        "MATCHED_VARS" => Source::MatchedVars,
        "MATCHED_VARS_NAMES" => Source::MatchedVarsNames,
        c => COLLECTIONS
            .iter()
            .position(|x| *x == c)
            .map_or(Source::Other, Source::Request),
    }
}

/// What plans share across a rule set: transformation lists by number, selector regexes
/// by text (compiled once however often plans are rebuilt).
#[derive(Clone, Debug, Default)]
pub struct Interner {
    lists: HashMap<Vec<String>, u32>,
    regexes: HashMap<String, Option<Arc<regex::Regex>>>,
    pub tx: TxKeys,
}

/// The plan of the chain `head` + `links`, with `defaults` (`SecDefaultAction` by phase).
pub fn chain(
    head: &Rule,
    links: &[Rule],
    defaults: &[Vec<Action>; 5],
    interner: &mut Interner,
) -> ChainPlan {
    let tags: Vec<String> = head.tags().map(str::to_owned).collect();
    let phase = head.phase();
    ChainPlan {
        id: head.id().unwrap_or(0),
        phase,
        logged: !head
            .actions
            .iter()
            .any(|a| matches!(a, Action::Logging(l) if l == "nolog")),
        paranoia: tags
            .iter()
            .find_map(|t| t.strip_prefix("paranoia-level/")?.parse().ok())
            .unwrap_or(0),
        tags,
        skip_after: head.actions.iter().rev().find_map(|a| match a {
            Action::SkipAfter(m) => Some(m.clone()),
            _ => None,
        }),
        disruption: phase.and_then(|p| disruption(head, defaults, p)),
        rules: std::iter::once(head)
            .chain(links)
            .map(|r| rule(r, defaults, interner))
            .collect(),
    }
}

fn rule(rule: &Rule, defaults: &[Vec<Action>; 5], interner: &mut Interner) -> RulePlan {
    let transforms = transforms(rule, defaults);
    let next = u32::try_from(interner.lists.len()).unwrap_or(u32::MAX);
    let transforms_id = *interner.lists.entry(transforms.clone()).or_insert(next);
    RulePlan {
        transforms,
        transforms_id,
        negated: rule.operator.as_ref().is_some_and(|o| o.negated),
        multi: rule.actions.contains(&Action::MultiMatch),
        capture: rule.actions.contains(&Action::Capture),
        acts: rule
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::SetVar(spec) => Some(Act::SetVar(setvar(spec, &mut interner.tx))),
                Action::Ctl { option, value } => Some(Act::Ctl {
                    option: option.clone(),
                    value: value.clone(),
                }),
                _ => None,
            })
            .collect(),
        targets: rule
            .targets
            .iter()
            .map(|t| {
                let tx_key = match &t.selector {
                    Selector::Key(k) if t.collection == "TX" => Some(k.to_ascii_lowercase()),
                    _ => None,
                };
                TargetPlan {
                    source: source(&t.collection),
                    tx_slot: tx_key.as_deref().map(|k| interner.tx.intern(k)),
                    tx_key,
                    regex: match &t.selector {
                        Selector::Regex(re) => interner
                            .regexes
                            .entry(re.clone())
                            .or_insert_with(|| selector_regex(re).map(Arc::new))
                            .clone(),
                        _ => None,
                    },
                }
            })
            .collect(),
    }
}

/// A `setvar`'s plan: its name read as the engine reads it after expanding macros, when
/// expanding cannot change the name (no `%{` before the first `=`, so the first `=` and
/// a leading `!` are the same before and after).
pub fn setvar(spec: &str, keys: &mut TxKeys) -> SetVar {
    let (name, value) = spec.split_once('=').unwrap_or((spec, ""));
    if name.contains("%{") {
        return SetVar::Dynamic(spec.to_owned());
    }
    let (delete, name) = match name.strip_prefix('!') {
        Some(n) => (true, n),
        None => (false, name),
    };
    let name = name.trim();
    match (name.get(..3), name.get(3..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("tx.") => SetVar::Tx {
            slot: keys.intern(&rest.to_ascii_lowercase()),
            delete,
            value: value.to_owned(),
            value_macros: value.contains("%{"),
        },
        _ => SetVar::Ignored,
    }
}

/// A selector regex as the engine matches keys with it: case-insensitive.
pub fn selector_regex(re: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(re)
        .case_insensitive(true)
        .build()
        .ok()
}

/// The phase's default transformations and the rule's (a link without a `phase` takes
/// phase 2's), `t:none` clearing the ones before it.
fn transforms(rule: &Rule, defaults: &[Vec<Action>; 5]) -> Vec<String> {
    let phase = rule.phase().unwrap_or(2);
    let defaults = &defaults[usize::from(phase.clamp(1, 5) - 1)];
    let mut out = Vec::new();
    for a in defaults.iter().chain(&rule.actions) {
        if let Action::Transform(t) = a {
            if t == "none" {
                out.clear();
            } else {
                out.push(t.clone());
            }
        }
    }
    out
}

/// The status of the rule's disruptive action in `phase`, if it stops the request:
/// `deny`, `drop` and `redirect` (its `status`, 403 by default); `block` does what the
/// phase's `SecDefaultAction` does.
fn disruption(rule: &Rule, defaults: &[Vec<Action>; 5], phase: u8) -> Option<u16> {
    let status = |actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::Status(s) => Some(*s),
            _ => None,
        })
    };
    let mut action = rule.actions.iter().find_map(|a| match a {
        Action::Disruptive(d) => Some((d.as_str(), status(&rule.actions))),
        _ => None,
    })?;
    if action.0 == "block" {
        let defaults = &defaults[usize::from(phase.clamp(1, 5) - 1)];
        action = defaults
            .iter()
            .find_map(|a| match a {
                Action::Disruptive(d) => Some((d.as_str(), status(defaults))),
                _ => None,
            })
            .unwrap_or(("pass", None));
    }
    match action {
        ("deny" | "drop" | "redirect", s) => Some(s.unwrap_or(403)),
        _ => None,
    }
}
