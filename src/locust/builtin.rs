//! The catalogue of built-in families: every `locust_*` and `locust_exporter_*` metric the exporter
//! defines, named, described and labelled here only. Their kinds are given where they are registered
//! (a user gauge's mode depends on an option).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::errors::Result;
use crate::metrics::{Desc, Kind, NativeConfig};

pub struct Builtin {
    /// Base name (a counter's without `_total`).
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl Builtin {
    pub fn desc(&self, kind: Kind) -> Result<Desc> {
        Desc::new(
            self.name,
            self.help,
            kind,
            self.labels.iter().map(|l| l.to_string()).collect(),
        )
    }
}

/// The labels of the per-request families other than the request counter.
const BY_REQUEST: &[&str] = &["method", "name"];

pub const REQUESTS: Builtin = Builtin {
    name: "locust_requests",
    help: "Requests made, by method, name, HTTP status (0: no response) and exception class",
    labels: &["method", "name", "status", "exception"],
};
pub const REQUEST_DURATION: Builtin = Builtin {
    name: "locust_request_duration_seconds",
    help: "Request duration as Locust measures it (response_time)",
    labels: BY_REQUEST,
};
pub const REQUEST_BYTES: Builtin = Builtin {
    name: "locust_request_length_bytes",
    help: "Request body bytes sent (headers are not counted)",
    labels: BY_REQUEST,
};
pub const RESPONSE_BYTES: Builtin = Builtin {
    name: "locust_response_length_bytes",
    help: "Response bytes received (Locust's response_length)",
    labels: BY_REQUEST,
};
pub const NAMES_OVERFLOWED: Builtin = Builtin {
    name: "locust_exporter_names_overflowed",
    // `OVERFLOW`, written out: a test checks that they agree.
    help: "Requests recorded under name=\"<other>\": new request names past the cap (--prometheus-max-names)",
    labels: &[],
};
pub const USERS: Builtin = Builtin {
    name: "locust_users",
    help: "Users spawned since the process started",
    labels: &[],
};
pub const USERS_RUNNING: Builtin = Builtin {
    name: "locust_users_running",
    help: "Users running (the runner's user count, sampled every second)",
    labels: &[],
};
pub const USERS_WAITING: Builtin = Builtin {
    name: "locust_users_waiting",
    help: "Users sleeping in their wait_time (sampled every second)",
    labels: &[],
};
pub const WORKERS: Builtin = Builtin {
    name: "locust_workers",
    help: "Locust workers connected to the master, by state",
    labels: &["state"],
};
pub const TEST_INFO: Builtin = Builtin {
    name: "locust_test_info",
    help: "The test being run (1): its id, made at test start, locustfile, target host and users",
    labels: &["run_id", "locustfile", "host", "target_users"],
};
pub const CPU_USAGE: Builtin = Builtin {
    name: "locust_cpu_usage_percent",
    help: "CPU use of each load-generating process, as Locust measures it every 10 s (percent of one core)",
    labels: &["worker"],
};
pub const MEMORY_USAGE: Builtin = Builtin {
    name: "locust_memory_usage_bytes",
    help: "Resident memory of each load-generating process, as Locust measures it every 10 s",
    labels: &["worker"],
};
pub const HTTP_REQUESTS: Builtin = Builtin {
    name: "locust_exporter_http_requests",
    help: "Requests the exporter's HTTP server answered, by status code",
    labels: &["code"],
};
pub const CONNECTIONS_DROPPED: Builtin = Builtin {
    name: "locust_exporter_connections_dropped",
    help: "Connections the exporter's HTTP server closed without an answer, or answered with an error and closed",
    labels: &["reason"],
};
pub const WEB_CONFIG_RELOADS: Builtin = Builtin {
    name: "locust_exporter_web_config_reloads",
    help: "Reloads of the web-config file after it changed, by result (success, failure)",
    labels: &["result"],
};
pub const CONNECTIONS_RESERVED: Builtin = Builtin {
    name: "locust_exporter_connections_reserved",
    help: "Connections the exporter's HTTP server accepted on a spare descriptor of its reserve, the process having none free",
    labels: &[],
};
pub const RESERVE_MISSES: Builtin = Builtin {
    name: "locust_exporter_reserve_misses",
    help: "Spare descriptors the exporter's HTTP server closed for a waiting connection that another thread took first",
    labels: &[],
};
pub const SERIES_DROPPED: Builtin = Builtin {
    name: "locust_exporter_series_dropped",
    help: "labels() calls past a custom metric's max_series, whose values are not recorded",
    labels: &["metric"],
};

pub const REPORTS: Builtin = Builtin {
    name: "locust_exporter_reports",
    help: "Worker reports the master received, by what became of them (applied, partial: merged with something \
           left out, refused: not merged)",
    labels: &["result"],
};
pub const REPORT_SECONDS: Builtin = Builtin {
    name: "locust_exporter_report_apply_seconds",
    help: "Time the master spent applying worker reports, on Locust's event loop",
    labels: &[],
};

/// Every built-in family.
pub const ALL: [&Builtin; 20] = [
    &REQUESTS,
    &REQUEST_DURATION,
    &REQUEST_BYTES,
    &RESPONSE_BYTES,
    &NAMES_OVERFLOWED,
    &USERS,
    &USERS_RUNNING,
    &USERS_WAITING,
    &WORKERS,
    &TEST_INFO,
    &CPU_USAGE,
    &MEMORY_USAGE,
    &HTTP_REQUESTS,
    &CONNECTIONS_DROPPED,
    &WEB_CONFIG_RELOADS,
    &CONNECTIONS_RESERVED,
    &RESERVE_MISSES,
    &SERIES_DROPPED,
    &REPORTS,
    &REPORT_SECONDS,
];

/// The sample-name suffixes a family of any kind may expose (see `Desc::exposed_names`).
const SUFFIXES: [&str; 6] = ["", "_total", "_created", "_bucket", "_sum", "_count"];

/// Every sample name a built-in may expose, whatever its kind.
static BUILTIN_NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    ALL.iter()
        .flat_map(|b| SUFFIXES.iter().map(move |s| format!("{}{s}", b.name)))
        .collect()
});

/// Whether `desc` would take a name of the exporter's own metrics: a built-in's, whatever its kind, or a
/// process metric's (`process_*`, served by the process collector at each scrape).
pub fn reserved(desc: &Desc) -> bool {
    desc.name.starts_with("process_") || desc.exposed_names().iter().any(|n| BUILTIN_NAMES.contains(n))
}

/// Whether a family in a worker's report takes a reserved name without being the built-in itself.
pub fn reserved_in_report(desc: &Desc) -> bool {
    reserved(desc) && !ALL.iter().any(|b| b.name == desc.name && b.labels == desc.label_names)
}

/// The request duration histogram with these classic buckets, and native ones beside them.
pub fn duration_desc(buckets: &[f64]) -> Result<Desc> {
    REQUEST_DURATION
        .desc(Kind::Histogram(buckets.into()))
        .map(|desc| desc.with_native(NativeConfig::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::OVERFLOW;

    #[test]
    fn every_builtin_is_valid_and_named_once() {
        let mut names: Vec<_> = ALL.iter().map(|b| b.name).collect();
        for b in ALL {
            assert!(b.desc(Kind::Counter).is_ok(), "{}", b.name);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(NAMES_OVERFLOWED.help.contains(&format!("name=\"{OVERFLOW}\"")));
    }

    #[test]
    fn reserved_names_are_the_builtins_and_the_process_metrics() {
        let gauge = |name: &str, labels: &[&str]| {
            let labels = labels.iter().map(|l| l.to_string()).collect();
            Desc::new(name, "h", Kind::Gauge(crate::metrics::GaugeMode::Sum), labels).unwrap()
        };
        for taken in [
            "process_cpu_seconds_total",
            "process_x",
            "locust_requests",
            "locust_requests_total",
        ] {
            assert!(reserved(&gauge(taken, &[])), "{taken}");
            assert!(reserved_in_report(&gauge(taken, &[])), "{taken}");
        }
        let counter = REQUESTS.desc(Kind::Counter).unwrap();
        assert!(
            reserved(&counter) && !reserved_in_report(&counter),
            "the built-in itself, from a worker"
        );
        assert!(!reserved(&gauge("locust_custom", &[])) && !reserved(&gauge("my_process_x", &[])));
    }
}
