//! The `rolegate` binary: all logic lives in the library.

// mimalloc: measured faster than the system allocator on the proxy path (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rolegate::cli::main()
}
