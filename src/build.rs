//! Links the `runner` binary as a position-dependent executable on Linux.
//!
//! A PIE binary of this size carries ~36,000 relative relocations: the
//! loader rewrites every page of `.data.rel.ro` at each start, ~150 page
//! faults that cost ~0.5 ms of every `runner` invocation (a no-op run of a
//! 1,000-step pipeline takes ~13 ms). Without PIE those addresses are fixed
//! at link time. The cost is ASLR for the binary's own code (shared
//! libraries, heap and stack stay randomised).
fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    // glibc only: musl targets link `-static-pie`, which `-no-pie` contradicts.
    let target = |var| std::env::var(var).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
