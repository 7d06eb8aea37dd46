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
//! - [`purge_freed_memory_at_once`]: sets mimalloc's purge delay to 0 for this process
//!   (`mi_option_set`, which has no safe wrapper either).
//! - [`release_startup_code`]: hands back the pages of the binary's own code and
//!   read-only data that are mapped now (`madvise(MADV_PAGEOUT)`, which neither the
//!   standard library nor rustix's safe API offers: rustix's `madvise` is `unsafe`).

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

/// mimalloc 3's `mi_option_purge_delay` (`mimalloc.h`, `enum mi_option_e`: the 16th
/// entry). libmimalloc-sys 0.1.49 builds mimalloc 3.3 but names only the options the
/// two major versions share, and this one is not among them.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc return a page to the system as soon as it is wholly free, instead of
/// after its purge delay (1 s, and 10× that for arenas): for a process that wakes once
/// an interval and sleeps the rest, like the agent, the delayed pages are otherwise
/// resident the whole interval, and [`release_free_memory`] reaches only the calling
/// thread's pages. Costs an `madvise` per freed page. Process-wide; call it once, early.
#[allow(unsafe_code)]
pub fn purge_freed_memory_at_once() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table (an atomic
    // store); any value is valid for the purge delay (0: at once, -1: never), and the
    // option is read afresh at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// What [`release_startup_code`] did: the mappings of the executable it advised and the
/// bytes they span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub mappings: usize,
    pub bytes: usize,
}

/// Hands the pages of this executable's code and read-only data that are mapped now back
/// to the kernel (`madvise(MADV_PAGEOUT)` on each of its mappings that is not writable):
/// what only startup ran (argument parsing for every subcommand, config checks, TLS
/// setup) stops counting as resident, and what runs later faults back in from the page
/// cache or the file. The kernel skips pages that another process maps too. The contents
/// cannot change (the file is the binary, which the kernel keeps from being written while
/// it runs), so this changes memory use, never behaviour.
///
/// Errors: `/proc/self/maps` or `/proc/self/exe` unreadable, or `madvise` refused (kernels
/// before 5.4 have no `MADV_PAGEOUT`).
pub fn release_startup_code() -> io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut released = Released::default();
    for (start, end) in exe_read_only_mappings(&maps, &exe) {
        page_out(start, end - start)?;
        released.mappings += 1;
        released.bytes += end - start;
    }
    Ok(released)
}

/// The `[start, end)` of each mapping of `/proc/self/maps` whose path is `exe` and whose
/// permissions do not include writing.
fn exe_read_only_mappings<'a>(
    maps: &'a str,
    exe: &'a str,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    maps.lines().filter_map(move |line| {
        // "start-end perms offset dev inode path"; the path may hold spaces.
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let path = fields.nth(3)?.trim_start();
        if path != exe || perms.as_bytes().get(1) != Some(&b'-') {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (end > start).then_some((start, end))
    })
}

#[allow(unsafe_code)]
fn page_out(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: [start, start + len) is a whole mapping of this process, read from
    // /proc/self/maps, of the executable's file and not writable. MADV_PAGEOUT only
    // reclaims pages; a later access faults in the same contents from the file, so no
    // reference into the range (code, string literals, read-only statics) is affected.
    // The call is memory-safe even if the range were unmapped meanwhile (ENOMEM).
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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

    #[test]
    fn the_purge_delay_is_the_option_set() {
        let get = || {
            // SAFETY: reads one integer of mimalloc's option table.
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
            }
        };
        // mimalloc 3's default purge delay (options.c): 1000 ms. No other option
        // defaults to it, so this also checks the index.
        assert_eq!(get(), 1000);
        purge_freed_memory_at_once();
        assert_eq!(get(), 0);
    }

    #[test]
    fn finds_the_executables_read_only_mappings_only() {
        let maps = "\
5600-5700 r--p 00000000 fd:01 12 /usr/bin/rampart
5700-5900 r-xp 00100000 fd:01 12 /usr/bin/rampart
5900-5a00 r--p 00300000 fd:01 12 /usr/bin/rampart
5a00-5b00 rw-p 00400000 fd:01 12 /usr/bin/rampart
5b00-5c00 r-xp 00000000 fd:01 13 /usr/bin/rampart-old
7f00-7f10 r-xp 00000000 fd:01 14 /usr/lib/libc.so.6
7f20-7f30 rw-p 00000000 00:00 0 
7f40-7f50 r-xp 00000000 fd:01 15 /opt/my dir/rampart (deleted)
";
        let got: Vec<_> = exe_read_only_mappings(maps, "/usr/bin/rampart").collect();
        assert_eq!(got, [(0x5600, 0x5700), (0x5700, 0x5900), (0x5900, 0x5a00)]);
        let got: Vec<_> = exe_read_only_mappings(maps, "/opt/my dir/rampart (deleted)").collect();
        assert_eq!(got, [(0x7f40, 0x7f50)]);
    }

    /// `page_out` on a file mapping this test controls (written, synced, mapped by no one
    /// else): the pages stop being resident, and reading them again gives the same bytes.
    #[test]
    fn paging_out_a_clean_file_mapping_drops_it_and_keeps_its_contents() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        const LEN: usize = 1 << 20;
        let dir = std::env::temp_dir().join(format!("rampart-sys-pageout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data");
        let bytes: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&bytes).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: a fresh read-only private mapping of a file this test owns, unmapped
        // below; nothing else refers to the range.
        #[allow(unsafe_code)]
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let start = addr as usize;
        // SAFETY: the mapping above, LEN bytes, readable, alive until munmap below.
        #[allow(unsafe_code)]
        let view = unsafe { std::slice::from_raw_parts(addr as *const u8, LEN) };
        let resident_kib = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let head = format!("{start:x}-");
            let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
            lines.next().unwrap();
            let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
            rss.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(view == &bytes[..]);
        let before = resident_kib();
        page_out(start, LEN).unwrap();
        let after = resident_kib();
        assert!(view == &bytes[..], "contents changed after MADV_PAGEOUT");
        // SAFETY: unmaps exactly the mapping made above; `view` is not used after.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::munmap(addr, LEN) };
        assert_eq!(rc, 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            before >= 512,
            "only {before} kB resident after reading 1 MiB"
        );
        assert!(
            after < before / 2,
            "Rss {before} kB before MADV_PAGEOUT, {after} kB after"
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a short sleep between tries, in a test
    fn releasing_startup_code_unmaps_it_and_the_code_still_runs() {
        fn resident_file_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // MADV_PAGEOUT is advice: the kernel skips pages it cannot reclaim at that moment
        // (another process maps them, they sit in another CPU's LRU batch, a large folio
        // it cannot split). One CI run saw no drop at all; ten runs of the same binary
        // afterwards each saw it. So: up to five tries, and a visible note if the kernel
        // kept every page, rather than a failure. The call itself must succeed and find
        // the executable's mappings every time; bench/agent.sh measures the effect.
        let mut seen = Vec::new();
        for _ in 0..5 {
            let before = resident_file_kib();
            let r = release_startup_code().unwrap();
            assert!(r.mappings >= 2, "{r:?}");
            assert!(r.bytes > 0, "{r:?}");
            let after = resident_file_kib();
            if after < before {
                seen.clear();
                break;
            }
            seen.push((before, after));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !seen.is_empty() {
            eprintln!("NOTE: the kernel kept the executable's pages in 5 tries (RssFile kB before, after: {seen:?})");
        }
        // The code still runs and the read-only data still reads (from the file).
        assert_eq!(adjtimex().unwrap().tick, adjtimex().unwrap().tick);
    }
}
