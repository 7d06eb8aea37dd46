//! `rampart render`: the site for real hosts, written to a directory from
//! `rampart_topology::deploy`'s plan and bundles. The certificates and database
//! passwords are made once in the output's `state/` (0700, keys and passwords 0600) and
//! kept there: a second render reuses them, so a redeploy changes no secret. Each
//! host's bundle is `hosts/<host>/` with every file at its on-host path; `ansible/` holds
//! the inventory and playbook that deploy them (`rampart_topology::ansible`). Nothing
//! here prints a secret.

use std::path::{Path, PathBuf};

use rampart_topology::deploy::{self, Bundle, Contents, ROOT};
use rampart_topology::plan::{self, Launch};
use rampart_topology::render::StatePaths;
use rampart_topology::{ansible, Topology};

use crate::mariadb;
use crate::process::{create_private_dir, InfraError};
use crate::stack::{issue_certificates, Stack};

/// What `render` wrote.
#[derive(Debug)]
pub struct Rendered {
    pub bundles: Vec<Bundle>,
    /// Files written (bundles and Ansible), for the summary.
    pub files: usize,
}

/// Where the operator's copy of an on-host path lives in the output's `state/`.
fn operator_copy(state: &Path, on_host: &Path) -> Option<PathBuf> {
    on_host.strip_prefix(ROOT).ok().map(|rel| state.join(rel))
}

/// The bundle path of an on-host file: `hosts/<host>/<path without the leading />`.
pub fn bundle_path(out: &Path, host: &str, on_host: &Path) -> PathBuf {
    let rel = on_host.strip_prefix("/").unwrap_or(on_host);
    out.join("hosts").join(host).join(rel)
}

/// Debian 12's paths of the programs the keeper runs the server with.
const SETPRIV: &str = "/usr/bin/setpriv";
const MARIADBD: &str = "/usr/sbin/mariadbd";

/// Writes the site of `t` (the isolated topology: real addresses) under `out`, with
/// `topology_file` (the file's text) kept beside it.
pub fn render(t: &Topology, topology_file: &str, out: &Path) -> Result<Rendered, InfraError> {
    create_private_dir(out)?;
    let state = out.join("state");
    create_private_dir(&state)?;
    let write = |path: &Path, bytes: &[u8], mode: u32| -> Result<(), InfraError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| InfraError::io("create directory", dir, e))?;
        }
        rampart_telemetry::fs::write_atomic(path, bytes, mode)
            .map_err(|e| InfraError::io("write", path, e))
    };
    write(&out.join("topology.toml"), topology_file.as_bytes(), 0o644)?;

    // Certificates and passwords, issued once into the operator's state; a certificate
    // past two thirds of its life is renewed (the playbook then ships it, and the
    // services load it without a restart).
    let operator = plan::plan(
        t,
        &plan::Settings {
            state: StatePaths::new(&state),
            ..deploy::settings()
        },
    );
    issue_certificates(
        &StatePaths::new(&state),
        &operator.certificates,
        operator.cert_lifetime,
    )?;
    mariadb::Secrets::load_or_create(&state.join("secrets"))?;

    let plan = deploy::plan(t);
    let mut bundles = Vec::new();
    let mut files = 0;
    let hosts_dir = out.join("hosts");
    if hosts_dir.exists() {
        // A bundle is rewritten whole: nothing of an earlier render lingers.
        std::fs::remove_dir_all(&hosts_dir).map_err(|e| InfraError::io("remove", &hosts_dir, e))?;
    }
    for h in &plan.hosts {
        let db_command: Vec<String> = h
            .services
            .iter()
            .find_map(|s| match &s.launch {
                Launch::Database(db) => Some(
                    Stack::instance(h, db)
                        .server_command(Path::new(SETPRIV), Path::new(MARIADBD), None)
                        .iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect(),
                ),
                Launch::Process { .. } => None,
            })
            .unwrap_or_default();
        let Some(b) = deploy::bundle(&plan, &h.name, &db_command, topology_file) else {
            continue;
        };
        create_private_dir(&hosts_dir.join(&h.name))?;
        for f in &b.files {
            let target = bundle_path(out, &h.name, &f.path);
            match &f.contents {
                Contents::Text(text) => write(&target, text.as_bytes(), f.mode)?,
                Contents::Issued => {
                    let from = operator_copy(&state, &f.path).ok_or_else(|| {
                        InfraError::Invalid(format!(
                            "{}: {} is outside {ROOT}",
                            h.name,
                            f.path.display()
                        ))
                    })?;
                    let bytes =
                        std::fs::read(&from).map_err(|e| InfraError::io("read", &from, e))?;
                    write(&target, &bytes, f.mode)?;
                }
            }
            files += 1;
        }
        bundles.push(b);
    }
    for (path, text) in ansible::files(&plan, &bundles) {
        let target = out.join("ansible").join(path);
        write(&target, text.as_bytes(), 0o644)?;
        files += 1;
    }
    Ok(Rendered { bundles, files })
}

/// `rampart db init HOST` on a deployed database host (run once by its
/// `rampart-db-init.service`, as mysql, before the keeper's first start): a new data
/// directory with the plan's accounts, outside the binlog, as `up` gives a new database
/// host (`bootstrap_fresh`). Returns whether it initialized anything; a data directory
/// that exists is left alone. The passwords are read where the unit's credentials put
/// them, and nothing is created beside them.
pub fn init_database(t: &Topology, host: &str) -> Result<bool, InfraError> {
    let plan = deploy::plan(t);
    let (h, db) = plan
        .databases()
        .find(|(h, _)| h.name == host)
        .ok_or_else(|| {
            let names: Vec<&str> = plan.databases().map(|(h, _)| h.name.as_str()).collect();
            InfraError::Invalid(format!(
                "{host} is not a database host; the site's are {}",
                names.join(", ")
            ))
        })?;
    let mut inst = Stack::instance(h, db);
    // A real host: no namespace to enter.
    inst.netns = None;
    if !inst.prepare()? {
        return Ok(false);
    }
    let secrets = mariadb::Secrets::load(&StatePaths::new(Path::new(ROOT)).secrets())?;
    mariadb::bootstrap_fresh(&inst, &secrets, &plan.db_users)?;
    Ok(true)
}
