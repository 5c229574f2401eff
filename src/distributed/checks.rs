//! What a master accepts of the values in a worker's report, which is untrusted input: a value out of
//! range would make a total NaN or negative for good, or an integer operation overflow.

use crate::metrics::{Kind, NativeSnapshot, ValueData, DEFAULT_ZERO_THRESHOLD, MAX_SCHEMA, MIN_SCHEMA};

/// Bucket keys of finite values reach about ±1,075·2^8 at schema 8: a key beyond this bound is not a
/// float's, and keeps the key arithmetic of merges far from `i32`'s limits.
const MAX_KEY: i32 = 1 << 20;

/// The largest magnitude of a counter value or a histogram sum: more than any load test counts, and far
/// enough below `f64::MAX` that the master's totals, sums of many such values, stay finite.
const MAX_VALUE: f64 = 9_223_372_036_854_775_808.0; // 2^63

fn in_range(v: f64) -> bool {
    v.abs() <= MAX_VALUE
}

/// Why a reported value cannot be merged, or nothing.
pub fn check_value(kind: &Kind, value: &ValueData) -> Result<(), &'static str> {
    match (kind, value) {
        (Kind::Counter, ValueData::Scalar { value, .. }) if !(in_range(*value) && *value >= 0.0) => {
            Err("a counter value that is negative, not finite or above 2^63")
        }
        (Kind::Gauge(_), ValueData::Scalar { updated, .. }) if !(updated.is_finite() && *updated >= 0.0) => {
            Err("a gauge time stamp that is negative or not finite")
        }
        (Kind::Histogram(_), ValueData::Histogram { counts, sum, native }) => {
            if !in_range(*sum) {
                return Err("a histogram sum that is not finite or beyond 2^63");
            }
            if sum_counts(counts.iter().copied()).is_none() {
                return Err("histogram counts whose total overflows");
            }
            native.as_deref().map_or(Ok(()), check_native)
        }
        _ => Ok(()),
    }
}

fn sum_counts(counts: impl IntoIterator<Item = u64>) -> Option<u64> {
    counts.into_iter().try_fold(0u64, u64::checked_add)
}

fn check_native(n: &NativeSnapshot) -> Result<(), &'static str> {
    if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&n.schema) {
        return Err("a native histogram schema out of range");
    }
    // Every release uses client_golang's threshold; a wider one would widen the master's zero bucket, and
    // so change how every other worker's observations are merged.
    if !(0.0..=DEFAULT_ZERO_THRESHOLD).contains(&n.zero_threshold) {
        return Err("a native histogram zero threshold wider than the master's");
    }
    if !in_range(n.sum) {
        return Err("a native histogram sum that is not finite or beyond 2^63");
    }
    let keys = n.positive.keys().chain(n.negative.keys());
    if keys.clone().any(|k| !(-MAX_KEY..=MAX_KEY).contains(k)) {
        return Err("a native bucket key out of range");
    }
    let buckets = n.positive.values().chain(n.negative.values()).copied();
    if sum_counts(buckets.chain([n.zero_count])) != Some(n.count) {
        return Err("a native histogram count that is not the sum of its buckets");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NativeConfig;

    fn native(edit: impl FnOnce(&mut NativeSnapshot)) -> ValueData {
        let mut n = NativeSnapshot::empty(&NativeConfig::default());
        n.positive.insert(3, 2);
        (n.zero_count, n.count, n.sum) = (1, 3, 4.5);
        edit(&mut n);
        ValueData::Histogram {
            counts: vec![1, 2],
            sum: 4.5,
            native: Some(Box::new(n)),
        }
    }

    #[test]
    fn values_out_of_range_are_refused() {
        let scalar = |value, updated| ValueData::Scalar { value, updated };
        let histogram = Kind::Histogram([1.0].into());
        assert!(check_value(&Kind::Counter, &scalar(2.0, 0.0)).is_ok());
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e19] {
            assert!(check_value(&Kind::Counter, &scalar(bad, 0.0)).is_err(), "{bad}");
        }
        let gauge = Kind::Gauge(crate::metrics::GaugeMode::Sum);
        assert!(
            check_value(&gauge, &scalar(-3.0, 5.0)).is_ok(),
            "a gauge may go negative"
        );
        assert!(check_value(&gauge, &scalar(1.0, f64::NAN)).is_err());
        assert!(check_value(&histogram, &native(|_| {})).is_ok());
        let refused: [fn(&mut NativeSnapshot); 8] = [
            |n| n.schema = 9,
            |n| n.schema = -5,
            |n| n.zero_threshold = 1e-3,
            |n| n.sum = f64::NAN,
            |n| n.count = 4,
            |n| {
                n.negative.insert(i32::MIN, 0);
            },
            |n| n.zero_count = u64::MAX,
            |n| n.zero_threshold = f64::NAN,
        ];
        for edit in refused {
            assert!(check_value(&histogram, &native(edit)).is_err());
        }
        let overflowing = ValueData::Histogram {
            counts: vec![u64::MAX, 1],
            sum: 0.0,
            native: None,
        };
        assert!(check_value(&histogram, &overflowing).is_err());
    }
}
