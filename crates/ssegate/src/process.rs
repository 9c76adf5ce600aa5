//! The process's resources as Linux counts them, from `/proc/self`, for the
//! gateway's gauges, reports and `/debug/vars` (zeros where there is no
//! `/proc`).

use sse_bridge::ProcessProbe;

/// Reads `/proc/self`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Proc;

impl ProcessProbe for Proc {
    fn rss_bytes(&self) -> u64 {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    }

    fn open_fds(&self) -> u64 {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
    }

    fn max_fds(&self) -> u64 {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
                line["Max open files".len()..]
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn proc_reports_this_process() {
        let file = std::fs::File::open("/proc/self/status").expect("proc");
        let probe = Proc;
        assert!(probe.rss_bytes() > 0);
        assert!(probe.open_fds() >= 3, "stdio and the file");
        assert!(probe.max_fds() >= probe.open_fds());
        drop(file);
    }
}
