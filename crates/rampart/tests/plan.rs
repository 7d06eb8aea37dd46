//! Every config the plan renders, for every host in both modes, parses with that
//! service's own config parser: `rampart up` never writes a file its service refuses.

use std::path::{Path, PathBuf};

use rampart_telemetry::config::ConfigFile;
use rampart_topology::plan::{plan, Launch, Program, Settings};
use rampart_topology::render::{Pace, StatePaths};
use rampart_topology::{Mode, Topology};

/// Parses `text` with the parser of rampart service `service`; the error text on failure.
fn parse(service: &str, path: &Path, text: &str) -> Result<(), String> {
    match service {
        "lb" => rampart_lb::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "web" => rampart_web::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "dns" => rampart_dns::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "agent" => rampart_agent::config::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "dashboard" => rampart_dashboard::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        other => Err(format!("no parser for service {other}")),
    }
}

#[test]
fn every_planned_config_parses_with_its_services_parser() {
    let mut parsed = Vec::new();
    for (mode, prefix) in [(Mode::Local, None), (Mode::Isolated, Some("rp"))] {
        for pace in [Pace::Production, Pace::Fast] {
            let settings = Settings {
                state: StatePaths::new(Path::new("/var/lib/rampart")),
                bin: PathBuf::from("/usr/bin/rampart"),
                pace,
                prefix: prefix.map(str::to_owned),
                publish: 8443,
                dashboard_publish: 9443,
                uid: 0,
            };
            let p = plan(&Topology::default_for(mode, 0), &settings);
            for host in &p.hosts {
                for svc in &host.services {
                    let Launch::Process {
                        program: Program::Rampart(_),
                        args,
                    } = &svc.launch
                    else {
                        continue;
                    };
                    // `rampart forward` takes flags, not a config.
                    if args.iter().all(|a| a != "--config") {
                        continue;
                    }
                    let [config] = &svc.files[..] else {
                        panic!("{}/{}: expected one config file", host.name, svc.name);
                    };
                    assert_eq!(
                        args.last(),
                        Some(&config.path.to_string_lossy().into_owned())
                    );
                    if let Err(e) = parse(&args[0], &config.path, &config.contents) {
                        panic!(
                            "{mode:?} {}/{}: {e}\n{}",
                            host.name, svc.name, config.contents
                        );
                    }
                    parsed.push(format!("{mode:?} {}/{}", host.name, svc.name));
                }
            }
        }
    }
    // 7 hosts with an agent, plus web, web, lb, dns and the dashboard, in each mode and
    // pace.
    assert_eq!(parsed.len(), 4 * 12, "{parsed:#?}");
}
