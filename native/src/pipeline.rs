//! The event path's per-event work for one batch, in three steps around the I/O Python keeps:
//!
//! 1. [`EventPath::accept`]: decode (both framings, or OpenLineage JSON), split off and open the
//!    PII, validate. Python then asks Redis about what the batch names: run-state verdicts
//!    ([`Batch::transitions`]), flagged subjects and data keys ([`Batch::refs`]), and the
//!    model-lineage table ([`Batch::model_keys`]).
//! 2. [`Batch::route`]: mark run anomalies, enrich (correlation ids, the training join), sample,
//!    seal snapshots and dead letters. Python stores the captured snapshots.
//! 3. [`Batch::finish`]: every output record (dead letters, holds, graph records), in that order.
//!
//! Each step does its work with the interpreter lock released. A panic on one message (a bug)
//! dead-letters that message as `internal_error`; the rest of the batch flows on.
use crate::decode::V;
use crate::enrich::{self, Sampling};
use crate::graph;
use crate::openlineage;
use crate::pii::{self, Unsealer};
use crate::rules::{self, Limits};
use crate::schema::Arena;
use crate::openlineage::pytext::py_str_opt;
use crate::value::{self, Refusal};
use crate::{body, header, Decoder, Entry};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};

type Headers = Vec<(String, Option<Vec<u8>>)>;

struct Msg {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Headers,
}

struct Accepted {
    msg: usize,
    kind: &'static str,
    ev: V,
    snapshot: Option<V>,
    subject_ref: String,
}

struct Rejected {
    msg: usize,
    reason: &'static str,
    detail: String,
    kind: &'static str, // "" when the message did not decode
    subject_ref: String,
}

struct Config {
    kind_of_topic: HashMap<String, &'static str>,
    openlineage_topic: String,
    graph_topic: String,
    hold_topic: String,
    deadletter_topic: String,
    limits: Limits,
    sampling: Sampling,
    accept_unsealed: bool,
    latest: HashMap<&'static str, (Arena, usize)>,
}

/// The compiled event path of one worker: configuration, schemas and keys; stateless between batches.
#[pyclass(module = "lineage_native._core", frozen)]
pub struct EventPath {
    decoder: Py<Decoder>,
    config: Arc<Config>,
    unsealer: RwLock<Option<Arc<Unsealer>>>,
    pseudonym_key: Vec<u8>,
}

const KINDS: [&str; 4] = ["dataset", "feature", "training", "inference"];

fn kind_static(kind: &str) -> Option<&'static str> {
    KINDS.iter().copied().find(|k| *k == kind)
}

/// The rule set's limits from a dict of their fields (`stream_apps.validation.limits_config`).
pub(crate) fn limits_of(d: &Bound<'_, PyDict>) -> PyResult<Limits> {
    Ok(Limits {
        max_message_bytes: get(d, "max_message_bytes")?,
        max_future_us: get(d, "max_future_us")?,
        max_past_us: get(d, "max_past_us")?,
        max_snapshot_values: get(d, "max_snapshot_values")?,
        max_facet_bytes: get(d, "max_facet_bytes")?,
    })
}

/// The sampling settings from a dict of their fields (`stream_apps.sampling.sampling_config`).
pub(crate) fn sampling_of(d: &Bound<'_, PyDict>) -> PyResult<Sampling> {
    Ok(Sampling {
        risk_threshold: get(d, "risk_threshold")?,
        consequential_decisions: get(d, "consequential_decisions")?,
        regulated_classes: get(d, "regulated_classes")?,
        routine_rate: get(d, "routine_rate")?,
    })
}

fn get<'py, T: FromPyObject<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("event path configuration lacks {key}")))?
        .extract()
}


/// Bytes or None, copied straight from a `bytes` object (never element by element).
pub(crate) fn opt_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if obj.is_none() {
        return Ok(None);
    }
    Ok(Some(obj.downcast::<PyBytes>()?.as_bytes().to_vec()))
}

pub(crate) fn headers_of(obj: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let mut out = Vec::new();
    if obj.is_none() {
        return Ok(out);
    }
    for item in obj.try_iter()? {
        let pair = item?;
        let pair = pair.downcast::<PyTuple>()?;
        out.push((pair.get_item(0)?.extract()?, opt_bytes(&pair.get_item(1)?)?));
    }
    Ok(out)
}

fn msg_of(t: &Bound<'_, PyTuple>) -> PyResult<Msg> {
    Ok(Msg {
        topic: t.get_item(0)?.extract()?,
        partition: t.get_item(1)?.extract()?,
        offset: t.get_item(2)?.extract()?,
        key: opt_bytes(&t.get_item(3)?)?,
        value: opt_bytes(&t.get_item(4)?)?.unwrap_or_default(),
        headers: headers_of(&t.get_item(5)?)?,
    })
}

#[pymethods]
impl EventPath {
    /// `config` (see `stream_apps.event_path.processor.native_config`); `private_keys`: the seal
    /// keys (raw X25519, 32 bytes each), `pseudonym_key`: the key of subject references.
    #[new]
    fn new(decoder: Py<Decoder>, config: &Bound<'_, PyDict>, private_keys: Vec<Vec<u8>>, pseudonym_key: Vec<u8>) -> PyResult<Self> {
        let topics: HashMap<String, String> = get(config, "event_topics")?;
        let mut kind_of_topic = HashMap::new();
        for (kind, topic) in topics {
            let k = kind_static(&kind).ok_or_else(|| PyValueError::new_err(format!("unknown event class {kind}")))?;
            kind_of_topic.insert(topic, k);
        }
        let schemas: HashMap<String, String> = get(config, "latest_schemas")?;
        let mut latest = HashMap::new();
        for (kind, text) in schemas {
            let k = kind_static(&kind).ok_or_else(|| PyValueError::new_err(format!("unknown event class {kind}")))?;
            latest.insert(k, Arena::parse_text(&text).map_err(PyValueError::new_err)?);
        }
        let cfg = Config {
            kind_of_topic,
            openlineage_topic: get(config, "openlineage_topic")?,
            graph_topic: get(config, "graph_topic")?,
            hold_topic: get(config, "hold_topic")?,
            deadletter_topic: get(config, "deadletter_topic")?,
            limits: limits_of(config)?,
            sampling: sampling_of(config)?,
            accept_unsealed: get(config, "accept_unsealed")?,
            latest,
        };
        let path = EventPath { decoder, config: Arc::new(cfg), unsealer: RwLock::new(None), pseudonym_key };
        path.set_seal_keys(private_keys)?;
        Ok(path)
    }

    /// Replace the seal keys (all of them: current and retired); an empty list opens nothing.
    fn set_seal_keys(&self, private_keys: Vec<Vec<u8>>) -> PyResult<()> {
        let mut keys = Vec::with_capacity(private_keys.len());
        for k in private_keys {
            keys.push(<[u8; 32]>::try_from(k.as_slice()).map_err(|_| PyValueError::new_err("a seal private key is 32 bytes"))?);
        }
        *self.unsealer.write().unwrap_or_else(|e| e.into_inner()) = if keys.is_empty() { None } else { Some(Arc::new(Unsealer::new(keys))) };
        Ok(())
    }

    /// Step 1 for a batch of `(topic, partition, offset, key, value, headers)` consumed at `now_us`.
    fn accept(&self, py: Python<'_>, msgs: &Bound<'_, PyList>, now_us: i64) -> PyResult<Batch> {
        let mut batch_msgs = Vec::with_capacity(msgs.len());
        let mut plan: Vec<Result<(Arc<Entry>, usize), Refusal>> = Vec::with_capacity(msgs.len());
        let dec = self.decoder.borrow(py);
        for item in msgs.iter() {
            let t = item.downcast::<PyTuple>()?;
            let m = msg_of(t)?;
            let is_ol = m.topic == self.config.openlineage_topic;
            plan.push(if is_ol || m.value.len() > self.config.limits.max_message_bytes {
                Err(Refusal::new("", String::new())) // decided in the batch step
            } else {
                match header(&m.value) {
                    Err((r, d)) => Err(Refusal::new(r, d)),
                    Ok((h, start)) => match dec.lookup(py, &h)? {
                        Err((r, d)) => Err(Refusal::new(r, d)),
                        Ok(e) => Ok((e, start)),
                    },
                }
            });
            batch_msgs.push(m);
        }
        drop(dec);
        let unsealer = self.unsealer.read().unwrap_or_else(|e| e.into_inner()).clone();
        let cfg = self.config.clone();
        let pkey = &self.pseudonym_key;
        let (accepted, rejected, unsealed) = py.allow_threads(|| {
            let mut accepted = Vec::new();
            let mut rejected = Vec::new();
            let mut unsealed = 0u64;
            for (i, (m, p)) in batch_msgs.iter().zip(plan).enumerate() {
                let out = catch_unwind(AssertUnwindSafe(|| accept_one(&cfg, unsealer.as_deref(), pkey, i, m, p, now_us, &mut unsealed)));
                match out {
                    Ok(Ok(a)) => accepted.push(a),
                    Ok(Err(r)) => rejected.push(r),
                    Err(_) => rejected.push(Rejected {
                        msg: i,
                        reason: "internal_error",
                        detail: "panic while processing".into(),
                        kind: "",
                        subject_ref: String::new(),
                    }),
                }
            }
            (accepted, rejected, unsealed)
        });
        let mut counters = BTreeMap::new();
        if unsealed > 0 {
            counters.insert("unsealed.inference".to_string(), unsealed);
        }
        Ok(Batch { cfg: self.config.clone(), msgs: batch_msgs, accepted, rejected, counters, routed: None, facts: Vec::new() })
    }

    /// A batch of one message dead-lettered without being looked at (e.g. a bug tripped on it
    /// outside the per-message work); sealed under the dead-letter key like any undecoded message.
    fn reject(&self, msg: &Bound<'_, PyTuple>, reason: &str, detail: String) -> PyResult<Batch> {
        let reason = crate::REASONS.iter().copied().find(|r| *r == reason).ok_or_else(|| PyValueError::new_err(format!("unknown reason {reason}")))?;
        let m = msg_of(msg)?;
        let rejected = vec![Rejected { msg: 0, reason, detail, kind: "", subject_ref: String::new() }];
        Ok(Batch { cfg: self.config.clone(), msgs: vec![m], accepted: Vec::new(), rejected, counters: BTreeMap::new(), routed: None, facts: Vec::new() })
    }
}

#[allow(clippy::too_many_arguments)]
fn accept_one(
    cfg: &Config,
    unsealer: Option<&Unsealer>,
    pkey: &[u8],
    i: usize,
    m: &Msg,
    plan: Result<(Arc<Entry>, usize), Refusal>,
    now_us: i64,
    unsealed: &mut u64,
) -> Result<Accepted, Rejected> {
    let refuse = |r: Refusal| Rejected { msg: i, reason: r.reason, detail: r.detail, kind: "", subject_ref: String::new() };
    rules::check_size(m.value.len(), &cfg.limits).map_err(refuse)?;
    let (kind, ev) = if m.topic == cfg.openlineage_topic {
        let latest = |k: &str| cfg.latest.get(k).map(|(a, r)| (a, *r));
        openlineage::convert(&m.value, &latest).map_err(refuse)?
    } else {
        let (entry, start) = plan.map_err(refuse)?;
        let framing = if start == 10 { "single-object" } else { "confluent" };
        let (entry, _, v) = body(&entry, &m.value, start, framing).map_err(|(r, d)| refuse(Refusal::new(r, d)))?;
        let kind = kind_static(&entry.kind).ok_or_else(|| refuse(Refusal::new("unknown_schema", format!("unknown event class {}", entry.kind))))?;
        if let Some(expected) = cfg.kind_of_topic.get(&m.topic) {
            if *expected != kind {
                return Err(refuse(Refusal::new("wrong_topic", format!("{kind} event on the {expected} topic"))));
            }
        }
        (kind, v)
    };
    let mut acc = Accepted { msg: i, kind, ev, snapshot: None, subject_ref: String::new() };
    let mut subject: Option<V> = None;
    let checked = (|| {
        if kind == "inference" {
            subject = split_pii(cfg, unsealer, pkey, &mut acc, unsealed)?;
        }
        let found = rules::check_event(kind, &acc.ev, now_us, &cfg.limits, subject.as_ref(), acc.snapshot.as_ref())?;
        rules::apply_findings(&mut acc.ev, &found);
        Ok::<(), Refusal>(())
    })();
    match checked {
        Ok(()) => Ok(acc),
        Err(r) => Err(Rejected { msg: i, reason: r.reason, detail: r.detail, kind, subject_ref: acc.subject_ref }),
    }
}

fn clear_subject(subject: &Option<V>) -> Option<&str> {
    match subject {
        Some(V::Str(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Take the subject id and snapshot off the event (opening the seal) before anything else looks;
/// returns the subject id, which is only handed to validation.
fn split_pii(cfg: &Config, unsealer: Option<&Unsealer>, pkey: &[u8], acc: &mut Accepted, unsealed: &mut u64) -> Result<Option<V>, Refusal> {
    let sealed = acc.ev.remove("sealed");
    let mut subject = acc.ev.remove("subject_id");
    let mut snapshot = acc.ev.remove("feature_snapshot").filter(|s| !s.is_null());
    let subject_given = subject.as_ref().is_some_and(V::truthy);
    if sealed.as_ref().is_some_and(V::truthy) {
        if subject_given || snapshot.is_some() {
            if let Some(clear) = clear_subject(&subject) {
                acc.subject_ref = pii::subject_ref(pkey, clear);
            }
            return Err(Refusal::new("unsealed_pii", "a sealed event also carries its subject id or snapshot in the clear"));
        }
        let Some(unsealer) = unsealer else {
            return Err(Refusal::new("seal_key_unknown", "this worker holds no seal key to open sealed events with"));
        };
        let envelope = match &sealed {
            Some(V::Str(s)) => s.as_str(),
            _ => "",
        };
        let pid = py_str_opt(acc.ev.get("prediction_id"));
        let (s, f) = unsealer.open_pii(&pid, envelope)?;
        subject = Some(s);
        snapshot = Some(f).filter(|s| !s.is_null());
    } else if subject_given || snapshot.is_some() {
        *unsealed += 1;
        if !cfg.accept_unsealed {
            if let Some(clear) = clear_subject(&subject) {
                acc.subject_ref = pii::subject_ref(pkey, clear);
            }
            return Err(Refusal::new(
                "unsealed_pii",
                "subject id or snapshot in the clear: emitters must seal PII for the pipeline \
                 (accepted only while LINEAGE_PII__ACCEPT_UNSEALED=true)",
            ));
        }
    }
    if let Some(clear) = clear_subject(&subject) {
        acc.subject_ref = pii::subject_ref(pkey, clear);
    }
    acc.snapshot = snapshot;
    Ok(subject)
}


struct Routed {
    dead_letters: Vec<(usize, Vec<u8>, Vec<(String, Vec<u8>)>)>, // (message, value, headers)
    holds: Vec<(String, V, usize, String, String)>,             // (prediction id, event, info index, correlation id, sealed blob)
    pending: Vec<(usize, String, Option<usize>)>,                // (accepted index, correlation id, info index)
    infos: Vec<V>,
    captured: Vec<usize>, // info indexes whose blob went to the store, in store order
}

/// One batch between the steps.
#[pyclass(module = "lineage_native._core")]
pub struct Batch {
    cfg: Arc<Config>,
    msgs: Vec<Msg>,
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
    counters: BTreeMap<String, u64>,
    routed: Option<Routed>,
    facts: Vec<graph::Facts>,
}

impl Batch {
    fn runs(&self) -> impl Iterator<Item = &Accepted> {
        self.accepted.iter().filter(|a| a.kind != "inference")
    }
    fn count(&mut self, name: String, n: u64) {
        *self.counters.entry(name).or_insert(0) += n;
    }
}

#[pymethods]
impl Batch {
    /// `(run id, event type, event time in microseconds, event id)` of each accepted run event, in order.
    fn transitions(&self) -> Vec<(String, String, i64, String)> {
        self.runs()
            .map(|a| {
                let ev = &a.ev;
                let run = ev.get("run").and_then(|r| r.str_at("runId")).unwrap_or_default();
                (run.to_string(), ev.str_at("eventType").unwrap_or_default().to_string(), V::micros(ev.get("eventTime")), ev.str_at("event_id").unwrap_or_default().to_string())
            })
            .collect()
    }

    /// (subject references of the accepted predictions, to look up flags; data keys wanted:
    /// the subjects with a snapshot, and the key of each dead letter that may hold PII).
    fn refs(&self, period_ref: &str) -> (Vec<String>, Vec<String>) {
        let mut flags: Vec<String> = Vec::new();
        let mut deks: Vec<String> = Vec::new();
        let mut seen_f = HashSet::new();
        let mut seen_d = HashSet::new();
        for r in &self.rejected {
            if r.kind.is_empty() || r.kind == "inference" {
                let k = if r.subject_ref.is_empty() { period_ref } else { &r.subject_ref };
                if seen_d.insert(k.to_string()) {
                    deks.push(k.to_string());
                }
            }
        }
        for a in self.accepted.iter().filter(|a| a.kind == "inference") {
            if seen_f.insert(a.subject_ref.clone()) {
                flags.push(a.subject_ref.clone());
            }
            if a.snapshot.is_some() && seen_d.insert(a.subject_ref.clone()) {
                deks.push(a.subject_ref.clone());
            }
        }
        (flags, deks)
    }

    /// The model-lineage keys the batch reads (its predictions' model versions and its training events').
    fn model_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for a in &self.accepted {
            let key = match a.kind {
                "inference" => Some(enrich::model_key(a.ev.str_at("model_name").unwrap_or_default(), a.ev.str_at("model_version").unwrap_or_default())),
                "training" => enrich::training_lineage(&a.ev).map(|(k, _)| k),
                _ => None,
            };
            if let Some(k) = key {
                if seen.insert(k.clone()) {
                    out.push(k);
                }
            }
        }
        out
    }

    /// Step 2. `verdicts`: one per [`Batch::transitions`] entry ("" = no anomaly); `deks`: data
    /// key by reference (None: erased); `table`: the model-lineage entries of [`Batch::model_keys`]
    /// (absent: none). Returns (sealed snapshots to store, counters, table updates).
    #[allow(clippy::too_many_arguments)]
    fn route<'py>(
        &mut self,
        py: Python<'py>,
        verdicts: Vec<String>,
        flagged: HashSet<String>,
        deks: &Bound<'py, PyDict>,
        table: &Bound<'py, PyDict>,
        now_s: f64,
        period_ref: &str,
    ) -> PyResult<(Vec<Bound<'py, PyBytes>>, Bound<'py, PyDict>, Vec<(String, PyObject)>)> {
        if self.routed.is_some() {
            return Err(PyValueError::new_err("batch already routed"));
        }
        let mut keys: HashMap<String, Option<Vec<u8>>> = HashMap::with_capacity(deks.len());
        for (k, v) in deks.iter() {
            keys.insert(k.extract()?, opt_bytes(&v)?);
        }
        let deks = keys;
        let mut lookup: HashMap<String, V> = HashMap::with_capacity(table.len());
        for (k, v) in table.iter() {
            if !v.is_none() {
                lookup.insert(k.extract()?, value::from_py(&v)?);
            }
        }
        let cfg = self.cfg.clone();
        let (routed, updates, blobs) = py
            .allow_threads(|| catch_unwind(AssertUnwindSafe(|| self.route_inner(&cfg, verdicts, &flagged, &deks, lookup, now_s, period_ref))))
            .map_err(|_| PyRuntimeError::new_err("panic while routing the batch"))?;
        let out_blobs: Vec<Bound<'py, PyBytes>> = blobs.iter().map(|b| PyBytes::new(py, b)).collect();
        self.routed = Some(routed);
        let counters = PyDict::new(py);
        for (k, v) in &self.counters {
            counters.set_item(k, v)?;
        }
        let mut py_updates = Vec::with_capacity(updates.len());
        for (k, v) in updates {
            py_updates.push((k, value::to_py(py, &v)?));
        }
        Ok((out_blobs, counters, py_updates))
    }

    /// Step 3: `stored` is `(pointer, sha256)` of each snapshot of [`Batch::route`], in order.
    /// Returns every output record as `(topic, key, value, headers | None, hold prediction id | None)`:
    /// dead letters, then holds, then graph records.
    fn finish<'py>(&mut self, py: Python<'py>, stored: Vec<(String, String)>) -> PyResult<Bound<'py, PyList>> {
        let Some(mut routed) = self.routed.take() else {
            return Err(PyValueError::new_err("batch not routed"));
        };
        if stored.len() != routed.captured.len() {
            return Err(PyValueError::new_err(format!("{} snapshots stored for {} captured", stored.len(), routed.captured.len())));
        }
        let cfg = self.cfg.clone();
        let accepted = std::mem::take(&mut self.accepted);
        let built = py
            .allow_threads(|| catch_unwind(AssertUnwindSafe(|| finish_inner(&mut routed, &accepted, stored))))
            .map_err(|_| PyRuntimeError::new_err("panic while building the batch's records"))?;
        let out = PyList::empty(py);
        for (mi, value, headers) in &routed.dead_letters {
            let m = &self.msgs[*mi];
            let hs = PyList::empty(py);
            for (k, v) in headers {
                hs.append((k, PyBytes::new(py, v)))?;
            }
            out.append((&cfg.deadletter_topic, m.key.as_deref().map(|k| PyBytes::new(py, k)), PyBytes::new(py, value), hs, py.None()))?;
        }
        let (holds, graphs, facts) = built.map_err(PyValueError::new_err)?;
        self.facts = facts;
        for (pid, value) in holds {
            out.append((&cfg.hold_topic, PyBytes::new(py, pid.as_bytes()), PyBytes::new(py, &value), py.None(), pid))?;
        }
        for (key, value) in graphs {
            out.append((&cfg.graph_topic, PyBytes::new(py, key.as_bytes()), PyBytes::new(py, &value), py.None(), py.None()))?;
        }
        Ok(out)
    }

    /// What the completeness windows read of each graph record `finish` built, in its order
    /// (see `graph::record_facts`); handed over once.
    fn window_facts(&mut self) -> Vec<graph::Facts> {
        std::mem::take(&mut self.facts)
    }
}

impl Batch {
    #[allow(clippy::too_many_arguments)]
    fn route_inner(
        &mut self,
        cfg: &Config,
        verdicts: Vec<String>,
        flagged: &HashSet<String>,
        deks: &HashMap<String, Option<Vec<u8>>>,
        table: HashMap<String, V>,
        now_s: f64,
        period_ref: &str,
    ) -> (Routed, Vec<(String, V)>, Vec<Vec<u8>>) {
        // Run anomalies: the verdicts follow the order of the accepted run events.
        let mut anomalies = 0u64;
        let mut verdicts = verdicts.into_iter();
        for a in self.accepted.iter_mut().filter(|a| a.kind != "inference") {
            if let Some(v) = verdicts.next() {
                if !v.is_empty() {
                    a.ev.set("run_anomaly", V::Str(v));
                    anomalies += 1;
                }
            }
        }
        if anomalies > 0 {
            self.count("run.anomaly".into(), anomalies);
        }
        // Dead letters: anything that may hold PII is sealed.
        let now_ms = (now_s * 1000.0) as i64;
        let mut dead_letters = Vec::with_capacity(self.rejected.len());
        let mut dlq_counts: Vec<String> = Vec::with_capacity(self.rejected.len());
        for r in &self.rejected {
            let m = &self.msgs[r.msg];
            let mut key_ref = "";
            let mut value = m.value.clone();
            let mut erased = false;
            if r.kind.is_empty() || r.kind == "inference" {
                key_ref = if r.subject_ref.is_empty() { period_ref } else { &r.subject_ref };
                match deks.get(key_ref).and_then(|d| d.as_deref()) {
                    None => {
                        value = Vec::new();
                        erased = true;
                    }
                    Some(dek) => value = pii::seal_dead_letter(dek, &value, &m.topic, m.partition, m.offset),
                }
            }
            let headers = pii::dead_letter_headers(&m.headers, r.reason, &r.detail, &m.topic, m.partition, m.offset, now_ms, key_ref, erased);
            dead_letters.push((r.msg, value, headers));
            dlq_counts.push(format!("dlq.{}", r.reason));
        }
        for name in dlq_counts {
            self.count(name, 1);
        }
        // Enrich, sample, seal; the batch's own table updates apply in consumption order.
        let mut written: HashMap<String, V> = HashMap::new();
        let mut updates: Vec<(String, V)> = Vec::new();
        let mut infos: Vec<V> = Vec::new();
        let mut holds = Vec::new();
        let mut pending = Vec::with_capacity(self.accepted.len());
        let mut captured = Vec::new();
        let mut blobs = Vec::new();
        let mut names: Vec<String> = Vec::with_capacity(self.accepted.len() * 2);
        for (ai, a) in self.accepted.iter_mut().enumerate() {
            let m = &self.msgs[a.msg];
            let (corr, source) = enrich::correlation_id(a.kind, &a.ev, &m.headers);
            a.ev.set("correlation_id", V::Str(corr.clone()));
            let mut info_at = None;
            if a.kind == "training" {
                if let Some((key, new)) = enrich::training_lineage(&a.ev) {
                    let current = written.get(&key).or_else(|| table.get(&key));
                    let merged = enrich::merge_lineage(current, new);
                    updates.push((key.clone(), merged.dup()));
                    written.insert(key, merged);
                }
            } else if a.kind == "inference" {
                let key = enrich::model_key(a.ev.str_at("model_name").unwrap_or_default(), a.ev.str_at("model_version").unwrap_or_default());
                let entry = written.get(&key).or_else(|| table.get(&key));
                let (tier, reason) = enrich::decide(&a.ev, &cfg.sampling, flagged.contains(&a.subject_ref));
                let mut info = enrich::inference_lineage(&mut a.ev, entry, &a.subject_ref, a.snapshot.as_ref(), source, tier, &reason);
                let snapshot = a.snapshot.take();
                if let Some(snap) = snapshot {
                    match deks.get(&a.subject_ref).and_then(|d| d.as_deref()) {
                        None => info.set("snapshot_status", V::s("subject_erased")),
                        Some(dek) => {
                            let pid = a.ev.str_at("prediction_id").unwrap_or_default().to_string();
                            let blob = pii::seal_snapshot(dek, &a.subject_ref, &pid, &snap);
                            info.set("snapshot_status", V::s("held"));
                            if tier != "routine" {
                                captured.push(infos.len());
                                blobs.push(blob.clone());
                            }
                            let sealed = String::from_utf8(blob).unwrap_or_default();
                            holds.push((pid, hold_event(&a.ev), infos.len(), corr.clone(), sealed));
                        }
                    }
                }
                names.push(format!("tier.{tier}"));
                info_at = Some(infos.len());
                infos.push(info);
            }
            pending.push((ai, corr, info_at));
            names.push(format!("accepted.{}", a.kind));
        }
        for name in names {
            self.count(name, 1);
        }
        (Routed { dead_letters, holds, pending, infos, captured }, updates, blobs)
    }
}

/// The event as a hold record carries it: event times as integer microseconds.
fn hold_event(ev: &V) -> V {
    let mut out = ev.dup();
    for k in ["eventTime", "event_time"] {
        if let Some(V::Ts(n)) = out.get(k) {
            let n = *n;
            out.set(k, V::Int(n));
        }
    }
    out
}

type Built = (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>, Vec<graph::Facts>);

fn finish_inner(routed: &mut Routed, accepted: &[Accepted], stored: Vec<(String, String)>) -> Result<Built, String> {
    for (&i, (pointer, sha)) in routed.captured.iter().zip(stored) {
        let info = &mut routed.infos[i];
        info.set("snapshot_pointer", V::Str(pointer));
        info.set("snapshot_sha256", V::Str(sha));
        info.set("snapshot_status", V::s("stored"));
    }
    for info in routed.infos.iter_mut() {
        let full = info.str_at("tier") == Some("routine") || info.get("snapshot_pointer").is_some_and(V::truthy);
        let joined = info.get("training_run_id").is_some_and(V::truthy) && info.get("feature_sets").is_some_and(V::truthy);
        info.set("lineage_complete", V::Bool(joined && full));
    }
    let mut holds = Vec::with_capacity(routed.holds.len());
    for (pid, event, i, corr, sealed) in routed.holds.drain(..) {
        let doc = V::obj([("sealed", V::Str(sealed)), ("event", event), ("inference", routed.infos[i].dup()), ("correlation_id", V::Str(corr))]);
        holds.push((pid, value::to_json(&doc)?));
    }
    let mut graphs = Vec::with_capacity(routed.pending.len());
    let mut facts = Vec::with_capacity(routed.pending.len());
    for (ai, corr, info) in &routed.pending {
        let a = &accepted[*ai];
        let info = info.map(|i| &routed.infos[i]);
        graphs.push((a.ev.str_at("event_id").unwrap_or_default().to_string(), graph::build_record(a.kind, &a.ev, corr, info)?));
        facts.push(graph::record_facts(a.kind, &a.ev, info));
    }
    Ok((holds, graphs, facts))
}
