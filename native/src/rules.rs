//! The rule set deciding what the pipeline stores, over decoded records (README "Sealed at the
//! source, and what is refused"). Three outcomes: refused (a dead-letter reason), incomplete (a
//! recommended field missing: stored and flagged), dropped facet (over the facet limit or not a
//! JSON object: removed from the stored record with a note). The SDK's client-side check
//! (`lineage/rules.py`) is held to this by the parity tests.
use crate::decode::V;
use crate::openlineage::jsonerr;
use crate::openlineage::pytext::{py_repr, py_space};
use crate::value::{self, Refusal};
use sha2::{Digest, Sha256};

const US_PER_DAY: i64 = 86_400 * 1_000_000;

/// The limits of the rule set (`settings.validation`).
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_future_us: i64,
    pub max_past_us: Option<i64>,
    pub max_snapshot_values: usize,
    pub max_facet_bytes: usize,
}

struct Dropped {
    at: String,
    name: String,
    size: usize,
    sha256: String,
    why: &'static str,
}

/// What an accepted event lacks or loses on the way into the store.
#[derive(Default)]
pub struct Findings {
    incomplete: Vec<&'static str>,
    dropped: Vec<Dropped>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.incomplete.is_empty() && self.dropped.is_empty()
    }
}

fn refuse(reason: &'static str, detail: String) -> Refusal {
    Refusal::new(reason, detail)
}

pub fn check_size(size: usize, l: &Limits) -> Result<(), Refusal> {
    if size > l.max_message_bytes {
        return Err(refuse("oversize", format!("message is {size} bytes, limit {}", l.max_message_bytes)));
    }
    Ok(())
}

fn show(v: Option<&V>) -> String {
    let text = v.map(py_repr).unwrap_or_else(|| "None".into());
    if text.chars().count() <= 40 {
        text
    } else {
        let mut cut: String = text.chars().take(37).collect();
        cut.push_str("...");
        cut
    }
}

/// A pattern's `$`: the end, or a newline that ends the text.
fn body_of(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

fn is_uuid(s: &str) -> bool {
    let lower = s.to_lowercase();
    let b = body_of(&lower).as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

fn check_uuid(v: Option<&V>, what: &str) -> Result<(), Refusal> {
    match v {
        Some(V::Str(s)) if is_uuid(s) => Ok(()),
        _ => Err(refuse("bad_id", format!("{what} must be a UUID, got {}", show(v)))),
    }
}

fn is_token(s: &str) -> bool {
    let b = body_of(s);
    (1..=256).contains(&b.chars().count())
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"._:@/+=-".contains(&c))
}

fn check_token(v: Option<&V>, what: &str) -> Result<(), Refusal> {
    match v {
        Some(V::Str(s)) if is_token(s) => Ok(()),
        _ => Err(refuse("bad_id", format!("{what} must be 1-256 characters of [A-Za-z0-9._:@/+=-], got {}", show(v)))),
    }
}

fn present(v: Option<&V>) -> bool {
    matches!(v, Some(V::Str(s)) if s.chars().any(|c| !py_space(c)))
}

fn required(v: Option<&V>, what: &str) -> Result<(), Refusal> {
    if present(v) {
        Ok(())
    } else {
        Err(refuse("missing_field", format!("{what} is required and empty")))
    }
}

fn check_time(v: Option<&V>, now_us: i64, l: &Limits, what: &str) -> Result<(), Refusal> {
    let micros = match v {
        Some(V::Int(n)) | Some(V::Ts(n)) => *n as i128,
        _ => return Err(refuse("missing_field", format!("{what} is required"))),
    };
    let now = now_us as i128;
    if micros > now + l.max_future_us as i128 {
        return Err(refuse("time_future", format!("{what} is {:.0}s ahead of the pipeline clock", (micros - now) as f64 / 1e6)));
    }
    if let Some(past) = l.max_past_us {
        if micros < now - past as i128 {
            return Err(refuse("time_past", format!("{what} is {:.0} days old", (now - micros) as f64 / US_PER_DAY as f64)));
        }
    }
    Ok(())
}

/// Whether JSON text parses (as orjson would) to an object.
fn json_object(data: &[u8]) -> bool {
    if std::str::from_utf8(data).is_err() || jsonerr::max_depth(data) > jsonerr::JSON_DEPTH {
        return false;
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    de.disable_recursion_limit();
    let mut values = de.into_iter::<serde_json::Value>();
    matches!(values.next(), Some(Ok(serde_json::Value::Object(_)))) && values.next().is_none()
}

fn facets(v: Option<&V>, at: &str, l: &Limits, found: &mut Findings) {
    let Some(map) = v else { return };
    for (name, value) in map.entries() {
        let text = match value {
            V::Str(s) => s.as_bytes().to_vec(),
            other => value::to_json(other).unwrap_or_default(),
        };
        let why = if text.len() > l.max_facet_bytes {
            "over_limit"
        } else if !json_object(&text) {
            "not_an_object"
        } else {
            continue;
        };
        let sha: String = Sha256::digest(&text).iter().map(|b| format!("{b:02x}")).collect();
        found.dropped.push(Dropped { at: at.to_string(), name: name.to_string(), size: text.len(), sha256: sha, why });
    }
}

fn items(v: Option<&V>) -> &[V] {
    match v {
        Some(V::Arr(a)) => a,
        _ => &[],
    }
}

fn check_run_event(kind: &str, ev: &V, now_us: i64, l: &Limits) -> Result<Findings, Refusal> {
    let mut found = Findings::default();
    check_uuid(ev.get("event_id"), "event_id")?;
    let (run, job) = (ev.get("run").unwrap_or(&V::Null), ev.get("job").unwrap_or(&V::Null));
    check_uuid(run.get("runId"), "run.runId")?;
    if let Some(p) = run.get("parentRunId").filter(|p| !p.is_null()) {
        check_uuid(Some(p), "run.parentRunId")?;
    }
    required(ev.get("producer"), "producer")?;
    required(job.get("namespace"), "job.namespace")?;
    required(job.get("name"), "job.name")?;
    check_time(ev.get("eventTime"), now_us, l, "eventTime")?;
    facets(run.get("facets"), "run", l, &mut found);
    facets(job.get("facets"), "job", l, &mut found);
    for side in ["inputs", "outputs"] {
        for (i, ds) in items(ev.get(side)).iter().enumerate() {
            required(ds.get("namespace"), &format!("{side}[{i}].namespace"))?;
            required(ds.get("name"), &format!("{side}[{i}].name"))?;
            facets(ds.get("facets"), &format!("{side}[{i}]"), l, &mut found);
        }
    }
    if kind == "feature" {
        let fs = ev.get("feature_set").unwrap_or(&V::Null);
        required(fs.get("name"), "feature_set.name")?;
        required(fs.get("version"), "feature_set.version")?;
    } else if kind == "training" {
        let tr = ev.get("training").unwrap_or(&V::Null);
        required(tr.get("model_name"), "training.model_name")?;
        required(tr.get("model_version"), "training.model_version")?;
        for (i, fs) in items(tr.get("feature_sets")).iter().enumerate() {
            required(fs.get("name"), &format!("training.feature_sets[{i}].name"))?;
            required(fs.get("version"), &format!("training.feature_sets[{i}].version"))?;
        }
        if !present(tr.get("code_version")) || tr.str_at("code_version") == Some("unknown") {
            found.incomplete.push("training.code_version");
        }
        if ev.str_at("eventType") == Some("COMPLETE") && !present(tr.get("artifact_digest")) {
            found.incomplete.push("training.artifact_digest");
        }
    }
    Ok(found)
}

fn len_of(v: &V) -> Result<usize, Refusal> {
    Ok(match v {
        V::Null | V::Bool(false) => 0,
        V::Str(s) => s.chars().count(),
        V::Arr(a) => a.len(),
        V::Map(_) | V::Rec(_) => v.entries().len(),
        V::Bytes(b) => b.len(),
        _ => return Err(refuse("internal_error", "TypeError while processing".into())),
    })
}

fn check_inference(ev: &V, subject_id: Option<&V>, snapshot: Option<&V>, now_us: i64, l: &Limits) -> Result<Findings, Refusal> {
    check_uuid(ev.get("event_id"), "event_id")?;
    check_token(ev.get("prediction_id"), "prediction_id")?;
    for name in ["producer", "endpoint", "model_name", "model_version", "decision_type"] {
        required(ev.get(name), name)?;
    }
    if !present(subject_id) {
        return Err(refuse("missing_field", "subject_id is required and empty".into()));
    }
    let score = match ev.get("risk_score") {
        Some(V::Int(n)) => Some(*n as f64),
        Some(V::Float(f)) => Some(*f),
        _ => None,
    };
    if !score.is_some_and(|s| (0.0..=1.0).contains(&s)) {
        return Err(refuse("out_of_range", "risk_score must be a number in [0, 1]".into()));
    }
    check_time(ev.get("event_time"), now_us, l, "event_time")?;
    if let Some(snap) = snapshot.filter(|s| !s.is_null()) {
        if !snap.is_object() {
            return Err(refuse("internal_error", "AttributeError while processing".into()));
        }
        let count = match snap.get("values").filter(|v| v.truthy()) {
            Some(v) => len_of(v)?,
            None => 0,
        };
        if count > l.max_snapshot_values {
            return Err(refuse("oversize", format!("feature snapshot has {count} values, limit {}", l.max_snapshot_values)));
        }
        if let Some(fs) = snap.get("feature_set").filter(|f| !f.is_null()) {
            if !fs.is_object() {
                return Err(refuse("internal_error", "AttributeError while processing".into()));
            }
            required(fs.get("name"), "feature_snapshot.feature_set.name")?;
            required(fs.get("version"), "feature_snapshot.feature_set.version")?;
        }
    }
    Ok(Findings::default())
}

/// Refuse, or return what the stored record will lack; never mutates.
pub fn check_event(kind: &str, ev: &V, now_us: i64, l: &Limits, subject_id: Option<&V>, snapshot: Option<&V>) -> Result<Findings, Refusal> {
    if kind == "inference" {
        check_inference(ev, subject_id, snapshot, now_us, l)
    } else {
        check_run_event(kind, ev, now_us, l)
    }
}

/// Drop the noted facets from `ev` and record the findings under `quality`.
pub fn apply_findings(ev: &mut V, f: &Findings) {
    if f.is_empty() {
        return;
    }
    for d in &f.dropped {
        let holder = if d.at == "run" || d.at == "job" {
            ev.get_mut(&d.at)
        } else {
            let (side, rest) = d.at.split_once('[').unwrap_or((&d.at, ""));
            let i: usize = rest.trim_end_matches(']').parse().unwrap_or(usize::MAX);
            match ev.get_mut(side) {
                Some(V::Arr(a)) => a.get_mut(i),
                _ => None,
            }
        };
        if let Some(facets) = holder.and_then(|h| h.get_mut("facets")) {
            facets.remove(&d.name);
        }
    }
    let dropped = f
        .dropped
        .iter()
        .map(|d| {
            V::obj([
                ("where", V::s(d.at.clone())),
                ("name", V::s(d.name.clone())),
                ("bytes", V::Int(d.size as i64)),
                ("sha256", V::s(d.sha256.clone())),
                ("why", V::s(d.why)),
            ])
        })
        .collect();
    ev.set(
        "quality",
        V::obj([
            ("incomplete", V::Arr(f.incomplete.iter().map(|s| V::s(*s)).collect())),
            ("dropped_facets", V::Arr(dropped)),
        ]),
    );
}
