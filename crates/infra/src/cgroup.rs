//! The hosts' cgroups in isolated mode: one per host at `rampart-<prefix>/<host>`, with
//! its `[[host]] cpus` and `memory` limits (or none: accounting only), on cgroup v2
//! (`cpu.max`, `memory.max`) or v1 (the `cpu`, `cpuacct` and `memory` hierarchies:
//! `cpu.cfs_quota_us`/`cpu.cfs_period_us`, `memory.limit_in_bytes`). [`exec`] is
//! `rampart cgexec`: it puts itself into the cgroup and then runs the service, so
//! everything the service starts is in it from its first instruction.
//!
//! Only cgroups by their own names are created or removed, and a cgroup is removed only
//! when empty (the kernel refuses otherwise).

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rampart_topology::Limits;

use crate::InfraError;

/// Where the cgroup file systems are mounted.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The cgroup v1 hierarchies a host's cgroup is made in: limits (`cpu`), CPU accounting
/// (`cpuacct`, the same directory where the two are mounted together) and memory.
pub const V1_HIERARCHIES: [&str; 3] = ["cpu", "cpuacct", "memory"];

/// The machine's cgroup file systems, of either layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    /// `/sys/fs/cgroup` (a test's own directory in unit tests).
    pub root: PathBuf,
    /// The unified hierarchy (`cgroup.controllers` at the root), else v1's.
    pub v2: bool,
}

impl Cgroups {
    /// The machine's cgroups, if this process may create cgroups in them; else why not,
    /// for the operator's warning.
    pub fn detect() -> Result<Cgroups, String> {
        Cgroups::detect_at(Path::new(CGROUP_FS))
    }

    /// [`Cgroups::detect`] with the file systems under `root`.
    pub fn detect_at(root: &Path) -> Result<Cgroups, String> {
        let c = Cgroups {
            root: root.to_path_buf(),
            v2: root.join("cgroup.controllers").is_file(),
        };
        let dirs: Vec<PathBuf> = if c.v2 {
            vec![root.to_path_buf()]
        } else {
            V1_HIERARCHIES.iter().map(|h| root.join(h)).collect()
        };
        for d in &dirs {
            if !d.join("cgroup.procs").is_file() {
                return Err(format!(
                    "{} is not a cgroup hierarchy (neither cgroup v2 nor v1's cpu, cpuacct and memory are mounted)",
                    d.display()
                ));
            }
            rustix::fs::access(d, rustix::fs::Access::WRITE_OK)
                .map_err(|e| format!("{} is not writable: {}", d.display(), io::Error::from(e)))?;
        }
        Ok(c)
    }

    /// The directories of cgroup `path` (relative, such as `rampart-rs/web1`): one in
    /// v2, one per hierarchy in v1 (fewer where hierarchies are mounted together).
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        if self.v2 {
            return vec![self.root.join(path)];
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for h in V1_HIERARCHIES {
            let mount = self.root.join(h);
            // `cpu` and `cpuacct` are often links to `cpu,cpuacct`.
            let real = std::fs::canonicalize(&mount).unwrap_or_else(|_| mount.clone());
            if !seen.contains(&real) {
                seen.push(real);
                dirs.push(mount.join(path));
            }
        }
        dirs
    }

    /// Creates cgroup `path` (and its parents) if it does not exist and sets `limits`
    /// (an absent one is written as unlimited, so a limit taken out of the topology is
    /// lifted). Returns the `cgroup.procs` files a process is added through, one per
    /// directory.
    pub fn create(&self, path: &str, limits: &Limits) -> Result<Vec<PathBuf>, InfraError> {
        if self.v2 {
            // Controllers are enabled from the root down to the cgroup's parent.
            let mut dir = self.root.clone();
            for part in Path::new(path)
                .parent()
                .into_iter()
                .flat_map(Path::components)
            {
                write(&dir.join("cgroup.subtree_control"), "+cpu +memory")?;
                dir = dir.join(part);
                mkdir(&dir)?;
            }
            write(&dir.join("cgroup.subtree_control"), "+cpu +memory")?;
        }
        let dirs = self.dirs(path);
        for d in &dirs {
            mkdir(d)?;
        }
        // The site's group (the hosts' parent) competes for CPU with every process
        // outside it as one entity of the default weight; ten times that keeps a whole
        // site from being starved beside a few busy processes of the machine (a browser,
        // a load generator), as its processes were not before they had cgroups.
        for d in &dirs {
            let Some(parent) = d.parent() else { continue };
            for (file, weight) in [("cpu.shares", "10240"), ("cpu.weight", "1000")] {
                if parent.join(file).exists() && parent != self.root {
                    write(&parent.join(file), weight)?;
                }
            }
        }
        let quota = limits.quota_us();
        let period = Limits::PERIOD_US;
        if self.v2 {
            let d = &dirs[0];
            let q = quota.map_or("max".to_owned(), |q| q.to_string());
            write(&d.join("cpu.max"), &format!("{q} {period}"))?;
            let m = limits.memory.map_or("max".to_owned(), |m| m.to_string());
            write(&d.join("memory.max"), &m)?;
        } else {
            for d in &dirs {
                if d.join("cpu.cfs_quota_us").exists() {
                    write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                    let q = quota.map_or("-1".to_owned(), |q| q.to_string());
                    write(&d.join("cpu.cfs_quota_us"), &q)?;
                }
                if d.join("memory.limit_in_bytes").exists() {
                    let m = limits.memory.map_or("-1".to_owned(), |m| m.to_string());
                    write(&d.join("memory.limit_in_bytes"), &m)?;
                }
            }
        }
        Ok(dirs.iter().map(|d| d.join("cgroup.procs")).collect())
    }

    /// Removes cgroup `path` if it exists and is empty; whether it is gone. A cgroup
    /// with processes left is kept (the kernel refuses with `EBUSY`).
    pub fn remove(&self, path: &str) -> Result<bool, InfraError> {
        let mut gone = true;
        for d in self.dirs(path) {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                    gone = false;
                }
                Err(e) => return Err(InfraError::io("remove cgroup", &d, e)),
            }
        }
        Ok(gone)
    }

    /// The cgroups' CPU time so far, in nanoseconds (v2 `cpu.stat` `usage_usec`, v1
    /// `cpuacct.usage`), for tests and diagnostics.
    pub fn cpu_usage_ns(&self, path: &str) -> Result<u64, InfraError> {
        if self.v2 {
            let f = self.root.join(path).join("cpu.stat");
            let text = std::fs::read_to_string(&f).map_err(|e| InfraError::io("read", &f, e))?;
            let usec = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| InfraError::Invalid(format!("{}: no usage_usec", f.display())))?;
            return Ok(usec * 1000);
        }
        let f = self.root.join("cpuacct").join(path).join("cpuacct.usage");
        let text = std::fs::read_to_string(&f).map_err(|e| InfraError::io("read", &f, e))?;
        text.trim()
            .parse()
            .map_err(|_| InfraError::Invalid(format!("{}: not a number", f.display())))
    }
}

/// Creates `dir` and any missing parent cgroups (a v1 parent needs no setup).
fn mkdir(dir: &Path) -> Result<(), InfraError> {
    std::fs::create_dir_all(dir).map_err(|e| InfraError::io("create cgroup", dir, e))
}

/// One write of `value`, as the kernel wants control files written (truncating, as a
/// shell's `>` does, which the kernel ignores and a test's plain file needs).
fn write(file: &Path, value: &str) -> Result<(), InfraError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| InfraError::io("write", file, e))
}

/// `rampart cgexec`: writes this process's id into each of `procs` (`cgroup.procs`
/// files), then replaces this process with `program` (same pid, so pid files and the
/// parent's wait still name it). With `keep_open`, the directories of `procs` stay open
/// (without close-on-exec) across the exec: a program started in a network namespace
/// by `ip netns exec` sees a fresh `/sys` without the cgroup file systems, and finds its
/// cgroups through those descriptors instead (`/proc/self/fd`). Returns only on failure.
pub fn exec(
    procs: &[PathBuf],
    keep_open: bool,
    program: &OsString,
    args: &[OsString],
) -> io::Error {
    let pid = std::process::id().to_string();
    let mut open = Vec::new();
    for f in procs {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|mut file| file.write_all(pid.as_bytes()));
        if let Err(e) = written {
            return io::Error::new(e.kind(), format!("{}: {e}", f.display()));
        }
        if keep_open {
            let Some(dir) = f.parent() else { continue };
            let kept = std::fs::File::open(dir).and_then(|d| {
                rustix::io::fcntl_setfd(&d, rustix::io::FdFlags::empty())?;
                Ok(d)
            });
            match kept {
                Ok(d) => open.push(d),
                Err(e) => return io::Error::new(e.kind(), format!("{}: {e}", dir.display())),
            }
        }
    }
    let e = std::process::Command::new(program).args(args).exec();
    drop(open);
    io::Error::new(e.kind(), format!("{}: {e}", Path::new(program).display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fake_v1(root: &Path) {
        for h in V1_HIERARCHIES {
            std::fs::create_dir_all(root.join(h)).unwrap();
            std::fs::write(root.join(h).join("cgroup.procs"), "").unwrap();
        }
    }

    /// A v1 layout gets a directory per hierarchy and its limits written there; v2 one
    /// directory with `cpu.max` and `memory.max` and controllers enabled above it.
    /// (A plain directory stands in for the kernel's files.)
    #[test]
    fn limits_are_written_in_either_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v1");
        fake_v1(&root);
        let c = Cgroups::detect_at(&root).unwrap();
        assert!(!c.v2);
        for d in c.dirs("rampart-t") {
            std::fs::create_dir_all(d.join("h1")).unwrap();
        }
        std::fs::write(root.join("cpu/rampart-t/h1/cpu.cfs_quota_us"), "").unwrap();
        std::fs::write(root.join("cpu/rampart-t/h1/cpu.cfs_period_us"), "").unwrap();
        std::fs::write(root.join("memory/rampart-t/h1/memory.limit_in_bytes"), "").unwrap();
        let limits = Limits {
            millicpus: Some(500),
            memory: Some(64 << 20),
        };
        let procs = c.create("rampart-t/h1", &limits).unwrap();
        assert_eq!(
            procs,
            V1_HIERARCHIES.map(|h| root.join(h).join("rampart-t/h1/cgroup.procs"))
        );
        let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("cpu/rampart-t/h1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/rampart-t/h1/cpu.cfs_period_us"), "100000");
        assert_eq!(
            read("memory/rampart-t/h1/memory.limit_in_bytes"),
            "67108864"
        );
        c.create("rampart-t/h1", &Limits::default()).unwrap();
        assert_eq!(read("cpu/rampart-t/h1/cpu.cfs_quota_us"), "-1");
        assert_eq!(read("memory/rampart-t/h1/memory.limit_in_bytes"), "-1");

        let root = dir.path().join("v2");
        std::fs::create_dir_all(root.join("rampart-t/h1")).unwrap();
        for f in [
            "cgroup.controllers",
            "cgroup.procs",
            "cgroup.subtree_control",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        for f in ["cgroup.subtree_control", "h1/cpu.max", "h1/memory.max"] {
            std::fs::write(root.join("rampart-t").join(f), "").unwrap();
        }
        let c = Cgroups::detect_at(&root).unwrap();
        assert!(c.v2);
        let procs = c.create("rampart-t/h1", &limits).unwrap();
        assert_eq!(procs, [root.join("rampart-t/h1/cgroup.procs")]);
        let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("rampart-t/h1/cpu.max"), "50000 100000");
        assert_eq!(read("rampart-t/h1/memory.max"), "67108864");
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory");
        assert_eq!(read("rampart-t/cgroup.subtree_control"), "+cpu +memory");
        c.create("rampart-t/h1", &Limits::default()).unwrap();
        assert_eq!(read("rampart-t/h1/cpu.max"), "max 100000");
        assert_eq!(read("rampart-t/h1/memory.max"), "max");
    }

    /// Without the hierarchies there are no cgroups, and the reason names the path.
    #[test]
    fn missing_hierarchies_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Cgroups::detect_at(dir.path()).unwrap_err();
        assert!(
            e.contains(&format!(
                "{}/cpu is not a cgroup hierarchy",
                dir.path().display()
            )),
            "{e}"
        );
    }
}
