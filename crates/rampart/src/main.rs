//! `rampart`: one binary for every role. `main` hands over to `cli`, which parses the
//! arguments, sets up logging, and runs a service through the one generic runner
//! (`cli::serve`) or an operator command; it returns the exit code.

mod cli;

// mimalloc: about a tenth of the load balancer's CPU per request was glibc malloc/free
// (measured with perf); mimalloc is C built by cc (no cmake) and widely used in proxies.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
