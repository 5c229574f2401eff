//! The standard process metrics of the process that serves (`process_cpu_seconds_total`, resident and
//! virtual memory, open and maximum file descriptors, threads, start time), named as client_python and
//! every Go exporter name them.
//!
//! A scrape opens no descriptor, so that it is answered when the process has none left: `/proc/self/stat`
//! and the `/proc/self/fd` directory are opened once (when a server starts, or at the first collect) and
//! reread from their start; CPU time and the descriptor limit come from `getrusage` and `getrlimit`.

use super::data::Collected;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CStr;
    use std::fs::File;
    use std::io;
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::FileExt;
    use std::ptr::NonNull;

    use parking_lot::Mutex;

    /// A directory held open, listed again from its start at each read.
    struct Dir(NonNull<libc::DIR>);

    // SAFETY: the stream is used by one thread at a time, under `FILES`' lock.
    unsafe impl Send for Dir {}

    impl Dir {
        fn open(path: &str) -> io::Result<Dir> {
            // std opens with O_CLOEXEC; `fdopendir` takes the descriptor over.
            let fd = File::open(path)?.into_raw_fd();
            // SAFETY: `fd` is an open directory owned by nobody else.
            match NonNull::new(unsafe { libc::fdopendir(fd) }) {
                Some(dir) => Ok(Dir(dir)),
                None => {
                    let e = io::Error::last_os_error();
                    // SAFETY: `fdopendir` failed, so `fd` is still ours.
                    unsafe { libc::close(fd) };
                    Err(e)
                }
            }
        }

        /// Its entries but `.` and `..`.
        fn count(&mut self) -> usize {
            let dir = self.0.as_ptr();
            // SAFETY: `dir` is open; each entry is read before the next `readdir`.
            unsafe {
                libc::rewinddir(dir);
                let mut n = 0;
                while let Some(entry) = libc::readdir(dir).as_ref() {
                    let name = CStr::from_ptr(entry.d_name.as_ptr()).to_bytes();
                    n += usize::from(name != b"." && name != b"..");
                }
                n
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            // SAFETY: opened by `fdopendir`, closed once.
            unsafe { libc::closedir(self.0.as_ptr()) };
        }
    }

    /// What `/proc/self/...` opened in this process: a forked child reopens them, for its own pid.
    struct Files {
        pid: u32,
        stat: File,
        fds: Dir,
        /// Seconds since the epoch; it never changes.
        start_time: f64,
        buffer: Vec<u8>,
    }

    static FILES: Mutex<Option<Files>> = Mutex::new(None);

    fn sysconf(name: libc::c_int) -> f64 {
        // SAFETY: no memory is passed.
        unsafe { libc::sysconf(name) as f64 }
    }

    /// The fields of `/proc/self/stat` after the command name (which may hold spaces and parentheses):
    /// index 0 is field 3, the state.
    pub(super) fn stat_fields(stat: &[u8]) -> Option<Vec<f64>> {
        let rest = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
        let fields = std::str::from_utf8(rest).ok()?.split_ascii_whitespace();
        Some(fields.map(|f| f.parse().unwrap_or(f64::NAN)).collect())
    }

    const THREADS: usize = 20 - 3;
    const START_TIME: usize = 22 - 3;
    const VSIZE: usize = 23 - 3;
    const RSS: usize = 24 - 3;

    impl Files {
        fn open() -> io::Result<Files> {
            let stat = File::open("/proc/self/stat")?;
            let boot_time = std::fs::read_to_string("/proc/stat")?
                .lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
                .ok_or_else(|| io::Error::other("no btime in /proc/stat"))?;
            let mut files = Files {
                pid: std::process::id(),
                stat,
                fds: Dir::open("/proc/self/fd")?,
                start_time: f64::NAN,
                buffer: Vec::with_capacity(1024),
            };
            let ticks = files.read_stat()?.get(START_TIME).copied().unwrap_or(f64::NAN);
            files.start_time = boot_time + ticks / sysconf(libc::_SC_CLK_TCK);
            Ok(files)
        }

        /// `/proc/self/stat` read from offset 0 (`pread`: no offset shared with a forked process).
        fn read_stat(&mut self) -> io::Result<Vec<f64>> {
            self.buffer.clear();
            let mut chunk = [0u8; 512];
            loop {
                let n = self.stat.read_at(&mut chunk, self.buffer.len() as u64)?;
                if n == 0 {
                    break;
                }
                self.buffer.extend_from_slice(&chunk[..n]);
            }
            stat_fields(&self.buffer).ok_or_else(|| io::Error::other("unreadable /proc/self/stat"))
        }
    }

    /// Opens the files if this process has not yet (the server's start calls it: scrapes then open none).
    pub fn hold() {
        let mut files = FILES.lock();
        if files.as_ref().is_none_or(|f| f.pid != std::process::id()) {
            *files = Files::open().ok();
        }
    }

    /// One of the standard process metrics, with client_python's help text.
    pub struct Metric {
        pub name: &'static str,
        pub help: &'static str,
        pub counter: bool,
    }

    const fn gauge(name: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            help,
            counter: false,
        }
    }

    const CPU: Metric = Metric {
        name: "process_cpu_seconds",
        help: "Total user and system CPU time spent in seconds.",
        counter: true,
    };
    const OPEN_FDS: Metric = gauge("process_open_fds", "Number of open file descriptors.");
    const MAX_FDS: Metric = gauge("process_max_fds", "Maximum number of open file descriptors.");
    const VIRTUAL: Metric = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.");
    const RESIDENT: Metric = gauge("process_resident_memory_bytes", "Resident memory size in bytes.");
    const THREADS_NOW: Metric = gauge("process_threads", "Number of OS threads in the process.");
    const STARTED: Metric = gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
    );

    /// Each metric that could be read, with its value.
    pub fn read() -> Vec<(&'static Metric, f64)> {
        let mut out = Vec::with_capacity(7);
        // SAFETY: plain structs the kernel fills.
        let (usage, limit) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let mut limit: libc::rlimit = std::mem::zeroed();
            (
                (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage),
                (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0).then_some(limit),
            )
        };
        if let Some(u) = usage {
            // Microseconds, where `/proc/self/stat` counts clock ticks (10 ms).
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            out.push((&CPU, seconds(u.ru_utime) + seconds(u.ru_stime)));
        }
        if let Some(l) = limit {
            out.push((&MAX_FDS, l.rlim_cur as f64));
        }
        hold();
        if let Some(files) = FILES.lock().as_mut() {
            out.push((&OPEN_FDS, files.fds.count() as f64));
            out.push((&STARTED, files.start_time));
            if let Ok(stat) = files.read_stat() {
                let field = |i: usize| stat.get(i).copied().unwrap_or(f64::NAN);
                out.push((&VIRTUAL, field(VSIZE)));
                out.push((&RESIDENT, field(RSS) * sysconf(libc::_SC_PAGESIZE)));
                out.push((&THREADS_NOW, field(THREADS)));
            }
        }
        out
    }
}

/// Opens what the process metrics are read from, once per process: called as a server starts.
pub fn hold() {
    #[cfg(target_os = "linux")]
    linux::hold();
}

/// The process metrics now; none on systems other than Linux.
pub fn collect() -> Collected {
    #[cfg(target_os = "linux")]
    {
        use super::data::{SeriesData, ValueData};
        use super::desc::{Desc, GaugeMode, Kind};
        linux::read()
            .into_iter()
            .filter_map(|(metric, value)| {
                let kind = if metric.counter {
                    Kind::Counter
                } else {
                    Kind::Gauge(GaugeMode::LiveSum)
                };
                let desc = Desc::new(metric.name, metric.help, kind, vec![]).ok()?;
                let value = ValueData::Scalar { value, updated: 0.0 };
                Some((desc, vec![SeriesData { labels: vec![], value }]))
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::metrics::ValueData;

    fn value(got: &Collected, name: &str) -> f64 {
        match got.iter().find(|(d, _)| d.name == name).map(|(_, s)| &s[0].value) {
            Some(ValueData::Scalar { value, .. }) => *value,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn the_seven_standard_metrics_with_plausible_values() {
        let got = collect();
        assert_eq!(got.len(), 7);
        assert!(value(&got, "process_resident_memory_bytes") > 0.0);
        assert!(value(&got, "process_virtual_memory_bytes") >= value(&got, "process_resident_memory_bytes"));
        assert!(value(&got, "process_open_fds") >= 3.0);
        assert!(value(&got, "process_max_fds") >= value(&got, "process_open_fds"));
        assert!(value(&got, "process_threads") >= 1.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let start = value(&got, "process_start_time_seconds");
        assert!(start > now - 3600.0 && start <= now + 1.0, "{start} vs now {now}");
        assert!(value(&got, "process_cpu_seconds") > 0.0);
    }

    #[test]
    fn stat_fields_start_after_the_command_name() {
        let fields = linux::stat_fields(b"42 (a (b) c) R 1 2 3\n").unwrap_or_default();
        assert_eq!(fields.len(), 4);
        assert!(fields[0].is_nan());
        assert_eq!(fields[1..], [1.0, 2.0, 3.0]);
    }
}
