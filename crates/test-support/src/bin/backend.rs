//! `rampart-test-backend`: the test backend as a real process. Prints `listening ADDR`
//! on its first stdout line once it accepts connections.
//!
//! Usage: rampart-test-backend --name NAME --listen ADDR [--tls-cert C --tls-key K [--client-ca CA]]

use std::path::PathBuf;
use std::sync::Arc;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn tls(args: &[String]) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let (Some(cert), Some(key)) = (arg(args, "--tls-cert"), arg(args, "--tls-key")) else {
        return Ok(None);
    };
    let loaded = rampart_tls::load_certified_key(&PathBuf::from(cert), &PathBuf::from(key))
        .map_err(|e| e.to_string())?;
    let builder = rustls::ServerConfig::builder_with_provider(rampart_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match arg(args, "--client-ca") {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rampart_tls::server_certs(&PathBuf::from(ca)).map_err(|e| e.to_string())? {
                roots.add(c).map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                rampart_tls::provider(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder.with_cert_resolver(Arc::new(rampart_tls::SiteCerts::new(vec![loaded])));
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name = arg(&args, "--name").unwrap_or_else(|| "backend".into());
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let tls = match tls(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rampart-test-backend: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rampart-test-backend: bind {listen}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => {
            eprintln!("rampart-test-backend: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    rampart_test_support::backend::serve(listener, Arc::from(name.as_str()), tls).await;
    std::process::ExitCode::SUCCESS
}
