//! Prometheus native (sparse, exponential) histograms, with client_golang's defaults and bucket keys.
//!
//! A bucket of schema `s` and key `k` holds the values in `(2^((k-1)·2^-s), 2^(k·2^-s)]`; values
//! whose magnitude is at most the zero threshold go to the zero bucket. Past `max_buckets`
//! populated buckets the schema is lowered by one (pairs of buckets merge), as client_golang does.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use parking_lot::Mutex;

use crate::errors::{ExporterError, Result};

pub const MIN_SCHEMA: i32 = -4;
pub const MAX_SCHEMA: i32 = 8;
/// client_golang's `DefNativeHistogramZeroThreshold` (2^-128).
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938735877055719e-39;
/// Schema 3: neighbouring bounds 2^(1/8) apart, a bucket's middle within about 4.4 % of its ends.
pub const DEFAULT_SCHEMA: i32 = 3;
/// client_golang's recommended `NativeHistogramMaxBucketNumber`.
pub const DEFAULT_MAX_BUCKETS: usize = 160;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeConfig {
    pub schema: i32,
    pub zero_threshold: f64,
    pub max_buckets: usize,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            schema: DEFAULT_SCHEMA,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            max_buckets: DEFAULT_MAX_BUCKETS,
        }
    }
}

impl NativeConfig {
    /// The defaults with another schema, checked against the range Prometheus accepts.
    pub fn with_schema(schema: i32) -> Result<Self> {
        if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&schema) {
            return Err(ExporterError::InvalidValue(format!(
                "invalid native histogram schema {schema}: expected an integer from {MIN_SCHEMA} to {MAX_SCHEMA}"
            )));
        }
        Ok(NativeConfig {
            schema,
            ..Self::default()
        })
    }
}

/// `BOUNDS[s][j] = 2^(j/2^s) / 2`: the fractions (in `[0.5, 1)`) that split an octave at schema `s > 0`.
static BOUNDS: LazyLock<Vec<Vec<f64>>> = LazyLock::new(|| {
    (0..=MAX_SCHEMA)
        .map(|s| {
            let n = 1usize << s;
            (0..n).map(|j| (j as f64 / n as f64).exp2() / 2.0).collect()
        })
        .collect()
});

/// `v = frac · 2^exp` with `frac` in `[0.5, 1)`, for finite `v > 0` (C's `frexp`); `(0, 0)` for zero.
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 {
        return (0.0, 0);
    }
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (frac, exp) = frexp(v * 2f64.powi(64));
        return (frac, exp - 64);
    }
    let frac = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (frac, biased - 1022)
}

/// The key of the bucket holding the magnitude `v > 0` at `schema` (client_golang's algorithm).
pub fn bucket_key(v: f64, schema: i32) -> i32 {
    // Infinity has no bucket of its own: it counts in the highest one, as the largest float would.
    let (frac, exp) = frexp(v.min(f64::MAX));
    if schema > 0 {
        let bounds = &BOUNDS[schema as usize];
        bounds.partition_point(|b| *b < frac) as i32 + (exp - 1) * bounds.len() as i32
    } else {
        let key = if frac == 0.5 { exp - 1 } else { exp };
        reduce_key(key, -schema)
    }
}

/// A key of schema `s` as the key of schema `s - by`, whose buckets each join `2^by` of them.
fn reduce_key(key: i32, by: i32) -> i32 {
    (key + (1 << by) - 1) >> by
}

/// The upper bound of the bucket `key` at `schema` (Prometheus' `getBound`).
pub fn upper_bound(key: i32, schema: i32) -> f64 {
    if schema > 0 {
        let n = 1i32 << schema;
        let frac = BOUNDS[schema as usize][(key & (n - 1)) as usize];
        frac * 2f64.powi((key >> schema) + 1)
    } else {
        2f64.powi(key << -schema)
    }
}

/// A plain copy of a native histogram: what a scrape renders and what merges exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeSnapshot {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// Populated buckets only, by key.
    pub positive: BTreeMap<i32, u64>,
    pub negative: BTreeMap<i32, u64>,
    pub count: u64,
    pub sum: f64,
    /// In a worker's report: only what was added since its previous report, not cumulative counts.
    pub increments: bool,
}

impl NativeSnapshot {
    pub fn empty(config: &NativeConfig) -> Self {
        NativeSnapshot {
            schema: config.schema,
            zero_threshold: config.zero_threshold,
            zero_count: 0,
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            count: 0,
            sum: 0.0,
            increments: false,
        }
    }

    fn observe(&mut self, v: f64, max_buckets: usize) {
        self.count += 1;
        self.sum += v;
        if v.abs() <= self.zero_threshold {
            self.zero_count += 1;
            return;
        }
        let buckets = if v > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        *buckets.entry(bucket_key(v.abs(), self.schema)).or_insert(0) += 1;
        while self.positive.len() + self.negative.len() > max_buckets && self.schema > MIN_SCHEMA {
            self.reduce_to(self.schema - 1);
        }
    }

    /// Lowers the resolution to `schema` (not above the current one): an exact regrouping.
    pub fn reduce_to(&mut self, schema: i32) {
        let by = self.schema - schema;
        if by <= 0 {
            return;
        }
        for buckets in [&mut self.positive, &mut self.negative] {
            let old = std::mem::take(buckets);
            for (key, n) in old {
                let merged = buckets.entry(reduce_key(key, by)).or_insert(0);
                *merged = merged.saturating_add(n);
            }
        }
        self.schema = schema;
    }

    /// Widens the zero bucket to `threshold`, taking in the buckets that lie wholly within it.
    fn widen_zero_bucket(&mut self, threshold: f64) {
        if threshold <= self.zero_threshold {
            return;
        }
        let schema = self.schema;
        for buckets in [&mut self.positive, &mut self.negative] {
            let inside: Vec<i32> = buckets
                .keys()
                .copied()
                .take_while(|k| upper_bound(*k, schema) <= threshold)
                .collect();
            for k in inside {
                self.zero_count = self.zero_count.saturating_add(buckets.remove(&k).unwrap_or(0));
            }
        }
        self.zero_threshold = threshold;
    }

    /// Brings both to the lower of their schemas and the wider of their zero buckets, exactly.
    fn align(&mut self, other: &mut NativeSnapshot) {
        let schema = self.schema.min(other.schema);
        self.reduce_to(schema);
        other.reduce_to(schema);
        let threshold = self.zero_threshold.max(other.zero_threshold);
        self.widen_zero_bucket(threshold);
        other.widen_zero_bucket(threshold);
    }

    /// Adds `other` in: exact at the lower of the two schemas and the wider of the two zero buckets.
    pub fn merge(&mut self, other: &NativeSnapshot) {
        let mut other = other.clone();
        self.align(&mut other);
        for (mine, theirs) in [
            (&mut self.positive, other.positive),
            (&mut self.negative, other.negative),
        ] {
            for (key, n) in theirs {
                let merged = mine.entry(key).or_insert(0);
                *merged = merged.saturating_add(n);
            }
        }
        // Saturating: counts from workers' reports are checked, but their sums over many reports are not.
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
    }

    /// What was added since `earlier`, a previous state of the same histogram: only the buckets that
    /// grew, at the lower of the two schemas (the histogram may have lowered its resolution since).
    pub fn minus(&self, earlier: &NativeSnapshot) -> NativeSnapshot {
        let (mut now, mut then) = (self.clone(), earlier.clone());
        now.align(&mut then);
        for (buckets, before) in [(&mut now.positive, &then.positive), (&mut now.negative, &then.negative)] {
            buckets.retain(|key, n| {
                *n = n.saturating_sub(before.get(key).copied().unwrap_or(0));
                *n > 0
            });
        }
        now.zero_count = now.zero_count.saturating_sub(then.zero_count);
        now.count = now.count.saturating_sub(then.count);
        now.sum -= then.sum;
        now
    }

    /// Runs of consecutive keys as (offset from the previous run's end, length), with the counts
    /// as deltas from the previous bucket's: the spans and deltas of the exposition formats.
    pub fn spans_and_deltas(buckets: &BTreeMap<i32, u64>) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(buckets.len());
        let (mut next_key, mut previous) = (None::<i32>, 0i64);
        for (&key, &n) in buckets {
            match (next_key, spans.last_mut()) {
                (Some(next), Some(span)) if next == key => span.1 += 1,
                (next, _) => spans.push((next.map_or(key, |next| key - next), 1)),
            }
            next_key = Some(key + 1);
            deltas.push(n as i64 - previous);
            previous = n as i64;
        }
        (spans, deltas)
    }
}

/// A live native histogram. One uncontended mutex per series, held for a map increment:
/// Locust's request events come one at a time under the GIL, so it is not fought over.
pub struct NativeHistogram {
    config: NativeConfig,
    state: Mutex<NativeSnapshot>,
}

impl NativeHistogram {
    pub fn new(config: NativeConfig) -> Self {
        NativeHistogram {
            state: Mutex::new(NativeSnapshot::empty(&config)),
            config,
        }
    }

    /// Counts `v`; NaN has no bucket and is left out (the callers refuse or filter it first).
    pub fn observe(&self, v: f64) {
        if !v.is_nan() {
            self.state.lock().observe(v, self.config.max_buckets);
        }
    }

    /// Adds a worker's growth in (the master's totals), at the lower schema if it has one.
    pub fn add(&self, growth: &NativeSnapshot) {
        let mut state = self.state.lock();
        state.merge(growth);
        while state.positive.len() + state.negative.len() > self.config.max_buckets && state.schema > MIN_SCHEMA {
            let lower = state.schema - 1;
            state.reduce_to(lower);
        }
    }

    pub fn snapshot(&self) -> NativeSnapshot {
        self.state.lock().clone()
    }

    /// Back to empty, at the configured schema again.
    pub fn reset(&self) {
        *self.state.lock() = NativeSnapshot::empty(&self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    type Shape = fn(&mut Rng) -> f64;

    fn observed(config: NativeConfig, values: &[f64]) -> NativeSnapshot {
        let h = NativeHistogram::new(config);
        values.iter().for_each(|v| h.observe(*v));
        h.snapshot()
    }

    #[test]
    fn keys_follow_the_bucket_bounds() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for v in [
                1e-9, 0.001, 0.0123, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 7.77, 100.0, 12345.678, 1e12,
            ] {
                let k = bucket_key(v, schema);
                let (lower, upper) = (upper_bound(k - 1, schema), upper_bound(k, schema));
                assert!(
                    lower < v && v <= upper * (1.0 + 1e-15),
                    "{v} in ({lower}, {upper}] at {schema}"
                );
            }
            // 2^(16n) is a bound at every schema: the upper one of its bucket, not the lower.
            for bound in [2f64.powi(-32), 1.0, 65536.0] {
                assert_eq!(upper_bound(bucket_key(bound, schema), schema), bound, "schema {schema}");
            }
        }
        assert_eq!(bucket_key(1.0, 3), 0);
        assert_eq!(bucket_key(2.0, 3), 8);
        assert_eq!(bucket_key(2.0, 0), 1);
        assert_eq!(bucket_key(3.0, -1), 1, "(1, 4] at schema -1");
        assert_eq!(bucket_key(5e-324, 0), -1074, "subnormals too");
        assert_eq!(bucket_key(f64::INFINITY, 0), bucket_key(f64::MAX, 0));
        assert_eq!(frexp(0.0), (0.0, 0), "zero returns, where it recursed for ever");
    }

    #[test]
    fn reducing_keys_matches_observing_at_the_lower_schema() {
        let mut rng = Rng(7);
        let values: Vec<f64> = (0..5000).map(|_| (rng.normal() * 4.0).exp()).collect();
        for schema in MIN_SCHEMA + 1..=MAX_SCHEMA {
            let wide = NativeConfig {
                max_buckets: usize::MAX,
                ..NativeConfig::with_schema(schema).unwrap()
            };
            let mut fine = observed(wide, &values);
            for lower in (MIN_SCHEMA..schema).rev() {
                fine.reduce_to(lower);
                let direct = observed(NativeConfig { schema: lower, ..wide }, &values);
                assert_eq!(fine.positive, direct.positive, "{schema} -> {lower}");
            }
        }
    }

    #[test]
    fn zero_bucket_signs_and_counts() {
        let s = observed(NativeConfig::default(), &[0.0, -0.0, 1e-40, -2.0, -2.0, 3.0, f64::NAN]);
        assert_eq!((s.zero_count, s.count), (3, 6));
        assert_eq!(s.negative.into_iter().collect::<Vec<_>>(), vec![(8, 2)]);
        assert_eq!(s.positive.values().sum::<u64>(), 1);
        assert_eq!(s.sum, -1.0 + 1e-40);
    }

    #[test]
    fn resolution_halves_past_the_bucket_limit() {
        let config = NativeConfig {
            max_buckets: 10,
            ..NativeConfig::default()
        };
        // 2^(i/8) for 40 consecutive keys: 40 buckets at schema 3, 10 at schema 1.
        let values: Vec<f64> = (1..=40).map(|i| (i as f64 / 8.0).exp2()).collect();
        let s = observed(config, &values);
        assert_eq!(s.schema, 1);
        assert_eq!(s.positive.len(), 10);
        assert!(s.positive.values().all(|n| *n == 4));
        let h = NativeHistogram::new(config);
        h.observe(1.0);
        h.reset();
        assert_eq!(h.snapshot(), NativeSnapshot::empty(&config));
        assert!(NativeConfig::with_schema(9).is_err() && NativeConfig::with_schema(-5).is_err());
    }

    #[test]
    fn merge_is_exact_across_schemas_and_thresholds() {
        let mut rng = Rng(42);
        let a: Vec<f64> = (0..3000).map(|_| (rng.normal() - 2.0).exp()).collect();
        let b: Vec<f64> = (0..2000).map(|_| -(rng.normal() - 1.0).exp()).collect();
        let fine = NativeConfig {
            max_buckets: usize::MAX,
            ..NativeConfig::with_schema(5).unwrap()
        };
        let coarse = NativeConfig {
            // A bucket bound (a power of two), so that no bucket straddles the wider zero bucket.
            zero_threshold: 2f64.powi(-7),
            ..NativeConfig::with_schema(2).unwrap()
        };
        let mut merged = observed(fine, &a);
        merged.merge(&observed(coarse, &b));
        // What one histogram of the coarser kind sees of all the observations.
        let both: Vec<f64> = a.iter().chain(&b).copied().collect();
        let expected = observed(
            NativeConfig {
                max_buckets: usize::MAX,
                ..coarse
            },
            &both,
        );
        assert_eq!(merged.schema, 2);
        assert_eq!(merged.zero_threshold, 2f64.powi(-7));
        assert_eq!(merged.positive, expected.positive);
        assert_eq!(merged.negative, expected.negative);
        assert_eq!((merged.zero_count, merged.count), (expected.zero_count, expected.count));
        assert!((merged.sum - expected.sum).abs() < 1e-9);
    }

    #[test]
    fn increments_hold_only_the_changed_buckets_and_add_back_exactly() {
        let config = NativeConfig {
            max_buckets: 12,
            ..NativeConfig::default()
        };
        let h = NativeHistogram::new(config);
        [0.1, 0.1, 0.5, 2.0, 0.0].iter().for_each(|v| h.observe(*v));
        let before = h.snapshot();
        [0.5, 0.5, 3.0].iter().for_each(|v| h.observe(*v));
        let after = h.snapshot();
        let added = after.minus(&before);
        assert_eq!(
            added.positive.len(),
            2,
            "only the buckets of 0.5 and 3.0: {:?}",
            added.positive
        );
        assert_eq!((added.count, added.zero_count, added.sum), (3, 0, 4.0));
        let mut rebuilt = before.clone();
        rebuilt.merge(&added);
        assert_eq!(rebuilt, after);
        // Past the bucket limit the resolution drops: the increments come at the new schema.
        let mut rng = Rng(3);
        (0..500).for_each(|_| h.observe((rng.normal() * 3.0).exp()));
        let lower = h.snapshot();
        assert!(lower.schema < after.schema);
        let mut rebuilt = after.clone();
        rebuilt.merge(&lower.minus(&after));
        assert_eq!(rebuilt, lower);
    }

    #[test]
    fn spans_and_deltas_encode_the_buckets() {
        let buckets: BTreeMap<i32, u64> = [(-3, 2), (-2, 5), (0, 1), (4, 4), (5, 4)].into_iter().collect();
        let (spans, deltas) = NativeSnapshot::spans_and_deltas(&buckets);
        assert_eq!(spans, vec![(-3, 2), (1, 1), (3, 2)]);
        assert_eq!(deltas, vec![2, 3, -4, 3, 0]);
        assert_eq!(NativeSnapshot::spans_and_deltas(&BTreeMap::new()), (vec![], vec![]));
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` estimates it from native buckets
    /// (linear within the bucket, as Prometheus 2.42 does): used to check the accuracy.
    fn quantile(s: &NativeSnapshot, q: f64) -> f64 {
        let mut buckets: Vec<(f64, f64, u64)> = Vec::new();
        for (&k, &n) in s.negative.iter().rev() {
            buckets.push((-upper_bound(k, s.schema), -upper_bound(k - 1, s.schema), n));
        }
        if s.zero_count > 0 {
            buckets.push((-s.zero_threshold, s.zero_threshold, s.zero_count));
        }
        for (&k, &n) in &s.positive {
            buckets.push((upper_bound(k - 1, s.schema), upper_bound(k, s.schema), n));
        }
        let total: u64 = buckets.iter().map(|b| b.2).sum();
        let rank = q * total as f64;
        let mut seen = 0.0;
        for (lower, upper, n) in &buckets {
            if seen + *n as f64 >= rank {
                return lower + (upper - lower) * ((rank - seen) / *n as f64);
            }
            seen += *n as f64;
        }
        f64::NAN
    }

    /// The exact `q` quantile of sorted values, as `numpy.percentile`'s linear method.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        let pos = q * (sorted.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos.fract());
        sorted[i] + (sorted[(i + 1).min(sorted.len() - 1)] - sorted[i]) * f
    }

    #[test]
    fn quantiles_are_within_the_bucket_width_of_the_exact_ones() {
        // Latency-like shapes: log-normal around 100 ms, a wide log-normal, and a bimodal mix.
        let mut rng = Rng(1);
        let shapes: [(&str, Shape); 3] = [
            ("lognormal", |r| (0.1f64.ln() + 0.5 * r.normal()).exp()),
            ("wide", |r| (0.05f64.ln() + 1.5 * r.normal()).exp()),
            ("bimodal", |r| {
                let centre = if r.uniform() < 0.8 { 0.02 } else { 0.8 };
                centre * (0.2 * r.normal()).exp()
            }),
        ];
        let base_factor = (1.0f64 / 8.0).exp2();
        for (name, draw) in &shapes {
            let mut values: Vec<f64> = (0..100_000).map(|_| draw(&mut rng)).collect();
            let s = observed(NativeConfig::default(), &values);
            assert_eq!(s.schema, DEFAULT_SCHEMA, "{name}: within the bucket limit");
            values.sort_by(f64::total_cmp);
            for q in [0.5, 0.9, 0.95, 0.99] {
                let (want, got) = (exact(&values, q), quantile(&s, q));
                let error = got / want - 1.0;
                // Never outside the exact value's bucket, and in practice far closer.
                assert!(
                    got / want < base_factor && want / got < base_factor,
                    "{name} p{q}: {got} vs {want}"
                );
                assert!(
                    error.abs() < 0.02,
                    "{name} p{q}: {got} vs {want} ({:.2} %)",
                    error * 100.0
                );
            }
        }
    }
}
