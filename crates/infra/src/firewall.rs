//! `firewall check`: verifies the rulesets loaded in a fabric's namespaces against the
//! policy, by comparing what the kernel holds with what the topology renders.
//!
//! Rendered text and `nft list` output differ in syntax (nft normalises sets, priorities,
//! quoting), so both sides go through the kernel: each host's expected ruleset
//! ([`rampart_topology::nft::ruleset`]) is loaded into a scratch namespace
//! (`<prefix>-fwchk`, created fresh and always deleted) and listed there with the same
//! `nft -s list ruleset` that lists the host's namespace. `-s` (stateless) leaves out
//! counter values and other state; handles are not listed without `-a`. Elements of
//! dynamic sets (filled by the packet path, e.g. the load balancer's `public_flood`) are
//! removed from both listings here rather than with `-t`, because `-t` also hides the
//! elements of static named sets and maps, where a changed element could open the policy
//! unnoticed.
//!
//! Reported per host: a missing namespace, a missing `inet rampart` table, every line of
//! that table only in the policy or only in the kernel (a small line diff, by hunk), any
//! other table (a packet must be accepted by every base chain of every table, so an extra
//! table can only be there by mistake and drop rules there are as foreign as accepts), and
//! every base chain whose policy is not `drop`. Two checks of the same fabric must not run
//! at once: they share the scratch namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::{check_prefix, exec_in, ip_bin, netns_list, nft_bin, output, run, Fabric};
use crate::process::InfraError;

/// The one table rampart's rulesets define (`table inet rampart`).
pub const TABLE: &str = "inet rampart";

/// The outcome for one host: no problems means its namespace holds exactly its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    pub host: String,
    pub namespace: String,
    /// Human-readable, one per finding; a diff hunk spans several lines.
    pub problems: Vec<String>,
}

impl HostCheck {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every host of `fabric.topology` (see the module docs). A host whose namespace
/// is missing is reported, not an error, so a destroyed fabric reports every host
/// missing. Errors are failures to run `ip` or `nft`, or a rendered ruleset the kernel
/// refuses; each names the host or namespace and the command.
pub fn check(fabric: &Fabric) -> Result<Vec<HostCheck>, InfraError> {
    let p = &fabric.prefix;
    check_prefix(p)?;
    let ip = ip_bin()?;
    let nft = nft_bin()?;
    let present = netns_list()?;
    let scratch = Scratch::create(&ip, format!("{p}-fwchk"), &present)?;
    let checks = check_hosts(fabric, &nft, &scratch, &present);
    let removed = scratch.remove();
    let checks = checks?;
    removed?;
    Ok(checks)
}

fn check_hosts(
    fabric: &Fabric,
    nft: &Path,
    scratch: &Scratch,
    present: &[String],
) -> Result<Vec<HostCheck>, InfraError> {
    let mut checks = Vec::new();
    for host in &fabric.topology.hosts {
        let namespace = fabric.ns(host);
        let problems = if present.contains(&namespace) {
            let rules = rampart_topology::nft::ruleset(&fabric.topology, host);
            let expected = scratch.canonical(nft, &host.name, &rules)?;
            let listing = nft_output(
                fabric.command(host, nft)?.args(LIST),
                None,
                &host.name,
                &namespace,
            )?;
            compare(&expected, &tables(&listing))
        } else {
            vec![format!("namespace {namespace} does not exist")]
        };
        checks.push(HostCheck {
            host: host.name.clone(),
            namespace,
            problems,
        });
    }
    Ok(checks)
}

/// The listing both sides are compared in: the whole ruleset, stateless.
const LIST: [&str; 3] = ["-s", "list", "ruleset"];

/// The problems of one host: `expected` is the policy's table as the kernel lists it,
/// `loaded` every table of the host's namespace.
fn compare(expected: &Table, loaded: &[Table]) -> Vec<String> {
    let mut problems = Vec::new();
    match loaded.iter().find(|t| t.name == TABLE) {
        None => problems.push(format!("table {TABLE} is missing: no policy is loaded")),
        Some(table) => {
            let ops = line_diff(&expected.lines, &table.lines);
            for hunk in hunks(&ops) {
                problems.push(format!(
                    "table {TABLE}{} differs from the policy (- policy only, + loaded only):\n{}",
                    hunk.block.map(|b| format!(", {b}")).unwrap_or_default(),
                    hunk.lines.join("\n")
                ));
            }
        }
    }
    for t in loaded.iter().filter(|t| t.name != TABLE) {
        let chains: Vec<String> = base_chains(t)
            .iter()
            .map(|c| format!("chain {} hook {} policy {}", c.chain, c.hook, c.policy))
            .collect();
        problems.push(format!(
            "extra table {} (only {TABLE} belongs here){}",
            t.name,
            if chains.is_empty() {
                String::new()
            } else {
                format!(": {}", chains.join("; "))
            }
        ));
    }
    for t in loaded {
        for c in base_chains(t).iter().filter(|c| c.policy != "drop") {
            problems.push(format!(
                "table {}, chain {} (hook {}): policy {}, not drop",
                t.name, c.chain, c.hook, c.policy
            ));
        }
    }
    problems
}

/// One table of an `nft list ruleset` listing: its name (`inet rampart`) and its
/// non-empty lines between the braces, as nft indents them (one tab per level), without
/// the elements of dynamic sets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    name: String,
    lines: Vec<String>,
}

/// Splits a listing into tables. nft prints each as `table <family> <name> {` ... `}`
/// at column 0.
fn tables(listing: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut current: Option<Table> = None;
    for line in listing.lines() {
        let line = line.trim_end();
        match current.as_mut() {
            None => {
                if let Some(name) = line
                    .strip_prefix("table ")
                    .and_then(|l| l.strip_suffix('{'))
                {
                    current = Some(Table {
                        name: name.trim().to_owned(),
                        lines: Vec::new(),
                    });
                }
            }
            Some(t) if line == "}" => {
                t.lines = without_dynamic_elements(&t.lines);
                out.extend(current.take());
            }
            Some(t) => {
                if !line.trim().is_empty() {
                    t.lines.push(line.to_owned());
                }
            }
        }
    }
    out
}

/// `lines` without the `elements = { ... }` of sets and maps whose flags include
/// `dynamic`: the packet path fills those, so they are state, not policy.
fn without_dynamic_elements(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let opens_set = depth(line) == 1
            && (line.trim().starts_with("set ") || line.trim().starts_with("map "))
            && line.ends_with('{');
        if !opens_set {
            out.push(line.clone());
            i += 1;
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| l == "\t}")
            .map_or(lines.len(), |p| i + 1 + p);
        let body = &lines[i + 1..end];
        let dynamic = body.iter().any(|l| {
            l.trim()
                .strip_prefix("flags ")
                .is_some_and(|f| f.split(',').any(|flag| flag.trim() == "dynamic"))
        });
        out.push(line.clone());
        let mut open = 0i64;
        for l in body {
            if dynamic && (open > 0 || l.trim().starts_with("elements = ")) {
                open += brace_balance(l);
                continue;
            }
            out.push(l.clone());
        }
        if end < lines.len() {
            out.push(lines[end].clone());
        }
        i = end + 1;
    }
    out
}

/// Leading tabs: nft's nesting level inside the table.
fn depth(line: &str) -> usize {
    line.bytes().take_while(|&b| b == b'\t').count()
}

/// Opening minus closing braces outside double quotes.
fn brace_balance(line: &str) -> i64 {
    let mut quoted = false;
    let mut n = 0;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => n += 1,
            '}' if !quoted => n -= 1,
            _ => {}
        }
    }
    n
}

/// A base chain (one with a hook) as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BaseChain {
    chain: String,
    hook: String,
    /// `drop`, `accept`, or `accept (default)` when nft printed none.
    policy: String,
}

fn base_chains(t: &Table) -> Vec<BaseChain> {
    let mut out = Vec::new();
    let mut chain = None;
    for line in &t.lines {
        let text = line.trim();
        if depth(line) == 1 {
            chain = text
                .strip_prefix("chain ")
                .and_then(|c| c.strip_suffix('{'))
                .map(|c| c.trim().to_owned());
            continue;
        }
        let Some(name) = &chain else { continue };
        if !text.starts_with("type ") {
            continue;
        }
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|p| words.get(p + 1))
                .map(|w| (*w).to_owned())
        };
        if let Some(hook) = after("hook") {
            out.push(BaseChain {
                chain: name.clone(),
                hook,
                policy: after("policy").unwrap_or_else(|| "accept (default)".to_owned()),
            });
        }
    }
    out
}

/// One step of a line diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// In both.
    Same,
    /// Only in the first (expected) sequence.
    Removed,
    /// Only in the second (loaded) sequence.
    Added,
}

/// Past this many cells the middle of a diff is not aligned (all of it removed, then
/// all of it added): correct, only less compact. Rulesets are a few dozen lines.
const DIFF_CELLS: usize = 4_000_000;

/// A shortest edit script from `a` to `b` (longest common subsequence after trimming the
/// common prefix and suffix); within a change, removals come before additions.
pub(crate) fn line_diff<'a>(a: &'a [String], b: &'a [String]) -> Vec<(Edit, &'a str)> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<(Edit, &str)> = a[..prefix]
        .iter()
        .map(|l| (Edit::Same, l.as_str()))
        .collect();
    if am.len().saturating_mul(bm.len()) > DIFF_CELLS {
        ops.extend(am.iter().map(|l| (Edit::Removed, l.as_str())));
        ops.extend(bm.iter().map(|l| (Edit::Added, l.as_str())));
    } else {
        // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() || j < bm.len() {
            if i < am.len() && j < bm.len() && am[i] == bm[j] {
                ops.push((Edit::Same, &am[i]));
                i += 1;
                j += 1;
            } else if j == bm.len() || (i < am.len() && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])
            {
                ops.push((Edit::Removed, &am[i]));
                i += 1;
            } else {
                ops.push((Edit::Added, &bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(
        a[a.len() - suffix..]
            .iter()
            .map(|l| (Edit::Same, l.as_str())),
    );
    ops
}

/// A run of changed lines, with the table-level block it sits in (`chain input`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    block: Option<String>,
    /// `- line` / `+ line`, without nft's indentation.
    lines: Vec<String>,
}

fn hunks(ops: &[(Edit, &str)]) -> Vec<Hunk> {
    let mut out: Vec<Hunk> = Vec::new();
    let mut block: Option<String> = None;
    let mut in_hunk = false;
    for (edit, line) in ops {
        let text = line.trim();
        match edit {
            Edit::Same => {
                in_hunk = false;
                if depth(line) == 1 {
                    block = text.strip_suffix('{').map(|b| b.trim().to_owned());
                }
            }
            Edit::Removed | Edit::Added => {
                if !in_hunk {
                    out.push(Hunk {
                        block: block.clone(),
                        lines: Vec::new(),
                    });
                    in_hunk = true;
                }
                let sign = if *edit == Edit::Removed { '-' } else { '+' };
                if let Some(h) = out.last_mut() {
                    h.lines.push(format!("  {sign} {text}"));
                }
            }
        }
    }
    out
}

/// The scratch namespace the expected rulesets are canonicalised in; deleted by
/// [`Scratch::remove`], or on drop if that was not reached.
struct Scratch {
    ip: PathBuf,
    name: String,
    live: bool,
}

impl Scratch {
    /// Creates `name`, deleting a leftover of that name (from a crashed check) first.
    fn create(ip: &Path, name: String, present: &[String]) -> Result<Scratch, InfraError> {
        if present.contains(&name) {
            run(ip, &["netns", "del", &name])?;
        }
        run(ip, &["netns", "add", &name])?;
        Ok(Scratch {
            ip: ip.to_owned(),
            name,
            live: true,
        })
    }

    /// Loads `rules` (which replace the table loaded before them) and returns the
    /// policy's table as the kernel lists it.
    fn canonical(&self, nft: &Path, host: &str, rules: &str) -> Result<Table, InfraError> {
        let what = format!("{host} (scratch namespace {})", self.name);
        nft_output(
            exec_in(&self.name, nft)?.args(["-f", "-"]),
            Some(rules),
            &what,
            &self.name,
        )?;
        let listing = nft_output(
            exec_in(&self.name, nft)?.args(LIST),
            None,
            &what,
            &self.name,
        )?;
        tables(&listing)
            .into_iter()
            .find(|t| t.name == TABLE)
            .ok_or_else(|| {
                InfraError::Invalid(format!(
                    "{host}: the rendered ruleset defines no table {TABLE}"
                ))
            })
    }

    fn remove(mut self) -> Result<(), InfraError> {
        self.live = false;
        run(&self.ip, &["netns", "del", &self.name]).map(drop)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.live {
            let _ = run(&self.ip, &["netns", "del", &self.name]);
        }
    }
}

/// Runs `cmd` (`ip netns exec <namespace> nft ...`) for `name`.
fn nft_output(
    cmd: &mut Command,
    input: Option<&str>,
    name: &str,
    namespace: &str,
) -> Result<String, InfraError> {
    let shown: Vec<String> = cmd
        .get_args()
        .skip(4)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let shown = format!("ip netns exec {namespace} nft {}", shown.join(" "));
    output(cmd, input, name, "nft", &shown)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    /// The diff of `a` and `b` as ` x`, `-x`, `+x` lines joined by `|`.
    fn check_diff(a: &str, b: &str, expected: &str) {
        let (a, b) = (lines(a), lines(b));
        let got: Vec<String> = line_diff(&a, &b)
            .iter()
            .map(|(e, l)| {
                let sign = match e {
                    Edit::Same => ' ',
                    Edit::Removed => '-',
                    Edit::Added => '+',
                };
                format!("{sign}{l}")
            })
            .collect();
        assert_eq!(got.join("|"), expected, "{a:?} -> {b:?}");
    }

    #[test]
    fn line_diff_is_minimal_and_ordered() {
        check_diff("", "", "");
        check_diff("a\nb", "a\nb", " a| b");
        check_diff("a\nb", "", "-a|-b");
        check_diff("", "a", "+a");
        check_diff("a\nb\nc", "a\nc", " a|-b| c");
        check_diff("a\nc", "a\nb\nc", " a|+b| c");
        check_diff("a\nb\nc", "a\nx\nc", " a|-b|+x| c");
        check_diff("a\nb\nc\nd", "b\nc\nd\ne", "-a| b| c| d|+e");
        check_diff("x\na\ny\nb", "a\nb", "-x| a|-y| b");
        check_diff("a\nb\na", "a\na\nb\na", " a|+a| b| a");
        check_diff("a\nb", "b\na", "-a| b|+a");
        check_diff("}\n}", "}\nnew\n}\n}", " }|+new|+}| }");
    }

    #[test]
    fn line_diff_beyond_the_cell_limit_is_still_correct() {
        let a: Vec<String> = (0..3000).map(|i| format!("a{i}")).collect();
        let b: Vec<String> = (0..3000).map(|i| format!("b{i}")).collect();
        let ops = line_diff(&a, &b);
        assert_eq!(ops.len(), 6000);
        assert!(ops[..3000].iter().all(|(e, _)| *e == Edit::Removed));
        assert!(ops[3000..].iter().all(|(e, _)| *e == Edit::Added));
    }

    const LISTING: &str = "table inet rampart {
\tcounter dropped_input {
\t}

\tset public_flood {
\t\ttype ipv4_addr
\t\tsize 65536
\t\tflags dynamic,timeout
\t\ttimeout 1m
\t\telements = { 203.0.113.100 limit rate over 50/second burst 100 packets expires 57s944ms,
\t\t\t     203.0.113.101 expires 1s }
\t}

\tset allowed {
\t\ttype ipv4_addr
\t\telements = { 1.2.3.4, 5.6.7.8 }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tip saddr @allowed accept comment \"{ not a brace\"
\t}

\tchain helper {
\t\taccept
\t}
}
table inet evil {
\tchain c {
\t\ttype filter hook input priority -10; policy accept;
\t}

\tchain n {
\t\ttype nat hook postrouting priority srcnat
\t}
}
";

    #[test]
    fn listings_split_into_tables_without_dynamic_elements() {
        let t = tables(LISTING);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "inet rampart");
        let text = t[0].lines.join("\n");
        assert!(!text.contains("203.0.113.10"), "{text}");
        assert!(text.contains("elements = { 1.2.3.4, 5.6.7.8 }"), "{text}");
        assert!(
            text.contains("\t\ttimeout 1m\n\t}\n\tset allowed {"),
            "{text}"
        );
        assert_eq!(t[1].name, "inet evil");
        let chains = |i: usize| -> Vec<String> {
            base_chains(&t[i])
                .iter()
                .map(|c| format!("{} {} {}", c.chain, c.hook, c.policy))
                .collect()
        };
        assert_eq!(chains(0), ["input input drop"]);
        assert_eq!(
            chains(1),
            ["c input accept", "n postrouting accept (default)"]
        );
    }

    #[test]
    fn compare_reports_diff_hunks_extra_tables_and_policies() {
        let loaded = tables(LISTING);
        let expected = loaded[0].clone();
        let mut tampered = loaded[0].clone();
        let at = tampered
            .lines
            .iter()
            .position(|l| l.contains("@allowed"))
            .unwrap();
        tampered
            .lines
            .insert(at + 1, "\t\ttcp dport 22 accept".into());
        tampered.lines[at - 1] =
            "\t\ttype filter hook input priority filter; policy accept;".into();
        let problems = compare(&expected, &[tampered, loaded[1].clone()]);
        assert_eq!(
            problems,
            [
                "table inet rampart, chain input differs from the policy (- policy only, + loaded only):\n  \
                 - type filter hook input priority filter; policy drop;\n  \
                 + type filter hook input priority filter; policy accept;",
                "table inet rampart, chain input differs from the policy (- policy only, + loaded only):\n  \
                 + tcp dport 22 accept",
                "extra table inet evil (only inet rampart belongs here): chain c hook input policy accept; \
                 chain n hook postrouting policy accept (default)",
                "table inet rampart, chain input (hook input): policy accept, not drop",
                "table inet evil, chain c (hook input): policy accept, not drop",
                "table inet evil, chain n (hook postrouting): policy accept (default), not drop",
            ]
        );
        assert!(compare(&expected, &loaded[..1]).is_empty());
        assert_eq!(
            compare(&expected, &[]),
            ["table inet rampart is missing: no policy is loaded"]
        );
    }
}
