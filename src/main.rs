//! The `stowage` binary: parses the command line and reports errors as one line on stderr.
//!
//! It allocates with mimalloc: the controller's index is built from a burst of short-lived
//! watch objects, and glibc's malloc keeps much of that freed memory resident (the scale run's
//! RSS figures in docs/performance.md were measured with both).
#![forbid(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stowage::cli::main()
}
