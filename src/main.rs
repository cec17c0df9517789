//! The `bordergate` binary.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    bordergate::cli::main()
}
