//! House rules checked as code: every Rust file says what it is for, the binary has one
//! crypto stack (rustls on aws-lc-rs; no ring, no OpenSSL), no service crate depends on
//! the topology model, no library depends on anyhow, nothing sleeps through
//! `park_timeout`, and no two files of a crate import each other (directly or around a
//! longer cycle).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:?}"
    );
}

#[test]
fn one_crypto_stack() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in ["ring", "openssl-sys", "openssl"] {
        let out = std::process::Command::new(&cargo)
            .args([
                "tree",
                "--workspace",
                "--offline",
                "-e",
                "normal,build",
                "-i",
                krate,
            ])
            .current_dir(workspace())
            .output()
            .unwrap();
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            tree.trim().is_empty(),
            "{krate} is in the dependency tree:\n{tree}"
        );
    }
}

/// The service crates: what runs on a host. None of them may know the topology model.
const SERVICE_CRATES: [&str; 12] = [
    "lb",
    "gate",
    "logs",
    "backup",
    "web",
    "dns",
    "agent",
    "dashboard",
    "keeper",
    "etcd",
    "telemetry",
    "tls",
];

/// Every dependency of crate `krate` in `sections` (also under `[target.*]`), as
/// `(where, package)`.
fn dependencies(krate: &str, sections: &[&str]) -> Vec<(String, String)> {
    let path = workspace().join("crates").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let mut tables = vec![("", &manifest)];
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for t in targets.values().filter_map(toml::Value::as_table) {
            tables.push(("target.", t));
        }
    }
    let mut found = Vec::new();
    for (prefix, table) in tables {
        for section in sections {
            let Some(deps) = table.get(*section).and_then(toml::Value::as_table) else {
                continue;
            };
            for (name, spec) in deps {
                let package = spec
                    .get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(name);
                found.push((
                    format!("crates/{krate}/Cargo.toml [{prefix}{section}] {name}"),
                    package.to_owned(),
                ));
            }
        }
    }
    found
}

#[test]
fn no_service_crate_depends_on_the_topology_model() {
    let found: Vec<String> = SERVICE_CRATES
        .iter()
        .flat_map(|k| {
            dependencies(
                k,
                &["dependencies", "dev-dependencies", "build-dependencies"],
            )
        })
        .filter(|(_, package)| package == "rampart-topology")
        .map(|(at, _)| at)
        .collect();
    assert!(
        found.is_empty(),
        "service crates must not depend on rampart-topology (the model of the whole site); \
         shared config and listener code lives in rampart-telemetry:\n{}",
        found.join("\n")
    );
}

/// Regression: `Agent::run` returned `anyhow::Result` inside a library. Libraries return
/// typed errors; only the binary (`crates/rampart`) uses anyhow.
#[test]
fn no_library_depends_on_anyhow() {
    let mut libraries = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "rampart" {
            libraries.push(name);
        }
    }
    assert!(libraries.len() >= 9, "{libraries:?}");
    let found: Vec<String> = libraries
        .iter()
        .flat_map(|k| dependencies(k, &["dependencies", "build-dependencies"]))
        .filter(|(_, package)| package == "anyhow")
        .map(|(at, _)| at)
        .collect();
    assert!(
        found.is_empty(),
        "libraries return typed errors (thiserror); anyhow belongs to the binary:\n{}",
        found.join("\n")
    );
}

/// Regression: `park_timeout` was used in three places to sleep past the house lint
/// against `std::thread::sleep` (one inside `block_on`). A wait is either async, or the
/// one `process::wait_until` with its reasoned `#[expect]`.
#[test]
fn nothing_parks_to_get_around_the_sleep_lint() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    let found: Vec<String> = files
        .iter()
        .filter(|f| code_only(&std::fs::read_to_string(f).unwrap()).contains("park_timeout"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(found.is_empty(), "park_timeout in {found:?}");
}

/// `text` with comments, string and char literals replaced by spaces (newlines kept), so
/// that only code is searched for paths and braces.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && ident(b[i - 1]);
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                let mut j = i;
                while j < b.len() {
                    if b[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if b[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            // Raw strings: r"..", r#".."#, br#".."#.
            b'r' if !prev_ident || (i > 0 && b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]))) => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) == Some(&b'"') {
                    let close: Vec<u8> = std::iter::once(b'"')
                        .chain(std::iter::repeat_n(b'#', hashes))
                        .collect();
                    let start = i + 2 + hashes;
                    let end = b[start..]
                        .windows(close.len())
                        .position(|w| w == close.as_slice())
                        .map_or(b.len(), |p| start + p + close.len());
                    blank(&mut out, i, end);
                    i = end;
                } else {
                    i += 1;
                }
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}', b'x') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    let end = b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map_or(b.len(), |p| i + 2 + p + 1);
                    blank(&mut out, i, end);
                    i = end;
                } else {
                    let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    if b.get(i + 1 + ch_len) == Some(&b'\'') {
                        blank(&mut out, i, i + 2 + ch_len);
                        i += 2 + ch_len;
                    } else {
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `code` (from [`code_only`]) without the items marked `#[cfg(test)]`.
fn without_test_items(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|p| from + p) {
        let b = out.as_bytes();
        let mut j = at;
        let mut depth = 0usize;
        while j < b.len() {
            match b[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let blanked: String = out[at..j.min(out.len())]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..j.min(out.len()), &blanked);
        from = at + 1;
    }
    out
}

/// A file of a crate's `src/`, as a module: its path (`[]` for the crate root) and code.
struct ModFile {
    path: Vec<String>,
    code: String,
}

fn module_files(src: &Path) -> Vec<ModFile> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter(|f| !f.starts_with(src.join("bin")))
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(path.last().map(String::as_str), Some("mod"))
                || path == ["lib"]
                || path == ["main"]
            {
                path.pop();
            }
            let code = without_test_items(&code_only(&std::fs::read_to_string(&f).unwrap()));
            ModFile { path, code }
        })
        .collect()
}

/// The paths starting at byte `at` of `code` (just after `root::`): `a::b::C`, or each
/// leaf of a group `{a::B, c::{D, E}}`, as segment lists.
fn paths_at(code: &[u8], mut at: usize) -> Vec<Vec<String>> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let skip_ws = |at: &mut usize| {
        while *at < code.len() && code[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    let mut prefix = Vec::new();
    loop {
        skip_ws(&mut at);
        if code.get(at) == Some(&b'{') {
            // A group: split its top level at commas.
            let mut out = Vec::new();
            let mut depth = 0;
            let mut item_start = at + 1;
            let mut j = at;
            while j < code.len() {
                match code[j] {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        for p in paths_at(&code[..j], item_start) {
                            let mut full = prefix.clone();
                            full.extend(p);
                            out.push(full);
                        }
                        item_start = j + 1;
                        if code[j] == b'}' {
                            break;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            return out;
        }
        let start = at;
        while at < code.len() && ident(code[at]) {
            at += 1;
        }
        if start == at {
            return if prefix.is_empty() {
                Vec::new()
            } else {
                vec![prefix]
            };
        }
        prefix.push(String::from_utf8_lossy(&code[start..at]).into_owned());
        skip_ws(&mut at);
        if code[at..].starts_with(b"::") {
            at += 2;
        } else {
            return vec![prefix];
        }
    }
}

/// Whether a statement that starts with `stmt` is a re-export (`pub use`, `pub(crate) use`).
fn is_pub_use(stmt: &str) -> bool {
    let Some(rest) = stmt.trim_start().strip_prefix("pub") else {
        return false;
    };
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(')').map_or("", |(_, after)| after),
        None => rest,
    };
    rest.trim_start()
        .strip_prefix("use")
        .is_some_and(|r| r.starts_with(char::is_whitespace))
}

/// The modules of one crate each file refers to outside its tests: through `crate::`,
/// `super::`, `self::` or the name of a module it declares, resolving re-exports
/// (`pub use x::Y` in a parent) to the module that defines the item. `pub use` itself is
/// not a reference (it is how a parent shows its children).
fn module_graph(src: &Path) -> Graph {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    let files = module_files(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.path.clone()).collect();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let name = |p: &[String]| {
        if p.is_empty() {
            "(crate root)".to_owned()
        } else {
            p.join("::")
        }
    };
    // Every path in a file: (is inside `pub use`, absolute segments).
    let mut refs: HashMap<Vec<String>, Vec<(bool, Vec<String>)>> = HashMap::new();
    for f in &files {
        let code = f.code.as_bytes();
        let children: Vec<&str> = modules
            .iter()
            .filter(|m| m.len() == f.path.len() + 1 && m.starts_with(&f.path))
            .map(|m| m[f.path.len()].as_str())
            .collect();
        let mut found = Vec::new();
        let mut i = 0;
        while i < code.len() {
            if !ident(code[i])
                || (i > 0 && (ident(code[i - 1]) || code[i - 1] == b'$' || code[i - 1] == b':'))
            {
                i += 1;
                continue;
            }
            let end = i + code[i..].iter().take_while(|&&c| ident(c)).count();
            let word = &f.code[i..end];
            let rest = f.code[end..].trim_start();
            if !rest.starts_with("::") {
                i = end;
                continue;
            }
            let base: Option<Vec<String>> = match word {
                "crate" => Some(Vec::new()),
                "self" => Some(f.path.clone()),
                "super" => Some(f.path[..f.path.len().saturating_sub(1)].to_vec()),
                w if children.contains(&w) => {
                    let mut p = f.path.clone();
                    p.push(w.to_owned());
                    Some(p)
                }
                _ => None,
            };
            let Some(base) = base else {
                i = end;
                continue;
            };
            let after = code.len() - rest.len() + 2;
            let mut paths = paths_at(code, after);
            if paths.is_empty() {
                paths.push(Vec::new());
            }
            let stmt_start = f.code[..i]
                .rfind(['\n', ';', '{', '}'])
                .map_or(0, |p| p + 1);
            let re_export = is_pub_use(&f.code[stmt_start..i]);
            for p in paths {
                let mut abs = base.clone();
                for segment in p {
                    match segment.as_str() {
                        "super" => {
                            abs.pop();
                        }
                        "self" => {}
                        _ => abs.push(segment),
                    }
                }
                found.push((re_export, abs));
            }
            i = end;
        }
        refs.insert(f.path.clone(), found);
    }
    // Re-exports: (module, name) → the absolute path it names.
    let mut reexports: HashMap<(Vec<String>, String), Vec<String>> = HashMap::new();
    for (m, paths) in &refs {
        for (re, p) in paths {
            if *re {
                if let Some(last) = p.last() {
                    reexports.insert((m.clone(), last.clone()), p.clone());
                }
            }
        }
    }
    // The module an absolute path lands in: the longest module prefix, then through a
    // re-export of the next segment if there is one.
    let resolve = |p: &[String]| -> Vec<String> {
        let mut p = p.to_vec();
        for _ in 0..8 {
            let n = (0..=p.len())
                .rev()
                .find(|&n| modules.contains(&p[..n]))
                .unwrap_or(0);
            let module = p[..n].to_vec();
            match p
                .get(n)
                .and_then(|item| reexports.get(&(module.clone(), item.clone())))
            {
                Some(target) if target.as_slice() != p.as_slice() => {
                    let mut next = target.clone();
                    next.extend(p[n + 1..].iter().cloned());
                    p = next;
                }
                _ => return module,
            }
        }
        p
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let edges = graph.entry(name(&f.path)).or_default();
        for (re, p) in &refs[&f.path] {
            let to = resolve(p);
            if !re && to != f.path {
                edges.insert(name(&to));
            }
        }
    }
    graph
}

type Graph = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// Every cycle of `graph`, one per strongly connected component: its modules, then one
/// path around it (the first module repeated at the end).
fn find_cycles(graph: &Graph) -> Vec<String> {
    use std::collections::{BTreeSet, HashMap};
    // Tarjan's strongly connected components.
    struct State<'a> {
        graph: &'a Graph,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<&'a str>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                connect(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            connect(&mut s, v);
        }
    }
    let mut out = Vec::new();
    for component in s.components.iter().filter(|c| c.len() > 1) {
        // A path around: from the first module, breadth-first back to it inside the component.
        let first = *component.iter().next().unwrap();
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([first]);
        let mut last = first;
        'search: while let Some(v) = queue.pop_front() {
            for w in graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if w == first {
                    last = v;
                    break 'search;
                }
                if component.contains(w) && !parent.contains_key(w) {
                    parent.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![first, last];
        while let Some(&p) = parent.get(*path.last().unwrap()) {
            path.push(p);
        }
        path.reverse();
        if path.len() > 1 && path[0] == path[1] {
            path.remove(0);
        }
        let members: Vec<&str> = component.iter().copied().collect();
        out.push(format!("{{{}}}: {}", members.join(", "), path.join(" -> ")));
    }
    out
}

#[test]
fn no_import_cycles_between_files_of_a_crate() {
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        let krate = src.parent().unwrap().file_name().unwrap().to_string_lossy();
        for cycle in find_cycles(&graph) {
            cycles.push(format!("crates/{krate}/src {cycle}"));
        }
    }
    cycles.sort();
    assert!(
        cycles.is_empty(),
        "import cycles between files (move the shared item to the lower module so the \
         dependency goes one way):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_finder_sees_through_groups_tests_and_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "lib.rs",
        "//! x\npub mod a;\npub mod b;\npub mod c;\npub mod d;\npub use d::D;\n",
    );
    write(
        "a.rs",
        "//! x\nuse crate::{b::B, c};\n// crate::d::D in a comment\n",
    );
    write("b.rs", "//! x\npub struct B;\nconst S: &str = \"crate::a::X\";\n#[cfg(test)]\nmod tests {\n    use crate::a;\n    fn f() { let _ = '}'; }\n}\n");
    write("c.rs", "//! x\nfn f() -> crate::D { todo!() }\n");
    write("d/mod.rs", "//! x\nmod e;\npub use e::D;\n");
    write(
        "d/e.rs",
        "//! x\npub struct D;\nfn g() { super::super::c::f(); }\n",
    );
    let graph = module_graph(src);
    let edges = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>().join(",");
    assert_eq!(edges("a"), "b,c");
    assert_eq!(edges("b"), "");
    assert_eq!(edges("c"), "d::e");
    assert_eq!(edges("d"), "");
    assert_eq!(edges("(crate root)"), "");
    assert_eq!(find_cycles(&graph), ["{c, d::e}: c -> d::e -> c"]);
}
