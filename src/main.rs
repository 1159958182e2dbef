//! The `rolegate` binary: all logic lives in the library.

fn main() -> std::process::ExitCode {
    rolegate::cli::main()
}
