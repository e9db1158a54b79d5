//! Compiled decoder of lineage events (both wire framings), exposed to Python as `lineage_native._core`.
mod bindings;
mod decode;
mod encode;
mod openlineage;
mod schema;
pub mod value;
mod enrich;
mod graph;
mod pii;
mod pipeline;
mod rules;

use decode::{Cur, E, V};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use schema::Arena;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) struct Entry {
    pub(crate) kind: String,
    version: i64,
    writer: Arena,
    wroot: usize,
    reader: Option<(Arena, usize)>,
}

fn entry(kind: String, version: i64, writer: &str, reader: Option<&str>) -> PyResult<Arc<Entry>> {
    let (w, wroot) = Arena::parse_text(writer).map_err(PyValueError::new_err)?;
    let reader = match reader {
        Some(t) => Some(Arena::parse_text(t).map_err(PyValueError::new_err)?),
        None => None,
    };
    Ok(Arc::new(Entry { kind, version, writer: w, wroot, reader }))
}

/// Outcome of one message before conversion: (entry, framing, record) or (reason, detail).
/// Every dead-letter reason code the event path gives (`stream_apps.validation.REASONS` explains them).
pub(crate) const REASONS: [&str; 18] = [
    "empty", "bad_magic", "truncated", "unknown_schema", "undecodable", "wrong_topic", "bad_json",
    "openlineage_invalid", "oversize", "bad_id", "missing_field", "time_future", "time_past",
    "out_of_range", "unsealed_pii", "unsealable", "seal_key_unknown", "internal_error",
];

pub(crate) type Out = Result<(Arc<Entry>, &'static str, V), (&'static str, String)>;

pub(crate) enum Head {
    Fp([u8; 8]),
    Id(u32),
}

pub(crate) fn header(d: &[u8]) -> Result<(Head, usize), (&'static str, String)> {
    match d.first() {
        None => Err(("empty", "no bytes".into())),
        Some(0xC3) => {
            if d.len() < 2 {
                return Err(("truncated", "single-object header cut after the first magic byte".into()));
            }
            if d[1] != 0x01 {
                return Err(("bad_magic", format!("single-object magic must be C3 01, got C3 {:02X}", d[1])));
            }
            if d.len() < 10 {
                return Err(("truncated", format!("single-object header needs 10 bytes, got {}", d.len())));
            }
            Ok((Head::Fp(d[2..10].try_into().unwrap()), 10))
        }
        Some(0x00) => {
            if d.len() < 5 {
                return Err(("truncated", format!("Confluent header needs 5 bytes, got {}", d.len())));
            }
            Ok((Head::Id(u32::from_be_bytes(d[1..5].try_into().unwrap())), 5))
        }
        Some(b) => Err(("bad_magic", format!("first byte {b:02X} is neither C3 (single-object) nor 00 (Confluent)"))),
    }
}

pub(crate) fn body(e: &Arc<Entry>, d: &[u8], start: usize, framing: &'static str) -> Out {
    let mut c = Cur { b: d, p: start };
    let (ra, r) = match &e.reader {
        Some((a, r)) => (a, Some(*r)),
        None => (&e.writer, None),
    };
    let v = decode::read(&mut c, &e.writer, e.wroot, ra, r).map_err(|err| match err {
        E::Eof(m) => ("truncated", format!("body ended early: {m}")),
        E::Bad(m) => ("undecodable", m),
    })?;
    if c.p != d.len() {
        return Err(("undecodable", format!("{} trailing bytes after the record", d.len() - c.p)));
    }
    if !matches!(v, V::Rec(_)) {
        return Err(("undecodable", "body decoded to a non-record".into()));
    }
    Ok((e.clone(), framing, v))
}

/// Decodes lineage events in either framing; schemas are given as JSON text from Python.
#[pyclass(module = "lineage_native._core")]
pub(crate) struct Decoder {
    by_fp: HashMap<[u8; 8], Arc<Entry>>,
    by_id: Mutex<HashMap<u32, Arc<Entry>>>,
    resolver: Option<PyObject>,
    error: PyObject,
}

impl Decoder {
    pub(crate) fn lookup(&self, py: Python<'_>, h: &Head) -> PyResult<Result<Arc<Entry>, (&'static str, String)>> {
        match h {
            Head::Fp(fp) => Ok(self.by_fp.get(fp).cloned().ok_or_else(|| {
                let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
                ("unknown_schema", format!("no shipped schema has fingerprint {hex}"))
            })),
            Head::Id(id) => {
                if let Some(e) = self.by_id.lock().unwrap().get(id) {
                    return Ok(Ok(e.clone()));
                }
                let Some(resolver) = &self.resolver else {
                    return Ok(Err(("unknown_schema", format!("schema id {id} and no schema registry configured"))));
                };
                let got = resolver.call1(py, (*id,))?;
                if got.is_none(py) {
                    return Ok(Err(("unknown_schema", format!("schema id {id} not in the registry"))));
                }
                if let Ok(why) = got.extract::<String>(py) {
                    return Ok(Err(("unknown_schema", why)));
                }
                let (kind, version, w, r): (String, i64, String, Option<String>) = got.extract(py)?;
                let e = entry(kind, version, &w, r.as_deref())?;
                self.by_id.lock().unwrap().insert(*id, e.clone());
                Ok(Ok(e))
            }
        }
    }

    fn to_py(&self, py: Python<'_>, v: V) -> PyResult<PyObject> {
        value::to_py(py, &v)
    }

    fn finish(&self, py: Python<'_>, out: Out, data: &[u8]) -> PyResult<Result<PyObject, PyErr>> {
        match out {
            Ok((e, framing, v)) => {
                let rec = self.to_py(py, v)?;
                let t = PyTuple::new(py, [
                    e.kind.clone().into_pyobject(py)?.into_any(),
                    rec.into_bound(py),
                    e.version.into_pyobject(py)?.into_any(),
                    framing.into_pyobject(py)?.into_any(),
                ])?;
                Ok(Ok(t.into_any().unbind()))
            }
            Err((reason, detail)) => {
                let exc = self.error.call1(py, (reason, detail, PyBytes::new(py, data)))?;
                Ok(Err(PyErr::from_value(exc.into_bound(py))))
            }
        }
    }
}

#[pymethods]
impl Decoder {
    /// `error_type` is called as `error_type(reason, detail, raw)` to build each decode error.
    #[new]
    fn new(error_type: PyObject) -> PyResult<Self> {
        Ok(Decoder { by_fp: HashMap::new(), by_id: Mutex::new(HashMap::new()), resolver: None, error: error_type })
    }

    /// Map an 8-byte CRC-64-AVRO fingerprint to a writer schema (JSON) and its reader schema (None: same).
    #[pyo3(signature = (fingerprint, kind, version, writer, reader=None))]
    fn add_fingerprint(&mut self, fingerprint: &[u8], kind: String, version: i64, writer: &str, reader: Option<&str>) -> PyResult<()> {
        let fp: [u8; 8] = fingerprint.try_into().map_err(|_| PyValueError::new_err("a fingerprint is 8 bytes"))?;
        self.by_fp.insert(fp, entry(kind, version, writer, reader)?);
        Ok(())
    }

    /// Map a Confluent schema id to a writer schema (JSON) and its reader schema (None: same).
    #[pyo3(signature = (schema_id, kind, version, writer, reader=None))]
    fn add_schema_id(&mut self, schema_id: u32, kind: String, version: i64, writer: &str, reader: Option<&str>) -> PyResult<()> {
        self.by_id.lock().unwrap().insert(schema_id, entry(kind, version, writer, reader)?);
        Ok(())
    }

    /// `resolver(schema_id)` returns (kind, version, writer_json, reader_json | None), None for an id the
    /// registry does not have, or the text saying why the id's schema is not a lineage event schema.
    fn set_resolver(&mut self, resolver: PyObject) {
        self.resolver = Some(resolver);
    }

    /// Decode one message to (kind, record, version, framing) or raise the error type.
    fn decode(&self, py: Python<'_>, data: &[u8]) -> PyResult<PyObject> {
        let out = match header(data) {
            Err(e) => Err(e),
            Ok((h, start)) => match self.lookup(py, &h)? {
                Err(e) => Err(e),
                Ok(e) => body(&e, data, start, if start == 10 { "single-object" } else { "confluent" }),
            },
        };
        self.finish(py, out, data)?
    }

    /// Decode a batch: each item is a (kind, record, version, framing) tuple or an error instance.
    /// Bodies are decoded with the GIL released; Python objects are built afterwards.
    fn decode_batch(&self, py: Python<'_>, messages: Vec<Bound<'_, PyBytes>>) -> PyResult<Vec<PyObject>> {
        let messages: Vec<&[u8]> = messages.iter().map(|b| b.as_bytes()).collect();
        let mut plan: Vec<Result<(Arc<Entry>, usize), (&'static str, String)>> = Vec::with_capacity(messages.len());
        for d in &messages {
            plan.push(match header(d) {
                Err(e) => Err(e),
                Ok((h, start)) => self.lookup(py, &h)?.map(|e| (e, start)),
            });
        }
        let outs: Vec<Out> = py.allow_threads(|| {
            plan.into_iter()
                .zip(messages.iter())
                .map(|(p, d)| match p {
                    Err(e) => Err(e),
                    Ok((e, start)) => body(&e, d, start, if start == 10 { "single-object" } else { "confluent" }),
                })
                .collect()
        });
        let mut res = Vec::with_capacity(outs.len());
        for (o, d) in outs.into_iter().zip(messages.iter()) {
            res.push(match self.finish(py, o, d)? {
                Ok(v) => v,
                Err(e) => e.into_value(py).into_any(),
            });
        }
        Ok(res)
    }
}

/// UTC calendar fields of `micros` since the Unix epoch (proleptic Gregorian; range checked on decode).
pub(crate) fn civil(micros: i64) -> (i32, u8, u8, u8, u8, u8, u32) {
    let us = micros.rem_euclid(1_000_000) as u32;
    let secs = micros.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days to a civil date, after H. Hinnant's algorithm (eras of 400 years from 0000-03-01).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
    (y, m, d, (sod / 3600) as u8, (sod % 3600 / 60) as u8, (sod % 60) as u8, us)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add_class::<pipeline::EventPath>()?;
    m.add_class::<pipeline::Batch>()?;
    m.add("REASONS", REASONS.to_vec())?;
    bindings::register(m)?;
    openlineage::register(m)?;
    Ok(())
}

// Many small allocations freed between larger ones (records of one to two kilobytes) make glibc's
// allocator consolidate its free lists over and over; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
