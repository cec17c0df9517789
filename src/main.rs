//! The `bordergate` binary.
#![forbid(unsafe_code)]

/// The binary's allocator (feature `mimalloc`, on by default): fewer instructions per
/// allocation and no glibc arena consolidation on the request path.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bordergate::cli::main()
}
