//! The operator commands that run the whole topology through
//! `rampart_infra::stack::Stack`: `up` (attached or detached), `down`, `status`,
//! `stop`/`start` of one host, and `exec` inside a host of the isolated topology.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub(super) fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the rampart binary")
}

/// How a fresh shell invokes this binary: `rampart` when the first `rampart` on `PATH`
/// is this very file (as `./run up` arranges with `/usr/local/bin/rampart`), else its
/// absolute path, so the commands `up` prints work when pasted anywhere.
fn invocation() -> String {
    let Ok(exe) = self_exe().and_then(|p| Ok(std::fs::canonicalize(p)?)) else {
        return "rampart".into();
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("rampart"))
            .find(|p| p.is_file())
    });
    match on_path.and_then(|p| std::fs::canonicalize(p).ok()) {
        Some(found) if found == exe => "rampart".into(),
        _ => shell_word(&exe.display().to_string()),
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Which way `up` runs the topology.
pub(super) enum UpMode {
    Local {
        net: u8,
    },
    Isolated {
        prefix: String,
        publish: u16,
        publish_dashboard: u16,
    },
}

/// What `up` runs with beyond the mode.
#[derive(Debug)]
pub(super) struct UpOptions {
    /// `--topology FILE`.
    pub topology: Option<PathBuf>,
    pub fast_monitor: bool,
    pub failover: rampart_topology::render::Failover,
}

pub(super) fn up(state: &Path, mode: UpMode, detach: bool, options: UpOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart up: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_up(state, mode, detach, options)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_up(
    state: &Path,
    mode: UpMode,
    detach: bool,
    options: UpOptions,
) -> anyhow::Result<ExitCode> {
    use rampart_infra::stack::Stack;
    use std::sync::atomic::Ordering;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut local = match mode {
        UpMode::Local { net } => Stack::local(state, net, self_exe()?)?,
        UpMode::Isolated {
            prefix,
            publish,
            publish_dashboard,
        } => {
            let mut s = Stack::isolated(state, &prefix, publish, self_exe()?)?;
            s.dashboard_publish = publish_dashboard;
            s
        }
    };
    match &options.topology {
        Some(path) => {
            let spec = super::tools::read_topology(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            // `[monitor] rules` read and checked with promtool here, once, so an
            // unreadable file is named before promtool would stumble on it; `set_spec`
            // reads them again for the plan (as it does for a kept topology).
            super::tools::monitor_rules(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
            local.set_spec(spec)?;
        }
        None => local.use_saved_spec()?,
    }
    if options.fast_monitor {
        local.pace = rampart_topology::render::Pace::Fast;
    }
    local.failover = options.failover;
    let cancel = std::sync::Arc::clone(&local.cancel);
    println!(
        "rampart: bringing up the topology in {} mode (state in {})",
        local.mode(),
        local.paths.root.display()
    );
    let started = std::time::Instant::now();
    let work = tokio::task::spawn_blocking(move || {
        let mut step = 0;
        let r = local.up(&mut |what, took| {
            step += 1;
            println!("  [{step}] {what:<40} {:>6.2}s", took.as_secs_f64());
        });
        (local, r)
    });
    tokio::pin!(work);
    let mut interrupted = false;
    let (mut local, result) = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = int.recv(), if !interrupted => { interrupted = true; cancel.store(true, Ordering::Relaxed); eprintln!("rampart: interrupted; stopping what was started"); }
            _ = term.recv(), if !interrupted => { interrupted = true; cancel.store(true, Ordering::Relaxed); }
        }
    };
    if let Err(e) = result {
        // Stopping waits for processes to exit: off the runtime's threads, like `up`.
        let (_local, stopped) = tokio::task::spawn_blocking(move || {
            let stopped = local.stop_started();
            (local, stopped)
        })
        .await?;
        match stopped {
            Ok(stopped) if !stopped.is_empty() => {
                eprintln!(
                    "rampart: stopped what this run started: {}",
                    stopped.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("rampart: could not stop what this run started: {e}"),
        }
        if interrupted {
            return Ok(ExitCode::FAILURE);
        }
        return Err(e.into());
    }
    let rampart = invocation();
    println!(
        "rampart is up in {:.1}s: {} through lb1\n\nTry:\n{}",
        started.elapsed().as_secs_f64(),
        local.status().url,
        local.next_steps(&rampart)
    );
    if detach {
        let state = shell_word(&local.paths.root.display().to_string());
        println!(
            "Detached. `{rampart} status --state {state}` shows it; `{rampart} down --state {state}` stops it."
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Ctrl-C stops everything.");
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => local.reap(),
        }
    }
    println!("rampart: stopping");
    let stopped = tokio::task::spawn_blocking(move || local.down()).await??;
    println!("rampart: stopped {}", stopped.join(", "));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn down(state: &Path, purge: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let mut local = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let stopped = local.down()?;
        if stopped.is_empty() {
            println!("nothing was running");
        } else {
            println!("stopped {}", stopped.join(", "));
        }
        if purge {
            let root = local.paths.root.clone();
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing {}", root.display()))?;
            println!("removed {}", root.display());
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart down: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn status(state: &Path, json: bool) -> ExitCode {
    let local = match self_exe().and_then(|bin| Ok(rampart_infra::stack::Stack::open(state, bin)?))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rampart status: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let st = local.status();
    if json {
        match serde_json::to_string_pretty(&st) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("rampart status: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "mode {}  state {}  site {}",
        st.mode,
        st.state_dir.display(),
        st.url
    );
    let width = st
        .hosts
        .iter()
        .map(|h| h.addresses.join(",").len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<9} {:<11} {:<width$} {:<8} {:<6} {:<9} pid",
        "host", "role", "address", "service", "port", "state"
    );
    for h in &st.hosts {
        let addresses = h.addresses.join(",");
        if h.services.is_empty() {
            println!("{:<9} {:<11} {addresses:<width$} -", h.name, h.role);
        }
        for s in &h.services {
            println!(
                "{:<9} {:<11} {addresses:<width$} {:<8} {:<6} {:<9} {}",
                h.name,
                h.role,
                s.name,
                s.port,
                s.state,
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
            );
        }
    }
    let dbs: Vec<_> = st
        .hosts
        .iter()
        .filter_map(|h| h.database.as_ref().map(|d| (h, d)))
        .collect();
    if !dbs.is_empty() {
        println!();
        println!(
            "{:<9} {:<10} {:<6} {:<9} {:<13} {:<10} {:<6} note",
            "database", "role", "epoch", "writable", "sync standby", "semi-sync", "lag"
        );
        for (h, d) in dbs {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let writable = match d["read_only"].as_bool() {
                Some(ro) => (!ro).to_string(),
                None => "-".into(),
            };
            let semi = if d["role"] != "leader" {
                "-"
            } else if d["semi_sync_active"] == true {
                "active"
            } else if d["semi_sync_enabled"] == true {
                "waiting"
            } else {
                "off"
            };
            println!(
                "{:<9} {:<10} {:<6} {:<9} {:<13} {:<10} {:<6} {}",
                h.name,
                text(&d["role"]),
                text(&d["epoch"]),
                writable,
                text(&d["sync_standby"]),
                semi,
                text(&d["lag_seconds"]),
                text(&d["note"]),
            );
        }
    }
    for h in &st.hosts {
        if let Some(b) = &h.backup {
            println!();
            for line in backup_lines(&h.name, b) {
                println!("{line}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, or `-`.
fn utc(v: &serde_json::Value) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    v.as_i64()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(fmt).ok())
        .map_or_else(|| "-".to_owned(), |t| format!("{t} UTC"))
}

/// `rampart status`'s lines for the backup host, from its service's `/status`: the
/// latest backup, the restore window, the archive's lag and the last verify.
fn backup_lines(host: &str, b: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let backups = b["backups"].as_array().cloned().unwrap_or_default();
    match backups.iter().max_by_key(|m| m["finished"].as_i64()) {
        Some(m) => out.push(format!(
            "backup ({host}): latest {} backup {} at {}, {:.1} MB sealed, from {}; {} in the store",
            m["kind"].as_str().unwrap_or("?"),
            m["id"].as_str().unwrap_or("?"),
            utc(&m["finished"]),
            m["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            m["source"].as_str().unwrap_or("?"),
            backups.len(),
        )),
        None => out.push(format!("backup ({host}): no backup yet")),
    }
    let a = &b["archive"];
    out.push(format!(
        "restore window: {} to {} (binlog archive from {}, lag {} s{})",
        utc(&b["restore_window"]["from"]),
        utc(&b["restore_window"]["to"]),
        a["server"].as_str().unwrap_or("-"),
        a["lag_seconds"].as_i64().unwrap_or(0),
        a["last_error"]
            .as_str()
            .map_or_else(String::new, |e| format!("; last error: {e}")),
    ));
    let r = &b["record"];
    out.push(match r["verify_last_result"].as_bool() {
        Some(true) => format!(
            "verify: passed at {}: {}",
            utc(&r["verify_last_run"]),
            r["verify_last_message"].as_str().unwrap_or("")
        ),
        Some(false) => format!(
            "verify: FAILED at {}: {}",
            utc(&r["verify_last_run"]),
            r["verify_last_message"].as_str().unwrap_or("")
        ),
        None => "verify: not run yet".to_owned(),
    });
    out
}

pub(super) fn switchover(state: &Path, to: Option<&str>) -> ExitCode {
    let result = self_exe()
        .and_then(|bin| Ok(rampart_infra::stack::Stack::open(state, bin)?))
        .and_then(|stack| Ok(stack.switchover(to)?));
    match result {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart switchover: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rampart scale web=N replicas=N lb=N`: the saved topology with new counts, checked
/// like a topology file, then applied to the running site.
pub(super) fn scale(state: &Path, counts: &[String]) -> ExitCode {
    let result = (|| -> anyhow::Result<String> {
        let file = state.join(rampart_infra::stack::TOPOLOGY_FILE);
        let site = super::tools::read_topology(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut text = site.to_file();
        for c in counts {
            let (role, n) = c
                .split_once('=')
                .filter(|(r, _)| ["web", "replicas", "lb"].contains(r))
                .ok_or_else(|| anyhow::anyhow!("{c:?}: expected web=N, replicas=N or lb=N"))?;
            let n: u32 = n
                .parse()
                .map_err(|_| anyhow::anyhow!("{c:?}: {n:?} is not a number"))?;
            // The one place counts live in the file: `[hosts]`'s `role = n` lines.
            let key = format!("\n{role} = ");
            let at = text
                .find(&key)
                .ok_or_else(|| anyhow::anyhow!("{}: no {role} count", file.display()))?;
            let end = text[at + 1..].find('\n').map_or(text.len(), |i| at + 1 + i);
            text.replace_range(at..end, &format!("\n{role} = {n}"));
        }
        let site = rampart_topology::file::parse(&format!("{} (scaled)", file.display()), &text)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        stack.set_spec(site)?;
        let t = std::time::Instant::now();
        let mut step = 0;
        stack.up(&mut |what, took| {
            step += 1;
            println!("  [{step}] {what:<40} {:>6.2}s", took.as_secs_f64());
        })?;
        Ok(format!("scaled in {:.1}s", t.elapsed().as_secs_f64()))
    })();
    match result {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart scale: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn rebuild(state: &Path, host: &str) -> ExitCode {
    let result = self_exe()
        .and_then(|bin| Ok(rampart_infra::stack::Stack::open(state, bin)?))
        .and_then(|mut stack| Ok(stack.rebuild(host)?));
    match result {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart db rebuild: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn host_cmd(state: &Path, host: &str, start: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<bool> {
        let mut local = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let t = std::time::Instant::now();
        let changed = if start {
            local.start_host(host)?
        } else {
            local.stop_host(host)?
        };
        let verb = match (start, changed) {
            (true, true) => "started and ready",
            (true, false) => "already running",
            (false, true) => "stopped",
            (false, false) => "was not running",
        };
        println!("{host}: {verb} ({:.2}s)", t.elapsed().as_secs_f64());
        Ok(changed)
    })();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart {}: {e:#}", if start { "start" } else { "stop" });
            ExitCode::FAILURE
        }
    }
}

/// Replaces this process with `ip netns exec <ns> COMMAND` for a host of the isolated
/// run in `state`, with rampart's CA as the trusted bundle for curl and OpenSSL.
pub(super) fn exec(state: &Path, host: &str, command: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let result = (|| -> anyhow::Result<std::io::Error> {
        let stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let Some(fabric) = &stack.fabric else {
            anyhow::bail!(
                "the run in {} is in local mode, where hosts share this machine's network: run the command directly",
                state.display()
            );
        };
        let Some(h) = stack.topology.host(host) else {
            let names: Vec<&str> = stack
                .topology
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            anyhow::bail!("no host {host}; the topology has {}", names.join(", "));
        };
        let (program, args) = command
            .split_first()
            .context("no command given (rampart exec HOST -- COMMAND ...)")?;
        let ca = stack.paths.ca();
        let mut cmd = fabric.command(h, program)?;
        cmd.args(args)
            .env("CURL_CA_BUNDLE", &ca)
            .env("SSL_CERT_FILE", &ca);
        Ok(cmd.exec())
    })();
    match result {
        Ok(e) => {
            eprintln!("rampart exec: {e}");
            ExitCode::from(127)
        }
        Err(e) => {
            eprintln!("rampart exec: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rampart renew`: one pass over the run's certificates, or (`watch`) a pass every
/// 1/60 of their lifetime, clamped to 1 s to 1 h, until SIGTERM or SIGINT. A failed pass
/// is logged and tried again at the next one; the certificates stay valid for a third of
/// their life after renewal was due, and `CertificateExpiringSoon` fires before they end.
pub(super) fn renew(state: &Path, watch: bool, ready: Option<&Path>) -> ExitCode {
    let pass = || -> anyhow::Result<Vec<PathBuf>> {
        let stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        Ok(stack.ensure_certs()?)
    };
    let report = |r: anyhow::Result<Vec<PathBuf>>| match r {
        Ok(renewed) => {
            for p in &renewed {
                tracing::info!(cert = %p.display(), "certificate renewed");
            }
            Ok(renewed)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "certificate renewal failed");
            Err(e)
        }
    };
    if !watch {
        return match report(pass()) {
            Ok(renewed) => {
                for p in renewed {
                    println!("renewed {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rampart renew: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let every = match rampart_infra::stack::Stack::open(state, PathBuf::new()) {
        Ok(stack) => (stack.plan().cert_lifetime / 60)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600)),
        Err(e) => {
            eprintln!("rampart renew: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let looped = (|| -> anyhow::Result<()> {
        let rt = super::serve::runtime(super::serve::Threads::Current {
            max_blocking: Some(1),
        })?;
        rt.block_on(async {
            let stop = super::serve::terminated()?;
            tokio::pin!(stop);
            let first = report(pass());
            if let (Some(path), Ok(_)) = (ready, &first) {
                rampart_telemetry::fs::write_atomic(path, b"ready\n", 0o644)
                    .with_context(|| path.display().to_string())?;
            }
            tracing::info!(every_ms = every.as_millis() as u64, "renewing certificates");
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stop => return anyhow::Ok(()),
                    _ = tick.tick() => { let _ = report(pass()); }
                }
            }
        })
    })();
    if let Err(e) = looped {
        eprintln!("rampart renew: {e:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
