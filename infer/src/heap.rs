//! How the sampler asks glibc's allocator to hand memory back, so that its resident memory stays near the
//! size of the graphs it loads (issue 12: at most 1.3 x).
//!
//! glibc places blocks above the "mmap threshold" in their own mappings, returned to the system on free,
//! and the rest in the heap, which keeps freed blocks. By default the threshold rises to the size of each
//! large block freed (up to 32 MiB): after ONNX Runtime frees a graph file's parsed bytes, every weight
//! tensor built next lands in the heap, and the blocks freed while building stay resident (paper-size
//! model: 752 MiB after loading 573 MiB of graphs, 624 MiB with the threshold held at 128 KiB).
//!
//! While sampling, the threshold trades speed for memory. Held at 128 KiB, a batch's large buffers are
//! mapped afresh for every run; held at glibc's dynamic maximum (32 MiB), they are reused from the heap,
//! which keeps what it frees. `halo-sample bench`, 2 cores, batch 256: the paper-size model samples 255
//! records/s with a 729 MiB peak at 128 KiB, 320 records/s and 810 MiB at 32 MiB; the small records model
//! 362 records/s at 128 KiB, 617 at 32 MiB. So large models (where the bound on memory, 1.3 x the graphs,
//! is what a site cannot raise) keep 128 KiB, and small ones (whose memory is small anyway) take 32 MiB.

/// glibc's initial threshold, held (not raised as blocks are freed).
const LOW_MMAP_THRESHOLD: usize = 128 << 10;

/// glibc's largest dynamic threshold on 64-bit systems.
const HIGH_MMAP_THRESHOLD: usize = 32 << 20;

/// Graphs at least this large sample with the low threshold.
/// Free bytes at the top of a heap that malloc keeps for the next allocation while a small model samples
/// (glibc's default otherwise).
const TRIM_THRESHOLD: usize = 1 << 30;
const DEFAULT_TRIM_THRESHOLD: usize = 128 << 10;

const LARGE_MODEL_BYTES: u64 = 128 << 20;

/// Holds the low threshold from the start of loading; when dropped, returns the heap freed while loading
/// (ONNX Runtime parses each graph file into memory before building its weights) to the system.
pub(crate) struct Loading(());

/// Starts loading graphs (see the module's note).
pub(crate) fn begin_loading() -> Loading {
    set_mmap_threshold(LOW_MMAP_THRESHOLD);
    Loading(())
}

impl Loading {
    /// Ends loading `graph_bytes` of graphs: chooses the threshold for sampling with them (and trims, on
    /// drop).
    pub(crate) fn finish(self, graph_bytes: u64) {
        set_mmap_threshold(if graph_bytes >= LARGE_MODEL_BYTES {
            LOW_MMAP_THRESHOLD
        } else {
            HIGH_MMAP_THRESHOLD
        });
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        release_freed_above(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// glibc's `struct mallinfo` (every field an int; sums over all arenas).
    #[repr(C)]
    pub struct MallInfo {
        pub arena: std::ffi::c_int,
        pub ordblks: std::ffi::c_int,
        pub smblks: std::ffi::c_int,
        pub hblks: std::ffi::c_int,
        pub hblkhd: std::ffi::c_int,
        pub usmblks: std::ffi::c_int,
        pub fsmblks: std::ffi::c_int,
        pub uordblks: std::ffi::c_int,
        pub fordblks: std::ffi::c_int,
        pub keepcost: std::ffi::c_int,
    }
    /// `M_MMAP_THRESHOLD` in glibc's malloc.h.
    pub const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    pub const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
    extern "C" {
        pub fn malloc_trim(pad: usize) -> std::ffi::c_int;
        // mallinfo, not mallinfo2: present in every glibc a site may run (its int fields wrap above
        // 2 GiB, read here as unsigned).
        pub fn mallinfo() -> MallInfo;
        pub fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
}

/// Sets glibc's mmap threshold, which also stops it from moving on its own.
fn set_mmap_threshold(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's policy for later allocations; callable at any time.
    unsafe {
        glibc::mallopt(glibc::M_MMAP_THRESHOLD, bytes as std::ffi::c_int);
        // Setting the mmap threshold leaves the trim threshold at its 128 KiB default, so a free at the top
        // of a heap gave its pages back and the next step's buffers faulted them in again: free memory is
        // given back once per batch instead (`release_freed_above`).
        // For large models (low mmap threshold) memory comes first: glibc's default.
        let trim = if bytes >= HIGH_MMAP_THRESHOLD {
            TRIM_THRESHOLD
        } else {
            DEFAULT_TRIM_THRESHOLD
        };
        glibc::mallopt(glibc::M_TRIM_THRESHOLD, trim as std::ffi::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// Returns free heap memory to the operating system when more than `threshold` bytes of it lie free.
/// After a batch, buffers of many sizes (rows finish at different visits) are free; left in the heap,
/// they fragment it over a long run (paper-size model, 6,000 records: 1,036 MiB peak, 869 MiB when
/// trimmed). Trimming a small heap would only make the next batch fault its pages in again.
pub(crate) fn release_freed_above(threshold: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: both only read or release the allocator's free memory; safe to call at any time.
    unsafe {
        if threshold == 0 || glibc::mallinfo().fordblks as u32 as usize > threshold {
            glibc::malloc_trim(0);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threshold;
}
