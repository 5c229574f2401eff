//! Locust's own metrics as this process records them: the built-in families' handles, and the one-lookup
//! path a request event takes.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::builtin;
use crate::errors::Result;
use crate::metrics::{
    push_series_key, series_key, Counter, Family, Gauge, GaugeMode, Histogram, Kind, LabelCap, Registry, Series,
    OVERFLOW,
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
    pub name_cap: Arc<LabelCap>,
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

impl LocustMetrics {
    /// Registers (or finds, if already registered alike) the built-in families.
    /// `per_worker` gives the user gauges one series per worker instead of their sum.
    pub fn new(registry: &Registry, buckets: &[f64], per_worker: bool) -> Result<Self> {
        let user_gauges = Kind::Gauge(if per_worker {
            GaugeMode::LiveAll
        } else {
            GaugeMode::LiveSum
        });
        let summed = || Kind::Gauge(GaugeMode::LiveSum);
        let requests: Arc<Family<Counter>> = registry.get_or_register(builtin::REQUESTS.desc(Kind::Counter)?)?;
        let duration = registry.get_or_register::<Histogram>(builtin::duration_desc(buckets)?)?;
        let request_bytes: Arc<Family<Counter>> =
            registry.get_or_register(builtin::REQUEST_BYTES.desc(Kind::Counter)?)?;
        let response_bytes: Arc<Family<Counter>> =
            registry.get_or_register(builtin::RESPONSE_BYTES.desc(Kind::Counter)?)?;
        let overflowed = registry
            .get_or_register(builtin::NAMES_OVERFLOWED.desc(Kind::Counter)?)
            .and_then(|f: Arc<Family<Counter>>| f.child::<&str>(&[]))?;
        let capped = [
            &requests.desc,
            &duration.desc,
            &request_bytes.desc,
            &response_bytes.desc,
        ]
        .map(|d| d.name.clone());
        let name_cap = registry.label_cap(|| {
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
            name_cap,
            users_total: registry.get_or_register(builtin::USERS.desc(Kind::Counter)?)?,
            users_running: registry.get_or_register(builtin::USERS_RUNNING.desc(user_gauges.clone())?)?,
            users_waiting: registry.get_or_register(builtin::USERS_WAITING.desc(user_gauges)?)?,
            workers: registry.get_or_register(builtin::WORKERS.desc(summed())?)?,
            test_info: registry.get_or_register(builtin::TEST_INFO.desc(summed())?)?,
            cpu_usage: registry.get_or_register(builtin::CPU_USAGE.desc(summed())?)?,
            memory_usage: registry.get_or_register(builtin::MEMORY_USAGE.desc(summed())?)?,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Other duration buckets, from Locust's options: the series recorded so far are dropped.
    pub fn set_buckets(&self, registry: &Registry, buckets: &[f64]) -> Result<()> {
        let family = registry.replace::<Histogram>(builtin::duration_desc(buckets)?)?;
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
        let name = self.name_cap.admit(r.name);
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
            self.name_cap.overflowed.inc(1.0);
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
    use crate::distributed::stats::Outcome;
    use crate::distributed::Node;
    use crate::metrics::{SeriesData, ValueData, DEFAULT_BUCKETS};

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

    fn requests_by_name(reg: &Node) -> (Vec<(String, f64)>, f64) {
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
        let reg = Node::default();
        let m = LocustMetrics::new(&reg.registry, &DEFAULT_BUCKETS, false).unwrap();
        m.name_cap.set_max(2);
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
        let worker = Node::default();
        let w = LocustMetrics::new(&worker.registry, &DEFAULT_BUCKETS, false).unwrap();
        w.name_cap.set_max(0);
        for name in ["/a", "/e", "/e"] {
            w.record(&Request {
                name,
                ..request("200", None)
            })
            .unwrap();
        }
        assert_eq!(reg.apply_report("w", &worker.take_report()).0, Outcome::Applied);
        assert_eq!(
            requests_by_name(&reg),
            (named(&[("/a", 3.0), ("/b", 1.0), (OVERFLOW, 5.0)]), 5.0)
        );
        w.record(&Request {
            name: "/e",
            ..request("200", None)
        })
        .unwrap();
        assert_eq!(reg.apply_report("w", &worker.take_report()).0, Outcome::Applied);
        assert_eq!(
            requests_by_name(&reg),
            (named(&[("/a", 3.0), ("/b", 1.0), (OVERFLOW, 6.0)]), 6.0)
        );
        let bytes = find_in(&reg.collect(), "locust_response_length_bytes");
        assert_eq!(bytes.len(), 3, "every per-request family is capped alike");
    }
}
