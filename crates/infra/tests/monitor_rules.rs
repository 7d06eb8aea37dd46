//! `[monitor] rules` through its reader (`rampart_infra::rules`), as `rampart up`,
//! `check` and `render` use it: the upstream mixins (`../shared/dashboards`) pass
//! `promtool check rules` and come back with their names on the monitor host; a broken
//! rules file and an unreadable one are refused with errors naming the topology file,
//! the line, the key and the rules file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rampart_infra::rules::{self, Checked};
use rampart_test_support::client::tool;
use rampart_topology::file::{parse, Site};

/// promtool, or `None` and a visible skip.
fn promtool() -> Option<PathBuf> {
    let found = tool("promtool", None);
    if found.is_none() {
        eprintln!("SKIPPED: promtool comes with the Debian package `prometheus`");
    }
    found
}

/// A site whose topology file, in `dir`, lists `rules` under `[monitor]` (on line 3).
fn site(dir: &Path, rules: &[&str]) -> Site {
    let list: Vec<String> = rules.iter().map(|r| format!("{r:?}")).collect();
    let text = format!(
        "names = [\"www.foobar.com\"]\n[monitor]\nrules = [{}]\n",
        list.join(", ")
    );
    let file = dir.join("site.toml");
    let mut site = parse(&file.display().to_string(), &text).unwrap();
    site.rules_relative_to(dir);
    site
}

#[test]
fn upstream_mixins_pass_and_are_read_with_their_names() {
    let Some(_) = promtool() else { return };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = repo.join("../shared/dashboards");
    if !shared.is_dir() {
        eprintln!("SKIPPED: {} is absent", shared.display());
        return;
    }
    let shared = shared.canonicalize().unwrap();
    let s = site(
        &shared,
        &[
            "node-mixin/alerts.yaml",
            "node-mixin/rules.yaml",
            "mysqld-mixin/alerts/general.yaml",
            "mysqld-mixin/alerts/galera.yaml",
            "mysqld-mixin/rules/rules.yaml",
        ],
    );
    let (files, checked) = rules::load(&s).unwrap();
    assert_eq!(checked, Checked::Passed);
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rules-extra-1-alerts.yaml",
            "rules-extra-2-rules.yaml",
            "rules-extra-3-general.yaml",
            "rules-extra-4-galera.yaml",
            "rules-extra-5-rules.yaml",
        ]
    );
    let want = std::fs::read_to_string(shared.join("node-mixin/alerts.yaml")).unwrap();
    assert_eq!(files[0].contents, want);
    assert_eq!(
        files[0].source,
        shared.join("node-mixin/alerts.yaml").display().to_string()
    );
}

/// A rules file promtool refuses stops `up`, `check` and `render` with promtool's own
/// words under the topology file's line and key; a good file beside it is not blamed.
#[test]
fn a_broken_rules_file_is_refused_with_promtools_message() {
    let Some(_) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("good.yaml"),
        "groups:\n- name: good\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.yaml"),
        "groups:\n- name: broken\n  rules:\n  - alert: Broken\n    expr: rate(node_cpu_seconds_total[5m]\n",
    )
    .unwrap();
    let s = site(dir, &["good.yaml", "broken.yaml"]);
    // Reading alone does not judge the contents.
    assert_eq!(rules::read(&s).unwrap().len(), 2);
    let err = rules::load(&s).unwrap_err().to_string();
    println!("{err}");
    let broken = dir.join("broken.yaml");
    let head = format!(
        "{}:3: monitor.rules: {}: promtool check rules refused it:\n  FAILED:\n  {}: 5:11: \
         group \"broken\", rule 1, \"Broken\": could not parse expression:",
        dir.join("site.toml").display(),
        broken.display(),
        broken.display()
    );
    assert!(
        err.starts_with(&head),
        "{err}\n--- expected to start with\n{head}"
    );
    assert!(err.contains("unclosed left parenthesis"), "{err}");
    assert!(!err.contains("good.yaml"), "{err}");
    // Not YAML at all.
    std::fs::write(&broken, "groups: [\n").unwrap();
    let err = rules::load(&s).unwrap_err().to_string();
    assert!(err.contains("did not find expected node content"), "{err}");
}

/// A file that is missing, a directory or not text is named, each one, before promtool
/// runs.
#[test]
fn unreadable_rules_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("dir.yaml")).unwrap();
    std::fs::write(dir.join("binary.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    let s = site(dir, &["missing.yaml", "dir.yaml", "binary.yaml"]);
    let err = rules::load(&s).unwrap_err().to_string();
    let file = dir.join("site.toml").display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:3: monitor.rules: {}: cannot read: No such file or directory (os error 2)",
                dir.join("missing.yaml").display()
            ),
            format!(
                "{file}:3: monitor.rules: {}: cannot read: not a regular file",
                dir.join("dir.yaml").display()
            ),
            format!(
                "{file}:3: monitor.rules: {}: cannot read: stream did not contain valid UTF-8",
                dir.join("binary.yaml").display()
            ),
        ]
    );
    // No rules, nothing to read or check.
    let none = parse("site.toml", "").unwrap();
    assert_eq!(rules::load(&none).unwrap(), (Vec::new(), Checked::Passed));
}

/// `rampart render` with `[monitor] rules`: the monitor's bundle holds each file beside
/// `rules.yml` (0644, at its on-host path), its prometheus.yml lists it, and the
/// playbook's host variables ship it; no other host gets it.
#[test]
fn render_ships_the_rules_files_to_the_monitor() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let contents =
        "groups:\n- name: extra\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n";
    std::fs::create_dir(dir.join("mixin")).unwrap();
    std::fs::write(dir.join("mixin/extra.yaml"), contents).unwrap();
    let s = site(dir, &["mixin/extra.yaml"]);
    let mut t = s.topology(rampart_topology::Mode::Isolated, 0).unwrap();
    t.monitor_rules = rules::read(&s).unwrap();
    let out = dir.join("out");
    rampart_infra::bundle::render(&t, &s.to_file(), &out).unwrap();
    let on_host = Path::new("/var/lib/rampart/hosts/monitor/rules-extra-1-extra.yaml");
    let shipped = rampart_infra::bundle::bundle_path(&out, "monitor", on_host);
    assert_eq!(std::fs::read_to_string(&shipped).unwrap(), contents);
    let mode = std::fs::metadata(&shipped).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let prometheus = rampart_infra::bundle::bundle_path(
        &out,
        "monitor",
        Path::new("/var/lib/rampart/hosts/monitor/prometheus.yml"),
    );
    let config = std::fs::read_to_string(prometheus).unwrap();
    assert!(
        config.contains(&format!(
            "rule_files:\n  - \"/var/lib/rampart/hosts/monitor/rules.yml\"\n  - \"{}\"\n",
            on_host.display()
        )),
        "{config}"
    );
    let vars = std::fs::read_to_string(out.join("ansible/host_vars/monitor.json")).unwrap();
    assert!(vars.contains(&on_host.display().to_string()), "{vars}");
    let web = std::fs::read_to_string(out.join("ansible/host_vars/web1.json")).unwrap();
    assert!(!web.contains("rules-extra"), "{web}");
}
