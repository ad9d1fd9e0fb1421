//! The `ferrolite` binary.

use clap::Parser;

/// A request allocates and frees many small buffers across threads; mimalloc's thread-local
/// free lists cut the allocator's share of a proxied request from ~20% of instructions.
#[global_allocator]
static ALLOCATOR: ferrolite::allocator::Mimalloc = ferrolite::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    keep_the_heap_in_small_pages();
    ferrolite::cli::run(ferrolite::cli::Cli::parse())
}

/// mimalloc marks its arenas `MADV_HUGEPAGE`, and the kernel's khugepaged then turns any 2 MiB
/// stretch with one page in use into a whole huge page. Under steady load, resident memory
/// stepped up by megabytes at random moments (the benchmark soak's step) and sat ~12 MB above
/// what the heap uses. Out of transparent huge pages, it stays at what is used; throughput at
/// 32 connections was no lower.
#[cfg(target_os = "linux")]
fn keep_the_heap_in_small_pages() {
    // Fails only on kernels older than 3.15, which then keep their default.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(not(target_os = "linux"))]
fn keep_the_heap_in_small_pages() {}
