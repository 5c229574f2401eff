//! The compact binary form in which a worker ships its changed series inside Locust's report.
//!
//! Locust sends reports as msgpack, which carries `bytes` as they are: one blob per report,
//! made and read in Rust, keeps Python out of the per-series work.
//!
//! Integers are LEB128 varints, floats 8 bytes little-endian, strings a length then UTF-8, and a
//! frame is a length then that many bytes. Version 3 (`b"LPE3"`): a header frame (the worker's release), the
//! family count, then per family a head frame (name, help, kind: 0 counter, 1 gauge, 2 histogram,
//! gauge mode, label names, bucket bounds), the series count and one frame per series (label values,
//! then a float for a counter, a float value and a float timestamp for a gauge, or bucket counts, a
//! float sum and the native buckets for a histogram: a byte, 0 none, 1 cumulative, 2 increments since
//! the previous report, and if any the schema (zigzag), zero threshold, zero count, count, sum, then
//! per sign the bucket count and each bucket as its key's zigzag step from the previous key and its
//! count). A reader skips what a frame holds past the fields it knows, and the series of a family of a
//! kind it does not know: a later version adds fields at the end of a frame, and keeps the magic's
//! version 3 or above. Version 2 (the release before) has the same fields without the frames.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::checks::check_value;
use crate::errors::{ExporterError, Result};
use crate::metrics::{Collected, Desc, GaugeMode, Kind, NativeSnapshot, ValueData};

/// The version this build writes.
pub const VERSION: u8 = 3;
/// The oldest version it reads: the previous release's.
pub const OLDEST_READ: u8 = 2;
const MAGIC: &[u8] = b"LPE";
/// Families one report may carry; past it, the rest of the report is left out.
pub const MAX_FAMILIES: usize = 10_000;

/// A series as a worker's report carries it, its label values borrowed from the report: the master
/// allocates them only for a series it has not seen from that worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedSeries<'a> {
    pub labels: Vec<&'a str>,
    pub value: ValueData,
}

/// Families with the series a worker reported, as read from its report.
pub type Report<'a> = Vec<(Desc, Vec<ReportedSeries<'a>>)>;

/// A report as read: what may be merged, and why anything was left out.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub version: u8,
    /// The worker's release (from version 3 on).
    pub package: Option<&'a str>,
    pub families: Report<'a>,
    /// Series left out for values out of range.
    pub series_left_out: usize,
    /// The first reason something was left out, if anything was.
    pub left_out: Option<&'static str>,
}

impl Decoded<'_> {
    fn leave_out(&mut self, why: &'static str) {
        self.left_out.get_or_insert(why);
    }
}

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

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes what `body` writes as a frame: its length, then it.
fn put_frame(out: &mut Vec<u8>, scratch: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    scratch.clear();
    body(scratch);
    put_uint(out, scratch.len() as u64);
    out.extend_from_slice(scratch);
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

fn put_head(out: &mut Vec<u8>, desc: &Desc) {
    put_str(out, &desc.name);
    put_str(out, &desc.help);
    let (kind, mode, bounds): (u8, u8, &[f64]) = match &desc.kind {
        Kind::Counter => (0, 0, &[]),
        Kind::Gauge(m) => (1, m.code(), &[]),
        Kind::Histogram(b) => (2, 0, b),
    };
    out.extend_from_slice(&[kind, mode]);
    put_uint(out, desc.label_names.len() as u64);
    desc.label_names.iter().for_each(|n| put_str(out, n));
    put_uint(out, bounds.len() as u64);
    bounds.iter().for_each(|b| put_f64(out, *b));
}

fn put_series(out: &mut Vec<u8>, kind: &Kind, labels: &[impl AsRef<str>], value: &ValueData) {
    labels.iter().for_each(|l| put_str(out, l.as_ref()));
    match (kind, value) {
        (Kind::Counter, ValueData::Scalar { value, .. }) => put_f64(out, *value),
        (_, ValueData::Scalar { value, updated }) => {
            put_f64(out, *value);
            put_f64(out, *updated);
        }
        (_, ValueData::Histogram { counts, sum, native }) => {
            counts.iter().for_each(|c| put_uint(out, *c));
            put_f64(out, *sum);
            put_native(out, native.as_deref());
        }
    }
}

/// The report of `families`, in this build's version.
pub fn encode(families: &Collected) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(b'0' + VERSION);
    let mut scratch = Vec::new();
    put_frame(&mut out, &mut scratch, |h| put_str(h, env!("CARGO_PKG_VERSION")));
    put_uint(&mut out, families.len() as u64);
    for (desc, series) in families {
        put_frame(&mut out, &mut scratch, |f| put_head(f, desc));
        put_uint(&mut out, series.len() as u64);
        for s in series {
            put_frame(&mut out, &mut scratch, |f| {
                put_series(f, &desc.kind, &s.labels, &s.value)
            });
        }
    }
    out
}

/// The report of `families` in the previous release's version 2, for the tests of mixed versions.
#[cfg(test)]
pub fn encode_v2(families: &Collected) -> Vec<u8> {
    let mut out = b"LPE2".to_vec();
    put_uint(&mut out, families.len() as u64);
    for (desc, series) in families {
        put_head(&mut out, desc);
        put_uint(&mut out, series.len() as u64);
        series
            .iter()
            .for_each(|s| put_series(&mut out, &desc.kind, &s.labels, &s.value));
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

fn invalid(why: &'static str) -> ExporterError {
    ExporterError::InvalidReport(why)
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(invalid("truncated"));
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
        Err(invalid("varint too long"))
    }
    /// A count of items that each take at least one byte, so a corrupt count cannot allocate much.
    fn count(&mut self) -> Result<usize> {
        let n = self.uint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len())
            .ok_or(invalid("count larger than the report"))
    }
    fn int(&mut self) -> Result<i64> {
        let n = self.uint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }
    fn f64(&mut self) -> Result<f64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| invalid("truncated"))?;
        Ok(f64::from_le_bytes(bytes))
    }
    fn str(&mut self) -> Result<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| invalid("invalid UTF-8"))
    }
    /// The next frame, as a reader of its own; in version 2, which has none, this reader itself.
    fn frame(&mut self, framed: bool) -> Result<Reader<'a>> {
        if framed {
            let n = self.count()?;
            Ok(Reader { buf: self.take(n)? })
        } else {
            Ok(Reader {
                buf: std::mem::take(&mut self.buf),
            })
        }
    }
    /// Hands back what `frame(false)` took, past what was read of it.
    fn resume(&mut self, framed: bool, frame: Reader<'a>) {
        if !framed {
            self.buf = frame.buf;
        }
    }
    fn native(&mut self) -> Result<Option<Box<NativeSnapshot>>> {
        let increments = match self.byte()? {
            0 => return Ok(None),
            1 => false,
            2 => true,
            _ => return Err(invalid("unknown native histogram kind")),
        };
        let schema = i32::try_from(self.int()?).map_err(|_| invalid("native histogram schema out of range"))?;
        let (zero_threshold, zero_count, count, sum) = (self.f64()?, self.uint()?, self.uint()?, self.f64()?);
        let mut signs = [BTreeMap::new(), BTreeMap::new()];
        for buckets in &mut signs {
            let mut key = 0i64;
            for _ in 0..self.count()? {
                key = key
                    .checked_add(self.int()?)
                    .ok_or(invalid("native bucket key out of range"))?;
                let k = i32::try_from(key).map_err(|_| invalid("native bucket key out of range"))?;
                if buckets.insert(k, self.uint()?).is_some() {
                    return Err(invalid("native bucket key repeated"));
                }
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
    fn value(&mut self, kind: &Kind) -> Result<ValueData> {
        Ok(match kind {
            Kind::Counter => ValueData::Scalar {
                value: self.f64()?,
                updated: 0.0,
            },
            Kind::Gauge(_) => ValueData::Scalar {
                value: self.f64()?,
                updated: self.f64()?,
            },
            Kind::Histogram(bounds) => ValueData::Histogram {
                counts: (0..=bounds.len()).map(|_| self.uint()).collect::<Result<_>>()?,
                sum: self.f64()?,
                native: self.native()?,
            },
        })
    }
}

/// Label names one family may have; past it, the rest of the report is left out.
pub const MAX_LABEL_NAMES: usize = 64;

enum Head {
    Known(Desc),
    /// A kind this build does not know (from a later version).
    UnknownKind,
    TooManyLabels,
}

fn head(r: &mut Reader) -> Result<Head> {
    let name = r.str()?;
    let help = r.str()?;
    let (kind, mode) = (r.byte()?, r.byte()?);
    let n = r.count()?;
    if n > MAX_LABEL_NAMES {
        return Ok(Head::TooManyLabels);
    }
    let label_names = (0..n)
        .map(|_| r.str().map(str::to_string))
        .collect::<Result<Vec<_>>>()?;
    let bounds = (0..r.count()?).map(|_| r.f64()).collect::<Result<Vec<_>>>()?;
    let kind = match (kind, GaugeMode::from_code(mode)) {
        (0, _) => Kind::Counter,
        (1, Some(mode)) => Kind::Gauge(mode),
        (2, _) => Kind::Histogram(Arc::from(bounds)),
        _ => return Ok(Head::UnknownKind),
    };
    Ok(Head::Known(Desc::new(name, help, kind, label_names)?))
}

/// The version a report says it is in, if it is one of ours.
pub fn version(buf: &[u8]) -> Option<u8> {
    match buf {
        [b'L', b'P', b'E', v, ..] if v.is_ascii_digit() => Some(v - b'0'),
        _ => None,
    }
}

/// Reads a report. A report that does not parse, or of a version this build does not read, is refused
/// whole (`Err`); families past `MAX_FAMILIES` and series whose values are out of range are left out.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>> {
    let version = version(buf).ok_or(invalid("not a locust-prometheus-exporter report"))?;
    if version < OLDEST_READ {
        return Err(ExporterError::ReportVersion {
            got: version,
            reads: OLDEST_READ,
            writes: VERSION,
        });
    }
    let framed = version >= 3;
    let mut r = Reader {
        buf: &buf[MAGIC.len() + 1..],
    };
    let mut out = Decoded {
        version,
        ..Decoded::default()
    };
    if framed {
        out.package = Some(r.frame(true)?.str()?);
    }
    let families = r.count()?;
    for i in 0..families {
        if i == MAX_FAMILIES {
            out.leave_out("more families than one report may carry");
            return Ok(out);
        }
        let mut h = r.frame(framed)?;
        let head = head(&mut h)?;
        r.resume(framed, h);
        let desc = match head {
            Head::Known(desc) => desc,
            Head::UnknownKind if framed => {
                // Its series are skipped, frame by frame.
                for _ in 0..r.count()? {
                    r.frame(true)?;
                }
                out.leave_out("a family of a kind this version does not know");
                continue;
            }
            Head::UnknownKind => return Err(invalid("unknown metric kind")),
            Head::TooManyLabels => {
                out.leave_out("a family with more label names than a report may carry");
                return Ok(out);
            }
        };
        let mut series = Vec::new();
        for _ in 0..r.count()? {
            let mut s = r.frame(framed)?;
            let labels = (0..desc.label_names.len())
                .map(|_| s.str())
                .collect::<Result<Vec<_>>>()?;
            let value = s.value(&desc.kind)?;
            r.resume(framed, s);
            match check_value(&desc.kind, &value) {
                Ok(()) => series.push(ReportedSeries { labels, value }),
                Err(why) => {
                    out.series_left_out += 1;
                    out.leave_out(why);
                }
            }
        }
        out.families.push((desc, series));
    }
    if !framed && !r.buf.is_empty() {
        return Err(invalid("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{NativeConfig, SeriesData};

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
        native.negative = [(-(1 << 20), 1), (1 << 20, 2)].into_iter().collect();
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

    /// The series of a decoded report, as owned series.
    fn read(bytes: &[u8]) -> Collected {
        owned(decode(bytes).unwrap().families)
    }

    #[test]
    fn round_trip_in_this_version_and_the_previous_one() {
        let families = sample();
        let bytes = encode(&families);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(
            (decoded.version, decoded.package),
            (VERSION, Some(env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(owned(decoded.families), families);
        assert_eq!(read(&encode_v2(&families)), families);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error() {
        for bytes in [encode(&sample()), encode_v2(&sample())] {
            for n in 0..bytes.len() {
                assert!(decode(&bytes[..n]).is_err(), "prefix {n}");
            }
        }
        let mut extra = encode_v2(&sample());
        extra.push(0);
        assert!(decode(&extra).is_err(), "version 2 has no room for more");
        assert!(decode(b"LPE2\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
        assert!(matches!(
            decode(b"LPE1\x00"),
            Err(ExporterError::ReportVersion {
                got: 1,
                reads: 2,
                writes: 3
            })
        ));
    }

    /// A later version's report: the fields it appends to each frame, and a kind this version does not know.
    #[test]
    fn a_later_version_is_read_past_what_it_adds() {
        let mut later = b"LPE4".to_vec();
        let frame = |out: &mut Vec<u8>, body: &[u8]| {
            put_uint(out, body.len() as u64 + 3);
            out.extend_from_slice(body);
            out.extend_from_slice(b"new");
        };
        frame(&mut later, b"\x059.9.9");
        put_uint(&mut later, 2);
        let mut head = Vec::new();
        put_head(&mut head, &Desc::new("c", "h", Kind::Counter, vec![]).unwrap());
        head[4] = 7; // a kind to come
        frame(&mut later, &head);
        put_uint(&mut later, 1);
        frame(&mut later, &5f64.to_le_bytes());
        head[4] = 0;
        frame(&mut later, &head);
        put_uint(&mut later, 1);
        frame(&mut later, &5f64.to_le_bytes());
        let decoded = decode(&later).unwrap();
        assert_eq!((decoded.version, decoded.package), (4, Some("9.9.9")));
        assert_eq!(decoded.left_out, Some("a family of a kind this version does not know"));
        let value = ValueData::Scalar {
            value: 5.0,
            updated: 0.0,
        };
        assert_eq!(decoded.families[0].1, vec![ReportedSeries { labels: vec![], value }]);
    }

    #[test]
    fn past_the_caps_the_rest_of_a_report_is_left_out() {
        let family = |i: usize, labels: usize| {
            let names = (0..labels).map(|l| format!("l{l}")).collect();
            (Desc::new(&format!("f{i}"), "h", Kind::Counter, names).unwrap(), vec![])
        };
        let many: Collected = (0..MAX_FAMILIES + 5).map(|i| family(i, 0)).collect();
        let bytes = encode(&many);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.families.len(), MAX_FAMILIES);
        assert!(decoded.left_out.is_some());
        let wide: Collected = vec![family(0, 1), family(1, MAX_LABEL_NAMES + 1), family(2, 1)];
        for bytes in [encode(&wide), encode_v2(&wide)] {
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.families.len(), 1, "the family before is kept");
            assert!(decoded.left_out.is_some());
        }
    }

    #[test]
    fn series_with_values_out_of_range_are_left_out() {
        let mut families = sample();
        families[0].1.push(SeriesData {
            labels: vec!["x".into(), "y".into()],
            value: ValueData::Scalar {
                value: f64::NAN,
                updated: 0.0,
            },
        });
        let bytes = encode(&families);
        let decoded = decode(&bytes).unwrap();
        assert_eq!((decoded.series_left_out, decoded.left_out.is_some()), (1, true));
        assert_eq!(owned(decoded.families), sample());
    }
}
