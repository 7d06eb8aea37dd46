//! The workspace's only unsafe code: system calls that neither the standard library nor
//! rustix wraps, each in one small function with its reason and a safe signature. Every
//! other crate forbids `unsafe_code`.
//!
//! - [`adjtimex`]: the kernel's clock discipline state (`adjtimex(2)` in read-only mode),
//!   which node_exporter's `timex` collector reports and the node mixin's
//!   `NodeClockNotSynchronising` and `NodeClockSkewDetected` alerts read. No file under
//!   `/proc` or `/sys` has it, rustix 1.1 does not wrap the call, and the crates that do
//!   are single-maintainer NTP daemons.
//! - [`release_free_memory`]: asks the allocator (mimalloc, the binary's global
//!   allocator) to return the memory it holds free to the system now rather than after
//!   its purge delay. The `mimalloc` crate has no safe wrapper for `mi_collect`.

use std::io;

/// The kernel's clock discipline state, `struct timex` as `adjtimex(2)` fills it
/// (the fields node_exporter reads, in the kernel's units), and the call's return value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timex {
    /// The clock state `adjtimex` returned: `TIME_OK` (0) … `TIME_ERROR` (5, "not
    /// synchronized").
    pub state: i32,
    /// Time offset: nanoseconds if `status` has `STA_NANO`, else microseconds.
    pub offset: i64,
    /// Frequency offset, ppm with a 16-bit fraction.
    pub freq: i64,
    /// Maximum and estimated error, microseconds.
    pub maxerror: i64,
    pub esterror: i64,
    /// Clock status bits (`STA_*`).
    pub status: i32,
    /// PLL time constant.
    pub constant: i64,
    /// Microseconds between clock ticks.
    pub tick: i64,
    /// PPS frequency, ppm with a 16-bit fraction; jitter in `offset`'s unit; interval
    /// duration in seconds (log2); stability, ppm with a 16-bit fraction.
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i32,
    pub stabil: i64,
    /// PPS counters: jitter limit exceeded, calibration intervals, calibration errors,
    /// stability limit exceeded.
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    /// TAI offset, seconds.
    pub tai: i32,
}

/// `STA_NANO`: `offset` and `jitter` are in nanoseconds rather than microseconds.
pub const STA_NANO: i32 = libc::STA_NANO;
/// `TIME_ERROR`: the clock is not synchronized to a reliable source.
pub const TIME_ERROR: i32 = libc::TIME_ERROR;

/// Reads the kernel's clock discipline state: `adjtimex(2)` with `modes` 0, which only
/// reads (no privilege needed, nothing changed).
#[allow(unsafe_code)]
pub fn adjtimex() -> io::Result<Timex> {
    // SAFETY: `libc::timex` is a plain C struct of integers (and a `timeval` of
    // integers), for which all-zero bytes are a valid value; zero `modes` is the
    // documented read-only query.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, exclusively borrowed `struct timex` that lives across the
    // call; with `modes` 0 the kernel only writes into it.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Timex {
        state,
        offset: t.offset,
        freq: t.freq,
        maxerror: t.maxerror,
        esterror: t.esterror,
        status: t.status,
        constant: t.constant,
        tick: t.tick,
        ppsfreq: t.ppsfreq,
        jitter: t.jitter,
        shift: t.shift,
        stabil: t.stabil,
        jitcnt: t.jitcnt,
        calcnt: t.calcnt,
        errcnt: t.errcnt,
        stbcnt: t.stbcnt,
        tai: t.tai,
    })
}

/// Returns the memory the allocator holds free to the system at once (`mi_collect(true)`):
/// mimalloc otherwise keeps freed pages for its purge delay, which for a process that
/// wakes once an interval, like the agent, is most of its resident heap. Cheap (a walk
/// of this thread's heap and the arenas); a no-op where mimalloc holds nothing.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes a plain bool, touches only mimalloc's own bookkeeping
    // and is safe to call from any thread at any time, whether or not mimalloc is the
    // global allocator (its heaps are then empty).
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_clock_state_without_privilege_or_change() {
        let a = adjtimex().unwrap();
        let b = adjtimex().unwrap();
        // The tick length is the kernel's configuration: 10 000 µs at USER_HZ 100
        // unless someone tuned it, and never zero; two reads agree on it.
        assert!(a.tick > 0, "{a:?}");
        assert_eq!(a.tick, b.tick);
        assert!((0..=5).contains(&a.state), "{a:?}");
    }
}
