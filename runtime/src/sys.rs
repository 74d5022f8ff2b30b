//! What the operating system can tell the runtime (with `std`): how much memory is
//! still available. Context creation checks it before allocating, and the C ABI and
//! the trainer use the same figure, so there is one reading of it in the workspace.

/// Bytes of memory the system can still give without swapping: Linux's
/// `MemAvailable` from `/proc/meminfo`. `None` where it is unknown (another OS, no
/// `/proc`, or a line that does not parse); callers then skip their check.
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&info)
}

/// Bytes of address space this process may still map under its `RLIMIT_AS` soft
/// limit (`ulimit -v`): the limit in `/proc/self/limits` less `VmSize` in
/// `/proc/self/status`. `None` when there is no limit or it is unknown. Memory
/// that grows later (the KV cache) needs it as much as memory allocated at once.
pub fn address_space_left() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_as_limit(&limits)?.checked_sub(parse_vm_size(&status)?)
}

/// The memory a context may count on: the smaller of [`mem_available`] and
/// [`address_space_left`] (`None` if neither is known).
pub fn memory_for_process() -> Option<u64> {
    match (mem_available(), address_space_left()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The soft "Max address space" of a `/proc/self/limits` text, in bytes (`None`
/// when unlimited).
fn parse_as_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmSize` (kB) of a `/proc/self/status` text, in bytes.
fn parse_vm_size(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `MemAvailable` (kB) of a `/proc/meminfo` text, in bytes.
fn parse_meminfo(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Restores the default action of `SIGPIPE` (end the process quietly), which Rust's
/// start-up code sets to "ignore": a command line tool whose reader went away
/// (`llm-run … | head`) then stops like `cat` does instead of failing on its next
/// write. For the binaries' `main` only; a library must not change signal actions.
pub fn restore_sigpipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        /// `SIGPIPE` on Linux, the BSDs and macOS.
        const SIGPIPE: i32 = 13;
        /// `SIG_DFL`.
        const SIG_DFL: usize = 0;
        // SAFETY: `signal` is the C library's, called with a valid signal number and
        // the default handler, before any thread is started.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available_in_bytes() {
        let info = "MemTotal:       16315064 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_meminfo(info), Some(8_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_meminfo("MemAvailable: lots kB\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax address space         3221225472           unlimited            bytes     \n";
        assert_eq!(parse_as_limit(limits), Some(3 << 30));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_as_limit(unlimited), None);
        assert_eq!(
            parse_vm_size("Name:\tx\nVmSize:\t  10240 kB\n"),
            Some(10 << 20)
        );
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(mem_available().is_some_and(|b| b > 0));
        }
    }
}
