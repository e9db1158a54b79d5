//! Python faces of single compiled functions, for the code outside the event path that needs one
//! of them (the held-snapshot promotion builds a graph record) and for tests: the same code the
//! event path runs, never a second implementation.
use crate::decode::V;
use crate::value::{from_py, to_py};
use crate::pipeline::{headers_of, limits_of, sampling_of};
use crate::{enrich, graph, rules};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// The graph record of one accepted event as JSON bytes (see `graph::build_record`).
#[pyfunction]
#[pyo3(signature = (kind, event, correlation_id, inference=None))]
fn build_graph_record<'py>(py: Python<'py>, kind: &str, event: &Bound<'py, PyAny>, correlation_id: &str, inference: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
    let ev = from_py(event)?;
    let info = match inference {
        Some(i) if !i.is_none() => Some(from_py(i)?),
        _ => None,
    };
    let out = graph::build_record(kind, &ev, correlation_id, info.as_ref()).map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, &out))
}

/// What the completeness windows read of a graph record (see `graph::record_facts`).
#[pyfunction]
#[pyo3(signature = (kind, event, inference=None))]
fn window_facts(kind: &str, event: &Bound<'_, PyAny>, inference: Option<&Bound<'_, PyAny>>) -> PyResult<graph::Facts> {
    let info = match inference {
        Some(i) if !i.is_none() => Some(from_py(i)?),
        _ => None,
    };
    Ok(graph::record_facts(kind, &from_py(event)?, info.as_ref()))
}

/// The column edges the `columnLineage` facets of an event's outputs state, as a JSON list.
#[pyfunction]
#[pyo3(signature = (event, run_id=""))]
fn column_edges<'py>(py: Python<'py>, event: &Bound<'py, PyAny>, run_id: &str) -> PyResult<Bound<'py, PyBytes>> {
    let edges = graph::column_edges_value(graph::column_edges(&from_py(event)?, run_id));
    Ok(PyBytes::new(py, &crate::value::to_json(&edges).map_err(PyValueError::new_err)?))
}

/// The rule set on one record: the record as it would be stored (dropped facets removed,
/// findings under `quality`), or ValueError("<reason>: <detail>") for a refused one. `limits`
/// holds `Limits`' fields.
#[pyfunction]
#[pyo3(signature = (kind, event, now_us, limits, subject_id=None, snapshot=None))]
fn check_record(
    py: Python<'_>,
    kind: &str,
    event: &Bound<'_, PyAny>,
    now_us: i64,
    limits: &Bound<'_, PyDict>,
    subject_id: Option<&Bound<'_, PyAny>>,
    snapshot: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyObject> {
    let l = limits_of(limits)?;
    let opt = |v: Option<&Bound<'_, PyAny>>| -> PyResult<Option<V>> {
        match v {
            Some(x) if !x.is_none() => Ok(Some(from_py(x)?)),
            _ => Ok(None),
        }
    };
    let (subject, snap) = (opt(subject_id)?, opt(snapshot)?);
    let mut ev = from_py(event)?;
    let found = rules::check_event(kind, &ev, now_us, &l, subject.as_ref(), snap.as_ref())
        .map_err(|r| PyValueError::new_err(format!("{}: {}", r.reason, r.detail)))?;
    rules::apply_findings(&mut ev, &found);
    to_py(py, &ev)
}

/// (correlation id, source) of an event and its message headers.
#[pyfunction]
fn correlation_id(kind: &str, event: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<(String, &'static str)> {
    Ok(enrich::correlation_id(kind, &from_py(event)?, &headers_of(headers)?))
}

/// `(model@version, entry)` a training event contributes to the model-lineage table, or None.
#[pyfunction]
fn training_lineage(py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<Option<(String, PyObject)>> {
    match enrich::training_lineage(&from_py(event)?) {
        Some((k, v)) => Ok(Some((k, to_py(py, &v)?))),
        None => Ok(None),
    }
}

/// The table entry after `new` is merged into `current`.
#[pyfunction]
#[pyo3(signature = (current, new))]
fn merge_lineage(py: Python<'_>, current: Option<&Bound<'_, PyAny>>, new: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    let cur: Option<V> = match current {
        Some(c) if !c.is_none() => Some(from_py(c)?),
        _ => None,
    };
    to_py(py, &enrich::merge_lineage(cur.as_ref(), from_py(new)?))
}

/// (tier, reason) of an inference event under `sampling` (the settings' fields as a dict).
#[pyfunction]
fn sampling_decision(event: &Bound<'_, PyAny>, sampling: &Bound<'_, PyDict>, subject_flagged: bool) -> PyResult<(&'static str, String)> {
    let s = sampling_of(sampling)?;
    Ok(enrich::decide(&from_py(event)?, &s, subject_flagged))
}

/// Uniform in [0, 1), a pure function of the prediction id.
#[pyfunction]
fn sample_point(prediction_id: &str) -> f64 {
    enrich::sample_point(prediction_id)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_graph_record, m)?)?;
    m.add_function(wrap_pyfunction!(correlation_id, m)?)?;
    m.add_function(wrap_pyfunction!(column_edges, m)?)?;
    m.add_function(wrap_pyfunction!(window_facts, m)?)?;
    m.add_function(wrap_pyfunction!(check_record, m)?)?;
    m.add_function(wrap_pyfunction!(training_lineage, m)?)?;
    m.add_function(wrap_pyfunction!(merge_lineage, m)?)?;
    m.add_function(wrap_pyfunction!(sampling_decision, m)?)?;
    m.add_function(wrap_pyfunction!(sample_point, m)?)?;
    Ok(())
}
