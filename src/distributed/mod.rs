//! Locust's distributed mode: workers report what changed in their registry, and the master merges
//! the reports with its own series, so that its endpoint serves the whole load.

mod checks;
#[cfg(test)]
mod fuzz_tests;
pub mod master;
mod snapshot;
pub mod stats;
pub mod wire;
pub mod worker;

use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;

use crate::clock::unix_seconds;
use crate::locust::builtin;
use crate::log_once::LogOnce;
use crate::metrics::{Collected, Registry};
use master::Master;
use stats::{MergeStats, Outcome};
use worker::Sender;

/// A registry and this process's part in a distributed run: on a master, what the workers reported;
/// on a worker, what it last sent. A process that is neither only serves its own series.
#[derive(Default)]
pub struct Node {
    pub registry: Registry,
    master: Mutex<Master>,
    sender: Sender,
    /// The merge's own metrics, registered with the first report (`None` if they could not be).
    stats: OnceLock<Option<MergeStats>>,
    /// The problems with workers' reports already logged, by worker and kind.
    logged: LogOnce,
}

impl Node {
    /// Everything to render: own series merged with the workers' reports.
    pub fn collect(&self) -> Collected {
        let families = self.registry.families();
        let workers = self.master.lock().snapshot();
        families
            .iter()
            .map(|f| (f.desc().clone(), workers.merge(f.desc(), f.data())))
            .collect()
    }

    /// On a worker: the series changed since the last report, encoded for Locust's report to the master.
    pub fn take_report(&self) -> Vec<u8> {
        wire::encode(&self.sender.changes(&self.registry))
    }

    /// On the master: merges a worker's report, learning families defined only on workers. What cannot
    /// be merged is left out: families the master defines differently (other buckets, labels or kind) or
    /// under a reserved name, and what `wire::decode` and `Master::apply` leave out. Returns what became of
    /// the report, and the lines to log: each kind of problem once per worker.
    pub fn apply_report(&self, client_id: &str, data: &[u8]) -> (Outcome, Vec<String>) {
        let started = Instant::now();
        let mut problems: Vec<(&str, String)> = Vec::new();
        let outcome = match wire::decode(data) {
            Err(e) => {
                problems.push(("refused", format!("report of worker {client_id} refused: {e}")));
                Outcome::Refused
            }
            Ok(decoded) => {
                let (mut accepted, mut mismatched, mut reserved) = (Vec::new(), Vec::new(), Vec::new());
                for (desc, series) in decoded.families {
                    if builtin::reserved_in_report(&desc) {
                        reserved.push(desc.name);
                    } else {
                        match self.registry.learn(&desc) {
                            Ok(family) => accepted.push((family, series)),
                            Err(_) => mismatched.push(desc.name),
                        }
                    }
                }
                let cap = self.registry.current_label_cap();
                let applied = self
                    .master
                    .lock()
                    .apply(client_id, accepted, cap.as_deref(), unix_seconds());
                let left_out = decoded.series_left_out + applied.series_left_out;
                if let Some(why) = decoded.left_out.or(applied.why) {
                    let release = decoded.package.map(|p| format!(", release {p}")).unwrap_or_default();
                    let line = format!(
                        "part of a report of worker {client_id} (format {}{release}) left out: {why} \
                         ({left_out} series of this report)",
                        decoded.version
                    );
                    problems.push(("left out", line));
                }
                if !mismatched.is_empty() {
                    problems.push(("mismatch", format!("worker {client_id}: families defined differently on the master left out of its reports: {mismatched:?}")));
                }
                if !reserved.is_empty() {
                    problems.push(("reserved", format!("worker {client_id}: families named as the exporter's own metrics left out of its reports: {reserved:?}")));
                }
                if problems.is_empty() {
                    Outcome::Applied
                } else {
                    Outcome::Partial
                }
            }
        };
        if let Some(stats) = self.merge_stats() {
            stats.count(outcome, started.elapsed());
        }
        let lines = problems
            .into_iter()
            .filter(|(kind, _)| self.logged.first(&format!("{client_id}\0{kind}")))
            .map(|(_, line)| format!("locust-prometheus-exporter: {line} (logged once per worker)"))
            .collect();
        (outcome, lines)
    }

    fn merge_stats(&self) -> Option<&MergeStats> {
        self.stats
            .get_or_init(|| MergeStats::register(&self.registry).ok())
            .as_ref()
    }

    /// On the master: which workers Locust lists, and which of them it has not marked missing.
    pub fn set_workers(&self, live: &[String], listed: Option<&[String]>) {
        self.master.lock().set_workers(live, listed, unix_seconds());
    }

    /// In a forked child: start from zero, keeping families and the handles Python holds.
    pub fn reset_after_fork(&self) {
        self.registry.reset_after_fork();
        self.master.lock().clear();
        self.sender.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::wire::encode;
    use super::*;
    use crate::metrics::{Desc, Histogram, Kind, NativeConfig, NativeSnapshot, SeriesData, ValueData};

    /// The native histogram of series `n="a"` in `collected`.
    fn native_of(collected: &Collected) -> NativeSnapshot {
        let (_, series) = collected.iter().find(|(d, _)| d.name == "h").unwrap();
        match &series.iter().find(|s| s.labels == ["a"]).unwrap().value {
            ValueData::Histogram { native: Some(n), .. } => (**n).clone(),
            other => panic!("no native buckets: {other:?}"),
        }
    }

    #[test]
    fn native_buckets_ship_as_increments_and_merge_exactly_across_workers() {
        let desc = |schema| {
            Desc::new("h", "x", Kind::Histogram([0.1].into()), vec!["n".into()])
                .unwrap()
                .with_native(NativeConfig::with_schema(schema).unwrap())
        };
        let master = Node::default();
        master.registry.register::<Histogram>(desc(3)).unwrap();
        // Two workers at different resolutions: the master's merge is at the lower one.
        let workers = [Node::default(), Node::default()];
        let series: Vec<_> = workers
            .iter()
            .zip([3, 1])
            .map(|(w, schema)| {
                w.registry
                    .register::<Histogram>(desc(schema))
                    .unwrap()
                    .child(&["a"])
                    .unwrap()
            })
            .collect();
        let mut x = 0.37f64;
        for round in 0..6 {
            for (i, (w, s)) in workers.iter().zip(&series).enumerate() {
                for _ in 0..(5 + 3 * round + i) {
                    x = (x * 7.31).fract();
                    s.observe((x * 12.0 - 9.0).exp2() * if x < 0.1 { -1.0 } else { 1.0 });
                }
                let shipped = w.sender.changes(&w.registry);
                if round > 0 {
                    let sent = native_of(&shipped);
                    assert!(sent.increments, "after the first report, only increments");
                    let total = native_of(&w.collect());
                    assert!(sent.positive.len() + sent.negative.len() < total.positive.len() + total.negative.len());
                }
                let (outcome, _) = master.apply_report(&format!("w{i}"), &encode(&shipped));
                assert_eq!(outcome, Outcome::Applied);
            }
            let mut expected = native_of(&workers[0].collect());
            expected.merge(&native_of(&workers[1].collect()));
            let got = native_of(&master.collect());
            assert_eq!(got.schema, 1);
            assert_eq!(
                (&got.positive, &got.negative, got.zero_count, got.count),
                (
                    &expected.positive,
                    &expected.negative,
                    expected.zero_count,
                    expected.count
                ),
                "round {round}: bucket by bucket"
            );
            assert!((got.sum - expected.sum).abs() < 1e-9 * expected.sum.abs().max(1.0));
        }
    }

    #[test]
    fn reports_of_families_defined_differently_are_refused() {
        let r = Node::default();
        let master = Desc::new("h", "h", Kind::Histogram([1.0].into()), vec![]).unwrap();
        r.registry.register::<Histogram>(master).unwrap();
        let worker = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec![]).unwrap();
        let only_worker = Desc::new("w", "h", Kind::Counter, vec![]).unwrap();
        let data = |d: &Desc| {
            let value = match d.kind {
                Kind::Counter => ValueData::Scalar {
                    value: 1.0,
                    updated: 0.0,
                },
                _ => ValueData::Histogram {
                    counts: vec![1, 1, 1],
                    sum: 3.0,
                    native: None,
                },
            };
            (d.clone(), vec![SeriesData { labels: vec![], value }])
        };
        let (outcome, lines) = r.apply_report("a", &encode(&vec![data(&worker), data(&only_worker)]));
        assert_eq!(outcome, Outcome::Partial);
        assert!(matches!(&lines[..], [line] if line.contains("[\"h\"]")), "{lines:?}");
        let collected = r.collect();
        let hist = &collected.iter().find(|(d, _)| d.name == "h").unwrap().1;
        assert!(
            hist.iter().all(|s| s.value != data(&worker).1[0].value),
            "nothing of the worker's h"
        );
        let w = &collected.iter().find(|(d, _)| d.name == "w").unwrap().1;
        assert_eq!(
            w.len(),
            1,
            "the rest of the report is taken, families new to the master included"
        );
    }

    #[test]
    fn a_restarted_master_catches_up_at_the_next_full_report() {
        let worker = Node::default();
        let desc = Desc::new("c", "h", crate::metrics::Kind::Counter, vec!["l".into()]).unwrap();
        let c = worker.registry.register::<crate::metrics::Counter>(desc).unwrap();
        let values = |node: &Node| -> Vec<(Vec<String>, f64)> {
            let collected = node.collect();
            let (_, series) = collected.iter().find(|(d, _)| d.name == "c").unwrap();
            series
                .iter()
                .map(|s| match s.value {
                    ValueData::Scalar { value, .. } => (s.labels.clone(), value),
                    _ => unreachable!(),
                })
                .collect()
        };
        let first = Node::default();
        c.child(&["a"]).unwrap().inc(5.0);
        first.apply_report("w", &worker.take_report());
        // The master restarts: the worker's next reports carry only what changed since the last one.
        let restarted = Node::default();
        c.child(&["b"]).unwrap().inc(1.0);
        restarted.apply_report("w", &worker.take_report());
        assert_eq!(
            values(&restarted),
            vec![(vec!["b".to_string()], 1.0)],
            "only what changed"
        );
        for _ in 2..worker::FULL_REPORT_EVERY {
            c.child(&["b"]).unwrap().inc(1.0);
            restarted.apply_report("w", &worker.take_report());
        }
        assert_eq!(
            values(&restarted),
            vec![(vec!["a".to_string()], 5.0), (vec!["b".to_string()], 19.0)],
            "the full report brought the series that had not changed"
        );
        assert_eq!(values(&restarted), values(&worker));
    }
}
