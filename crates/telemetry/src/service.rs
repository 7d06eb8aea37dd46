//! The shape every rampart service has ([`Service`]): its listeners are bound from its
//! config first (so a test binds port 0, and the binary fails before building anything
//! when an address is taken), the service is built from the validated config, and it
//! serves on the bound listeners until a shutdown future resolves, calling a readiness
//! callback once it serves. The binary runs any service through this trait.

use std::future::Future;
use std::sync::Arc;

/// A service (load balancer, web server, DNS server, agent, dashboard), as the binary
/// and the tests run it: `bind`, `build`, `serve`.
pub trait Service: Send + Sync + Sized + 'static {
    /// The validated configuration.
    type Config: Send + 'static;
    /// The bound sockets the service serves on.
    type Listeners: Send + 'static;
    /// Why the service could not be built from a valid config.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Binds the addresses `config` names. Must be called inside a tokio runtime.
    fn bind(config: &Self::Config) -> std::io::Result<Self::Listeners>;

    /// Builds the service from its config. Must be called inside a tokio runtime.
    fn build(config: Self::Config) -> Result<Arc<Self>, Self::Error>;

    /// Serves on `listeners` until `shutdown` resolves, then drains within the
    /// service's deadline. `ready` is called once, when the service serves. The future
    /// is not required to be `Send` (the agent's database client's is not provably so):
    /// the binary runs it with `block_on`.
    fn serve(
        self: Arc<Self>,
        listeners: Self::Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> impl Future<Output = std::io::Result<()>>;
}

/// Implements [`Service`] for a service type whose crate has the usual shape: a
/// `Config`, a `Listeners` with `Listeners::bind(&Config)`, and an inherent
/// `serve(&self, listeners, shutdown, ready)`; `build` turns a `Config` into
/// `Result<Arc<Self>, Error>`. Every service is that shape, so each impl is one line
/// instead of the same twenty.
///
/// ```text
/// rampart_telemetry::service!(Dns, error = Infallible, build = |c| Ok(Arc::new(Dns::new(c))));
/// ```
#[macro_export]
macro_rules! service {
    ($ty:ident, error = $error:ty, build = $build:expr) => {
        impl $crate::service::Service for $ty {
            type Config = Config;
            type Listeners = Listeners;
            type Error = $error;

            fn bind(config: &Config) -> ::std::io::Result<Listeners> {
                Listeners::bind(config)
            }

            fn build(config: Config) -> ::std::result::Result<::std::sync::Arc<$ty>, $error> {
                let build: fn(Config) -> ::std::result::Result<::std::sync::Arc<$ty>, $error> =
                    $build;
                build(config)
            }

            async fn serve(
                self: ::std::sync::Arc<Self>,
                listeners: Listeners,
                shutdown: impl ::std::future::Future<Output = ()>,
                ready: impl FnOnce(),
            ) -> ::std::io::Result<()> {
                $ty::serve(&self, listeners, shutdown, ready).await
            }
        }
    };
}
