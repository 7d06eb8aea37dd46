//! Isolated mode's network fabric: a Linux network namespace per host, a bridge per
//! segment, veth pairs between them, the topology's addresses, and nothing else.
//!
//! The bridges live in a namespace of their own (`<prefix>-fabric`), so the root
//! namespace gets no interface, address or route into the topology: nothing on the host
//! can reach 203.0.113.x or 198.18.x.x except from inside a topology namespace. Host
//! namespaces get only their segments' connected routes (no default route), so no
//! namespace has a way out of the fabric. Everything is created and destroyed by name
//! (`<prefix>-<host>`, `<prefix>-fabric`): a crashed run leaves nothing `destroy` cannot
//! find, and `destroy` touches nothing else. Deleting a namespace deletes its interfaces,
//! and a veth pair dies with either end.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rampart_topology::{Host, Segment, Topology};

use crate::process::{describe_status, InfraError, Spec};

/// Moves the calling thread into the named network namespace (`/run/netns/<ns>`, as `ip
/// netns add` creates it). Only this thread moves; threads it spawns afterwards start in
/// the new namespace, and sockets keep the namespace they were created in.
pub fn enter(ns: &str) -> Result<(), InfraError> {
    let path = Path::new("/run/netns").join(ns);
    let file = std::fs::File::open(&path).map_err(|e| InfraError::io("open", &path, e))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| InfraError::io("enter network namespace", &path, e.into()))
}

/// Runs `f` on a thread inside namespace `ns` and returns its result: how rampart probes
/// a service on a topology address without sending anything from the root namespace.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, InfraError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(InfraError::Invalid(format!("probe in {ns} panicked"))))
    })
}

/// `spec` run inside namespace `ns` through `ip netns exec`, which enters the namespace
/// and then executes the program in place, so the recorded PID is the program's own.
pub fn wrap(ns: &str, mut spec: Spec) -> Result<Spec, InfraError> {
    let mut args: Vec<OsString> = vec!["netns".into(), "exec".into(), ns.into()];
    args.push(spec.program.into_os_string());
    args.append(&mut spec.args);
    spec.program = ip_bin()?;
    spec.args = args;
    Ok(spec)
}

/// The namespaces of one topology, named from a short prefix (`rampart` by default;
/// tests use their own so runs never collide).
#[derive(Clone, Debug)]
pub struct Fabric {
    pub prefix: String,
    pub topology: Topology,
}

fn seg_name(s: Segment) -> &'static str {
    rampart_topology::render::segment_short(s)
}

/// Finds `ip` (iproute2), naming the package when it is missing.
pub fn ip_bin() -> Result<PathBuf, InfraError> {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(InfraError::MissingBinary {
            program: "ip".into(),
            package: "iproute2",
        })
}

/// Finds `nft` (nftables), naming the package when it is missing.
pub fn nft_bin() -> Result<PathBuf, InfraError> {
    ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(InfraError::MissingBinary {
            program: "nft".into(),
            package: "nftables",
        })
}

pub(crate) fn run(ip: &Path, args: &[&str]) -> Result<String, InfraError> {
    let mut c = Command::new(ip);
    c.args(args);
    output(
        &mut c,
        None,
        "fabric",
        "ip",
        &format!("ip {}", args.join(" ")),
    )
}

/// Runs `cmd` with `input` on its stdin; its stdout, or an error naming `name` and
/// `shown` (the command line) with its stderr.
pub(crate) fn output(
    cmd: &mut Command,
    input: Option<&str>,
    name: &str,
    command: &'static str,
    shown: &str,
) -> Result<String, InfraError> {
    let program = PathBuf::from(cmd.get_program());
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InfraError::Spawn {
            name: name.to_owned(),
            program: program.clone(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // nft reads the whole file before answering, so this cannot deadlock on stdout;
        // a write error means the program exited early, and its status says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| InfraError::io("wait for", &program, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(InfraError::Command {
            name: name.to_owned(),
            command,
            status: describe_status(out.status),
            detail: format!("{shown}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// The names `ip netns list` shows.
pub(crate) fn netns_list() -> Result<Vec<String>, InfraError> {
    let list = run(&ip_bin()?, &["netns", "list"])?;
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// A command that runs `program` inside namespace `ns`.
pub(crate) fn exec_in(ns: &str, program: impl AsRef<OsStr>) -> Result<Command, InfraError> {
    let mut c = Command::new(ip_bin()?);
    c.args(["netns", "exec", ns]).arg(program);
    Ok(c)
}

/// Namespace and interface names derive from the prefix: 1-8 letters or digits.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), InfraError> {
    if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InfraError::Invalid(format!(
            "fabric prefix `{prefix}`: expected 1-8 letters or digits"
        )));
    }
    Ok(())
}

impl Fabric {
    /// `prefix` must be short (interface and namespace names derive from it) and made of
    /// letters and digits.
    pub fn new(prefix: &str, topology: Topology) -> Result<Fabric, InfraError> {
        check_prefix(prefix)?;
        Ok(Fabric {
            prefix: prefix.to_owned(),
            topology,
        })
    }

    pub fn fabric_ns(&self) -> String {
        format!("{}-fabric", self.prefix)
    }

    pub fn ns(&self, host: &Host) -> String {
        format!("{}-{}", self.prefix, host.name)
    }

    /// The namespaces this fabric owns, hosts first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topology.hosts.iter().map(|h| self.ns(h)).collect();
        v.push(self.fabric_ns());
        v
    }

    /// `/etc/netns/<ns>`: files here replace their namesakes in `/etc` for commands run
    /// with `ip netns exec <ns>` (rampart writes `resolv.conf` for the client host).
    pub fn etc_dir(&self, host: &Host) -> PathBuf {
        Path::new("/etc/netns").join(self.ns(host))
    }

    /// Points `host`'s resolver at `nameserver` (written to `/etc/netns/<ns>/resolv.conf`).
    pub fn set_resolver(&self, host: &Host, nameserver: &str) -> Result<(), InfraError> {
        let dir = self.etc_dir(host);
        std::fs::create_dir_all(&dir).map_err(|e| InfraError::io("create directory", &dir, e))?;
        let file = dir.join("resolv.conf");
        let text = format!(
            "# Written by rampart: {} resolves through the topology's DNS server.\n\
             nameserver {nameserver}\noptions timeout:2 attempts:2\n",
            host.name
        );
        rampart_telemetry::fs::write_atomic(&file, text.as_bytes(), 0o644)
            .map_err(|e| InfraError::io("write", &file, e))
    }

    /// Removes what [`Fabric::set_resolver`] wrote (and the directory, when that leaves
    /// it empty); nothing else under `/etc/netns`.
    pub fn clear_resolvers(&self) -> Result<(), InfraError> {
        for host in &self.topology.hosts {
            let dir = self.etc_dir(host);
            let file = dir.join("resolv.conf");
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(InfraError::io("remove", &file, e)),
            }
            // Fails (and is left alone) when someone else put files there.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// Which of this fabric's namespaces exist now.
    pub fn existing(&self) -> Result<Vec<String>, InfraError> {
        let present = netns_list()?;
        Ok(self
            .namespaces()
            .into_iter()
            .filter(|n| present.contains(n))
            .collect())
    }

    /// Builds the fabric from scratch (removing leftovers of an earlier run by name
    /// first).
    pub fn create(&self) -> Result<(), InfraError> {
        self.destroy()?;
        let ip = ip_bin()?;
        let fab = self.fabric_ns();
        run(&ip, &["netns", "add", &fab])?;
        run(&ip, &["-n", &fab, "link", "set", "lo", "up"])?;
        for seg in [Segment::Public, Segment::App, Segment::Data, Segment::Mgmt] {
            let br = format!("br-{}", seg_name(seg));
            run(&ip, &["-n", &fab, "link", "add", &br, "type", "bridge"])?;
            run(&ip, &["-n", &fab, "link", "set", &br, "up"])?;
        }
        for host in &self.topology.hosts {
            self.add_host(host)?;
        }
        Ok(())
    }

    /// Adds one host to a fabric that exists: its namespace, and a veth pair into each
    /// segment's bridge with its address (scaling a running site out).
    pub fn add_host(&self, host: &Host) -> Result<(), InfraError> {
        let ip = ip_bin()?;
        let fab = self.fabric_ns();
        let ns = self.ns(host);
        run(&ip, &["netns", "add", &ns])?;
        run(&ip, &["-n", &ns, "link", "set", "lo", "up"])?;
        for (seg, addr) in &host.segments {
            let inside = rampart_topology::render::segment_iface(*seg);
            let outside = format!("p-{}-{}", host.name, seg_name(*seg));
            if outside.len() > 15 {
                return Err(InfraError::Invalid(format!(
                    "host name {} is too long for an interface name",
                    host.name
                )));
            }
            run(
                &ip,
                &[
                    "-n", &fab, "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                    "netns", &ns,
                ],
            )?;
            let br = format!("br-{}", seg_name(*seg));
            run(
                &ip,
                &["-n", &fab, "link", "set", &outside, "master", &br, "up"],
            )?;
            let cidr = format!("{addr}/{}", self.topology.prefix(*seg));
            run(&ip, &["-n", &ns, "addr", "add", &cidr, "dev", &inside])?;
            run(&ip, &["-n", &ns, "link", "set", &inside, "up"])?;
        }
        Ok(())
    }

    /// Removes one host: its namespace, and with it its links and the veth pairs'
    /// other ends (scaling a running site in). Its processes must be stopped first.
    pub fn remove_host(&self, name: &str) -> Result<(), InfraError> {
        let ns = format!("{}-{name}", self.prefix);
        if netns_list()?.contains(&ns) {
            run(&ip_bin()?, &["netns", "del", &ns])?;
        }
        Ok(())
    }

    /// Deletes this fabric's namespaces by name (and with them every interface in
    /// them). Processes still inside must be stopped first. Missing ones are fine.
    pub fn destroy(&self) -> Result<(), InfraError> {
        let ip = ip_bin()?;
        for ns in self.existing()? {
            run(&ip, &["netns", "del", &ns])?;
        }
        Ok(())
    }

    /// Loads each host's ruleset rendered from this fabric's topology into its
    /// namespace (what `rampart up` does with its plan's rulesets).
    pub fn load_firewalls(&self) -> Result<(), InfraError> {
        for host in &self.topology.hosts {
            self.load_firewall(
                &host.name,
                &rampart_topology::nft::ruleset(&self.topology, host),
            )?;
        }
        Ok(())
    }

    /// Loads `rules` into host `name`'s namespace (`nft -f`, which replaces the
    /// `inet rampart` table atomically).
    pub fn load_firewall(&self, name: &str, rules: &str) -> Result<(), InfraError> {
        let nft = nft_bin()?;
        let host = self.topology.host(name).ok_or_else(|| {
            InfraError::Invalid(format!("no host {name} in the fabric's topology"))
        })?;
        let shown = format!("ip netns exec {} nft -f -", self.ns(host));
        output(
            self.command(host, &nft)?.args(["-f", "-"]),
            Some(rules),
            &host.name,
            "nft",
            &shown,
        )?;
        Ok(())
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: &Host, program: impl AsRef<OsStr>) -> Result<Command, InfraError> {
        exec_in(&self.ns(host), program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_topology::Mode;

    #[test]
    fn names_derive_from_the_prefix_and_prefixes_are_checked() {
        let t = Topology::default_for(Mode::Isolated, 0);
        let f = Fabric::new("rampart", t.clone()).unwrap();
        assert_eq!(f.fabric_ns(), "rampart-fabric");
        assert_eq!(f.ns(t.host("web1").unwrap()), "rampart-web1");
        assert_eq!(f.namespaces().len(), t.hosts.len() + 1);
        assert_eq!(
            f.etc_dir(t.host("client").unwrap()),
            Path::new("/etc/netns/rampart-client")
        );
        for bad in ["", "has-dash", "waytoolongprefix", "a b"] {
            assert!(Fabric::new(bad, t.clone()).is_err(), "{bad}");
        }
    }
}
