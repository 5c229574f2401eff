//! A worker's side of the distributed run: what changed since its last report to the master.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::metrics::{series_key, Collected, NativeSnapshot, Registry, SeriesData, ValueData};

/// One report in this many carries every series: once a minute at Locust's 3 s report interval.
pub const FULL_REPORT_EVERY: u64 = 20;

/// The values a worker last sent to the master, so that reports carry only changes.
#[derive(Default)]
pub struct Sender {
    state: Mutex<Sent>,
}

#[derive(Default)]
struct Sent {
    /// (family name, series key) -> the value last sent.
    values: HashMap<(String, String), ValueData>,
    /// Reports made so far (every `FULL_REPORT_EVERY`th carries every series).
    reports: u64,
}

impl Sender {
    /// The series of `registry` whose values changed since the previous call, and every series in one
    /// call of `FULL_REPORT_EVERY`, so that a report Locust failed to deliver, or a master that
    /// restarted, is caught up with.
    pub fn changes(&self, registry: &Registry) -> Collected {
        let mut sent = self.state.lock();
        sent.reports += 1;
        if sent.reports % FULL_REPORT_EVERY == 0 {
            sent.values.clear();
        }
        let mut out = Vec::new();
        for f in registry.families() {
            let mut changed = Vec::new();
            for data in f.data() {
                let key = (f.desc().name.clone(), series_key(&data.labels));
                let previous = sent.values.get(&key);
                if previous != Some(&data.value) {
                    let shipped = SeriesData {
                        value: for_report(&data.value, previous),
                        labels: data.labels,
                    };
                    sent.values.insert(key, data.value);
                    changed.push(shipped);
                }
            }
            if !changed.is_empty() {
                out.push((f.desc().clone(), changed));
            }
        }
        out
    }

    /// In a forked child: nothing was sent yet.
    pub fn clear(&self) {
        self.state.lock().values.clear();
    }
}

/// What a worker ships for a value it last shipped as `previous`: the native buckets as increments
/// (the buckets that changed only), unless there is nothing to add them to or the series went back
/// (it was removed and made again), when they go whole.
fn for_report(value: &ValueData, previous: Option<&ValueData>) -> ValueData {
    match (value, previous) {
        (
            ValueData::Histogram {
                counts,
                sum,
                native: Some(now),
            },
            Some(ValueData::Histogram { native: Some(then), .. }),
        ) if now.count >= then.count => ValueData::Histogram {
            counts: counts.clone(),
            sum: *sum,
            native: Some(Box::new(NativeSnapshot {
                increments: true,
                ..now.minus(then)
            })),
        },
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counter, Desc, Kind};

    #[test]
    fn changes_carry_only_what_moved() {
        let r = Registry::default();
        let f = r
            .register::<Counter>(Desc::new("c", "h", Kind::Counter, vec![]).unwrap())
            .unwrap();
        let sender = Sender::default();
        assert_eq!(sender.changes(&r).len(), 1, "first report carries everything");
        assert!(sender.changes(&r).is_empty());
        for _ in 2..FULL_REPORT_EVERY - 1 {
            assert!(sender.changes(&r).is_empty());
        }
        assert_eq!(sender.changes(&r).len(), 1, "a full report now and then");
        assert!(sender.changes(&r).is_empty());
        f.child::<&str>(&[]).unwrap().inc(2.0);
        let ch = sender.changes(&r);
        assert_eq!(
            ch[0].1[0].value,
            ValueData::Scalar {
                value: 2.0,
                updated: 0.0
            }
        );
    }
}
