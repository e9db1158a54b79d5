//! OpenLineage events (spec 2-0-2, JSON) -> the project's event records, as
//! `producers.openlineage.from_openlineage` converts them, and the whole conversion of an
//! `openlineage.events` message (`Decoder._from_openlineage`): JSON text -> record -> the latest
//! Avro schema of its class and back, so the record gets the same checks and defaults as Avro input.
#[path = "isotime.rs"]
mod isotime;
#[path = "jsonerr.rs"]
pub mod jsonerr;
#[path = "pytext.rs"]
pub mod pytext;

use crate::decode::{self, Cur, E, V};
use crate::enrich::{uuid5, uuid_text};
use crate::schema::Arena;
use crate::value::Refusal;
use pytext::{is_uuid, json_dumps, py_float, py_repr, py_str};
use sha2::{Digest, Sha256};

const EVENT_TYPES: [&str; 6] = ["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"];
const EVENT_TYPES_SORTED: &str = "ABORT, COMPLETE, FAIL, OTHER, RUNNING, START";
const CLASSES: [&str; 4] = ["dataset", "feature", "training", "inference"];
const INFERENCE_REQUIRED: [&str; 6] = ["model_name", "model_version", "prediction_id", "decision_type", "risk_score", "subject_id"];
const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Run facet marking a record converted from static lineage (`DatasetEvent` / `JobEvent`).
pub const STATIC_FACET: &str = "static_lineage";
/// UUIDv5 namespace of the run ids of static lineage (6f1c9a52-3b0e-5d7a-9c41-2e8b7f3d0a15).
const STATIC_NS: [u8; 16] = [
    0x6f, 0x1c, 0x9a, 0x52, 0x3b, 0x0e, 0x5d, 0x7a, 0x9c, 0x41, 0x2e, 0x8b, 0x7f, 0x3d, 0x0a, 0x15,
];

/// Why a conversion failed: an invalid event (`reason: detail`, the text of the error the
/// Python converter raises) or an input on which the Python converter fails with an
/// unexpected exception (its type name: `TypeError`, `KeyError`).
#[derive(Debug, Clone, PartialEq)]
pub enum OlError {
    Invalid(String),
    Crash(&'static str),
}

type R<T> = Result<T, OlError>;

fn invalid(reason: &str, detail: impl AsRef<str>) -> OlError {
    OlError::Invalid(format!("{reason}: {}", detail.as_ref()))
}

/// Python's `type(v).__name__`.
pub fn type_name(v: &V) -> &'static str {
    match v {
        V::Null => "NoneType",
        V::Bool(_) => "bool",
        V::Int(_) => "int",
        V::Float(_) => "float",
        V::Str(_) => "str",
        V::Bytes(_) => "bytes",
        V::Ts(_) => "datetime",
        V::Arr(_) => "list",
        V::Map(_) | V::Rec(_) => "dict",
    }
}

const NULL: V = V::Null;

/// `d.get(key)` with None for an absent key.
fn get<'a>(d: &'a V, key: &str) -> &'a V {
    d.get(key).unwrap_or(&NULL)
}

fn obj<'a>(v: &'a V, where_: &str) -> R<&'a V> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(invalid("invalid_field", format!("{where_} must be an object, got {}", type_name(v))))
    }
}

/// `_obj(d.get(key) or {}, where)`.
fn obj_or_empty<'a>(d: &'a V, key: &str, where_: &str) -> R<Option<&'a V>> {
    let v = get(d, key);
    if !v.truthy() {
        return Ok(None);
    }
    obj(v, where_).map(Some)
}

fn req_str<'a>(d: &'a V, key: &str, where_: &str) -> R<&'a str> {
    match get(d, key) {
        V::Str(s) if !s.is_empty() => Ok(s),
        v => Err(invalid(
            if v.is_null() { "missing_field" } else { "invalid_field" },
            format!("{where_}.{key} must be a non-empty string"),
        )),
    }
}

/// `{str(k): json.dumps(v, separators=(",", ":"), sort_keys=True) for k, v in facets if v is not None}`.
fn facets_text(facets: Option<&V>) -> V {
    let mut out = Vec::new();
    if let Some(f) = facets {
        for (k, v) in f.entries() {
            if !v.is_null() {
                out.push((k.to_string(), V::Str(json_dumps(v, true, true))));
            }
        }
    }
    V::Map(out)
}

/// Facets merged as `{**a, **b, **c}`: a later key replaces the value in the earlier place.
fn merge<'a>(parts: &[Option<&'a V>]) -> Vec<(&'a str, &'a V)> {
    let mut out: Vec<(&str, &V)> = Vec::new();
    for p in parts.iter().flatten() {
        for (k, v) in p.entries() {
            match out.iter_mut().find(|(x, _)| *x == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
    }
    out
}

fn dataset(d: &V, where_: &str) -> R<V> {
    let d = obj(d, where_)?;
    let a = obj_or_empty(d, "facets", &format!("{where_}.facets"))?;
    let b = obj_or_empty(d, "inputFacets", &format!("{where_}.inputFacets"))?;
    let c = obj_or_empty(d, "outputFacets", &format!("{where_}.outputFacets"))?;
    let facets = merge(&[a, b, c]);
    let mut version = V::Null;
    if let Some((_, vf)) = facets.iter().find(|(k, _)| *k == "version") {
        if let Some(s) = vf.str_at("datasetVersion") {
            if vf.is_object() {
                version = V::s(s);
            }
        }
    }
    let namespace = req_str(d, "namespace", where_)?;
    let name = req_str(d, "name", where_)?;
    let text: Vec<(String, V)> = facets
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), V::Str(json_dumps(v, true, true))))
        .collect();
    Ok(V::obj([
        ("namespace", V::s(namespace)),
        ("name", V::s(name)),
        ("version", version),
        ("facets", V::Map(text)),
    ]))
}

fn datasets(ev: &V, key: &str) -> R<Vec<V>> {
    match get(ev, key) {
        V::Arr(items) => items.iter().enumerate().map(|(i, d)| dataset(d, &format!("{key}[{i}]"))).collect(),
        _ => Ok(Vec::new()),
    }
}

fn check_arrays(ev: &V) -> R<()> {
    for key in ["inputs", "outputs"] {
        let v = get(ev, key);
        if !v.is_null() && !matches!(v, V::Arr(_)) {
            return Err(invalid("invalid_field", format!("{key} must be an array")));
        }
    }
    Ok(())
}

/// The project event class of an OpenLineage run (first match wins: a `lineage` facet naming
/// the class, the standard `jobType` facet, the class facets present, else `dataset`).
pub fn classify(run_facets: &V, job_facets: &V) -> Result<&'static str, String> {
    for facets in [run_facets, job_facets] {
        let named = get(facets, "lineage");
        if named.is_object() {
            let c = get(named, "class");
            let cls = if c.truthy() { c } else { get(named, "eventClass") };
            return match cls.as_str().and_then(|s| CLASSES.iter().find(|x| **x == s)) {
                Some(k) => Ok(k),
                None => Err(format!(
                    "invalid_facet: lineage facet class must be one of {}, got {}",
                    CLASSES.join(", "),
                    py_repr(cls)
                )),
            };
        }
    }
    let jt = get(job_facets, "jobType");
    if jt.is_object() {
        if let Some(s) = jt.str_at("jobType") {
            let cls = match s.to_uppercase().as_str() {
                "TRAINING" | "TRAIN" | "MODEL_TRAINING" => Some("training"),
                "FEATURE" | "FEATURE_ENGINEERING" | "FEATURES" => Some("feature"),
                "INFERENCE" | "PREDICTION" | "SCORING" => Some("inference"),
                _ => None,
            };
            if let Some(c) = cls {
                return Ok(c);
            }
        }
    }
    for (facet, cls) in [("inference", "inference"), ("training", "training"), ("feature_set", "feature")] {
        if get(run_facets, facet).is_object() {
            return Ok(cls);
        }
    }
    Ok("dataset")
}

/// The class facet `name`: the run's, else the job's; keys starting with `_` left out.
fn class_facet(run_facets: &V, job_facets: &V, name: &str, kind: &str) -> R<V> {
    let r = get(run_facets, name);
    let f = if r.is_object() { r } else { get(job_facets, name) };
    if !f.is_object() {
        return Err(invalid("missing_facet", format!("a {kind} event needs a '{name}' run facet")));
    }
    Ok(V::Map(f.entries().into_iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.to_string(), v.dup())).collect()))
}

// --- times and ids --------------------------------------------------------------------------

/// `eventTime` (ISO 8601 as Python 3.11's `datetime.fromisoformat` reads it, a trailing `Z`
/// as UTC, no offset meaning UTC) as microseconds since the epoch.
pub fn event_time_micros(value: &V) -> Result<i64, String> {
    let s = match value {
        V::Str(s) => s,
        V::Null => return Err("missing_field: eventTime must be an ISO 8601 string".into()),
        _ => return Err("invalid_field: eventTime must be an ISO 8601 string".into()),
    };
    let text = if s.ends_with('Z') { s.replace('Z', "+00:00") } else { s.clone() };
    isotime::iso_micros(&text).ok_or_else(|| format!("invalid_field: eventTime {} is not ISO 8601", py_repr(value)))
}


/// Deterministic UUIDv7: eventTime's milliseconds, then bits of SHA-256(runId|eventType|eventTime).
pub fn derived_event_id(run_id: &str, event_type: &str, event_time: &str, micros: i64) -> String {
    let digest = Sha256::digest(format!("{run_id}|{event_type}|{event_time}").as_bytes());
    let mut d = [0u8; 16];
    d[6..].copy_from_slice(&digest[..10]);
    let bits = u128::from_be_bytes(d);
    let ms = (micros.div_euclid(1000).max(0) as u128) & ((1u128 << 48) - 1);
    let rand_a = (bits >> 68) & 0xFFF;
    let rand_b = bits & ((1u128 << 62) - 1);
    let n = (ms << 80) | (0x7u128 << 76) | (rand_a << 64) | (0x2u128 << 62) | rand_b;
    uuid_text(&n.to_be_bytes())
}


// --- conversion -----------------------------------------------------------------------------

fn schema_url(ev: &V) -> V {
    V::s(ev.str_at("schemaURL").unwrap_or(SCHEMA_URL))
}

fn ts(micros: i64) -> V {
    V::Int(micros)
}

/// Convert one OpenLineage event (a JSON object) to `(kind, record)`; Err is the text of the
/// error the Python converter raises (`reason: detail`); see [`convert_event`] for the inputs
/// on which Python fails with an unexpected exception (their type name is the Err text).
#[allow(dead_code)] // the event path calls convert; this is the contract for callers holding a parsed event
pub fn from_openlineage(obj: &V) -> Result<(&'static str, V), String> {
    convert_event(obj).map_err(|e| match e {
        OlError::Invalid(s) => s,
        OlError::Crash(t) => t.to_string(),
    })
}

/// [`from_openlineage`] telling invalid events from inputs on which the Python converter
/// raises an unexpected exception (an unhashable `eventType`, a snapshot `feature_set`
/// without `name` or `version`).
pub fn convert_event(obj_: &V) -> R<(&'static str, V)> {
    let ev = obj(obj_, "event")?;
    if ev.get("run").is_none() {
        if ev.get("dataset").is_some() {
            return Ok(("dataset", static_event(ev, "DatasetEvent")?));
        }
        if ev.get("job").is_some() {
            return Ok(("dataset", static_event(ev, "JobEvent")?));
        }
        return Err(invalid(
            "not_a_run_event",
            "neither a RunEvent ('run'), a DatasetEvent ('dataset') nor a JobEvent ('job')",
        ));
    }
    let run = obj(get(ev, "run"), "run")?;
    let job = obj(get(ev, "job"), "job")?;
    let run_id = req_str(run, "runId", "run")?;
    if !is_uuid(run_id) {
        return Err(invalid("invalid_field", format!("run.runId {} is not a UUID", py_repr(&V::s(run_id)))));
    }
    let et = get(ev, "eventType");
    let event_type: &str = if !et.truthy() {
        "OTHER"
    } else {
        match et {
            V::Arr(_) | V::Map(_) | V::Rec(_) => return Err(OlError::Crash("TypeError")),
            V::Str(s) if EVENT_TYPES.contains(&s.as_str()) => s,
            other => {
                return Err(invalid(
                    "invalid_field",
                    format!("eventType {} is not one of {EVENT_TYPES_SORTED}", py_repr(other)),
                ))
            }
        }
    };
    let event_time = get(ev, "eventTime");
    let micros = event_time_micros(event_time).map_err(OlError::Invalid)?;
    let producer = req_str(ev, "producer", "event")?;
    let empty = V::Map(Vec::new());
    let run_facets = obj_or_empty(run, "facets", "run.facets")?.unwrap_or(&empty);
    let job_facets = obj_or_empty(job, "facets", "job.facets")?.unwrap_or(&empty);
    check_arrays(ev)?;
    let kind = classify(run_facets, job_facets).map_err(OlError::Invalid)?;
    let event_id = match ev.str_at("event_id") {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => derived_event_id(run_id, event_type, &py_str(event_time), micros),
    };

    if kind == "inference" {
        return inference(run_facets, job_facets, job, event_id, micros, producer).map(|r| (kind, r));
    }

    let parent = get(run_facets, "parent");
    let mut parent_run_id = V::Null;
    let prun = get(parent, "run");
    if parent.is_object() && prun.is_object() {
        if let Some(s) = prun.str_at("runId") {
            parent_run_id = V::s(s);
        }
    }
    let ns = req_str(job, "namespace", "job")?;
    let name = req_str(job, "name", "job")?;
    let inputs = datasets(ev, "inputs")?;
    let outputs = datasets(ev, "outputs")?;
    let mut record = V::obj([
        ("event_id", V::s(event_id)),
        ("correlation_id", V::Null),
        ("eventType", V::s(event_type)),
        ("eventTime", ts(micros)),
        ("producer", V::s(producer)),
        ("schemaURL", schema_url(ev)),
        (
            "run",
            V::obj([("runId", V::s(run_id)), ("parentRunId", parent_run_id), ("facets", facets_text(Some(run_facets)))]),
        ),
        ("job", V::obj([("namespace", V::s(ns)), ("name", V::s(name)), ("facets", facets_text(Some(job_facets)))])),
        ("inputs", V::Arr(inputs)),
        ("outputs", V::Arr(outputs)),
    ]);
    if kind == "feature" {
        let f = class_facet(run_facets, job_facets, "feature_set", kind)?;
        let fname = f.str_at("name");
        if fname.is_none() || get(&f, "version").is_null() {
            return Err(invalid("missing_facet_field", "feature_set facet needs name and version"));
        }
        let feats = get(&f, "features");
        let feats: &[V] = match feats {
            V::Arr(a) => a,
            v if !v.truthy() => &[],
            _ => return Err(invalid("invalid_facet", "feature_set.features must be an array")),
        };
        record.set(
            "feature_set",
            V::obj([
                ("name", V::s(fname.unwrap_or_default())),
                ("version", V::s(py_str(get(&f, "version")))),
                ("features", V::Arr(feats.iter().map(|x| V::s(py_str(x))).collect())),
                ("entity", get(&f, "entity").dup()),
            ]),
        );
    } else if kind == "training" {
        record.set("training", training(run_facets, job_facets, kind)?);
    }
    Ok((kind, record))
}

fn inference(run_facets: &V, job_facets: &V, job: &V, event_id: String, micros: i64, producer: &str) -> R<V> {
    let f = class_facet(run_facets, job_facets, "inference", "inference")?;
    let sealed = get(&f, "sealed");
    if !sealed.is_null()
        && (!matches!(sealed, V::Str(_)) || !get(&f, "subject_id").is_null() || !get(&f, "feature_snapshot").is_null())
    {
        return Err(invalid(
            "invalid_facet",
            "inference.sealed must be a sealed envelope string, in place of subject_id and feature_snapshot",
        ));
    }
    let sealed_truthy = sealed.truthy();
    let missing: Vec<&str> = INFERENCE_REQUIRED
        .iter()
        .copied()
        .filter(|k| get(&f, k).is_null() && !(sealed_truthy && *k == "subject_id"))
        .collect();
    if !missing.is_empty() {
        return Err(invalid("missing_facet_field", format!("inference facet lacks {}", missing.join(", "))));
    }
    let risk = py_float(get(&f, "risk_score"))
        .ok_or_else(|| invalid("invalid_facet", "inference.risk_score must be a number"))?;
    let ep = get(&f, "endpoint");
    let endpoint = if ep.truthy() { py_str(ep) } else { req_str(job, "name", "job")?.to_string() };
    let snap = get(&f, "feature_snapshot");
    let mut snapshot = V::Null;
    if snap.is_object() {
        let values = obj_or_empty(snap, "values", "inference.feature_snapshot.values")?;
        let fs = get(snap, "feature_set");
        let fset = if fs.is_object() {
            let name = fs.get("name").ok_or(OlError::Crash("KeyError"))?;
            let version = fs.get("version").ok_or(OlError::Crash("KeyError"))?;
            V::obj([("name", V::s(py_str(name))), ("version", V::s(py_str(version)))])
        } else {
            V::Null
        };
        let vals: Vec<(String, V)> = values
            .map(|v| v.entries().into_iter().map(|(k, x)| (k.to_string(), V::Str(json_dumps(x, false, false)))).collect())
            .unwrap_or_default();
        snapshot = V::obj([("feature_set", fset), ("values", V::Map(vals))]);
    }
    Ok(V::obj([
        ("event_id", V::s(event_id)),
        ("correlation_id", V::Null),
        ("event_time", ts(micros)),
        ("producer", V::s(producer)),
        ("endpoint", V::s(endpoint)),
        ("model_name", V::s(py_str(get(&f, "model_name")))),
        ("model_version", V::s(py_str(get(&f, "model_version")))),
        ("prediction_id", V::s(py_str(get(&f, "prediction_id")))),
        ("decision_type", V::s(py_str(get(&f, "decision_type")))),
        ("risk_score", V::Float(risk)),
        ("regulatory_class", get(&f, "regulatory_class").dup()),
        ("subject_id", V::s(if sealed_truthy { String::new() } else { py_str(get(&f, "subject_id")) })),
        ("training_run_id", get(&f, "training_run_id").dup()),
        ("feature_snapshot", snapshot),
        ("sealed", sealed.dup()),
    ]))
}

fn training(run_facets: &V, job_facets: &V, kind: &str) -> R<V> {
    let f = class_facet(run_facets, job_facets, "training", kind)?;
    let missing: Vec<&str> = ["model_name", "model_version"].into_iter().filter(|k| get(&f, k).is_null()).collect();
    if !missing.is_empty() {
        return Err(invalid("missing_facet_field", format!("training facet lacks {}", missing.join(", "))));
    }
    let mut code_version = get(&f, "code_version");
    let scl = get(job_facets, "sourceCodeLocation");
    if code_version.is_null() && scl.is_object() {
        code_version = get(scl, "version");
    }
    let fsets = get(&f, "feature_sets");
    let bad_sets = || invalid("invalid_facet", "training.feature_sets must be [{name, version}, ...]");
    let fsets: &[V] = match fsets {
        V::Arr(a) => a,
        v if !v.truthy() => &[],
        _ => return Err(bad_sets()),
    };
    if !fsets.iter().all(|x| x.is_object() && x.get("name").is_some() && x.get("version").is_some()) {
        return Err(bad_sets());
    }
    let mut metrics = Vec::new();
    if let Some(m) = obj_or_empty(&f, "metrics", "training.metrics")? {
        for (k, v) in m.entries() {
            let x = py_float(v).ok_or_else(|| invalid("invalid_facet", "training.metrics values must be numbers"))?;
            metrics.push((k.to_string(), V::Float(x)));
        }
    }
    let digests: Vec<(String, V)> = obj_or_empty(&f, "dataset_digests", "training.dataset_digests")?
        .map(|m| m.entries().into_iter().map(|(k, v)| (k.to_string(), V::s(py_str(v)))).collect())
        .unwrap_or_default();
    let hyper: Vec<(String, V)> = obj_or_empty(&f, "hyperparameters", "training.hyperparameters")?
        .map(|m| {
            m.entries()
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        V::Str(s) => s.clone(),
                        other => json_dumps(other, false, false),
                    };
                    (k.to_string(), V::Str(text))
                })
                .collect()
        })
        .unwrap_or_default();
    let code = if code_version.truthy() { py_str(code_version) } else { "unknown".to_string() };
    Ok(V::obj([
        ("model_name", V::s(py_str(get(&f, "model_name")))),
        ("model_version", V::s(py_str(get(&f, "model_version")))),
        ("artifact_digest", get(&f, "artifact_digest").dup()),
        ("code_version", V::s(code)),
        (
            "feature_sets",
            V::Arr(
                fsets
                    .iter()
                    .map(|x| V::obj([("name", V::s(py_str(get(x, "name")))), ("version", V::s(py_str(get(x, "version"))))]))
                    .collect(),
            ),
        ),
        ("dataset_digests", V::Map(digests)),
        ("hyperparameters", V::Map(hyper)),
        ("metrics", V::Map(metrics)),
    ]))
}

/// A `DatasetEvent` or `JobEvent` as a `dataset` record with the [`STATIC_FACET`] run facet;
/// the run id is a UUIDv5 of the dataset or job, the event id covers the whole event.
fn static_event(ev: &V, what: &str) -> R<V> {
    let event_time = get(ev, "eventTime");
    let micros = event_time_micros(event_time).map_err(OlError::Invalid)?;
    let producer = req_str(ev, "producer", "event")?;
    let (job, inputs, outputs, subject) = if what == "DatasetEvent" {
        let ds = dataset(get(ev, "dataset"), "dataset")?;
        let ns = ds.str_at("namespace").unwrap_or_default().to_string();
        let name = ds.str_at("name").unwrap_or_default().to_string();
        let subject = format!("dataset:{ns}/{name}");
        let job = V::obj([("namespace", V::s(ns)), ("name", V::s(name)), ("facets", V::Map(Vec::new()))]);
        (job, Vec::new(), vec![ds], subject)
    } else {
        let j = obj(get(ev, "job"), "job")?;
        let ns = req_str(j, "namespace", "job")?;
        let name = req_str(j, "name", "job")?;
        let jf = get(j, "facets");
        let facets = if jf.is_null() { None } else { Some(obj(jf, "job.facets")?) };
        let job = V::obj([("namespace", V::s(ns)), ("name", V::s(name)), ("facets", facets_text(facets))]);
        check_arrays(ev)?;
        let inputs = datasets(ev, "inputs")?;
        let outputs = datasets(ev, "outputs")?;
        (job, inputs, outputs, format!("job:{ns}/{name}"))
    };
    let run_id = uuid5(&STATIC_NS, &subject);
    let content: String =
        Sha256::digest(json_dumps(ev, true, true).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Ok(V::obj([
        ("event_id", V::s(derived_event_id(&run_id, &format!("{what}:{content}"), &py_str(event_time), micros))),
        ("correlation_id", V::Null),
        ("eventType", V::s("OTHER")),
        ("eventTime", ts(micros)),
        ("producer", V::s(producer)),
        ("schemaURL", schema_url(ev)),
        (
            "run",
            V::obj([
                ("runId", V::s(run_id)),
                ("parentRunId", V::Null),
                ("facets", V::Map(vec![(STATIC_FACET.to_string(), V::s(format!("{{\"eventClass\":\"{what}\"}}")))])),
            ]),
        ),
        ("job", job),
        ("inputs", V::Arr(inputs)),
        ("outputs", V::Arr(outputs)),
    ]))
}

// --- the whole message ----------------------------------------------------------------------

/// The whole conversion of an `openlineage.events` message: JSON -> `(kind, record)` -> the
/// latest Avro schema of its class (`latest(kind)`) -> the record as Avro input would give it.
pub fn convert<'s>(raw: &[u8], latest: &dyn Fn(&str) -> Option<(&'s Arena, usize)>) -> Result<(&'static str, V), Refusal> {
    // orjson checks the whole input's UTF-8 before parsing.
    if !raw.is_empty() && std::str::from_utf8(raw).is_err() {
        return Err(Refusal::new("bad_json", "not JSON: str is not valid UTF-8: surrogates not allowed"));
    }
    let parsed = if jsonerr::max_depth(raw) > jsonerr::JSON_DEPTH {
        Ok(None)
    } else {
        let mut de = serde_json::Deserializer::from_slice(raw);
        de.disable_recursion_limit();
        let mut values = de.into_iter::<serde_json::Value>();
        match values.next() {
            // Empty or blank input: serde_json's own error, worded below.
            None => serde_json::from_slice::<serde_json::Value>(raw).map(Some),
            Some(Err(e)) => Err(e),
            Some(Ok(j)) => match values.next() {
                None => Ok(Some(j)),
                Some(_) => {
                    return Err(Refusal::new("bad_json", "not JSON: unexpected content after document"));
                }
            },
        }
    };
    let obj_ = match parsed {
        Ok(None) => return Err(Refusal::new("bad_json", "not JSON: depth limit exceeded")),
        Ok(Some(j)) => crate::value::from_serde(j),
        Err(e) => {
            return Err(Refusal::new(
                if raw.is_empty() { "empty" } else { "bad_json" },
                format!("not JSON: {}", jsonerr::json_error(raw, &e)),
            ))
        }
    };
    if !obj_.is_object() {
        return Err(Refusal::new("bad_json", format!("expected a JSON object, got {}", type_name(&obj_))));
    }
    let (kind, record) = match convert_event(&obj_) {
        Ok(x) => x,
        Err(OlError::Invalid(s)) => return Err(Refusal::new("openlineage_invalid", s)),
        Err(OlError::Crash(t)) => return Err(Refusal::new("internal_error", format!("{t} while processing"))),
    };
    let (arena, root) = latest(kind)
        .ok_or_else(|| Refusal::new("openlineage_invalid", format!("schema: no schema of kind {kind}")))?;
    let bytes = crate::encode::encode(arena, root, &record)
        .map_err(|e| Refusal::new("openlineage_invalid", format!("{kind} event does not match its schema: {e}")))?;
    let mut c = Cur { b: &bytes, p: 0 };
    let v = decode::read(&mut c, arena, root, arena, None).map_err(|e| match e {
        E::Eof(m) => Refusal::new("openlineage_invalid", format!("truncated: body ended early: {m}")),
        E::Bad(m) => Refusal::new("openlineage_invalid", format!("undecodable: {m}")),
    })?;
    Ok((kind, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = |s: &str| event_time_micros(&V::s(s));
        assert_eq!(t("2026-06-15T10:00:00.123456+02:00"), Ok(1_781_510_400_123_456));
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("1970-01-01"), Ok(0));
        assert!(t("2026-06-15T24:00").is_err());
        assert!(t("2026-06-15T").is_err());
        assert!(t("2026-06-15T10:00:00.").is_err());
        assert_eq!(t("2026-W24-1T10:00"), t("2026-06-08T10:00"));
        assert_eq!(t("2026W241"), t("2026-06-08"));
        assert_eq!(t("2026-06-15T10.5"), t("2026-06-15T10:00:00.5"));
        assert!(t("2026-06-15T10:00+24:00").is_err());
        assert_eq!(
            t("nope"),
            Err("invalid_field: eventTime 'nope' is not ISO 8601".to_string())
        );
    }

    #[test]
    fn ids() {
        let id = derived_event_id("r", "START", "2026-06-15T10:00:00Z", 1_781_517_600_000_000);
        assert_eq!(&id[14..15], "7");
        assert_eq!(uuid5(&STATIC_NS, "x").len(), 36);
    }
}

// --- Python bindings (for parity tests) -----------------------------------------------------

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `_debug_from_openlineage(event: dict) -> (kind, record)`; ValueError(text) for an invalid
/// event, RuntimeError(type name) where the Python converter fails unexpectedly.
#[pyfunction]
fn _debug_from_openlineage(py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<(String, PyObject)> {
    let v = crate::value::from_py(event)?;
    match py.allow_threads(|| convert_event(&v)) {
        Ok((kind, rec)) => Ok((kind.to_string(), crate::value::to_py(py, &rec)?)),
        Err(OlError::Invalid(s)) => Err(PyValueError::new_err(s)),
        Err(OlError::Crash(t)) => Err(PyRuntimeError::new_err(t)),
    }
}

/// `_debug_convert(raw: bytes, schemas: {kind: writer schema JSON}) -> (kind, record)`, or
/// ValueError(f"{reason}: {detail}").
#[pyfunction]
fn _debug_convert(py: Python<'_>, raw: &[u8], schemas: &Bound<'_, PyDict>) -> PyResult<(String, PyObject)> {
    let mut arenas: Vec<(String, Arena, usize)> = Vec::new();
    for (k, s) in schemas.iter() {
        let (a, r) = Arena::parse_text(&s.extract::<String>()?).map_err(PyValueError::new_err)?;
        arenas.push((k.extract()?, a, r));
    }
    let out = py.allow_threads(|| {
        let latest = |kind: &str| arenas.iter().find(|(k, _, _)| k == kind).map(|(_, a, r)| (a, *r));
        convert(raw, &latest)
    });
    match out {
        Ok((kind, rec)) => Ok((kind.to_string(), crate::value::to_py(py, &rec)?)),
        Err(r) => Err(PyValueError::new_err(format!("{}: {}", r.reason, r.detail))),
    }
}

/// Registers this module's bindings in `lineage_native._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_debug_from_openlineage, m)?)?;
    m.add_function(wrap_pyfunction!(_debug_convert, m)?)?;
    Ok(())
}
