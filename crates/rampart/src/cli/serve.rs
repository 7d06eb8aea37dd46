//! The one runner of every service subcommand (`rampart lb|web|dns|agent|dashboard
//! --config FILE`): load the config (exit 2 when it is invalid, the errors printed),
//! build the runtime with the service's threads, bind the listeners, build the service,
//! and serve until SIGTERM or SIGINT, then let it drain. What differs per service is a
//! [`Role`]: its name, its threads, how a failed build is reported,
//! and what runs beside it (the load balancer's reload on SIGHUP).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rampart_telemetry::config::ConfigFile;
use rampart_telemetry::service::Service;
use tokio::task::JoinHandle;

/// How many runtime threads a service gets.
#[derive(Clone, Copy, Debug)]
pub(super) enum Threads {
    /// Everything on the calling thread, with at most `max_blocking` threads for
    /// blocking work (tokio's default when `None`).
    Current { max_blocking: Option<usize> },
    /// A multi-threaded runtime with this many workers (0: one per CPU).
    Workers(usize),
}

pub(super) fn runtime(threads: Threads) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Threads::Current { max_blocking } => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            if let Some(n) = max_blocking {
                b.max_blocking_threads(n);
            }
            b.enable_all().build()
        }
        Threads::Workers(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b.enable_all().build()
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(super) fn terminated() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// What the binary knows about a service beyond its [`Service`] shape.
/// Its config is loaded through the one `ConfigFile` loader.
pub(super) trait Role: Service<Config: ConfigFile> {
    /// The subcommand, which prefixes its error messages (`rampart NAME: ...`).
    const NAME: &'static str;
    /// What it is called in the `... stopped` log line.
    const TITLE: &'static str;
    fn threads(config: &Self::Config) -> Threads;

    /// Reports a failed build and says how to exit: by default the error with its
    /// causes, exit 1.
    fn build_failed(error: Self::Error) -> ExitCode {
        eprintln!("rampart {}: {:#}", Self::NAME, anyhow::Error::from(error));
        ExitCode::FAILURE
    }

    /// Process-wide settings made before the runtime starts (none by default).
    fn tune_process(_config: &Self::Config) {}

    /// Called once the service is ready (the agent: its first batch is on disk).
    fn ready() {}

    /// Starts what runs beside the service while it serves; aborted when it stops.
    fn beside(_service: &Arc<Self>) -> std::io::Result<Option<JoinHandle<()>>> {
        Ok(None)
    }
}

/// Runs service `S` from the config file at `path`; returns the exit code.
pub(super) fn run<S: Role>(path: &Path) -> ExitCode {
    let config = match S::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    S::tune_process(&config);
    let runtime = match runtime(S::threads(&config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart {}: cannot start the runtime: {e}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    // Bind and build on this thread inside the runtime's context but outside
    // `block_on`: a build reads files and may wait on a lock (the agent's buffer), which
    // must not happen on a thread that runs tasks.
    let built = {
        let _context = runtime.enter();
        S::bind(&config)
            .context("binding listeners")
            .map(|listeners| (listeners, S::build(config)))
    };
    let (listeners, service) = match built {
        Ok((listeners, Ok(service))) => (listeners, service),
        Ok((_, Err(e))) => return S::build_failed(e),
        Err(e) => {
            eprintln!("rampart {}: {e:#}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::<S>(listeners, service)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart {}: {e:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

async fn serve<S: Role>(listeners: S::Listeners, service: Arc<S>) -> anyhow::Result<ExitCode> {
    let shutdown = terminated()?;
    let beside = S::beside(&service)?;
    service.serve(listeners, shutdown, S::ready).await?;
    if let Some(task) = beside {
        task.abort();
    }
    tracing::info!("{} stopped", S::TITLE);
    Ok(ExitCode::SUCCESS)
}

impl Role for rampart_lb::Lb {
    const NAME: &'static str = "lb";
    const TITLE: &'static str = "load balancer";
    /// One worker thread means no multi-threaded runtime at all.
    fn threads(config: &Self::Config) -> Threads {
        match config.worker_threads {
            1 => Threads::Current { max_blocking: None },
            n => Threads::Workers(n),
        }
    }

    /// The build fails on the config (the access log), so it is reported as one.
    fn build_failed(error: Self::Error) -> ExitCode {
        eprintln!("{error}");
        ExitCode::from(2)
    }

    /// SIGHUP reloads the config; a refused one is logged by `reload` and the old stays.
    fn beside(lb: &Arc<Self>) -> std::io::Result<Option<JoinHandle<()>>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let lb = Arc::clone(lb);
        Ok(Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = lb.reload().await;
            }
        })))
    }
}

impl Role for rampart_web::Web {
    const NAME: &'static str = "web";
    const TITLE: &'static str = "web server";
    fn threads(config: &Self::Config) -> Threads {
        Threads::Workers(config.worker_threads)
    }

    /// The files the config names (certificates, site) are part of the config.
    fn build_failed(error: Self::Error) -> ExitCode {
        eprintln!("rampart web: {error}");
        ExitCode::from(2)
    }
}

impl Role for rampart_dns::Dns {
    const NAME: &'static str = "dns";
    const TITLE: &'static str = "dns server";
    /// One UDP loop and a few TCP connections: two workers are plenty.
    fn threads(_: &Self::Config) -> Threads {
        Threads::Workers(2)
    }
}

impl Role for rampart_agent::run::Agent {
    const NAME: &'static str = "agent";
    const TITLE: &'static str = "agent";
    /// One thread: the agent's work is a few reads and one push per interval, and a
    /// small footprint is part of its job (blocking reads go to tokio's blocking pool).
    fn threads(_: &Self::Config) -> Threads {
        Threads::Current {
            max_blocking: Some(2),
        }
    }

    /// The agent sleeps most of each interval: memory its collection freed goes back to
    /// the system at once rather than staying resident for mimalloc's purge delay.
    fn tune_process(_: &Self::Config) {
        rampart_sys::purge_freed_memory_at_once();
    }

    /// The code only startup ran (the whole CLI's argument parsing, config checks, TLS
    /// setup) stops being resident; each interval's code faults back in on its first
    /// use. See `rampart_sys::release_startup_code` and bench/README.md's agent section.
    fn ready() {
        match rampart_sys::release_startup_code() {
            Ok(r) => tracing::debug!(
                mappings = r.mappings,
                kib = r.bytes / 1024,
                "startup code released"
            ),
            Err(e) => tracing::debug!(error = %e, "startup code not released"),
        }
    }
}

impl Role for rampart_dashboard::Dashboard {
    const NAME: &'static str = "dashboard";
    const TITLE: &'static str = "dashboard";
    fn threads(_: &Self::Config) -> Threads {
        Threads::Workers(2)
    }
}

impl Role for rampart_gate::Gate {
    const NAME: &'static str = "gate";
    const TITLE: &'static str = "ingest gate";
    fn threads(_: &Self::Config) -> Threads {
        Threads::Workers(2)
    }
}

impl Role for rampart_logs::Logs {
    const NAME: &'static str = "logs";
    const TITLE: &'static str = "log store";
    /// Queries and inserts run on blocking threads; two workers accept and parse.
    fn threads(_: &Self::Config) -> Threads {
        Threads::Workers(2)
    }
}

/// Runs `rampart keeper`: on a current-thread runtime, so the database server is forked
/// from the main thread and its parent-death signal follows the keeper's life (not a
/// worker thread's).
pub(super) fn keeper(path: &Path, server: Vec<std::ffi::OsString>) -> ExitCode {
    let config = match rampart_keeper::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(Threads::Current {
        max_blocking: Some(2),
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart keeper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let stop = terminated()?;
        Box::pin(rampart_keeper::run(config, server, stop))
            .await
            .map_err(anyhow::Error::from)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart keeper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_telemetry::config::ConfigErrors;

    /// A service whose build does what a real one may: block its thread (the agent's
    /// buffer waits for its lock). `Handle::block_on` panics inside an async context, so
    /// it passes only when the build runs outside `block_on`.
    struct Blocking;

    struct Empty;

    impl ConfigFile for Empty {
        type File = toml::Table;
        fn validate(_: &Path, _: &toml::Table) -> Result<Empty, ConfigErrors> {
            Ok(Empty)
        }
    }

    impl Service for Blocking {
        type Config = Empty;
        type Listeners = ();
        type Error = std::io::Error;

        fn bind(_: &Empty) -> std::io::Result<()> {
            Ok(())
        }

        fn build(_: Empty) -> Result<Arc<Blocking>, std::io::Error> {
            tokio::runtime::Handle::current().block_on(tokio::task::yield_now());
            Ok(Arc::new(Blocking))
        }

        async fn serve(
            self: Arc<Self>,
            (): (),
            _shutdown: impl std::future::Future<Output = ()>,
            ready: impl FnOnce(),
        ) -> std::io::Result<()> {
            ready();
            Ok(())
        }
    }

    impl Role for Blocking {
        const NAME: &'static str = "blocking";
        const TITLE: &'static str = "blocking";
        fn threads(_: &Empty) -> Threads {
            Threads::Current { max_blocking: None }
        }
    }

    /// Regression: the agent opened its buffer (which may wait a second for its lock)
    /// inside `block_on`, on the runtime's only thread.
    #[test]
    fn services_are_built_outside_block_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocking.toml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(run::<Blocking>(&path), ExitCode::SUCCESS);
    }
}
