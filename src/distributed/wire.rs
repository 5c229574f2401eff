//! The compact binary form in which a worker ships its changed series inside Locust's report.
//!
//! Locust sends reports as msgpack, which carries `bytes` as they are: one blob per report,
//! made and read in Rust, keeps Python out of the per-series work.
//!
//! Layout (integers are LEB128 varints, floats 8 bytes little-endian, strings a length then UTF-8):
//! `b"LPE2"`, family count, then per family: name, help, kind (0 counter, 1 gauge, 2 histogram),
//! gauge mode, label names, bucket bounds, series count, then per series: label values and either
//! a float (counter), a float value and a float timestamp (gauge) or bucket counts and a float sum,
//! then its native buckets: a byte (0 none, 1 cumulative, 2 increments since the previous report), and if
//! any the schema (zigzag), zero threshold, zero count, count, sum, then per sign the bucket count and
//! each bucket as its key's zigzag step from the previous key and its count.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::errors::{ExporterError, Result};
use crate::metrics::{Collected, Desc, GaugeMode, Kind, NativeConfig, NativeSnapshot, ValueData};

/// A series as a worker's report carries it, its label values borrowed from the report: the master
/// allocates them only for a series it has not seen from that worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedSeries<'a> {
    pub labels: Vec<&'a str>,
    pub value: ValueData,
}

/// Families with the series a worker reported, as read from its report.
pub type Report<'a> = Vec<(Desc, Vec<ReportedSeries<'a>>)>;

/// A report as the master reads it, made from the series as a worker has them.
#[cfg(test)]
pub fn as_report(families: &Collected) -> Report<'_> {
    families
        .iter()
        .map(|(desc, series)| {
            let series = series
                .iter()
                .map(|s| ReportedSeries {
                    labels: s.labels.iter().map(String::as_str).collect(),
                    value: s.value.clone(),
                })
                .collect();
            (desc.clone(), series)
        })
        .collect()
}

/// Version 2 added the native buckets.
const MAGIC: &[u8] = b"LPE2";

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    put_uint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_native(out: &mut Vec<u8>, native: Option<&NativeSnapshot>) {
    let Some(n) = native else {
        out.push(0);
        return;
    };
    out.push(if n.increments { 2 } else { 1 });
    put_int(out, n.schema.into());
    put_f64(out, n.zero_threshold);
    put_uint(out, n.zero_count);
    put_uint(out, n.count);
    put_f64(out, n.sum);
    for buckets in [&n.positive, &n.negative] {
        put_uint(out, buckets.len() as u64);
        let mut previous = 0i64;
        for (&key, &count) in buckets {
            put_int(out, i64::from(key) - previous);
            put_uint(out, count);
            previous = key.into();
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn encode(families: &Collected) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put_uint(&mut out, families.len() as u64);
    for (desc, series) in families {
        put_str(&mut out, &desc.name);
        put_str(&mut out, &desc.help);
        let (kind, mode, bounds): (u8, u8, &[f64]) = match &desc.kind {
            Kind::Counter => (0, 0, &[]),
            Kind::Gauge(m) => (1, m.code(), &[]),
            Kind::Histogram(b) => (2, 0, b),
        };
        out.extend_from_slice(&[kind, mode]);
        put_uint(&mut out, desc.label_names.len() as u64);
        desc.label_names.iter().for_each(|n| put_str(&mut out, n));
        put_uint(&mut out, bounds.len() as u64);
        bounds.iter().for_each(|b| put_f64(&mut out, *b));
        put_uint(&mut out, series.len() as u64);
        for s in series {
            s.labels.iter().for_each(|l| put_str(&mut out, l));
            match (&desc.kind, &s.value) {
                (Kind::Counter, ValueData::Scalar { value, .. }) => put_f64(&mut out, *value),
                (_, ValueData::Scalar { value, updated }) => {
                    put_f64(&mut out, *value);
                    put_f64(&mut out, *updated);
                }
                (_, ValueData::Histogram { counts, sum, native }) => {
                    counts.iter().for_each(|c| put_uint(&mut out, *c));
                    put_f64(&mut out, *sum);
                    put_native(&mut out, native.as_deref());
                }
            }
        }
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(ExporterError::InvalidReport("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(ExporterError::InvalidReport("varint too long"))
    }
    /// A count of items that each take at least one byte, so a corrupt count cannot allocate much.
    fn count(&mut self) -> Result<usize> {
        let n = self.uint()?;
        if n > self.buf.len() as u64 {
            return Err(ExporterError::InvalidReport("count larger than the report"));
        }
        Ok(n as usize)
    }
    fn int(&mut self) -> Result<i64> {
        let n = self.uint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }
    fn native(&mut self) -> Result<Option<Box<NativeSnapshot>>> {
        let increments = match self.byte()? {
            0 => return Ok(None),
            1 => false,
            2 => true,
            _ => return Err(ExporterError::InvalidReport("unknown native histogram kind")),
        };
        let schema = i32::try_from(self.int()?)
            .ok()
            .filter(|s| NativeConfig::with_schema(*s).is_ok())
            .ok_or(ExporterError::InvalidReport("native histogram schema out of range"))?;
        let (zero_threshold, zero_count, count, sum) = (self.f64()?, self.uint()?, self.uint()?, self.f64()?);
        let mut signs = [BTreeMap::new(), BTreeMap::new()];
        for buckets in &mut signs {
            let mut key = 0i64;
            for _ in 0..self.count()? {
                key = key
                    .checked_add(self.int()?)
                    .ok_or(ExporterError::InvalidReport("native bucket key out of range"))?;
                let k =
                    i32::try_from(key).map_err(|_| ExporterError::InvalidReport("native bucket key out of range"))?;
                buckets.insert(k, self.uint()?);
            }
        }
        let [positive, negative] = signs;
        Ok(Some(Box::new(NativeSnapshot {
            schema,
            zero_threshold,
            zero_count,
            positive,
            negative,
            count,
            sum,
            increments,
        })))
    }
    fn f64(&mut self) -> Result<f64> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| ExporterError::InvalidReport("truncated"))?;
        Ok(f64::from_le_bytes(bytes))
    }
    fn str(&mut self) -> Result<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| ExporterError::InvalidReport("invalid UTF-8"))
    }
    fn string(&mut self) -> Result<String> {
        self.str().map(str::to_string)
    }
}

pub fn decode(buf: &[u8]) -> Result<Report<'_>> {
    let mut r = Reader { buf };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(ExporterError::InvalidReport("not a locust-prometheus-exporter report"));
    }
    let mut families = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        let help = r.string()?;
        let (kind, mode) = (r.byte()?, r.byte()?);
        let label_names = (0..r.count()?).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
        let bounds = (0..r.count()?).map(|_| r.f64()).collect::<Result<Vec<_>>>()?;
        let kind = match kind {
            0 => Kind::Counter,
            1 => Kind::Gauge(GaugeMode::from_code(mode).ok_or(ExporterError::InvalidReport("unknown gauge mode"))?),
            2 => Kind::Histogram(Arc::from(bounds.clone())),
            _ => return Err(ExporterError::InvalidReport("unknown metric kind")),
        };
        let desc = Desc::new(&name, &help, kind, label_names)?;
        let mut series = Vec::new();
        for _ in 0..r.count()? {
            let labels = (0..desc.label_names.len())
                .map(|_| r.str())
                .collect::<Result<Vec<_>>>()?;
            let value = match desc.kind {
                Kind::Counter => ValueData::Scalar {
                    value: r.f64()?,
                    updated: 0.0,
                },
                Kind::Gauge(_) => ValueData::Scalar {
                    value: r.f64()?,
                    updated: r.f64()?,
                },
                Kind::Histogram(_) => ValueData::Histogram {
                    counts: (0..=bounds.len()).map(|_| r.uint()).collect::<Result<_>>()?,
                    sum: r.f64()?,
                    native: r.native()?,
                },
            };
            series.push(ReportedSeries { labels, value });
        }
        families.push((desc, series));
    }
    if !r.buf.is_empty() {
        return Err(ExporterError::InvalidReport("trailing bytes"));
    }
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SeriesData;

    /// What a master reads, as owned series, to compare with what the worker sent.
    fn owned(report: Report) -> Collected {
        report
            .into_iter()
            .map(|(desc, series)| {
                let series = series
                    .into_iter()
                    .map(|s| SeriesData {
                        labels: s.labels.iter().map(|l| l.to_string()).collect(),
                        value: s.value,
                    })
                    .collect();
                (desc, series)
            })
            .collect()
    }

    fn sample() -> Collected {
        let c = Desc::new("c", "help", Kind::Counter, vec!["a".into(), "b".into()]).unwrap();
        let g = Desc::new("g", "", Kind::Gauge(GaugeMode::LiveMax), vec![]).unwrap();
        let h = Desc::new("h", "x", Kind::Histogram([0.1, 2.5].into()), vec!["n".into()]).unwrap();
        let mut native = NativeSnapshot::empty(&NativeConfig::with_schema(-2).unwrap());
        native.positive = [(-40, 3), (-39, 1), (7, 2)].into_iter().collect();
        native.negative = [(i32::MIN, 1), (i32::MAX, 2)].into_iter().collect();
        (native.zero_count, native.count, native.sum, native.increments) = (4, 13, -0.5, true);
        vec![
            (
                c,
                vec![SeriesData {
                    labels: vec!["é".into(), "".into()],
                    value: ValueData::Scalar {
                        value: 3.0,
                        updated: 0.0,
                    },
                }],
            ),
            (
                g,
                vec![SeriesData {
                    labels: vec![],
                    value: ValueData::Scalar {
                        value: -1.5,
                        updated: 17.25,
                    },
                }],
            ),
            (
                h,
                vec![
                    SeriesData {
                        labels: vec!["/x".into()],
                        value: ValueData::Histogram {
                            counts: vec![1, 300, 0],
                            sum: 42.0,
                            native: None,
                        },
                    },
                    SeriesData {
                        labels: vec!["/y".into()],
                        value: ValueData::Histogram {
                            counts: vec![13, 0, 0],
                            sum: -0.5,
                            native: Some(Box::new(native)),
                        },
                    },
                ],
            ),
        ]
    }

    #[test]
    fn round_trip() {
        let families = sample();
        assert_eq!(owned(decode(&encode(&families)).unwrap()), families);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(b"LPE2\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
    }
}
