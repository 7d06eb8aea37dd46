//! `rampart backup serve|now|verify|status` and `rampart restore`: the backup host's
//! service, the operator's requests to it (over its allow-listed listener), and a
//! restore from its store into a scratch server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rampart_backup::config::Config;
use rampart_backup::restore::{restore, Point};
use rampart_backup::store::{load_key, Store};
use rampart_telemetry::config::ConfigFile;

use super::serve::{runtime, terminated, Threads};

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// `rampart backup serve --config FILE`.
pub(super) fn serve(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime(Threads::Workers(2)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart backup: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let listener = rampart_telemetry::listen::tcp(config.status, 64)
            .map_err(|e| anyhow::anyhow!("listen on {}: {e}", config.status))?;
        let stop = terminated()?;
        rampart_backup::service::run(config, listener, stop)
            .await
            .map_err(anyhow::Error::from)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart backup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One request to the service's listener; the status and body.
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    limit: Duration,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(limit))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // The service answers with a length or closes; chunked bodies are not used.
    Ok((status, body.to_owned()))
}

/// `rampart backup now|verify|status --config FILE`.
pub(super) fn ask(path: &Path, what: &str, incremental: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (method, target, limit) = match what {
        "now" if incremental => ("POST", "/backup?kind=incremental", 3600),
        "now" => ("POST", "/backup?kind=full", 3600),
        "verify" => ("POST", "/verify", 3600),
        _ => ("GET", "/status", 10),
    };
    match request(config.status, method, target, Duration::from_secs(limit)) {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("rampart backup {what}: {status}: {}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "rampart backup {what}: the service at {}: {e:#}",
                config.status
            );
            ExitCode::FAILURE
        }
    }
}

/// Parses `--to`: unix seconds or `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub(super) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = s.trim_end_matches('Z').replace('T', " ");
    time::PrimitiveDateTime::parse(&t, fmt)
        .map(|p| p.assume_utc().unix_timestamp())
        .map_err(|_| {
            format!("`{s}` is not a time; expected UTC `YYYY-MM-DD HH:MM:SS` or unix seconds")
        })
}

/// `rampart restore --in-place [--to TIME | --to-gtid GTID] [--yes] --state DIR`: the
/// running site's database servers rebuilt from the backup host's restore of that point
/// (the latest by default). Before they start, the store records the restart of the
/// history (a `Timeline`), so the archive resumes from the restored position and later
/// restores follow the new history from then on.
pub(super) fn restore_in_place(
    state: &Path,
    to: Option<&str>,
    to_gtid: Option<&str>,
    yes: bool,
) -> ExitCode {
    let point = match point_of(to, to_gtid) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let outcome = (|| -> anyhow::Result<()> {
        let mut stack = rampart_infra::stack::Stack::open(state, super::stack::self_exe()?)?;
        let plan = stack.plan();
        let (host, svc) = plan
            .hosts
            .iter()
            .find_map(|h| h.service("backup").map(|s| (h, s)))
            .ok_or_else(|| anyhow::anyhow!("the site in {} has no backup host", state.display()))?;
        let config_path =
            svc.files.first().map(|f| f.path.clone()).ok_or_else(|| {
                anyhow::anyhow!("{}: the backup service has no config", host.name)
            })?;
        let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dbs: Vec<&str> = plan.databases().map(|(h, _)| h.name.as_str()).collect();
        println!(
            "This stops {}, restores {} from {}, and rebuilds every database server from \
             the result. Writes fail until it is done; what was written after that point is \
             no longer in the site's data (it stays in the archive and in the current data \
             directories, which are kept beside the new ones).",
            dbs.join(" and "),
            rampart_backup::restore::describe(&point),
            host.name
        );
        if !yes {
            print!("Type yes to continue: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            if line.trim() != "yes" {
                anyhow::bail!("not confirmed; nothing was changed");
            }
        }
        let started = std::time::Instant::now();
        let stopped = stack.stop_databases()?;
        println!("stopped {}", stopped.join(", "));
        // The archive's session with the stopped primary ends and seals what it got.
        rampart_backup::tools::pause(config.tick * 3);
        let key = load_key(&config.key_file)?;
        let store = Store::open(&config.store, key)?;
        let into = host.dir.join(format!(
            "restore-in-place-{}",
            rampart_backup::backup::now()
        ));
        let mut r = restore(&store, &point, &into)?;
        println!(
            "restored: backups {}, {} binlog files replayed, GTID {}",
            r.chain.join(" + "),
            r.binlog_files,
            r.gtid
        );
        for (t, n) in &r.tables {
            println!("  {t}: {n} rows");
        }
        r.scratch.stop();
        let datadir = r.scratch.datadir.clone();
        let gtid = r.gtid.clone();
        drop(r);
        // The history restarts here: recorded before any restored server starts.
        let after_session = store
            .binlogs()?
            .iter()
            .map(|b| b.session)
            .max()
            .unwrap_or(0);
        store.write_timeline(&rampart_backup::store::Timeline {
            at: rampart_backup::backup::now(),
            gtid: gtid.clone(),
            after_session,
        })?;
        let done = stack.restore_databases(&datadir, &gtid)?;
        let _ = std::fs::remove_dir_all(&into);
        println!("{done}; {:.1} s in all", started.elapsed().as_secs_f64());
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart restore --in-place: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The restore point of `--to` or `--to-gtid` (the latest without either).
fn point_of(to: Option<&str>, to_gtid: Option<&str>) -> Result<Point, ExitCode> {
    match (to, to_gtid) {
        (Some(_), Some(_)) => {
            eprintln!("rampart restore: --to and --to-gtid exclude each other");
            Err(ExitCode::from(2))
        }
        (Some(t), None) => parse_time(t).map(Point::Time).map_err(|e| {
            eprintln!("rampart restore: --to: {e}");
            ExitCode::from(2)
        }),
        (None, Some(g)) => match rampart_backup::restore::parse_gtids(g) {
            Ok(_) => Ok(Point::Gtid(g.to_owned())),
            Err(e) => {
                eprintln!("rampart restore: --to-gtid: {e}");
                Err(ExitCode::from(2))
            }
        },
        (None, None) => Ok(Point::Latest),
    }
}

/// `rampart restore --config FILE (--to TIME | --to-gtid GTID | latest) --into DIR`.
pub(super) fn restore_cmd(
    path: &Path,
    to: Option<&str>,
    to_gtid: Option<&str>,
    into: &Path,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let point = match point_of(to, to_gtid) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let outcome = (|| -> anyhow::Result<()> {
        let key = load_key(&config.key_file)?;
        let store = Store::open(&config.store, key)?;
        let start = std::time::Instant::now();
        let mut r = restore(&store, &point, into)?;
        println!(
            "restored to {}: backups {}, {} binlog files replayed, GTID {} (backup at {}), {:.1} s",
            rampart_backup::restore::describe(&point),
            r.chain.join(" + "),
            r.binlog_files,
            r.gtid,
            r.backup_gtid,
            start.elapsed().as_secs_f64()
        );
        for (t, n) in &r.tables {
            println!("  {t}: {n} rows");
        }
        println!(
            "the data directory is {}; the scratch server is stopped now (start mariadbd on it to inspect)",
            r.scratch.datadir.display()
        );
        r.scratch.stop();
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart restore: {e:#}");
            ExitCode::FAILURE
        }
    }
}
