// glibc's allocator spends a third of a large validation in malloc/free;
// mimalloc halves that (see benches/validate_10k.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    runner::cli::main()
}
