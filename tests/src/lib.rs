//! End-to-end tests of the gateway over real loopback sockets.
//!
//! This package holds the tests that cross crate boundaries: `sse-upstream-sim`,
//! then the gateway (`sse-bridge` over `sse-conn-pool`, in-process, or the
//! `ssegate` binary), then clients; real sockets on 127.0.0.1 only, bounded in
//! count and time. `ssegate parse` is tested in `crates/ssegate/tests/parse.rs`.
//!
//! The library holds what the harnesses and the workspace's tests share:
//! `procfs` (what the harnesses read of their children) and `client` (an
//! HTTP/1.1 client that reads SSE, over any connection: sockets here,
//! in-memory pipes in the bridge's paused-time tests), `tls` (a test
//! certificate authority).

pub mod client;
pub mod nats;
pub mod procs;
pub mod tls;

pub mod procfs {
    //! What the harnesses (`ssegate-soak`, `ssegate-fanout`) read about
    //! their child processes, and how they signal them.

    use std::process::Child;

    /// CPU seconds (user + system) of `pid`, from `/proc`; 0 if gone.
    pub fn cpu_secs(pid: u32) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0.0;
        };
        let ticks = |n| stat_field(&stat, n).unwrap_or(0) as f64;
        #[allow(unsafe_code)]
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        // utime and stime.
        (ticks(14) + ticks(15)) / hz
    }

    /// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line.
    pub fn stat_field(stat: &str, n: usize) -> Option<u64> {
        // The command name (field 2) may hold spaces: count after its `)`.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
    }

    /// Sends `sig` to `child` (not yet reaped).
    pub fn signal(child: &Child, sig: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            #[allow(unsafe_code)]
            // SAFETY: kill() on our own child's pid; it has not been reaped yet.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn stat_fields_are_counted_after_the_command_name() {
            let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0";
            assert_eq!(super::stat_field(stat, 4), Some(1));
            assert_eq!(super::stat_field(stat, 14), Some(7));
            assert_eq!(super::stat_field(stat, 15), Some(3));
        }
    }
}
