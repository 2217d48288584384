// glibc's allocator spends a third of a large validation in malloc/free;
// mimalloc halves that (see benches/validate_10k.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = runner::cli::main();
    // Everything is written and every file closed by now. Leaving without
    // the exit handlers skips the allocator handing its memory back page by
    // page, which the kernel does at once: a tenth of a no-op run.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; nothing runs after it.
    unsafe { nix::libc::_exit(i32::from(code)) }
}
