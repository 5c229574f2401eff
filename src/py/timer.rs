//! `Timer` and `Timed`: what `time()` and `track_inprogress()` return, as a context manager and as a
//! decorator.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::metrics::{self, Series};

/// What a timer does with the elapsed time (or with entering and leaving, for in-progress gauges).
#[derive(Clone)]
pub enum TimerAction {
    Observe(Arc<Series<metrics::Histogram>>),
    SetGauge(Arc<Series<metrics::Gauge>>),
    InProgress(Arc<Series<metrics::Gauge>>),
}

impl TimerAction {
    fn start(&self) -> Instant {
        if let TimerAction::InProgress(g) = self {
            g.add(1.0);
        }
        Instant::now()
    }

    fn stop(&self, start: Instant) {
        let elapsed = start.elapsed().as_secs_f64();
        match self {
            TimerAction::Observe(h) => h.observe(elapsed),
            TimerAction::SetGauge(g) => g.set(elapsed),
            TimerAction::InProgress(g) => g.add(-1.0),
        }
    }
}

/// Context manager and decorator returned by `time()` and `track_inprogress()`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Timer {
    action: TimerAction,
    /// Nested `with` blocks of one timer each have their start.
    started: Mutex<Vec<Instant>>,
}

impl Timer {
    pub fn new(action: TimerAction) -> Self {
        Timer {
            action,
            started: Mutex::new(Vec::new()),
        }
    }
}

#[pymethods]
impl Timer {
    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        let start = slf.get().action.start();
        slf.get().started.lock().push(start);
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<PyTuple>) -> bool {
        let start = self.started.lock().pop();
        if let Some(start) = start {
            self.action.stop(start);
        }
        false
    }

    /// Used as a decorator: `func` wrapped so that every call is timed (or tracked).
    fn __call__<'py>(&self, func: Bound<'py, PyAny>) -> PyResult<Bound<'py, Timed>> {
        let py = func.py();
        let timed = Bound::new(
            py,
            Timed {
                func: func.clone().unbind(),
                action: self.action.clone(),
            },
        )?;
        // Name, doc, `__wrapped__` and the function's attributes (Locust's `@task` weight among them).
        py.import("functools")?.call_method1("update_wrapper", (&timed, func))?;
        Ok(timed)
    }
}

/// A function decorated with `time()` or `track_inprogress()`: each call has a timer of its own, so
/// overlapping calls (greenlets) do not share one. It has a `__dict__` for the attributes that
/// `functools.update_wrapper` copies and that decorators set after it (Locust's `@task`).
#[pyclass(frozen, dict, weakref, module = "locust_prometheus_exporter._native")]
pub struct Timed {
    func: Py<PyAny>,
    action: TimerAction,
}

#[pymethods]
impl Timed {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let start = self.action.start();
        let result = self.func.bind(py).call(args, kwargs);
        self.action.stop(start);
        result
    }

    /// `func` (which the `__dict__` holds too, as `__wrapped__`): lets the garbage collector see cycles
    /// through it, such as a decorated function's module globals holding the decorated function.
    fn __traverse__(&self, visit: PyVisit<'_>) -> std::result::Result<(), PyTraverseError> {
        visit.call(&self.func)
    }

    /// Binds to an instance as a function does, so that a decorated method gets its `self`.
    fn __get__<'py>(
        slf: Bound<'py, Self>,
        obj: Option<Bound<'py, PyAny>>,
        _objtype: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match obj.filter(|o| !o.is_none()) {
            None => Ok(slf.into_any()),
            Some(obj) => {
                let py = slf.py();
                py.import("types")?.getattr("MethodType")?.call1((slf, obj))
            }
        }
    }
}
