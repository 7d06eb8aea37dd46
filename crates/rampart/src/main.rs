//! `rampart`: one binary for every role. `main` only parses arguments, sets up logging,
//! builds the runtime and hands over to a role crate; it returns the exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
