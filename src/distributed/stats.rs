//! The master's own metrics of its merge: reports by result, and the time spent applying them.
//! The series are made with the first report, so counting is one atomic add and takes no lock.

use std::sync::Arc;
use std::time::Duration;

use crate::errors::Result;
use crate::locust::builtin;
use crate::metrics::{Counter, Kind, Registry, Series};

/// What became of a worker's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Merged whole.
    Applied,
    /// Merged, but for what the master left out (values out of range, a cap, families it cannot merge).
    Partial,
    /// Not merged at all: it does not parse, or is of a format version the master does not read.
    Refused,
}

const RESULTS: [(Outcome, &str); 3] = [
    (Outcome::Applied, "applied"),
    (Outcome::Partial, "partial"),
    (Outcome::Refused, "refused"),
];

pub struct MergeStats {
    reports: Vec<(Outcome, Arc<Series<Counter>>)>,
    seconds: Arc<Series<Counter>>,
}

impl MergeStats {
    /// Finds or registers the two families, with every series at zero.
    pub fn register(registry: &Registry) -> Result<Self> {
        let reports = registry.get_or_register::<Counter>(builtin::REPORTS.desc(Kind::Counter)?)?;
        let seconds = registry.get_or_register::<Counter>(builtin::REPORT_SECONDS.desc(Kind::Counter)?)?;
        Ok(MergeStats {
            reports: RESULTS
                .iter()
                .map(|(o, name)| Ok((*o, reports.child(&[name])?)))
                .collect::<Result<_>>()?,
            seconds: seconds.child::<&str>(&[])?,
        })
    }

    pub fn count(&self, outcome: Outcome, spent: Duration) {
        if let Some((_, s)) = self.reports.iter().find(|(o, _)| *o == outcome) {
            s.inc(1.0);
        }
        self.seconds.inc(spent.as_secs_f64());
    }
}
