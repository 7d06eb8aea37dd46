//! Any rampart service ([`Service`]) run in process for a test: on its own thread and
//! tokio runtime, bound from its config (port 0 in tests), stopped and joined when the
//! guard drops. `peek` reads what the test needs from the bound listeners (their
//! addresses) before the service takes them.

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rampart_telemetry::service::Service;

/// A service running in process; dropping it shuts it down and waits for it.
pub struct Running<S: Service> {
    pub service: Arc<S>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<S: Service> Drop for Running<S> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds and builds `S` from `config` on a new thread with a two-worker runtime, and
/// returns once it serves, with what `peek` took from its listeners. Panics (the test
/// fails) when binding, building or serving fails, or it is not ready within 30 s.
pub fn start<S: Service, T>(
    config: S::Config,
    peek: impl FnOnce(&S::Listeners) -> T + Send + 'static,
) -> (Running<S>, T)
where
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let listeners = S::bind(&config).expect("bind the service's listeners");
            let seen = peek(&listeners);
            let service = S::build(config).expect("build the service");
            let ready_tx = tx.clone();
            let ready_service = Arc::clone(&service);
            let ready = move || {
                let _ = ready_tx.send((ready_service, seen));
            };
            service
                .serve(
                    listeners,
                    async {
                        let _ = stop_rx.await;
                    },
                    ready,
                )
                .await
                .expect("the service serves");
        });
    });
    let (service, seen) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the service is ready within 30 s");
    (
        Running {
            service,
            stop: Some(stop_tx),
            thread: Some(thread),
        },
        seen,
    )
}
