//! Locust's own metrics: the built-in families and the one-lookup path a request event takes.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::errors::Result;
use crate::metrics::{
    push_series_key, series_key, Counter, Desc, Family, Gauge, GaugeMode, Histogram, Kind, LabelCap, NativeConfig,
    Registry, Series, OVERFLOW,
};

/// Distinct request names recorded before new ones go under the overflow name.
pub const DEFAULT_MAX_NAMES: usize = 1000;

thread_local! {
    static KEY_BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The four series one request event touches, resolved once per label combination.
struct RequestSeries {
    requests: Arc<Series<Counter>>,
    duration: Arc<Series<Histogram>>,
    request_bytes: Arc<Series<Counter>>,
    response_bytes: Arc<Series<Counter>>,
}

pub struct LocustMetrics {
    requests: Arc<Family<Counter>>,
    /// Replaced when Locust's options set other buckets, before the test starts.
    duration: RwLock<Arc<Family<Histogram>>>,
    request_bytes: Arc<Family<Counter>>,
    response_bytes: Arc<Family<Counter>>,
    pub users_total: Arc<Family<Counter>>,
    pub users_running: Arc<Family<Gauge>>,
    pub users_waiting: Arc<Family<Gauge>>,
    pub workers: Arc<Family<Gauge>>,
    pub test_info: Arc<Family<Gauge>>,
    pub cpu_usage: Arc<Family<Gauge>>,
    pub memory_usage: Arc<Family<Gauge>>,
    /// The cap on distinct request names, shared with the registry, which applies it to workers' reports.
    pub names: Arc<LabelCap>,
    cache: RwLock<HashMap<String, Arc<RequestSeries>>>,
}

/// One Locust request event, as the listener extracted it.
pub struct Request<'a> {
    pub method: &'a str,
    pub name: &'a str,
    pub status: &'a str,
    pub exception: &'a str,
    pub response_time_ms: Option<f64>,
    pub response_length: f64,
    pub request_length: f64,
}

/// The labels of the per-request families other than the request counter.
const BY_REQUEST: [&str; 2] = ["method", "name"];

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn duration_desc(buckets: &[f64]) -> Result<Desc> {
    Desc::new(
        "locust_request_duration_seconds",
        "Request duration as Locust measures it (response_time)",
        Kind::Histogram(buckets.into()),
        labels(&BY_REQUEST),
    )
    .map(|desc| desc.with_native(NativeConfig::default()))
}

impl LocustMetrics {
    /// Registers (or finds, if already registered alike) the built-in families.
    /// `per_worker` gives the user gauges one series per worker instead of their sum.
    pub fn new(registry: &Registry, buckets: &[f64], per_worker: bool) -> Result<Self> {
        let user_gauges = if per_worker {
            GaugeMode::LiveAll
        } else {
            GaugeMode::LiveSum
        };
        let desc = |name: &str, help: &str, kind: Kind, names: &[&str]| Desc::new(name, help, kind, labels(names));
        let requests: Arc<Family<Counter>> = registry.get_or_register(desc(
            "locust_requests",
            "Requests made, by method, name, HTTP status (0: no response) and exception class",
            Kind::Counter,
            &["method", "name", "status", "exception"],
        )?)?;
        let duration = registry.get_or_register::<Histogram>(duration_desc(buckets)?)?;
        let request_bytes: Arc<Family<Counter>> = registry.get_or_register(desc(
            "locust_request_length_bytes",
            "Request body bytes sent (headers are not counted)",
            Kind::Counter,
            &BY_REQUEST,
        )?)?;
        let response_bytes: Arc<Family<Counter>> = registry.get_or_register(desc(
            "locust_response_length_bytes",
            "Response bytes received (Locust's response_length)",
            Kind::Counter,
            &BY_REQUEST,
        )?)?;
        let overflowed = registry
            .get_or_register(desc(
                "locust_exporter_names_overflowed",
                &format!(
                "Requests recorded under name=\"{OVERFLOW}\": new request names past the cap (--prometheus-max-names)"
            ),
                Kind::Counter,
                &[],
            )?)
            .and_then(|f: Arc<Family<Counter>>| f.child::<&str>(&[]))?;
        let capped = [
            &requests.desc,
            &duration.desc,
            &request_bytes.desc,
            &response_bytes.desc,
        ]
        .map(|d| d.name.clone());
        let names = registry.label_cap(|| {
            LabelCap::new(
                "name",
                capped.to_vec(),
                &requests.desc.name,
                overflowed,
                DEFAULT_MAX_NAMES,
            )
        });
        Ok(LocustMetrics {
            requests,
            duration: RwLock::new(duration),
            request_bytes,
            response_bytes,
            names,
            users_total: registry.get_or_register(desc(
                "locust_users",
                "Users spawned since the process started",
                Kind::Counter,
                &[],
            )?)?,
            users_running: registry.get_or_register(desc(
                "locust_users_running",
                "Users running (the runner's user count, sampled every second)",
                Kind::Gauge(user_gauges),
                &[],
            )?)?,
            users_waiting: registry.get_or_register(desc(
                "locust_users_waiting",
                "Users sleeping in their wait_time (sampled every second)",
                Kind::Gauge(user_gauges),
                &[],
            )?)?,
            workers: registry.get_or_register(desc(
                "locust_workers",
                "Locust workers connected to the master, by state",
                Kind::Gauge(GaugeMode::LiveSum),
                &["state"],
            )?)?,
            test_info: registry.get_or_register(desc(
                "locust_test_info",
                "The test being run (1): its id, made at test start, locustfile, target host and users",
                Kind::Gauge(GaugeMode::LiveSum),
                &["run_id", "locustfile", "host", "target_users"],
            )?)?,
            cpu_usage: registry.get_or_register(desc(
                "locust_cpu_usage_percent",
                "CPU use of each load-generating process, as Locust measures it every 10 s (percent of one core)",
                Kind::Gauge(GaugeMode::LiveSum),
                &["worker"],
            )?)?,
            memory_usage: registry.get_or_register(desc(
                "locust_memory_usage_bytes",
                "Resident memory of each load-generating process, as Locust measures it every 10 s",
                Kind::Gauge(GaugeMode::LiveSum),
                &["worker"],
            )?)?,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Other duration buckets, from Locust's options: the series recorded so far are dropped.
    pub fn set_buckets(&self, registry: &Registry, buckets: &[f64]) -> Result<()> {
        let family = registry.replace::<Histogram>(duration_desc(buckets)?)?;
        let mut cache = self.cache.write();
        *self.duration.write() = family;
        cache.clear();
        Ok(())
    }

    /// The series of a request, and whether its name was recorded under the overflow name.
    fn series_for(&self, r: &Request) -> Result<(Arc<RequestSeries>, bool)> {
        let labels = [r.method, r.name, r.status, r.exception];
        // The hot path: the key is built in a reused buffer, and allocated only for a new combination.
        let found = KEY_BUFFER.with_borrow_mut(|key| {
            key.clear();
            push_series_key(key, &labels);
            self.cache.read().get(key.as_str()).cloned()
        });
        if let Some(s) = found {
            return Ok((s, false));
        }
        // Past the cap a new name is not cached under its own key, so a stream of new names stays bounded.
        let name = self.names.admit(r.name);
        if name != r.name {
            let capped = Request { name: OVERFLOW, ..*r };
            return Ok((self.series_for(&capped)?.0, true));
        }
        let key = series_key(&labels);
        let pair = [r.method, r.name];
        let series = Arc::new(RequestSeries {
            requests: self.requests.child(&labels)?,
            duration: self.duration.read().child(&pair)?,
            request_bytes: self.request_bytes.child(&pair)?,
            response_bytes: self.response_bytes.child(&pair)?,
        });
        Ok((self.cache.write().entry(key).or_insert(series).clone(), false))
    }

    pub fn record(&self, r: &Request) -> Result<()> {
        let (s, overflowed) = self.series_for(r)?;
        if overflowed {
            self.names.overflowed.inc(1.0);
        }
        s.requests.inc(1.0);
        s.request_bytes.inc(r.request_length);
        s.response_bytes.inc(r.response_length);
        // Locust counts a request with no response time but leaves it out of its percentiles;
        // a NaN would poison the sum for good.
        if let Some(ms) = r.response_time_ms.filter(|t| t.is_finite()) {
            s.duration.observe(ms / 1000.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{as_report, SeriesData, ValueData, DEFAULT_BUCKETS};

    fn request<'a>(status: &'a str, ms: Option<f64>) -> Request<'a> {
        Request {
            method: "GET",
            name: "/",
            status,
            exception: "",
            response_time_ms: ms,
            response_length: 10.0,
            request_length: 3.0,
        }
    }

    fn find_in(got: &crate::metrics::Collected, name: &str) -> Vec<SeriesData> {
        got.iter()
            .find(|(d, _)| d.name == name)
            .map(|(_, s)| s.clone())
            .unwrap()
    }

    #[test]
    fn one_event_updates_every_family() {
        let reg = Registry::default();
        let m = LocustMetrics::new(&reg, &DEFAULT_BUCKETS, false).unwrap();
        m.record(&request("200", Some(12.0))).unwrap();
        m.record(&request("500", None)).unwrap();
        let got = reg.collect();
        let find = |name: &str| find_in(&got, name);
        assert_eq!(find("locust_requests").len(), 2);
        let [SeriesData {
            value:
                ValueData::Histogram {
                    counts,
                    sum,
                    native: Some(native),
                },
            ..
        }] = &find("locust_request_duration_seconds")[..]
        else {
            panic!()
        };
        assert_eq!(counts.iter().sum::<u64>(), 1, "None response time is not observed");
        assert_eq!(
            (native.count, native.positive.len()),
            (1, 1),
            "native buckets beside the classic"
        );
        assert!((sum - 0.012).abs() < 1e-12);
        let [SeriesData {
            value: ValueData::Scalar { value, .. },
            ..
        }] = &find("locust_response_length_bytes")[..]
        else {
            panic!()
        };
        assert_eq!(*value, 20.0);
        assert!(
            LocustMetrics::new(&reg, &DEFAULT_BUCKETS, false).is_ok(),
            "same config again is fine"
        );
        assert!(
            LocustMetrics::new(&reg, &[1.0, 2.0], false).is_err(),
            "other buckets clash"
        );
        m.set_buckets(&reg, &[1.0, 2.0]).unwrap();
        m.record(&request("200", Some(1500.0))).unwrap();
        let got = reg.collect();
        let [SeriesData {
            value: ValueData::Histogram { counts, .. },
            ..
        }] = &find_in(&got, "locust_request_duration_seconds")[..]
        else {
            panic!()
        };
        assert_eq!(counts, &vec![0, 1, 0], "a fresh histogram with the new buckets");
    }

    fn requests_by_name(reg: &Registry) -> (Vec<(String, f64)>, f64) {
        let got = reg.collect();
        let value = |s: &SeriesData| match s.value {
            ValueData::Scalar { value, .. } => value,
            _ => panic!(),
        };
        let by_name = find_in(&got, "locust_requests")
            .iter()
            .map(|s| (s.labels[1].clone(), value(s)))
            .collect();
        (by_name, value(&find_in(&got, "locust_exporter_names_overflowed")[0]))
    }

    #[test]
    fn names_past_the_cap_go_under_the_overflow_name_here_and_on_the_master() {
        let reg = Registry::default();
        let m = LocustMetrics::new(&reg, &DEFAULT_BUCKETS, false).unwrap();
        m.names.set_max(2);
        for name in ["/a", "/b", "/c", "/d", "/a", "/c"] {
            m.record(&Request {
                name,
                ..request("200", None)
            })
            .unwrap();
        }
        let named = |pairs: &[(&str, f64)]| pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect::<Vec<_>>();
        assert_eq!(
            requests_by_name(&reg),
            (named(&[("/a", 2.0), ("/b", 1.0), (OVERFLOW, 3.0)]), 3.0)
        );
        // A worker without a cap reports /a and /e: the master's cap applies to the merged view.
        let worker = Registry::default();
        let w = LocustMetrics::new(&worker, &DEFAULT_BUCKETS, false).unwrap();
        w.names.set_max(0);
        for name in ["/a", "/e", "/e"] {
            w.record(&Request {
                name,
                ..request("200", None)
            })
            .unwrap();
        }
        reg.apply_report("w", as_report(&worker.changes())).unwrap();
        assert_eq!(
            requests_by_name(&reg),
            (named(&[("/a", 3.0), ("/b", 1.0), (OVERFLOW, 5.0)]), 5.0)
        );
        w.record(&Request {
            name: "/e",
            ..request("200", None)
        })
        .unwrap();
        reg.apply_report("w", as_report(&worker.changes())).unwrap();
        assert_eq!(
            requests_by_name(&reg),
            (named(&[("/a", 3.0), ("/b", 1.0), (OVERFLOW, 6.0)]), 6.0)
        );
        let bytes = find_in(&reg.collect(), "locust_response_length_bytes");
        assert_eq!(bytes.len(), 3, "every per-request family is capped alike");
    }
}
