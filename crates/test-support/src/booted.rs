//! Booted hosts for deployment tests: a systemd booted by `systemd-nspawn` inside a
//! network namespace the test made (the topology's host namespace), with `sshd`, so
//! Ansible deploys to it over ssh as to a real server.
//!
//! Each host runs the machine's own `/usr` read-only (`--volatile=yes`: `/` is a tmpfs,
//! so `/opt`, `/var` and `/root` start empty), its `/etc` an overlay whose upper layer
//! is the host's directory (its hostname, machine id, ssh host key, root's authorized
//! key, and a `systemd/system` made opaque so none of the machine's enabled units boot),
//! and the machine's package database bound read-only (so `apt` sees what is
//! installed). `CAP_NET_ADMIN` lets it load its nftables ruleset.
//!
//! ssh reaches a host without the root namespace sending anything to a topology address:
//! the `ProxyCommand` connects to `127.0.0.1:22` from inside the host's namespace (its own
//! loopback) and hands the socket to ssh (`ProxyUseFdpass`), so no relay process outlives
//! the connection.
//!
//! A host is stopped by SIGTERM to its `systemd-nspawn` (an orderly poweroff), then
//! SIGKILL after a deadline; the empty cgroups nspawn leaves are removed by name.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The transport files every host shares: a client key, `known_hosts`, the ssh config
/// and the connect helper.
pub struct Ssh {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub config: PathBuf,
    known_hosts: PathBuf,
    connect: PathBuf,
}

impl Ssh {
    /// Creates a client key and the helper in `dir`.
    pub fn new(dir: &Path) -> Result<Ssh, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key = dir.join("id_ed25519");
        if !key.exists() {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "rampart-test", "-f"])
                .arg(&key))?;
        }
        let connect = dir.join("nsconnect.py");
        fs::write(
            &connect,
            "import socket, sys\n\
             s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
             socket.send_fds(socket.socket(fileno=1), [b\"\\0\"], [s.fileno()])\n",
        )
        .map_err(|e| e.to_string())?;
        let known_hosts = dir.join("known_hosts");
        fs::write(&known_hosts, "").map_err(|e| e.to_string())?;
        Ok(Ssh {
            dir: dir.to_owned(),
            key,
            config: dir.join("ssh_config"),
            known_hosts,
            connect,
        })
    }

    /// Writes the ssh config for `hosts`: (the address Ansible names, the namespace, the
    /// host's public host key line).
    ///
    /// With `via` (a namespace of the caller's, on the hosts' segments), ssh connects from
    /// there to each host's address, through the host's firewall, as an operator's
    /// machine would; without it, to the host's own loopback from inside its namespace.
    pub fn write_config(
        &self,
        hosts: &[(String, String, String)],
        via: Option<&str>,
    ) -> Result<(), String> {
        let mut cfg = String::new();
        let mut known = String::new();
        for (addr, ns, hostkey) in hosts {
            let (ns, to) = match via {
                Some(v) => (v, addr.as_str()),
                None => (ns.as_str(), "127.0.0.1"),
            };
            let _ = writeln!(
                cfg,
                "Host {addr}\n  ProxyCommand ip netns exec {ns} /usr/bin/python3 {} {to} 22",
                self.connect.display()
            );
            let _ = writeln!(known, "{addr} {hostkey}");
        }
        let _ = writeln!(
            cfg,
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  ProxyUseFdpass yes\n  ConnectTimeout 10",
            self.key.display(),
            self.known_hosts.display()
        );
        fs::write(&self.config, cfg).map_err(|e| e.to_string())?;
        fs::write(&self.known_hosts, known).map_err(|e| e.to_string())
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cgroup directories a host's nspawn runs in. Without systemd as PID 1, nspawn
/// with `--keep-unit` would otherwise create `payload`/`supervisor` in the root cgroup,
/// shared by every container and left behind.
fn cgroups(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("unified").is_dir() {
        vec![
            root.join("systemd").join(name),
            root.join("unified").join(name),
        ]
    } else {
        vec![root.join(name)]
    }
}

/// One booted host. Dropping it powers it off (bounded) and removes its files and
/// cgroups; the namespace belongs to whoever made it.
pub struct Booted {
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    /// `<key type> <base64>` of its ssh host key.
    pub host_key: String,
    child: Option<Child>,
}

impl Booted {
    /// Boots `name` in namespace `ns` (which must exist), with its files in `dir`,
    /// accepting `ssh`'s key for root, and waits (bounded) until its sshd accepts on the
    /// namespace's loopback.
    pub fn boot(name: &str, ns: &str, dir: &Path, ssh: &Ssh) -> Result<Booted, String> {
        Self::boot_with(name, ns, dir, ssh, &[])
    }

    /// [`Booted::boot`], with each of `binds` (directories of this machine, such as a
    /// checkout) mounted read-only at the same path inside.
    pub fn boot_with(
        name: &str,
        ns: &str,
        dir: &Path,
        ssh: &Ssh,
        binds: &[&Path],
    ) -> Result<Booted, String> {
        let _ = fs::remove_dir_all(dir);
        let etc = dir.join("etc");
        let units = etc.join("systemd/system");
        for d in [
            etc.join("ssh/sshd_config.d"),
            etc.join("ssh/authorized_keys"),
            units.join("multi-user.target.wants"),
        ] {
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // Opaque: the machine's own enabled units stay hidden.
        run(Command::new("python3")
            .args([
                "-c",
                "import os, sys; os.setxattr(sys.argv[1], 'trusted.overlay.opaque', b'y')",
            ])
            .arg(&units))?;
        let link = |to: &str, at: PathBuf| {
            std::os::unix::fs::symlink(to, &at).map_err(|e| format!("{}: {e}", at.display()))
        };
        link(
            "/lib/systemd/system/ssh.service",
            units.join("multi-user.target.wants/ssh.service"),
        )?;
        link(
            "/lib/systemd/system/ssh.service",
            units.join("sshd.service"),
        )?;
        let write = |p: PathBuf, text: String| {
            fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
        };
        write(etc.join("hostname"), format!("{name}\n"))?;
        write(
            etc.join("hosts"),
            format!("127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost\n"),
        )?;
        let id = run(Command::new("systemd-id128").arg("new"))?;
        write(etc.join("machine-id"), id)?;
        let hostkey = etc.join("ssh/ssh_host_ed25519_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-C")
            .arg(format!("root@{name}"))
            .arg("-f")
            .arg(&hostkey))?;
        write(
            etc.join("ssh/sshd_config.d/rampart-test.conf"),
            "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n"
                .into(),
        )?;
        let public =
            fs::read_to_string(ssh.key.with_extension("pub")).map_err(|e| e.to_string())?;
        write(etc.join("ssh/authorized_keys/root"), public)?;
        let host_key = fs::read_to_string(hostkey.with_extension("pub"))
            .map_err(|e| e.to_string())?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");

        let groups = cgroups(ns);
        for g in &groups {
            fs::create_dir_all(g).map_err(|e| format!("{}: {e}", g.display()))?;
        }
        let join: String = groups
            .iter()
            .map(|g| format!("echo $$ > {}/cgroup.procs; ", g.display()))
            .collect();
        let log = fs::File::create(dir.join("nspawn.log")).map_err(|e| e.to_string())?;
        let child = Command::new("setsid")
            .args(["bash", "-c", &format!("{join}exec \"$@\""), "nspawn"])
            .arg("systemd-nspawn")
            .args(["-D", "/", "--volatile=yes"])
            .arg(format!("--overlay=/etc:{}:/etc", etc.display()))
            .args(["--bind-ro=/var/lib/dpkg", "--capability=CAP_NET_ADMIN"])
            .args(binds.iter().map(|b| format!("--bind-ro={}", b.display())))
            .arg(format!("--network-namespace-path=/run/netns/{ns}"))
            .arg(format!("--machine={ns}"))
            .arg(format!("--hostname={name}"))
            .args(["--register=no", "--keep-unit", "--console=read-only"])
            .args(["-b", "systemd.firstboot=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("systemd-nspawn: {e}"))?;
        let mut host = Booted {
            name: name.to_owned(),
            ns: ns.to_owned(),
            dir: dir.to_owned(),
            host_key,
            child: Some(child),
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let up = Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "1", "bash", "-c"])
                .arg("</dev/tcp/127.0.0.1/22")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return Ok(host);
            }
            if let Some(c) = host.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "{name}: systemd-nspawn exited ({status}): {}",
                        fs::read_to_string(dir.join("nspawn.log")).unwrap_or_default()
                    ));
                }
            }
            if Instant::now() > end {
                return Err(format!("{name}: sshd not up within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM to its nspawn (an orderly poweroff), without waiting.
    pub fn poweroff(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !matches!(c.try_wait(), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for g in cgroups(&self.ns) {
            // Depth first: only empty directories go.
            let _ = Command::new("find")
                .arg(&g)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
