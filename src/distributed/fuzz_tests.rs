//! Worker reports mutated at random (truncated, bits flipped, extreme values written over them, other
//! versions, pieces spliced in) against a master: no panic, and a refused report changes nothing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::stats::Outcome;
use super::wire::{decode, encode_v2};
use super::Node;
use crate::metrics::{Counter, Desc, Gauge, GaugeMode, Histogram, Kind, NativeConfig, ValueData};
use crate::test_rng::Rng;

/// Enough to cover each kind of mutation many times over, and to run in a few seconds in a debug build.
const CASES: usize = 100_000;
/// The master starts again this often, so that the families mutated names make stay few.
const MASTER_LIFETIME: usize = 1_000;

/// Valid reports of a worker with a family of each kind, a native histogram among them: its successive
/// reports (cumulative, then increments), and one in the previous release's format.
fn valid_reports() -> Vec<Vec<u8>> {
    let worker = Node::default();
    let labels = || vec!["a".to_string()];
    let r = &worker.registry;
    let c = r
        .register::<Counter>(Desc::new("c", "h", Kind::Counter, labels()).unwrap())
        .unwrap();
    let g = r
        .register::<Gauge>(Desc::new("g", "h", Kind::Gauge(GaugeMode::MostRecent), labels()).unwrap())
        .unwrap();
    let h = Desc::new("h", "h", Kind::Histogram([0.1, 1.0].into()), labels()).unwrap();
    let h = r.register::<Histogram>(h.with_native(NativeConfig::default())).unwrap();
    let mut reports = Vec::new();
    for round in 0..4 {
        for i in 0..3 {
            let a = [format!("v{i}")];
            c.child(&a).unwrap().inc(f64::from(round + i));
            g.child(&a).unwrap().set(f64::from(round * i) - 1.5);
            h.child(&a)
                .unwrap()
                .observe(f64::from(round + 1) * 0.07 * f64::from(i + 1));
        }
        reports.push(worker.take_report());
    }
    reports.push(encode_v2(&worker.collect()));
    reports
}

const EXTREMES: [f64; 8] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -1.0,
    f64::MAX,
    5e-324,
    -0.0,
    1e300,
];

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes.truncate(at),
        1 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let v = EXTREMES[rng.below(EXTREMES.len())].to_le_bytes();
            let end = (at + 8).min(bytes.len());
            bytes[at..end].copy_from_slice(&v[..end - at]);
        }
        3 => {
            let end = (at + 1 + rng.below(10)).min(bytes.len());
            bytes[at..end].fill(0xff);
        }
        4 => bytes[3] = [b'0', b'1', b'2', b'3', b'4', b'9', 0, 0xff][rng.below(8)],
        _ => {
            let from = rng.below(valid.len());
            let piece = &valid[from..(from + 1 + rng.below(40)).min(valid.len())];
            bytes.splice(at..at, piece.iter().copied());
        }
    }
    bytes
}

/// A digest of what a refused report must leave as it was: every family but the merge's own metrics
/// (which count it). Floats by their bits, so that a NaN gauge equals itself.
fn merged(node: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    for (desc, series) in node.collect() {
        if desc.name.starts_with("locust_exporter_report") {
            continue;
        }
        desc.name.hash(&mut h);
        for s in series {
            s.labels.hash(&mut h);
            match s.value {
                ValueData::Scalar { value, updated } => [value, updated].map(f64::to_bits).hash(&mut h),
                ValueData::Histogram { counts, sum, native } => {
                    (counts, sum.to_bits()).hash(&mut h);
                    if let Some(n) = native {
                        (
                            n.schema,
                            n.zero_count,
                            n.count,
                            n.sum.to_bits(),
                            &n.positive,
                            &n.negative,
                        )
                            .hash(&mut h);
                    }
                }
            }
        }
    }
    h.finish()
}

/// Counters and histograms of the master, which may never go NaN or negative.
fn assert_totals_sane(node: &Node) {
    for (desc, series) in node.collect() {
        for s in series {
            match (&desc.kind, &s.value) {
                (Kind::Counter, ValueData::Scalar { value, .. }) => {
                    assert!(value.is_finite() && *value >= 0.0, "{} = {value}", desc.name)
                }
                (Kind::Histogram(_), ValueData::Histogram { sum, .. }) => assert!(sum.is_finite(), "{}", desc.name),
                _ => {}
            }
        }
    }
}

#[test]
fn mutated_reports_never_panic_and_refused_ones_change_nothing() {
    let reports = valid_reports();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut refused, mut taken) = (0, 0);
    let mut master = Node::default();
    // The state before a run of refused reports, checked once the run ends (a master's state is costly to
    // read: once per run, not per report).
    let mut before: Option<u64> = None;
    for case in 0..=CASES {
        let bytes = mutate(&mut rng, &reports[case % reports.len()]);
        let refuse = decode(&bytes).is_err();
        if case % MASTER_LIFETIME == 0 || !refuse || case == CASES {
            if let Some(before) = before.take() {
                assert_eq!(
                    merged(&master),
                    before,
                    "refused reports before case {case} changed the totals"
                );
            }
        }
        if case == CASES {
            break;
        }
        if case % MASTER_LIFETIME == 0 {
            assert_totals_sane(&master);
            master = Node::default();
            for (i, report) in reports.iter().enumerate() {
                assert_eq!(master.apply_report(&format!("w{}", i % 2), report).0, Outcome::Applied);
            }
        }
        if refuse && before.is_none() {
            before = Some(merged(&master));
        }
        let worker = format!("w{}", rng.below(3));
        let (outcome, lines) = catch_unwind(AssertUnwindSafe(|| master.apply_report(&worker, &bytes)))
            .unwrap_or_else(|_| panic!("case {case} panicked on {bytes:?}"));
        assert!(
            lines.iter().all(|l| !l.contains("internal error")),
            "case {case}: {lines:?}"
        );
        assert_eq!(
            outcome == Outcome::Refused,
            refuse,
            "case {case}: refused exactly when it does not decode"
        );
        if refuse {
            refused += 1;
        } else {
            taken += 1;
        }
    }
    assert_totals_sane(&master);
    assert!(
        refused > CASES / 10 && taken > CASES / 10,
        "refused {refused}, taken {taken}"
    );
}
