//! `rampart firewall show HOST` (the rendered nftables ruleset) and `rampart firewall
//! check` (the rulesets loaded in a running isolated topology against the policy).

use std::path::Path;
use std::process::ExitCode;

use super::stack::self_exe;

/// Compares the rulesets loaded in the run's namespaces with the rendered policy; exit 1
/// when any host differs (each difference printed under its host).
pub(super) fn check(state: &Path) -> ExitCode {
    let result = (|| -> anyhow::Result<bool> {
        let stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let Some(fabric) = &stack.fabric else {
            anyhow::bail!(
                "the run in {} is in local mode, which has no nftables rulesets; the services' allow-lists enforce the policy there",
                state.display()
            );
        };
        let checks = rampart_infra::firewall::check(fabric)?;
        let mut ok = true;
        for c in &checks {
            if c.ok() {
                println!("{:<9} {:<18} ok", c.host, c.namespace);
            } else {
                ok = false;
                println!("{:<9} {:<18} DIFFERS", c.host, c.namespace);
                for p in &c.problems {
                    for line in p.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
        Ok(ok)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rampart firewall check: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn show(host: &str) -> ExitCode {
    let t = rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0);
    match t.host(host) {
        Some(h) => {
            print!("{}", rampart_topology::nft::ruleset(&t, h));
            ExitCode::SUCCESS
        }
        None => {
            let names: Vec<&str> = t.hosts.iter().map(|h| h.name.as_str()).collect();
            eprintln!(
                "rampart firewall show: no host {host}; the topology has {}",
                names.join(", ")
            );
            ExitCode::from(2)
        }
    }
}
