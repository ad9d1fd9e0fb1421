//! The `ferrolite` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ferrolite::cli::run(ferrolite::cli::Cli::parse())
}
