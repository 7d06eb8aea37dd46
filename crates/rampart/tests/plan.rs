//! Every config the plan renders, for every host in both modes, parses with that
//! service's own config parser: `rampart up` never writes a file its service refuses.
//! And the etcd members' command lines agree on one cluster, name only files the plan
//! issues, and advertise what the plan gives the clients.

use std::path::{Path, PathBuf};

use rampart_telemetry::config::ConfigFile;
use rampart_topology::plan::{plan, Launch, Plan, Program, Settings};
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
        "backup" => rampart_backup::config::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "logs" => rampart_logs::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "gate" => rampart_gate::Config::parse(path, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        other => Err(format!("no parser for service {other}")),
    }
}

fn settings(prefix: Option<&str>, pace: Pace) -> Settings {
    Settings {
        state: StatePaths::new(Path::new("/var/lib/rampart")),
        bin: PathBuf::from("/usr/bin/rampart"),
        pace,
        prefix: prefix.map(str::to_owned),
        publish: 8443,
        dashboard_publish: 9443,
        uid: 0,
        failover: Default::default(),
        runtime: PathBuf::from("/run/rampart"),
        journal: false,
        // As `up` as root plans an isolated site: the agents read their cgroups.
        cgroups: prefix.is_some(),
    }
}

const MODES: [(Mode, Option<&str>); 2] = [(Mode::Local, None), (Mode::Isolated, Some("rp"))];

#[test]
fn every_planned_config_parses_with_its_services_parser() {
    let mut parsed = Vec::new();
    let mut keeper_leader_keys = Vec::new();
    let mut web_leader_keys = Vec::new();
    for (mode, prefix) in MODES {
        for pace in [Pace::Production, Pace::Fast] {
            let p = plan(&Topology::default_for(mode, 0), &settings(prefix, pace));
            for host in &p.hosts {
                for svc in &host.services {
                    if let Launch::Database(_) = &svc.launch {
                        // The keeper's config; its leader key is the one the web
                        // servers watch.
                        let [config] = &svc.files[..] else {
                            panic!("{}/{}: expected the keeper config", host.name, svc.name);
                        };
                        let k =
                            rampart_keeper::config::Config::parse(&config.path, &config.contents)
                                .unwrap_or_else(|e| {
                                    panic!("{mode:?} {}: {e}\n{}", host.name, config.contents)
                                });
                        keeper_leader_keys.push(format!("{}leader", k.prefix));
                        parsed.push(format!("{mode:?} {}/keeper", host.name));
                        continue;
                    }
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
                    if args[0] == "web" {
                        let w = rampart_web::Config::parse(&config.path, &config.contents)
                            .unwrap_or_else(|e| panic!("{e}"));
                        let etcd = w.database.and_then(|d| d.etcd).expect("web follows etcd");
                        web_leader_keys.push(etcd.leader_key);
                    }
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
    // 8 hosts with an agent, plus web, web, lb, dns, the dashboard, the gate, the log
    // store, two keepers and the backup service, in each mode and pace; every keeper and
    // web server agree on the leader key.
    assert_eq!(parsed.len(), 4 * 18, "{parsed:#?}");
    let mut keys = keeper_leader_keys.clone();
    keys.extend(web_leader_keys);
    keys.dedup();
    assert_eq!(keys, ["/rampart/db/leader"], "{keeper_leader_keys:?}");
}

/// The value of `--flag=` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// Each etcd member's argv, by host.
fn etcd_args(p: &Plan) -> Vec<(String, Vec<String>)> {
    p.hosts
        .iter()
        .filter_map(|h| {
            let svc = h.service("etcd")?;
            match &svc.launch {
                Launch::Process {
                    program:
                        Program::Packaged {
                            program: "etcd",
                            package: "etcd-server",
                        },
                    args,
                } => Some((h.name.clone(), args.clone())),
                other => panic!("{}: etcd launched as {other:?}", h.name),
            }
        })
        .collect()
}

#[test]
fn etcd_members_agree_on_one_cluster_and_name_only_issued_files() {
    for (mode, prefix) in MODES {
        let t = Topology::default_for(mode, 0);
        let p = plan(&t, &settings(prefix, Pace::Production));
        let members = etcd_args(&p);
        let names: Vec<&str> = members.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(names, ["dns", "lb1", "monitor"], "{mode:?}");
        // One --initial-cluster and token for all, listing every member by its peer URL.
        let cluster = flag(&members[0].1, "initial-cluster").unwrap();
        let token = flag(&members[0].1, "initial-cluster-token").unwrap();
        let mut advertised = Vec::new();
        for (host, args) in &members {
            assert_eq!(flag(args, "name"), Some(host.as_str()));
            assert_eq!(flag(args, "initial-cluster"), Some(cluster), "{host}");
            assert_eq!(flag(args, "initial-cluster-token"), Some(token), "{host}");
            let peer = flag(args, "initial-advertise-peer-urls").unwrap();
            assert!(
                cluster.split(',').any(|m| m == format!("{host}={peer}")),
                "{host}: {peer} not in {cluster}"
            );
            assert_eq!(flag(args, "listen-peer-urls"), Some(peer));
            let client = flag(args, "advertise-client-urls").unwrap();
            assert_eq!(flag(args, "listen-client-urls"), Some(client));
            advertised.push(client.to_owned());
            // TLS on both ports, with client certificates required on both.
            for required in ["--client-cert-auth", "--peer-client-cert-auth"] {
                assert!(args.iter().any(|a| a == required), "{host}: {required}");
            }
            assert!(peer.starts_with("https://") && client.starts_with("https://"));
            assert!(flag(args, "listen-metrics-urls")
                .unwrap()
                .starts_with("http://"));
            // Every file it names is one the plan issues (or the CA) and one it needs.
            let svc = p.host(host).and_then(|h| h.service("etcd")).unwrap();
            for key in [
                "cert-file",
                "key-file",
                "trusted-ca-file",
                "peer-cert-file",
                "peer-key-file",
                "peer-trusted-ca-file",
            ] {
                let file = PathBuf::from(flag(args, key).unwrap());
                assert!(
                    svc.needs.iter().any(|n| n.path == file),
                    "{host}: --{key} {} is not among its needs",
                    file.display()
                );
                let issued = p.certificates.iter().any(|c| {
                    let (cert, key) = c.files();
                    file == cert || file == key
                }) || file == p.etcd.ca;
                assert!(issued, "{host}: --{key} {} is never issued", file.display());
            }
            // Its certificate is a server and client one, valid for its address.
            let cert = PathBuf::from(flag(args, "cert-file").unwrap());
            let c = p.certificates.iter().find(|c| c.files().0 == cert).unwrap();
            assert!(c.server && c.client, "{host}: {c:?}");
            let ip = client
                .trim_start_matches("https://")
                .rsplit_once(':')
                .unwrap()
                .0;
            assert!(c.names.iter().any(|n| n == ip), "{host}: {c:?}");
            assert_eq!(
                svc.private_dirs,
                [PathBuf::from(flag(args, "data-dir").unwrap())]
            );
        }
        // The clients get exactly what the members advertise.
        let mut endpoints = p.etcd_endpoints();
        endpoints.sort();
        advertised.sort();
        assert_eq!(advertised, endpoints, "{mode:?}");
        // Every database and web host has a client-only certificate; no other host does.
        let clients: Vec<&str> = p.etcd.clients.iter().map(|c| c.host.as_str()).collect();
        assert_eq!(clients, ["web1", "web2", "db1", "db2"]);
        for client in &p.etcd.clients {
            let c = p
                .certificates
                .iter()
                .find(|c| c.files() == (client.cert.clone(), client.key.clone()))
                .unwrap_or_else(|| panic!("{}: client certificate not issued", client.host));
            assert!(c.client && !c.server, "{c:?}");
        }
    }
}

/// A pair under `[acme]`: each load balancer's config parses with the lb's parser and
/// orders the site's names from the topology's CA into its own private directory, with
/// the other one's own plain-HTTP listener as its peer (where it listens, besides the
/// floating address); no site certificate is issued by the run's CA.
#[test]
fn a_pair_under_acme_orders_its_own_certificates_and_relays_to_each_other() {
    let spec = rampart_topology::file::parse(
        "site.toml",
        "[hosts]\nlb = 2\n[acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n\
         contact = [\"mailto:ops@foobar.com\"]\nretry_min = \"30s\"\n",
    )
    .unwrap();
    let t = spec.topology(Mode::Isolated, 0).unwrap();
    let p = plan(&t, &settings(Some("rp"), Pace::Production));
    assert!(
        p.certificates.iter().all(|c| c.stem != "site"),
        "the run's CA issues no site certificate under [acme]"
    );
    let mut seen = Vec::new();
    for (me, peer) in [("lb1", "lb2"), ("lb2", "lb1")] {
        let svc = p.host(me).and_then(|h| h.service("lb")).unwrap();
        let [config] = &svc.files[..] else { panic!() };
        let c = rampart_lb::Config::parse(&config.path, &config.contents)
            .unwrap_or_else(|e| panic!("{e}\n{}", config.contents));
        let acme = c.acme.expect("[acme] rendered");
        let dir = PathBuf::from(format!("/var/lib/rampart/hosts/{me}/acme"));
        assert_eq!(acme.cert, dir.join("site.pem"));
        assert_eq!(acme.account, dir.join("account.json"));
        assert_eq!(acme.names, ["www.foobar.com", "foobar.com"]);
        assert_eq!(acme.retry_min, std::time::Duration::from_secs(30));
        assert!(svc.private_dirs.contains(&dir), "{:?}", svc.private_dirs);
        assert!(
            svc.needs.iter().all(|n| !n.path.ends_with("site.pem")),
            "nothing issues the site pair: the lb writes it"
        );
        let own = t.sock(t.host(me).unwrap(), rampart_topology::Segment::Public, 80);
        let other = t.sock(t.host(peer).unwrap(), rampart_topology::Segment::Public, 80);
        assert_eq!(c.listen.http_own, Some(own));
        assert_eq!(acme.peers, [other]);
        assert_ne!(c.listen.http, Some(own), "http is the floating address");
        seen.push(me);
    }
    assert_eq!(seen, ["lb1", "lb2"]);
    // Alone, a load balancer has no peer and no second listener.
    let one = rampart_topology::file::parse(
        "site.toml",
        "[acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n",
    )
    .unwrap()
    .topology(Mode::Local, 0)
    .unwrap();
    let p = plan(&one, &settings(None, Pace::Production));
    let svc = p.host("lb1").and_then(|h| h.service("lb")).unwrap();
    let c = rampart_lb::Config::parse(&svc.files[0].path, &svc.files[0].contents).unwrap();
    assert!(c.listen.http_own.is_none());
    assert!(c.acme.unwrap().peers.is_empty());
}
