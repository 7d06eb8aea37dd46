//! Running a rule set over one request, as ModSecurity v2 runs it: the phases in order,
//! each rule of the phase in file order; a rule's targets resolved from the request's
//! collections (exclusions removed), transformed, and tested by its operator; a chain
//! matching only when every link does; `setvar`, `capture` and `ctl` of each rule that
//! matches, once per variable that matched; `skipAfter` and the disruptive action of a chain that matches; `%{...}`
//! macros expanded against the transaction. This is the engine CRS's anomaly scoring
//! runs on: the rules add to `tx` scores, and the blocking rules (949110) deny.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::load::{Chain, Entry, RuleSet};
use crate::model::{Rule, Selector, Target, COLLECTIONS};
use crate::operator::Compiled;
use crate::plan::{Act, ChainPlan, RulePlan, SetVar, Source, TargetPlan, TxKeys};
use crate::transform;

/// Whether a match blocks (`On`) or is only recorded (`DetectionOnly`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    On,
    DetectionOnly,
}

/// The request as the WAF sees it: named variables by collection, built by the caller
/// from exactly what will be forwarded.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Collection name (upper case) → (key, value) in order; scalars have an empty key.
    pub vars: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

impl Request {
    /// Adds `key`=`value` to `collection`.
    pub fn add(&mut self, collection: &str, key: &str, value: impl Into<Vec<u8>>) {
        self.vars
            .entry(collection.to_owned())
            .or_default()
            .push((key.to_owned(), value.into()));
    }

    /// Sets the scalar variable `name`.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.vars
            .insert(name.to_owned(), vec![(String::new(), value.into())]);
    }
}

/// One chain that matched: its id, whether it logs, its paranoia level (the CRS
/// `paranoia-level/N` tag; 0 without one), the targets that matched, and the first
/// matched value after transformations (at most [`EXCERPT_BYTES`]; callers decide
/// whether it may be shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub id: u64,
    pub logged: bool,
    pub paranoia: u8,
    pub targets: Vec<String>,
    pub value: Vec<u8>,
}

/// How much of a matched value a [`Hit`] keeps.
pub const EXCERPT_BYTES: usize = 64;

/// The outcome of a request's inspection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub hits: Vec<Hit>,
    /// The status a disruptive action chose (`None`: the request goes on).
    pub block: Option<u16>,
    /// The rule that blocked (or would have, in detection mode).
    pub decided_by: Option<u64>,
    /// The inbound anomaly score CRS computed (`tx.blocking_inbound_anomaly_score` in
    /// CRS 4, `tx.anomaly_score` in CRS 3; 0 when the rule set keeps neither).
    pub score: i64,
}

/// Which rules a removed target applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Rules whose id is in the range (inclusive).
    Ids(u64, u64),
    /// Rules with this tag.
    Tag(String),
    /// Every rule.
    All,
}

/// What a caller applies to one request before any rule runs (the load balancer's
/// per-route policy), with the effect of `ctl:ruleRemoveById`, `ctl:ruleRemoveByTag`,
/// `ctl:ruleRemoveTargetById/ByTag` and `setvar:tx.*` in a rule that runs first.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub remove_ids: Vec<(u64, u64)>,
    pub remove_tags: Vec<String>,
    pub remove_targets: Vec<(Scope, Target)>,
    /// Transaction variables (lower-case names without `tx.`) set before phase 1.
    pub tx: Vec<(String, Vec<u8>)>,
}

/// A transaction's state while the phases run.
struct Tx<'a> {
    set: &'a RuleSet,
    req: &'a Request,
    tx: TxVars<'a>,
    /// `MATCHED_VAR` and `MATCHED_VAR_NAME`: an index into `matched_vars`, which change
    /// together (a rule that matched sets both), so the hit is not copied twice.
    matched_var: usize,
    matched_vars: Vec<(String, Vec<u8>)>,
    removed_ids: Vec<(u64, u64)>,
    removed_tags: HashSet<String>,
    removed_targets: Vec<(Scope, Target)>,
    engine_off: bool,
    /// Transformed request values, by (value address, length, transformation list's
    /// number, [`RulePlan::transforms_id`]): the request's values do not change during a
    /// transaction, and many rules apply the same transformations to the same variables.
    transformed: Transformed,
    /// The request's collections by position in [`COLLECTIONS`], each found in
    /// `Request::vars` the first time a rule reads it.
    collections: Vec<OnceCell<Option<&'a Pairs>>>,
    /// The resolved variables of the rule running (kept for its allocation).
    vars: Vec<(VarName<'a, 'a>, Cow<'a, [u8]>)>,
}

/// The transaction's variables, keys in lower case: the keys the rule set names
/// ([`TxKeys`]) in a vector by slot, any other key (one a macro makes, a capture's, a
/// caller's) in a map. What a walk of `TX` sees is the same as one map would give.
struct TxVars<'a> {
    keys: &'a TxKeys,
    slots: Vec<Option<Vec<u8>>>,
    others: BTreeMap<String, Vec<u8>>,
}

impl<'a> TxVars<'a> {
    fn new(keys: &'a TxKeys) -> Self {
        TxVars {
            keys,
            slots: vec![None; keys.len()],
            others: BTreeMap::new(),
        }
    }

    /// The value of slot `i`.
    fn at(&self, i: u32) -> Option<&Vec<u8>> {
        self.slots.get(i as usize)?.as_ref()
    }

    /// Slot `i` itself (`None`: no such slot, which a plan of this rule set never names).
    fn slot_mut(&mut self, i: u32) -> Option<&mut Option<Vec<u8>>> {
        self.slots.get_mut(i as usize)
    }

    fn get(&self, key: &str) -> Option<&Vec<u8>> {
        match self.keys.slot(key) {
            Some(i) => self.at(i),
            None => self.others.get(key),
        }
    }

    fn insert(&mut self, key: &str, value: Vec<u8>) {
        match self
            .keys
            .slot(key)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            Some(slot) => *slot = Some(value),
            None => {
                self.others.insert(key.to_owned(), value);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        match self
            .keys
            .slot(key)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            Some(slot) => *slot = None,
            None => {
                self.others.remove(key);
            }
        }
    }

    /// Every (key, value), in key order: the slots in their keys' order merged with the
    /// map (a key is in one or the other).
    fn sorted(&self) -> Vec<(&str, &Vec<u8>)> {
        let mut others = self.others.iter().map(|(k, v)| (k.as_str(), v)).peekable();
        let mut all = Vec::new();
        for i in self.keys.ordered() {
            let Some(v) = self.at(*i) else {
                continue;
            };
            let k = self.keys.name(*i);
            while let Some(o) = others.next_if(|(o, _)| *o < k) {
                all.push(o);
            }
            all.push((k, v));
        }
        all.extend(others);
        all
    }
}

/// A variable that matched: its name, its value after the transformations, and the
/// captures (for a rule with `capture`).
type Matched = (String, Vec<u8>, Vec<Vec<u8>>);

/// Variables as a request keeps them: (key, value) pairs.
type Pairs = [(String, Vec<u8>)];

/// The transformed-value cache: (address, length, list number) → value (`None`: the
/// same as before the transformations).
type Transformed = HashMap<(usize, usize, u32), Option<Rc<[u8]>>, BuildHasherDefault<KeyHasher>>;

/// The hasher of the transformed-value cache, whose keys are a value's address and
/// length and a list's number: a multiply-rotate (FxHash's) rather than SipHash, as no
/// client chooses addresses.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Runs phases 1 and 2 (the request) of `set` over `req`.
pub fn inspect(set: &RuleSet, req: &Request, mode: Mode) -> Outcome {
    inspect_with(set, req, mode, 2, &Policy::default())
}

/// Runs phases 1 to `last` of `set` over `req`; phases 3 and 4 read the response
/// variables (`RESPONSE_STATUS`, `RESPONSE_HEADERS`, `RESPONSE_BODY`, ...) the caller
/// has added to `req`.
pub fn inspect_phases(set: &RuleSet, req: &Request, mode: Mode, last: u8) -> Outcome {
    inspect_with(set, req, mode, last, &Policy::default())
}

/// [`inspect_phases`] with a caller's [`Policy`] applied first.
pub fn inspect_with(
    set: &RuleSet,
    req: &Request,
    mode: Mode,
    last: u8,
    policy: &Policy,
) -> Outcome {
    let mut t = Tx {
        set,
        req,
        tx: TxVars::new(set.tx_keys()),
        matched_var: 0,
        matched_vars: Vec::new(),
        removed_ids: policy.remove_ids.clone(),
        removed_tags: policy.remove_tags.iter().cloned().collect(),
        removed_targets: policy.remove_targets.clone(),
        engine_off: false,
        transformed: HashMap::default(),
        collections: COLLECTIONS.iter().map(|_| OnceCell::new()).collect(),
        vars: Vec::new(),
    };
    for (k, v) in &policy.tx {
        t.tx.insert(&k.to_ascii_lowercase(), v.clone());
    }
    let mut out = run(&mut t, mode, last);
    out.score = ["blocking_inbound_anomaly_score", "anomaly_score"]
        .iter()
        .find_map(|k| t.tx.get(k))
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .unwrap_or(0);
    out
}

fn run(t: &mut Tx<'_>, mode: Mode, last: u8) -> Outcome {
    let set = t.set;
    let mut out = Outcome::default();
    for phase in 1..=last.min(4) {
        let mut skip_to: Option<&str> = None;
        for entry in &set.entries {
            if t.engine_off {
                return out;
            }
            let chain = match entry {
                Entry::Marker(m) => {
                    if skip_to == Some(m.as_str()) {
                        skip_to = None;
                    }
                    continue;
                }
                Entry::Chain(c) => c,
            };
            let plan = &chain.plan;
            if skip_to.is_some() || plan.phase != Some(phase) || t.removed(plan) {
                continue;
            }
            let Some((targets, mut value)) = t.run_chain(chain) else {
                continue;
            };
            value.truncate(EXCERPT_BYTES);
            out.hits.push(Hit {
                id: plan.id,
                logged: plan.logged,
                paranoia: plan.paranoia,
                targets,
                value,
            });
            if let Some(m) = &plan.skip_after {
                skip_to = Some(m.as_str());
            }
            // The plan's status is the one of the chain's own phase, which is this one.
            if let Some(status) = plan.disruption {
                out.decided_by = Some(plan.id);
                if mode == Mode::On {
                    out.block = Some(status);
                    return out;
                }
            }
        }
    }
    out
}

impl<'a> Tx<'a> {
    /// `MATCHED_VAR_NAME` and `MATCHED_VAR`: empty before any rule matched.
    fn matched(&self) -> (&str, &[u8]) {
        self.matched_vars
            .get(self.matched_var)
            .map_or(("", &[][..]), |(n, v)| (n.as_str(), v.as_slice()))
    }

    fn removed(&self, p: &ChainPlan) -> bool {
        self.removed_ids
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&p.id))
            || (!self.removed_tags.is_empty()
                && p.tags.iter().any(|t| self.removed_tags.contains(t)))
    }

    /// Runs a chain: the names of the targets of its first rule that matched and the
    /// first value that matched, if every link matched.
    fn run_chain(&mut self, c: &'a Chain) -> Option<(Vec<String>, Vec<u8>)> {
        let id = c.plan.id;
        // Targets removed from this chain by id, tag or for every rule.
        let removed: Vec<Target> = if self.removed_targets.is_empty() {
            Vec::new()
        } else {
            self.removed_targets
                .iter()
                .filter(|(scope, _)| match scope {
                    Scope::Ids(a, b) => (*a..=*b).contains(&id),
                    Scope::Tag(tag) => c.plan.tags.iter().any(|t| t == tag),
                    Scope::All => true,
                })
                .map(|(_, t)| t.clone())
                .collect()
        };
        let mut first = None;
        // The plan has one entry per rule: `RuleSet::add_text` rebuilds it after every
        // directive that adds or changes rules.
        let rules = std::iter::once(&c.rule).chain(&c.links).zip(&c.plan.rules);
        for (i, (rule, plan)) in rules.enumerate() {
            let op = c.ops.get(i).and_then(|o| o.as_deref());
            let hits = self.run_rule(rule, plan, op, &removed);
            if hits.is_empty() {
                return None;
            }
            // What the hit reports comes from the first link: the others' is not kept.
            if first.is_none() {
                let names: Vec<String> = hits.iter().map(|(n, _, _)| n.clone()).collect();
                let value = hits.first().map(|(_, v, _)| v.clone()).unwrap_or_default();
                first = Some((names, value));
            }
            // Refilled in place: the vector keeps its allocation across rules. The hits
            // move in; their captures stay here.
            self.matched_vars.clear();
            let mut captures = Vec::with_capacity(hits.len());
            for (name, value, caps) in hits {
                self.matched_vars.push((name, value));
                captures.push(caps);
            }
            // As ModSecurity: the rule's non-disruptive actions run once per variable
            // that matched, each with its own MATCHED_VAR and captures.
            for (i, caps) in captures.into_iter().enumerate() {
                self.matched_var = i;
                if plan.capture {
                    for (k, v) in caps.into_iter().enumerate() {
                        self.tx.insert(&k.to_string(), v);
                    }
                }
                if !plan.acts.is_empty() {
                    self.actions(&plan.acts);
                }
            }
        }
        first
    }

    /// The targets of `rule` that match, with their values and captures (captures only
    /// for a rule with `capture`, the only one that reads them).
    fn run_rule(
        &mut self,
        rule: &'a Rule,
        plan: &'a RulePlan,
        op: Option<&Compiled>,
        removed: &[Target],
    ) -> Vec<Matched> {
        let Some(op) = op else {
            // SecAction: always matches.
            return vec![(String::new(), Vec::new(), Vec::new())];
        };
        let transforms = &plan.transforms;
        if let Some(hit) = self.run_tx_key(rule, plan, op, removed) {
            return hit.into_iter().collect();
        }
        let mut out = Vec::new();
        // The variables go through a buffer the transaction keeps, not one per rule.
        let mut vars = std::mem::take(&mut self.vars);
        self.resolve(&rule.targets, &plan.targets, removed, &mut vars);
        for (name, value) in vars.drain(..) {
            if plan.multi {
                // Each step is tested (no cache), but only when it changed the value, as
                // ModSecurity does: the operator answers from the value and `tx`, which no
                // step changes, so an unchanged value would be answered the same again.
                let mut v: Cow<'_, [u8]> = Cow::Borrowed(&value);
                let mut result = self.test(op, &v, plan);
                for t in transforms {
                    let Some(next) = transform::apply(t, &v) else {
                        continue;
                    };
                    if same(&next, &v) {
                        continue;
                    }
                    v = Cow::Owned(next.into_owned());
                    if result.is_none() {
                        result = self.test(op, &v, plan);
                    }
                }
                if let Some(caps) = result {
                    out.push((name.full(), v.into_owned(), caps));
                }
                continue;
            }
            if transforms.is_empty() {
                if let Some(caps) = self.test(op, &value, plan) {
                    out.push((name.full(), value.into_owned(), caps));
                }
                continue;
            }
            let v: Option<Rc<[u8]>> = match &value {
                Cow::Borrowed(b) => {
                    let key = (b.as_ptr() as usize, b.len(), plan.transforms_id);
                    match self.transformed.get(&key) {
                        Some(v) => v.clone(),
                        None => {
                            let v = match apply_all(transforms, b) {
                                Cow::Borrowed(_) => None,
                                Cow::Owned(o) => Some(Rc::from(o)),
                            };
                            self.transformed.insert(key, v.clone());
                            v
                        }
                    }
                }
                Cow::Owned(o) => match apply_all(transforms, o) {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(t) => Some(Rc::from(t)),
                },
            };
            // `None`: the transformations left the value as it was.
            let v: &[u8] = v.as_deref().unwrap_or(&value);
            if let Some(caps) = self.test(op, v, plan) {
                out.push((name.full(), v.to_vec(), caps));
            }
        }
        self.vars = vars;
        out
    }

    /// A rule whose only target is a planned `TX:key` (not counted, not excluded, nothing
    /// removed), with no transformation and no `multiMatch`, run on the value where the
    /// transaction keeps it: what [`Tx::run_rule`] would find through [`Tx::resolve`],
    /// without copying the value to test it. `None`: not such a rule.
    fn run_tx_key(
        &self,
        rule: &'a Rule,
        plan: &'a RulePlan,
        op: &Compiled,
        removed: &[Target],
    ) -> Option<Option<Matched>> {
        let ([t], [tp]) = (rule.targets.as_slice(), plan.targets.as_slice()) else {
            return None;
        };
        let (Some(slot), Some(key)) = (tp.tx_slot, &tp.tx_key) else {
            return None;
        };
        if t.exclude
            || t.count
            || !removed.is_empty()
            || !plan.transforms.is_empty()
            || plan.multi
            || tp.source != Source::Tx
        {
            return None;
        }
        let Some(v) = self.tx.at(slot) else {
            return Some(None);
        };
        Some(self.test(op, v, plan).map(|caps| {
            let name = VarName::Var(&t.collection, Cow::Borrowed(key.as_str())).full();
            (name, v.clone(), caps)
        }))
    }

    /// Whether `v` passes the operator (negation applied), with the captures a rule
    /// with `capture` keeps: what matched, or for a negated operator the value. The
    /// captures are built only when the rule matches.
    fn test(&self, op: &Compiled, v: &[u8], plan: &RulePlan) -> Option<Vec<Vec<u8>>> {
        let expand = |s: &str| self.expand(s);
        if op.is_match(v, &expand) == plan.negated {
            return None;
        }
        if !plan.capture {
            Some(Vec::new())
        } else if plan.negated {
            Some(vec![v.to_vec()])
        } else {
            op.matches(v, &expand)
        }
    }

    /// The variables a target list names, exclusions (the rule's, and `removed` from
    /// `ctl` and the policy) taken out. Names are built only for the variables that match
    /// ([`VarName::full`]): most variables of most rules do not.
    fn resolve(
        &self,
        targets: &'a [Target],
        plans: &'a [TargetPlan],
        removed: &[Target],
        out: &mut Vec<(VarName<'a, 'a>, Cow<'a, [u8]>)>,
    ) {
        // A target's plan, if the rule's plan has one for it (it has one per target).
        let plan = |i: usize| -> &'a TargetPlan { plans.get(i).unwrap_or(&NO_PLAN) };
        let has_exclusions = !removed.is_empty() || targets.iter().any(|t| t.exclude);
        for (i, t) in targets.iter().enumerate().filter(|(_, t)| !t.exclude) {
            let mut n = 0usize;
            self.lookup_each(&t.collection, &t.selector, plan(i), &mut |k, v| {
                let excluded = has_exclusions
                    && (targets.iter().enumerate().any(|(j, x)| {
                        x.exclude
                            && x.collection == t.collection
                            && selects(&x.selector, plan(j), &k)
                    }) || removed.iter().any(|x| {
                        x.collection == t.collection && selects(&x.selector, &NO_PLAN, &k)
                    }));
                if excluded {
                    return;
                }
                if t.count {
                    n += 1;
                } else {
                    out.push((VarName::Var(&t.collection, k), v));
                }
            });
            if t.count {
                let n: Cow<'a, [u8]> = match SMALL_COUNTS.get(n) {
                    Some(digits) => Cow::Borrowed(digits),
                    None => Cow::Owned(n.to_string().into_bytes()),
                };
                out.push((VarName::Count(&t.collection), n));
            }
        }
    }

    /// The (key, value) pairs of a collection a selector picks: the request's values
    /// borrowed, the transaction's copied.
    fn lookup(&self, collection: &str, sel: &Selector) -> Vec<(Cow<'a, str>, Cow<'a, [u8]>)> {
        let mut out = Vec::new();
        self.lookup_each(collection, sel, &NO_PLAN, &mut |k, v| out.push((k, v)));
        out
    }

    /// [`Tx::lookup`] handing each pair to `f` in order, with the target's plan.
    fn lookup_each(
        &self,
        collection: &str,
        sel: &Selector,
        plan: &'a TargetPlan,
        f: &mut dyn FnMut(Cow<'a, str>, Cow<'a, [u8]>),
    ) {
        let source = match plan.source {
            Source::Unplanned => crate::plan::source(collection),
            s => s,
        };
        let pairs: Option<&'a Pairs> = match source {
            // Transaction keys are kept in lower case (`setvar` and the policy lower-case
            // them), so one key is a map lookup rather than a walk of the whole map.
            Source::Tx => {
                match sel {
                    Selector::Key(want) => match (&plan.tx_key, plan.tx_slot) {
                        // The key found is the planned key: borrowed from the plan.
                        (Some(k), Some(i)) => {
                            if let Some(v) = self.tx.at(i) {
                                f(Cow::Borrowed(k.as_str()), Cow::Owned(v.clone()));
                            }
                        }
                        _ => {
                            let want = want.to_ascii_lowercase();
                            if let Some(v) = self.tx.get(&want) {
                                let v = v.clone();
                                f(Cow::Owned(want), Cow::Owned(v));
                            }
                        }
                    },
                    _ => {
                        for (k, v) in self.tx.sorted() {
                            if selects(sel, plan, k) {
                                f(Cow::Owned(k.to_owned()), Cow::Owned(v.clone()));
                            }
                        }
                    }
                }
                return;
            }
            Source::MatchedVar => {
                f(Cow::Borrowed(""), Cow::Owned(self.matched().1.to_vec()));
                return;
            }
            Source::MatchedVarName => {
                f(
                    Cow::Borrowed(""),
                    Cow::Owned(self.matched().0.as_bytes().to_vec()),
                );
                return;
            }
            Source::MatchedVars => {
                for (n, v) in self
                    .matched_vars
                    .iter()
                    .filter(|(k, _)| selects(sel, plan, k))
                {
                    f(Cow::Owned(n.clone()), Cow::Owned(v.clone()));
                }
                return;
            }
            Source::MatchedVarsNames => {
                for (n, _) in self
                    .matched_vars
                    .iter()
                    .filter(|(k, _)| selects(sel, plan, k))
                {
                    f(Cow::Owned(n.clone()), Cow::Owned(n.clone().into_bytes()));
                }
                return;
            }
            Source::Request(i) => self.collection(i),
            Source::Other | Source::Unplanned => {
                let req: &'a Request = self.req;
                req.vars.get(collection).map(Vec::as_slice)
            }
        };
        for (k, v) in pairs.into_iter().flatten() {
            if selects(sel, plan, k) {
                f(Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_slice()));
            }
        }
    }

    /// The request's collection at position `i` of [`COLLECTIONS`].
    fn collection(&self, i: usize) -> Option<&'a Pairs> {
        let req: &'a Request = self.req;
        let find = || {
            let name = COLLECTIONS.get(i)?;
            req.vars.get(*name).map(Vec::as_slice)
        };
        match self.collections.get(i) {
            Some(cell) => *cell.get_or_init(find),
            None => find(),
        }
    }

    /// The non-disruptive actions of a rule that matched, from its plan.
    fn actions(&mut self, acts: &[Act]) {
        for a in acts {
            match a {
                Act::SetVar(SetVar::Dynamic(spec)) => self.setvar(spec),
                Act::SetVar(SetVar::Tx {
                    slot,
                    delete,
                    value,
                    value_macros,
                }) => self.setvar_slot(*slot, *delete, value, *value_macros),
                Act::SetVar(SetVar::Ignored) => {}
                Act::Ctl { option, value } => self.ctl(option, value),
            }
        }
    }

    /// A planned `setvar:tx.name=value` on the name's slot: as [`Tx::setvar`] does
    /// once the name is read.
    fn setvar_slot(&mut self, slot: u32, delete: bool, value: &str, value_macros: bool) {
        if delete {
            if let Some(s) = self.tx.slot_mut(slot) {
                *s = None;
            }
            return;
        }
        let value: Cow<'_, str> = if value_macros {
            Cow::Owned(self.expand(value))
        } else {
            Cow::Borrowed(value)
        };
        let new = assigned(self.tx.at(slot), &value);
        if let Some(s) = self.tx.slot_mut(slot) {
            *s = Some(new);
        }
    }

    /// `setvar:tx.name=value`, `=+n`, `=-n`, `!tx.name`; other collections (ip,
    /// global: persistent across requests in ModSecurity) are not kept.
    fn setvar(&mut self, spec: &str) {
        let spec: Cow<'_, str> = if spec.contains("%{") {
            Cow::Owned(self.expand(spec))
        } else {
            Cow::Borrowed(spec)
        };
        let (delete, spec) = match spec.strip_prefix('!') {
            Some(s) => (true, s),
            None => (false, spec.as_ref()),
        };
        let (name, value) = spec.split_once('=').unwrap_or((spec, ""));
        let name = name.trim();
        // `tx.` in any case, the rest lower-cased (ASCII only: the positions stay).
        let key = match (name.get(..3), name.get(3..)) {
            (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("tx.") => lower(rest),
            _ => return,
        };
        if delete {
            self.tx.remove(key.as_ref());
            return;
        }
        let new = assigned(self.tx.get(key.as_ref()), value);
        self.tx.insert(key.as_ref(), new);
    }

    fn ctl(&mut self, option: &str, value: &str) {
        match option {
            "ruleEngine" if value.eq_ignore_ascii_case("off") => self.engine_off = true,
            "ruleRemoveById" => {
                for w in value.split([',', ' ']).filter(|w| !w.is_empty()) {
                    let (a, b) = w.split_once('-').unwrap_or((w, w));
                    if let (Ok(a), Ok(b)) = (a.trim().parse(), b.trim().parse()) {
                        self.removed_ids.push((a, b));
                    }
                }
            }
            "ruleRemoveByTag" => {
                self.removed_tags.insert(value.to_owned());
            }
            "ruleRemoveTargetById" => {
                if let Some((rid, target)) = value.split_once(';') {
                    if let (Ok(rid), Ok(ts)) =
                        (rid.trim().parse(), crate::model::parse_targets(target))
                    {
                        self.removed_targets
                            .extend(ts.into_iter().map(|t| (Scope::Ids(rid, rid), t)));
                    }
                }
            }
            "ruleRemoveTargetByTag" => {
                if let Some((tag, target)) = value.split_once(';') {
                    if let Ok(ts) = crate::model::parse_targets(target) {
                        self.removed_targets
                            .extend(ts.into_iter().map(|t| (Scope::Tag(tag.to_owned()), t)));
                    }
                }
            }
            // Body processors, audit logging and the rest do not change the inspection
            // of what is already parsed.
            _ => {}
        }
    }

    /// `%{collection.key}` and `%{VARIABLE}` macros.
    fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &rest[start + 2..start + end];
            out.push_str(&String::from_utf8_lossy(&self.macro_value(name)));
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn macro_value(&self, name: &str) -> Cow<'_, [u8]> {
        let (coll, key) = match name.split_once('.') {
            Some((c, k)) => (c, Some(k)),
            None => (name, None),
        };
        // The collection's name in any case.
        let is = |c: &str| coll.eq_ignore_ascii_case(c);
        match key {
            Some(k) if is("TX") => self
                .tx
                .get(lower(k).as_ref())
                .map_or(Cow::Borrowed(&[][..]), |v| Cow::Borrowed(v.as_slice())),
            None if is("MATCHED_VAR") => Cow::Borrowed(self.matched().1),
            None if is("MATCHED_VAR_NAME") => Cow::Borrowed(self.matched().0.as_bytes()),
            Some(_) if is("RULE") => Cow::Borrowed(&[][..]),
            k => Cow::Owned(
                self.lookup(
                    &coll.to_ascii_uppercase(),
                    &k.map_or(Selector::All, |k| Selector::Key(k.to_owned())),
                )
                .into_iter()
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default(),
            ),
        }
    }
}

/// The value `setvar`'s `value` (macros expanded) leaves where `current` was: `+n` and
/// `-n` add to and subtract from its number (0 when it is none), anything else replaces
/// it.
fn assigned(current: Option<&Vec<u8>>, value: &str) -> Vec<u8> {
    let num = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let current = || num(current.map_or(&[][..], Vec::as_slice));
    // Saturating: a macro may bring request data into the sum (`=+%{MATCHED_VAR}`),
    // and an overflow must neither panic nor wrap a score to a small number.
    if let Some(n) = value.strip_prefix('+') {
        current()
            .saturating_add(num(n.as_bytes()))
            .to_string()
            .into_bytes()
    } else if let Some(n) = value.strip_prefix('-') {
        current()
            .saturating_sub(num(n.as_bytes()))
            .to_string()
            .into_bytes()
    } else {
        value.as_bytes().to_vec()
    }
}

/// `s` in ASCII lower case, copied only if it has upper-case letters.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A resolved variable's name: `COLLECTION:key`, `COLLECTION` for a scalar, or
/// `&COLLECTION` for a count.
enum VarName<'t, 'a> {
    Var(&'t str, Cow<'a, str>),
    Count(&'t str),
}

impl VarName<'_, '_> {
    fn full(&self) -> String {
        match self {
            VarName::Var(c, k) if k.is_empty() => (*c).to_owned(),
            VarName::Var(c, k) => {
                let mut s = String::with_capacity(c.len() + 1 + k.len());
                s.push_str(c);
                s.push(':');
                s.push_str(k);
                s
            }
            VarName::Count(c) => {
                let mut s = String::with_capacity(1 + c.len());
                s.push('&');
                s.push_str(c);
                s
            }
        }
    }
}

/// `value` through every transformation of `transforms` in order (borrowed while none
/// changes it).
fn apply_all<'v>(transforms: &[String], value: &'v [u8]) -> Cow<'v, [u8]> {
    let mut v: Cow<'v, [u8]> = Cow::Borrowed(value);
    for t in transforms {
        let next = match transform::apply(t, &v) {
            // The whole input borrowed back: unchanged.
            Some(Cow::Borrowed(b)) if b.len() == v.len() => continue,
            Some(next) => next.into_owned(),
            None => continue,
        };
        v = Cow::Owned(next);
    }
    v
}

/// Whether a transformation's output `next` is its input `v` unchanged: the input
/// borrowed back whole, or the same bytes.
fn same(next: &[u8], v: &[u8]) -> bool {
    (next.as_ptr() == v.as_ptr() && next.len() == v.len()) || next == v
}

/// The counts a `&` target most often yields, as text.
const SMALL_COUNTS: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];

/// The plan of a target without one (a removed target, a macro's lookup): its key
/// lower-cased and its regex compiled (once per thread) when used.
static NO_PLAN: TargetPlan = TargetPlan {
    source: Source::Unplanned,
    tx_key: None,
    tx_slot: None,
    regex: None,
};

thread_local! {
    /// Selector regexes, compiled once per thread (a rule set has a few dozen).
    static SELECTORS: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Whether `sel` picks the key `k` (keys compare case-insensitively, as ModSecurity's
/// collections do), with the regex the target's plan compiled if it has one.
fn selects(sel: &Selector, plan: &TargetPlan, k: &str) -> bool {
    match sel {
        Selector::All => true,
        Selector::Key(want) => want.eq_ignore_ascii_case(k),
        Selector::Regex(_) if plan.regex.is_some() => {
            plan.regex.as_ref().is_some_and(|r| r.is_match(k))
        }
        Selector::Regex(re) => SELECTORS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(r) = cache.get(re) {
                return r.as_ref().is_some_and(|r| r.is_match(k));
            }
            let r = crate::plan::selector_regex(re);
            let m = r.as_ref().is_some_and(|r| r.is_match(k));
            cache.insert(re.clone(), r);
            m
        }),
        // The request holds the two XPath forms CRS uses, `/*` and `//@*`, as keys.
        Selector::XPath(x) => x == k,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn rules(text: &str) -> RuleSet {
        let mut s = RuleSet::default();
        s.add_text(Path::new("rules.conf"), text).unwrap();
        s
    }

    fn args(pairs: &[(&str, &str)]) -> Request {
        let mut r = Request::default();
        for (k, v) in pairs {
            r.add("ARGS", k, v.as_bytes());
        }
        r
    }

    /// The ids of the chains that matched and the first value of each.
    fn hits(set: &RuleSet, req: &Request) -> Vec<(u64, String)> {
        inspect(set, req, Mode::DetectionOnly)
            .hits
            .into_iter()
            .map(|h| (h.id, String::from_utf8_lossy(&h.value).into_owned()))
            .collect()
    }

    #[test]
    fn multi_match_tests_each_step_that_changes_the_value() {
        let set = rules(
            "SecRule ARGS \"@rx ^abc$\" \"id:1,phase:2,pass,t:none,t:trim,t:urlDecode,t:lowercase,multiMatch\"\n\
             SecRule ARGS \"@rx ^ abc$\" \"id:2,phase:2,pass,t:none,t:lowercase,t:trim,multiMatch\"\n",
        );
        // Only the last step's value matches 1; only the original matches 2.
        assert_eq!(
            hits(&set, &args(&[("a", " ABC ")])),
            vec![(1, "abc".into())]
        );
        // The first step matches 1 (the value reported is the last step's).
        assert_eq!(
            hits(&set, &args(&[("a", " abc ")])),
            vec![(1, "abc".into())]
        );
        // Steps that change nothing are not tested again: 2 matches the original, 1 the
        // trimmed value.
        assert_eq!(
            hits(&set, &args(&[("a", " abc")])),
            vec![(1, "abc".into()), (2, "abc".into())]
        );
        assert_eq!(hits(&set, &args(&[("a", "xyz")])), vec![]);
    }

    /// The names of the variables that matched rule `id`.
    fn targets(set: &RuleSet, req: &Request, policy: &Policy, id: u64) -> Vec<String> {
        inspect_with(set, req, Mode::DetectionOnly, 2, policy)
            .hits
            .into_iter()
            .find(|h| h.id == id)
            .map(|h| h.targets)
            .unwrap_or_default()
    }

    #[test]
    fn tx_keys_in_slots_and_made_by_macros_read_and_walk_as_one_map() {
        let set = rules(
            "SecAction \"id:1,phase:1,pass,setvar:tx.b=1,setvar:'tx.A=2',setvar:tx.n=+2,setvar:tx.n=+2\"\n\
             SecAction \"id:2,phase:1,pass,setvar:'tx.%{tx.b}x=3',setvar:'tx.%{tx.b}w=5',setvar:'tx.m=%{tx.n}',setvar:tx.gone=1,setvar:!tx.gone\"\n\
             SecAction \"id:3,phase:1,pass,setvar:'tx.%{tx.b}y=4',setvar:'!tx.%{tx.b}y'\"\n\
             SecRule TX:/^(1w|1x|a|b|m|z|gone|1y)$/ \"@rx .\" \"id:4,phase:2,pass\"\n\
             SecRule TX:n \"@eq 4\" \"id:5,phase:2,pass\"\n\
             SecRule TX:1X \"@eq 3\" \"id:6,phase:2,pass\"\n\
             SecRule TX:M \"@eq 4\" \"id:7,phase:2,pass\"\n",
        );
        let policy = Policy {
            tx: vec![("Z".into(), b"9".to_vec())],
            ..Policy::default()
        };
        let req = Request::default();
        // In key order, whichever way each key is kept.
        assert_eq!(
            targets(&set, &req, &policy, 4),
            ["TX:1w", "TX:1x", "TX:a", "TX:b", "TX:m", "TX:z"]
        );
        assert_eq!(targets(&set, &req, &policy, 5), ["TX:n"]);
        assert_eq!(targets(&set, &req, &policy, 6), ["TX:1x"]);
        assert_eq!(targets(&set, &req, &policy, 7), ["TX:m"]);
    }

    #[test]
    fn a_lone_tx_key_target_tests_as_any_target() {
        let set = rules(
            "SecAction \"id:1,phase:1,pass,setvar:tx.a=1\"\n\
             SecRule TX:a \"@eq 1\" \"id:2,phase:2,pass\"\n\
             SecRule TX:a \"@eq 2\" \"id:3,phase:2,pass\"\n\
             SecRule TX:b \"@eq 0\" \"id:4,phase:2,pass\"\n\
             SecAction \"id:5,phase:2,pass,ctl:ruleRemoveTargetById=6;TX:a\"\n\
             SecRule TX:a \"@eq 1\" \"id:6,phase:2,pass\"\n\
             SecRule TX:A \"@streq 1\" \"id:7,phase:2,pass,t:none,t:replaceNulls,t:lowercase,setvar:tx.a=X\"\n\
             SecRule TX:A \"@streq x\" \"id:8,phase:2,pass,t:none,t:lowercase\"\n\
             SecRule TX:a \"!@eq 2\" \"id:9,phase:2,pass\"\n\
             SecRule &TX:a \"@eq 1\" \"id:10,phase:2,pass\"\n",
        );
        let got = hits(&set, &Request::default());
        let want: Vec<(u64, String)> = [
            (1, ""),
            (2, "1"),
            (5, ""),
            (7, "1"),
            (8, "x"),
            (9, "X"),
            (10, "1"),
        ]
        .into_iter()
        .map(|(id, v)| (id, v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }
}
