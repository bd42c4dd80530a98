//! The `bazaar` binary.

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: a fresh instance per request makes
/// and frees hundreds of small objects (store, WASI contexts, resources,
/// headers), and glibc spent ~8% of a request's CPU on them. Measured with
/// the benchmark's fresh hello: 59-61 µs of CPU per request instead of
/// 70-77 at 64 connections. Built without transparent huge pages
/// (`no_thp`): with them its arenas cost ~15 MiB more resident memory idle.
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc, asked for an alignment only when it is more than a machine
/// word, which every block of its has anyway. (The `mimalloc` crate asks
/// `mi_malloc_aligned` for everything, whose fast path covers blocks up to
/// 1 KiB: a larger one, such as hyper's buffers or a tokio task, was
/// over-allocated by its alignment and aligned inside, and a warm hello
/// request spent ~2.5k of its 53.6k instructions on that.)
struct Mimalloc;

/// The alignment of every block mimalloc hands out.
const WORD: usize = std::mem::size_of::<usize>();

// The exception to `unsafe_code`: a global allocator is an unsafe trait
// over mimalloc's C functions; every pointer freed or resized here came
// from them, as `GlobalAlloc`'s contract guarantees.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        let block = if layout.align() <= WORD {
            unsafe { mi_malloc(layout.size()) }
        } else {
            unsafe { mi_malloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        let block = if layout.align() <= WORD {
            unsafe { mi_zalloc(layout.size()) }
        } else {
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    unsafe fn dealloc(&self, block: *mut u8, _layout: std::alloc::Layout) {
        unsafe { libmimalloc_sys::mi_free(block.cast()) }
    }

    unsafe fn realloc(
        &self,
        block: *mut u8,
        layout: std::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        // mimalloc itself takes the plain path for a word's alignment.
        unsafe { libmimalloc_sys::mi_realloc_aligned(block.cast(), new_size, layout.align()) }
            .cast()
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = bazaar::cli::Cli::parse();
    // Only `serve` reads [telemetry]; a file that does not parse is
    // reported by the command itself, with its line.
    let section = match &cli.command {
        bazaar::cli::Command::Serve { .. } => bazaar::config::GatewayConfig::load(&cli.config)
            .map(|c| c.telemetry)
            .unwrap_or_default(),
        _ => bazaar::config::TelemetrySection::default(),
    };
    let format = cli.log_format.or(section.log_format).unwrap_or_default();
    let _telemetry = match bazaar::telemetry::init(format, section.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match bazaar::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mimalloc;
    use std::alloc::{GlobalAlloc as _, Layout};

    /// Many blocks of each layout at once, so that a block size whose
    /// blocks are only word-aligned would show up.
    #[test]
    fn every_block_has_the_alignment_it_was_asked_for() {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 24, 40, 56, 1000, 1500, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                for zeroed in [false, true] {
                    let blocks: Vec<*mut u8> = (0..64).map(|_| allocate(layout, zeroed)).collect();
                    for block in blocks {
                        assert_aligned(block, layout);
                        // Grown, it keeps its alignment.
                        let grown = Layout::from_size_align(size * 3, align).unwrap();
                        let moved = resize(block, layout, grown.size());
                        assert_aligned(moved, grown);
                        free(moved, grown);
                    }
                }
            }
        }
    }

    fn assert_aligned(block: *mut u8, layout: Layout) {
        assert!(!block.is_null(), "{layout:?}");
        assert_eq!(block.addr() % layout.align(), 0, "{layout:?}");
    }

    // The exception to `unsafe_code`, in this test only: calling the
    // allocator directly with layouts it is given, as `GlobalAlloc` asks.
    #[allow(unsafe_code)]
    fn allocate(layout: Layout, zeroed: bool) -> *mut u8 {
        let block = if zeroed {
            unsafe { Mimalloc.alloc_zeroed(layout) }
        } else {
            unsafe { Mimalloc.alloc(layout) }
        };
        if zeroed && !block.is_null() {
            let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
            assert!(bytes.iter().all(|&b| b == 0), "{layout:?} zeroed");
        }
        block
    }

    #[allow(unsafe_code)]
    fn resize(block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { Mimalloc.realloc(block, layout, new_size) }
    }

    #[allow(unsafe_code)]
    fn free(block: *mut u8, layout: Layout) {
        unsafe { Mimalloc.dealloc(block, layout) }
    }
}
