use std::alloc::{GlobalAlloc, Layout};

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

// glibc's allocator spends a third of a large validation in malloc/free;
// mimalloc halves that (see benches/validate_10k.rs).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

/// mimalloc, asked for plain allocations when the alignment is one
/// `malloc` gives anyway (as std's own allocator does): the `mimalloc`
/// crate asks for every block through the aligned entry points, twice the
/// instructions of `mi_malloc` for the ~75,000 blocks of a no-op run.
struct MiMalloc;

/// The alignment every `mi_malloc` block has: mimalloc's size classes are
/// multiples of 16 bytes, each block aligned to it.
const MALLOC_ALIGN: usize = 16;

/// Whether a block of `size` bytes from `mi_malloc` is aligned to `align`
/// already: the test mimalloc itself makes (`mi_malloc_is_naturally_aligned`).
fn plain(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: a block from `mi_malloc`/`mi_zalloc`/`mi_realloc` is aligned to
// `align` whenever `plain` holds (see `MALLOC_ALIGN`); otherwise the aligned
// entry points are asked. Every block, from either, is freed by `mi_free`.
unsafe impl GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match plain(layout.size(), layout.align()) {
            true => unsafe { mi_malloc(layout.size()) }.cast(),
            false => unsafe { mi_malloc_aligned(layout.size(), layout.align()) }.cast(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match plain(layout.size(), layout.align()) {
            true => unsafe { mi_zalloc(layout.size()) }.cast(),
            false => unsafe { mi_zalloc_aligned(layout.size(), layout.align()) }.cast(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match plain(new_size, layout.align()) {
            true => unsafe { mi_realloc(ptr.cast(), new_size) }.cast(),
            false => unsafe { mi_realloc_aligned(ptr.cast(), new_size, layout.align()) }.cast(),
        }
    }
}

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
