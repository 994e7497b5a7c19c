//! The `stowage` binary: parses the command line and reports errors as one line on stderr.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stowage::cli::main()
}
