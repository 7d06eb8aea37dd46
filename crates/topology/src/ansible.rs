//! The Ansible side of `rampart render`: an inventory of the plan's hosts grouped by
//! kind, each host's variables (its packages, directories, bundle files and units, from
//! its [`Bundle`]), and a playbook with a role per kind of host. Only `ansible.builtin`
//! modules: nothing comes from Galaxy. Pure text; `rampart_infra::bundle` writes it.
//!
//! The order of a deployment: every host is checked and installed first (role
//! `common`: packages, users, the binary, the units staged and checked with
//! `systemd-analyze verify` (any warning fails), the firewall checked with `nft -c`, then
//! the bundle, then the units), and nothing starts or restarts until every host has
//! passed; then the etcd members together, the databases one at a time, the web servers
//! one at a time, the load balancers, DNS, the monitor, the backup host, and the agents.
//!
//! A unit restarts, through the `Restart the changed units` handler flushed in its role's
//! turn, only when it ran already and one of its own files changed (`restart_on`: its
//! unit, configs, certificates, keys, and the binary for what runs `rampart`), one host
//! at a time. Before the restart a web server is drained from every load balancer and a
//! leading keeper hands the leadership to its caught-up standby; the load balancer's
//! listeners stay open in its socket unit. A new binary therefore reaches the whole site
//! without a failed request.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::deploy::{Bundle, BundleFile, UnitKind, BIN, FIREWALL_FILE, STAGE_DIR};
use crate::plan::{BodyCheck, Plan, Probe};
use crate::Role;

/// The inventory group of a kind of host.
pub fn group(role: Role) -> &'static str {
    match role {
        Role::Client => "clients",
        Role::Dns => "dns_servers",
        Role::Lb => "load_balancers",
        Role::Web => "web_servers",
        Role::DbPrimary | Role::DbReplica => "databases",
        Role::Monitor => "monitors",
        Role::Backup => "backups",
    }
}

/// JSON string literal (YAML and JSON both read it).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Every Ansible file, as paths relative to the output's `ansible/` directory.
pub fn files(plan: &Plan, bundles: &[Bundle]) -> Vec<(PathBuf, String)> {
    let mut out = vec![
        (PathBuf::from("ansible.cfg"), ANSIBLE_CFG.to_owned()),
        (PathBuf::from("inventory.yml"), inventory(plan, bundles)),
        (PathBuf::from("site.yml"), PLAYBOOK.to_owned()),
        (
            PathBuf::from("group_vars/all.yml"),
            format!(
                "---\n# Where the bundles and the binary are, relative to this directory.\nrampart_bundles: \"{{{{ playbook_dir }}}}/../hosts\"\nrampart_binary_src: \"{{{{ playbook_dir }}}}/../bin/rampart\"\nrampart_bin: {}\n",
                q(BIN)
            ),
        ),
    ];
    for b in bundles {
        out.push((
            PathBuf::from("host_vars").join(format!("{}.json", b.host)),
            host_vars(b),
        ));
    }
    for (role, tasks) in roles() {
        out.push((
            PathBuf::from("roles").join(role).join("tasks/main.yml"),
            tasks,
        ));
    }
    out.push((
        PathBuf::from("roles/common/handlers/main.yml"),
        COMMON_HANDLERS.to_owned(),
    ));
    out.push((
        PathBuf::from("roles/common/tasks/ready.yml"),
        COMMON_READY.to_owned(),
    ));
    out.push((
        PathBuf::from("roles/common/tasks/start.yml"),
        COMMON_START.to_owned(),
    ));
    out
}

fn inventory(plan: &Plan, bundles: &[Bundle]) -> String {
    let mut s = String::from(
        "---\n# rampart's site, by kind of host. ansible_host is each host's management\n# address (its public one when it has none).\nsite:\n  children:\n",
    );
    for g in [
        "etcd_members",
        "databases",
        "web_servers",
        "load_balancers",
        "dns_servers",
        "monitors",
        "backups",
        "clients",
    ] {
        let _ = writeln!(s, "    {g}:\n      hosts:");
        let mut any = false;
        for b in bundles {
            let member = if g == "etcd_members" {
                b.units.iter().any(|(u, _)| u.unit == "etcd.service")
            } else {
                group(b.role) == g
            };
            if !member {
                continue;
            }
            any = true;
            let addr = plan
                .host(&b.host)
                .and_then(|h| h.addresses.last())
                .map(ToString::to_string)
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "        {}:\n          ansible_host: {}",
                b.host,
                q(&addr)
            );
        }
        if !any {
            // An empty group still parses.
            s.truncate(s.len() - "      hosts:\n".len());
            let _ = writeln!(s, "      hosts: {{}}");
        }
    }
    s
}

fn file_json(f: &BundleFile) -> serde_json::Value {
    serde_json::json!({
        "path": f.path.display().to_string(),
        "src": f.path.display().to_string().trim_start_matches('/'),
        "mode": format!("{:04o}", f.mode),
        "owner": f.owner,
    })
}

/// A unit's readiness for the playbook's waits: `http` (a GET answers 200 and the body
/// holds every one of `contains`; over TLS with `ca`, `cert` and `key` when given), `tcp` (the port accepts), `file` (it exists), or
/// `none`.
fn ready_json(p: &Probe) -> serde_json::Value {
    let contains = |b: &BodyCheck| -> Vec<String> {
        match b {
            BodyCheck::Any | BodyCheck::NonEmpty => Vec::new(),
            BodyCheck::Lines(lines) => lines.clone(),
            BodyCheck::Contains(s) => vec![s.clone()],
        }
    };
    match p {
        Probe::Http { addr, path, body } => serde_json::json!({
            "kind": "http",
            "url": format!("http://{addr}{path}"),
            "contains": contains(body),
        }),
        Probe::Https {
            addr,
            path,
            body,
            ca,
            cert,
            key,
        } => serde_json::json!({
            "kind": "http",
            "url": format!("https://{addr}{path}"),
            "contains": contains(body),
            "ca": ca.display().to_string(),
            "cert": cert.display().to_string(),
            "key": key.display().to_string(),
        }),
        Probe::Accepting(addr) => serde_json::json!({
            "kind": "tcp",
            "host": addr.ip().to_string(),
            "port": addr.port(),
        }),
        Probe::File { path, .. } => serde_json::json!({
            "kind": "file",
            "path": path.display().to_string(),
        }),
        Probe::Database => serde_json::json!({"kind": "none"}),
    }
}

fn host_vars(b: &Bundle) -> String {
    let units: Vec<serde_json::Value> = b
        .units
        .iter()
        .map(|(u, path)| {
            serde_json::json!({
                "unit": u.unit,
                "own": u.kind == UnitKind::Own,
                "path": path.display().to_string(),
                "src": path.display().to_string().trim_start_matches('/'),
                "ready": b.ready.get(&u.unit).map(ready_json).unwrap_or(serde_json::json!({"kind": "none"})),
                "restart_on": b.restart_on.get(&u.unit).map(|v| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "staged": format!("{STAGE_DIR}/{}", path.strip_prefix(crate::deploy::UNIT_DIR).map(|p| p.display().to_string()).unwrap_or_default()),
            })
        })
        .collect();
    let is_unit = |f: &&BundleFile| b.units.iter().any(|(_, p)| *p == f.path);
    let is_fw = |f: &&BundleFile| f.path == std::path::Path::new(FIREWALL_FILE);
    let mut v = serde_json::json!({
        "rampart_role": group(b.role),
        "rampart_packages": b.packages,
        "rampart_dirs": b.dirs.iter().map(|d| serde_json::json!({
            "path": d.path.display().to_string(),
            "mode": format!("{:04o}", d.mode),
            "owner": d.owner,
            "group": d.group,
        })).collect::<Vec<_>>(),
        "rampart_files": b.files.iter().filter(|f| !f.secret && !is_unit(f) && !is_fw(f)).map(file_json).collect::<Vec<_>>(),
        "rampart_secrets": b.files.iter().filter(|f| f.secret).map(file_json).collect::<Vec<_>>(),
        "rampart_firewall": b.files.iter().any(|f| is_fw(&f)),
        "rampart_units": units,
    });
    if let Some(admin) = b.lb_admin {
        v["rampart_lb_admin"] = serde_json::Value::String(admin.to_string());
    }
    if let Some(keeper) = b.keeper {
        v["rampart_keeper"] = serde_json::Value::String(keeper.to_string());
    }
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    text
}

const ANSIBLE_CFG: &str = "# rampart render: Ansible settings for this site.
[defaults]
inventory = inventory.yml
roles_path = roles
forks = 16
host_key_checking = True
# Nothing in the output shows a diff of a secret; tasks with secrets set no_log.
display_skipped_hosts = False
interpreter_python = /usr/bin/python3

[ssh_connection]
pipelining = True
";

const PLAYBOOK: &str = r#"---
# rampart's site, rendered by `rampart render`: ansible-playbook site.yml
- name: Check and install every host
  hosts: site
  any_errors_fatal: true
  roles:
    - role: common

- name: Start the etcd cluster, its members together
  hosts: etcd_members
  any_errors_fatal: true
  roles:
    - role: etcd

- name: Start or upgrade the databases, one at a time
  hosts: databases
  serial: 1
  any_errors_fatal: true
  roles:
    - role: database

- name: Start or upgrade the web servers, one at a time
  hosts: web_servers
  serial: 1
  any_errors_fatal: true
  roles:
    - role: web

- name: Start the load balancers
  hosts: load_balancers
  serial: 1
  any_errors_fatal: true
  roles:
    - role: lb

- name: Start DNS
  hosts: dns_servers
  any_errors_fatal: true
  roles:
    - role: dns

- name: Start the monitor
  hosts: monitors
  any_errors_fatal: true
  roles:
    - role: monitor

- name: Start the backup service
  hosts: backups
  any_errors_fatal: true
  roles:
    - role: backup

- name: Start the agents
  hosts: site
  any_errors_fatal: true
  roles:
    - role: agent
"#;

const COMMON_TASKS: &str = r#"---
- name: Install the host's packages
  ansible.builtin.apt:
    name: "{{ rampart_packages }}"
    state: present

- name: Create the rampart group
  ansible.builtin.group:
    name: rampart
    system: true

- name: Create the rampart user
  ansible.builtin.user:
    name: rampart
    group: rampart
    system: true
    shell: /usr/sbin/nologin
    create_home: false

- name: Create the binary's directory
  ansible.builtin.file:
    path: /opt/rampart/bin
    state: directory
    owner: root
    group: root
    mode: "0755"

- name: Install the rampart binary
  ansible.builtin.copy:
    src: "{{ rampart_binary_src }}"
    dest: "{{ rampart_bin }}"
    owner: root
    group: root
    mode: "0755"
  register: common_binary

- name: Create the unit staging directories
  ansible.builtin.file:
    path: "{{ item.staged | dirname }}"
    state: directory
    owner: root
    group: root
    mode: "0755"
  loop: "{{ rampart_units }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Stage the units
  ansible.builtin.copy:
    src: "{{ rampart_bundles }}/{{ inventory_hostname }}/{{ item.src }}"
    dest: "{{ item.staged }}"
    owner: root
    group: root
    mode: "0644"
  loop: "{{ rampart_units }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Check the staged units (any warning fails)
  ansible.builtin.command:
    cmd: "systemd-analyze verify {{ item.unit }}"
  environment:
    SYSTEMD_UNIT_PATH: "/etc/rampart/units:"
  register: common_verify
  changed_when: false
  failed_when: common_verify.rc != 0 or (common_verify.stderr | length) > 0
  loop: "{{ rampart_units }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Create the firewall's directory
  ansible.builtin.file:
    path: /etc/rampart
    state: directory
    owner: root
    group: root
    mode: "0755"

- name: Install the firewall once nft -c accepts it
  ansible.builtin.copy:
    src: "{{ rampart_bundles }}/{{ inventory_hostname }}/etc/rampart/nftables.conf"
    dest: /etc/rampart/nftables.conf
    owner: root
    group: root
    mode: "0644"
    validate: nft -c -f %s
  when: rampart_firewall
  notify: Load the firewall

- name: Create the host's directories
  ansible.builtin.file:
    path: "{{ item.path }}"
    state: directory
    owner: "{{ item.owner }}"
    group: "{{ item.group }}"
    mode: "{{ item.mode }}"
  loop: "{{ rampart_dirs }}"
  loop_control:
    label: "{{ item.path }}"

- name: Install the configs and certificates
  ansible.builtin.copy:
    src: "{{ rampart_bundles }}/{{ inventory_hostname }}/{{ item.src }}"
    dest: "{{ item.path }}"
    owner: "{{ item.owner }}"
    group: "{{ item.owner }}"
    mode: "{{ item.mode }}"
  loop: "{{ rampart_files }}"
  loop_control:
    label: "{{ item.path }}"
  register: common_files

- name: Install the keys and passwords
  ansible.builtin.copy:
    src: "{{ rampart_bundles }}/{{ inventory_hostname }}/{{ item.src }}"
    dest: "{{ item.path }}"
    owner: "{{ item.owner }}"
    group: "{{ item.owner }}"
    mode: "{{ item.mode }}"
  loop: "{{ rampart_secrets }}"
  no_log: true
  diff: false
  register: common_secrets

- name: Create the units' directories
  ansible.builtin.file:
    path: "{{ item.path | dirname }}"
    state: directory
    owner: root
    group: root
    mode: "0755"
  loop: "{{ rampart_units }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Install the units
  ansible.builtin.copy:
    src: "{{ item.staged }}"
    dest: "{{ item.path }}"
    remote_src: true
    owner: root
    group: root
    mode: "0644"
  loop: "{{ rampart_units }}"
  loop_control:
    label: "{{ item.unit }}"
  register: common_units
  notify: Reload systemd

# Each unit restarts (later, in its role's turn) only when one of its own files
# (`restart_on` in the host's variables) is among these.
- name: Note the files that changed
  ansible.builtin.set_fact:
    common_changed: >-
      {{ ((common_files.results + common_secrets.results + common_units.results)
          | selectattr('changed') | map(attribute='item.path') | list)
         + ([rampart_bin] if common_binary.changed else []) }}
"#;

/// Starts each of `common_units` the host has, in the host's start order; restarts,
/// through the handler, those that ran already and one of whose own files changed; then
/// waits for them.
const COMMON_START: &str = r#"---
- name: Start the units
  ansible.builtin.systemd_service:
    name: "{{ item.unit }}"
    enabled: true
    state: started
  loop: "{{ rampart_units | selectattr('unit', 'in', common_units) | list }}"
  loop_control:
    label: "{{ item.unit }}"
  register: common_started

- name: Start from no unit to restart
  ansible.builtin.set_fact:
    common_restart: []

- name: Note each running unit one of whose files changed
  ansible.builtin.set_fact:
    common_restart: "{{ common_restart + [item.unit] }}"
  loop: "{{ common_started.results | rejectattr('changed') | map(attribute='item') | list }}"
  loop_control:
    label: "{{ item.unit }}"
  when: item.restart_on | intersect(common_changed | default([])) | length > 0

- name: Ask for their restart
  ansible.builtin.debug:
    msg: "restarting {{ common_restart | join(', ') }}"
  changed_when: true
  when: common_restart | length > 0
  notify: Restart the changed units

- name: Restart them now
  ansible.builtin.meta: flush_handlers

- name: Wait until they are ready
  ansible.builtin.include_tasks: ready.yml
"#;

/// Waits until each of `common_units` answers as the plan's probe says (bounded: two
/// minutes each).
const COMMON_READY: &str = r#"---
- name: Wait until the units answer over HTTP
  ansible.builtin.uri:
    url: "{{ item.ready.url }}"
    return_content: true
    ca_path: "{{ item.ready.ca | default(omit) }}"
    client_cert: "{{ item.ready.cert | default(omit) }}"
    client_key: "{{ item.ready.key | default(omit) }}"
  register: common_ready_http
  until: >-
    common_ready_http.status | default(0) == 200 and
    (item.ready.contains | reject('in', common_ready_http.content | default('')) | list | length) == 0
  retries: 120
  delay: 1
  loop: "{{ rampart_units | selectattr('unit', 'in', common_units) | selectattr('ready.kind', 'equalto', 'http') | list }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Wait until the units accept connections
  ansible.builtin.wait_for:
    host: "{{ item.ready.host }}"
    port: "{{ item.ready.port }}"
    timeout: 120
  loop: "{{ rampart_units | selectattr('unit', 'in', common_units) | selectattr('ready.kind', 'equalto', 'tcp') | list }}"
  loop_control:
    label: "{{ item.unit }}"

- name: Wait until the units have written their state
  ansible.builtin.wait_for:
    path: "{{ item.ready.path }}"
    timeout: 120
  loop: "{{ rampart_units | selectattr('unit', 'in', common_units) | selectattr('ready.kind', 'equalto', 'file') | list }}"
  loop_control:
    label: "{{ item.unit }}"
"#;

const COMMON_HANDLERS: &str = r#"---
- name: Reload systemd
  ansible.builtin.systemd_service:
    daemon_reload: true

- name: Load the firewall
  ansible.builtin.command:
    cmd: nft -f /etc/rampart/nftables.conf
  changed_when: true

# One host at a time across the play: etcd's members (Type=notify: a restart returns
# once the member is back in its cluster) never restart together.
- name: Restart the changed units
  ansible.builtin.systemd_service:
    name: "{{ item }}"
    state: restarted
  loop: "{{ common_restart }}"
  throttle: 1
"#;

/// The database role's steps before and after its start: a keeper that leads hands the
/// leadership to its caught-up standby before it restarts, and the next database host
/// waits until this one follows (or leads) again.
const DATABASE_BEFORE: &str = r#"---
# rampart-db-init.service (required by mariadb.service) gives a new database host its
# data directory and accounts first; the keepers then set up replication through etcd.
- name: Gather the services' states
  ansible.builtin.service_facts:

- name: Note whether the keeper runs already and restarts
  ansible.builtin.set_fact:
    database_restart: >-
      {{ (ansible_facts.services['mariadb.service'] | default({})).state | default('') == 'running'
         and ((rampart_units | selectattr('unit', 'equalto', 'mariadb.service') | first).restart_on
              | intersect(common_changed | default([])) | length > 0) }}

- name: Ask the keeper whether it leads
  ansible.builtin.uri:
    url: "http://{{ rampart_keeper }}/status"
    return_content: true
  register: database_status
  when: database_restart | bool

# Writes pause for well under a second; reads go on from the other servers.
- name: Hand the leadership to the caught-up standby before the restart
  ansible.builtin.uri:
    url: "http://{{ rampart_keeper }}/switchover"
    method: POST
  register: database_switchover
  until: database_switchover.status | default(0) == 200
  retries: 30
  delay: 2
  when: database_restart | bool and database_status.json.role == 'leader'

"#;

const DATABASE_AFTER: &str = r#"
- name: Wait until the server follows the leader again, caught up, or leads
  ansible.builtin.uri:
    url: "http://{{ rampart_keeper }}/status"
    return_content: true
  register: database_back
  until: >-
    database_back.status | default(0) == 200 and database_back.json.ready and
    (database_back.json.role == 'leader' or database_back.json.promotable)
  retries: 120
  delay: 1
  when: database_restart | bool
"#;

/// The web role's steps before and after its start (the drain, then putting it back).
const WEB_BEFORE: &str = r#"---
# A web server that runs already is drained from every load balancer (their admin API)
# before it restarts, and put back once ready: requests go to the others meanwhile.
- name: Gather the services' states
  ansible.builtin.service_facts:

- name: Note whether the web server runs already and restarts
  ansible.builtin.set_fact:
    web_restart: >-
      {{ (ansible_facts.services['rampart-web.service'] | default({})).state | default('') == 'running'
         and ((rampart_units | selectattr('unit', 'equalto', 'rampart-web.service') | first).restart_on
              | intersect(common_changed | default([])) | length > 0) }}

- name: Drain the web server from every load balancer
  ansible.builtin.uri:
    url: "http://{{ hostvars[item].rampart_lb_admin }}/-/drain?backend={{ inventory_hostname }}"
    method: POST
  delegate_to: "{{ item }}"
  loop: "{{ groups['load_balancers'] | default([]) }}"
  when: web_restart | bool

- name: Wait until no load balancer has a request in flight to it
  ansible.builtin.uri:
    url: "http://{{ hostvars[item].rampart_lb_admin }}/-/backends"
    return_content: true
  register: web_backends
  until: >-
    (web_backends.json.backends | selectattr('name', 'equalto', inventory_hostname)
     | map(attribute='active') | sum) == 0
  retries: 60
  delay: 1
  delegate_to: "{{ item }}"
  loop: "{{ groups['load_balancers'] | default([]) }}"
  when: web_restart | bool

"#;

const WEB_AFTER: &str = r#"
- name: Put the web server back on every load balancer
  ansible.builtin.uri:
    url: "http://{{ hostvars[item].rampart_lb_admin }}/-/undrain?backend={{ inventory_hostname }}"
    method: POST
  delegate_to: "{{ item }}"
  loop: "{{ groups['load_balancers'] | default([]) }}"
  when: web_restart | bool

# Put back is not yet in rotation: a load balancer whose health checks failed while the
# server restarted takes it back after `rise` passing checks. Until every load balancer
# has, the next web server must not be drained, or no backend would be left.
- name: Wait until every load balancer has it in rotation again
  ansible.builtin.uri:
    url: "http://{{ hostvars[item].rampart_lb_admin }}/-/backends"
    return_content: true
  register: web_back
  until: >-
    (web_back.json.backends | selectattr('name', 'equalto', inventory_hostname)
     | rejectattr('up') | list | length) == 0
  retries: 60
  delay: 1
  delegate_to: "{{ item }}"
  loop: "{{ groups['load_balancers'] | default([]) }}"
  when: web_restart | bool
"#;

/// A task that starts (or restarts) `units` and waits for them (`common/tasks/start.yml`).
fn start(what: &str, units: &[&str]) -> String {
    format!(
        "- name: Start or restart {what} and wait\n  ansible.builtin.include_role:\n    name: common\n    tasks_from: start\n  vars:\n    common_units: [{}]\n",
        units.join(", ")
    )
}

/// Each role's `tasks/main.yml`: `common` checks and installs, the others start their
/// kind of host's units.
fn roles() -> Vec<(&'static str, String)> {
    vec![
        ("common", COMMON_TASKS.to_owned()),
        ("etcd", format!("---\n{}", start("etcd", &["etcd.service"]))),
        (
            "database",
            format!(
                "{DATABASE_BEFORE}{}{DATABASE_AFTER}",
                start("the keeper and its server", &["mariadb.service"])
            ),
        ),
        (
            "web",
            format!(
                "{WEB_BEFORE}{}{WEB_AFTER}",
                start("the web server", &["rampart-web.service"])
            ),
        ),
        (
            "lb",
            format!(
                "---\n{}",
                start(
                    "the load balancer (and keepalived of a pair)",
                    &[
                        "rampart-lb.socket",
                        "rampart-lb.service",
                        "keepalived.service"
                    ]
                )
            ),
        ),
        (
            "dns",
            format!("---\n{}", start("the DNS server", &["rampart-dns.service"])),
        ),
        (
            "monitor",
            format!(
                "---\n{}",
                start(
                    "the dashboard, Alertmanager, Prometheus, the log store and the ingest gate",
                    &[
                        "rampart-dashboard.service",
                        "prometheus-alertmanager.service",
                        "prometheus.service",
                        "rampart-logs.service",
                        "rampart-gate.service"
                    ]
                )
            ),
        ),
        (
            "backup",
            format!(
                "---\n{}",
                start("the backup service", &["rampart-backup.service"])
            ),
        ),
        (
            "agent",
            format!("---\n{}", start("the agent", &["rampart-agent.service"])),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{deploy, Mode, Topology};

    #[test]
    fn inventory_groups_hosts_by_kind_and_etcd_membership() {
        let p = deploy::plan(&Topology::default_for(Mode::Isolated, 0));
        let bundles: Vec<Bundle> = p
            .hosts
            .iter()
            .filter_map(|h| deploy::bundle(&p, &h.name, &[], ""))
            .collect();
        let files = files(&p, &bundles);
        let inv = &files
            .iter()
            .find(|(p, _)| p.ends_with("inventory.yml"))
            .unwrap()
            .1;
        let group_hosts = |g: &str| -> Vec<String> {
            let start = inv.find(&format!("\n    {g}:\n")).unwrap();
            inv[start..]
                .lines()
                .skip(3)
                .take_while(|l| l.starts_with("        "))
                .filter(|l| !l.trim_start().starts_with("ansible_host"))
                .map(|l| l.trim().trim_end_matches(':').to_owned())
                .collect()
        };
        assert_eq!(group_hosts("etcd_members"), ["dns", "lb1", "monitor"]);
        assert_eq!(group_hosts("web_servers"), ["web1", "web2"]);
        assert_eq!(group_hosts("databases"), ["db1", "db2"]);
        let hv = &files
            .iter()
            .find(|(p, _)| p.ends_with("host_vars/db1.json"))
            .unwrap()
            .1;
        let v: serde_json::Value = serde_json::from_str(hv).unwrap();
        assert_eq!(v["rampart_role"], "databases");
        // Secrets go only through the no_log task.
        for f in v["rampart_files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            assert!(
                !path.ends_with(".key") && !path.contains("/secrets/"),
                "{path}"
            );
        }
        assert!(!v["rampart_secrets"].as_array().unwrap().is_empty());
    }

    /// Every unit a host's bundle installs is started by some role (the roles name their
    /// units; a new service once deployed but never started), except the database's
    /// one-shot init, which `mariadb.service` requires.
    #[test]
    fn every_unit_is_started_by_a_role() {
        let p = deploy::plan(&Topology::default_for(Mode::Isolated, 0));
        let started: String = roles().into_iter().map(|(_, text)| text).collect();
        for h in &p.hosts {
            let Some(b) = deploy::bundle(&p, &h.name, &[], "") else {
                continue;
            };
            for (u, _) in &b.units {
                if u.unit == "rampart-db-init.service" {
                    continue;
                }
                assert!(
                    started.contains(&u.unit),
                    "{}: {} is installed but no role starts it",
                    h.name,
                    u.unit
                );
            }
        }
    }
}
