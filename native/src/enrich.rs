//! Enrichment and sampling: deterministic correlation ids, the model-version -> training join,
//! and the tiered sampling decision (the rules are explained in README "Processing, sampling and PII").
//!
//! Correlation id, first match wins (so a replay yields the same id): header `correlation_id`;
//! the event's own `correlation_id`; the W3C `traceparent` header's trace id as a UUID; derived,
//! a UUIDv5 of the root run (run events) or of model version + prediction id (inference events).
use crate::decode::V;
use crate::openlineage::pytext::{float_repr, py_str, py_str_opt};
use crate::value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Namespace of derived ids: changing it would change every derived correlation id.
const CORRELATION_NS: [u8; 16] = [
    0x8f, 0x0a, 0x3c, 0x5e, 0x2d, 0x4b, 0x5e, 0x61, 0x9a, 0x7c, 0x4b, 0x1d, 0x2e, 0x3f, 0x5a, 0x60,
];

type Headers = [(String, Option<Vec<u8>>)];

/// The first header `name` with a non-empty value, as ASCII text (None when it is not ASCII).
fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    for (k, v) in headers {
        if k == name {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                return if v.is_ascii() { std::str::from_utf8(v).ok() } else { None };
            }
        }
    }
    None
}

/// 1-128 printable ASCII characters (a final newline is tolerated, as the `$` of the rule's pattern does).
fn header_token(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    (1..=128).contains(&body.len()) && body.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn hex_lower(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The trace id of a `traceparent` value (`vv-<32 hex>-<16 hex>-ff`), stripped and lower-cased first.
fn trace_id(tp: &str) -> Option<String> {
    let t = tp.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f')).to_ascii_lowercase();
    let t = t.strip_suffix('\n').unwrap_or(&t);
    let parts: Vec<&str> = t.split('-').collect();
    let ok = parts.len() == 4
        && [2usize, 32, 16, 2].iter().zip(&parts).all(|(n, p)| p.len() == *n && hex_lower(p));
    if ok && parts[1] != "0".repeat(32) {
        Some(parts[1].to_string())
    } else {
        None
    }
}

/// A UUID's 16 bytes in the 8-4-4-4-12 hex form.
pub fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(x >> 4) as usize] as char);
        out.push(HEX[(x & 15) as usize] as char);
    }
    out
}

/// RFC 4122 version 5 (SHA-1) UUID of `name` in `ns`.
pub fn uuid5(ns: &[u8; 16], name: &str) -> String {
    let mut h = Sha1::new();
    h.update(ns);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// The root run of a run: the `parent` facet's root run, else its parent run, else the run itself.
fn root_run(run: &V) -> String {
    if let Some(facet) = run.get("facets").filter(|f| f.truthy()).and_then(|f| f.get("parent")).filter(|f| f.truthy()) {
        let root = facet.as_str().and_then(|t| value::from_json(t.as_bytes()).ok()).and_then(|parent| parent_root(&parent));
        if let Some(root) = root.filter(|r| !r.is_empty()) {
            return root;
        }
    }
    match run.get("parentRunId").filter(|p| p.truthy()) {
        Some(p) => py_str(p),
        None => run.get("runId").map(py_str).unwrap_or_default(),
    }
}

/// `(parent.get("root") or {}).get("run", {}).get("runId") or parent.get("run", {}).get("runId")`,
/// a string only; None where Python's lookups would fail (a value that is not an object).
fn parent_root(parent: &V) -> Option<String> {
    fn run_id(holder: &V) -> Result<Option<&V>, ()> {
        match holder.get("run") {
            None => Ok(None),
            Some(run) if run.is_object() => Ok(run.get("runId")),
            Some(_) => Err(()),
        }
    }
    if !parent.is_object() {
        return None;
    }
    let first = match parent.get("root").filter(|r| r.truthy()) {
        None => None,
        Some(root) if root.is_object() => run_id(root).ok()?,
        Some(_) => return None,
    };
    let chosen = match first.filter(|v| v.truthy()) {
        Some(v) => v,
        None => run_id(parent).ok()??,
    };
    chosen.as_str().map(str::to_string)
}

/// (correlation id, where it came from: header|event|traceparent|derived).
pub fn correlation_id(kind: &str, ev: &V, headers: &Headers) -> (String, &'static str) {
    if let Some(given) = header(headers, "correlation_id").filter(|g| header_token(g)) {
        return (given.to_string(), "header");
    }
    if let Some(own) = ev.str_at("correlation_id").filter(|o| header_token(o)) {
        return (own.to_string(), "event");
    }
    if let Some(id) = header(headers, "traceparent").and_then(trace_id) {
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        return (uuid_text(&b), "traceparent");
    }
    let name = if kind == "inference" {
        let f = |k: &str| py_str_opt(ev.get(k));
        format!("prediction:{}@{}/{}", f("model_name"), f("model_version"), f("prediction_id"))
    } else {
        format!("run:{}", ev.get("run").map(root_run).unwrap_or_default())
    };
    (uuid5(&CORRELATION_NS, &name), "derived")
}

pub fn model_key(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}


fn feature_set_name(fs: &V) -> String {
    let f = |k: &str| py_str_opt(fs.get(k));
    format!("{}@{}", f("name"), f("version"))
}

/// The table entry a training event contributes: `model@version` -> its training run and feature sets.
pub fn training_lineage(ev: &V) -> Option<(String, V)> {
    let tr = ev.get("training").filter(|t| t.truthy())?;
    let state = ev.str_at("eventType").unwrap_or_default();
    if state == "FAIL" || state == "ABORT" {
        return None;
    }
    let f = |k: &str| py_str_opt(tr.get(k));
    let key = model_key(&f("model_name"), &f("model_version"));
    let mut sets: Vec<String> = match tr.get("feature_sets") {
        Some(V::Arr(items)) => items.iter().map(feature_set_name).collect(),
        _ => Vec::new(),
    };
    sets.sort();
    sets.dedup();
    let run = ev.get("run").and_then(|r| r.get("runId")).map(V::dup).unwrap_or(V::Null);
    Some((
        key,
        V::obj([
            ("training_run_id", run),
            ("feature_sets", V::Arr(sets.into_iter().map(V::Str).collect())),
            ("state", V::s(state)),
            ("event_time", V::Int(V::micros(ev.get("eventTime")))),
        ]),
    ))
}

/// A COMPLETE entry is never replaced by an earlier START/RUNNING of the same run.
pub fn merge_lineage(current: Option<&V>, new: V) -> V {
    if let Some(cur) = current.filter(|c| c.truthy()) {
        let same_run = match (cur.get("training_run_id"), new.get("training_run_id")) {
            (Some(a), Some(b)) => py_str(a) == py_str(b) && std::mem::discriminant(a) == std::mem::discriminant(b),
            _ => false,
        };
        if same_run && cur.str_at("state") == Some("COMPLETE") && new.str_at("state") != Some("COMPLETE") {
            return cur.dup();
        }
    }
    new
}

/// Tiered sampling settings (`settings.sampling`).
pub struct Sampling {
    pub risk_threshold: f64,
    pub consequential_decisions: Vec<String>,
    pub regulated_classes: Vec<String>,
    pub routine_rate: f64,
}

/// Uniform in [0, 1), a pure function of the prediction id.
pub fn sample_point(prediction_id: &str) -> f64 {
    let d = Sha256::digest(prediction_id.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]));
    n as f64 / 18_446_744_073_709_551_616.0
}

fn as_float(v: Option<&V>) -> f64 {
    match v {
        Some(V::Float(f)) => *f,
        Some(V::Int(n)) => *n as f64,
        Some(V::Bool(b)) => f64::from(u8::from(*b)),
        _ => f64::NAN,
    }
}

fn repr(f: f64) -> String {
    let mut s = String::new();
    float_repr(f, &mut s);
    s
}

/// (tier, reason): consequential (risk, decision type, regulated class), flagged, sampled or routine.
pub fn decide(ev: &V, s: &Sampling, subject_flagged: bool) -> (&'static str, String) {
    let score = as_float(ev.get("risk_score"));
    let decision = py_str_opt(ev.get("decision_type")).to_lowercase();
    let regulated = ev.str_at("regulatory_class").unwrap_or_default().to_lowercase();
    if score >= s.risk_threshold {
        return ("consequential", format!("risk_score {score:.3} >= {}", repr(s.risk_threshold)));
    }
    if s.consequential_decisions.iter().any(|d| *d == decision) {
        return ("consequential", format!("decision_type {decision}"));
    }
    if !regulated.is_empty() && s.regulated_classes.iter().any(|c| *c == regulated) {
        return ("consequential", format!("regulatory_class {regulated}"));
    }
    if subject_flagged {
        return ("flagged", "subject flagged for review".into());
    }
    let point = sample_point(&ev.get("prediction_id").map(py_str).unwrap_or_default());
    if point < s.routine_rate {
        ("sampled", format!("hash {point:.5} < rate {}", repr(s.routine_rate)))
    } else {
        ("routine", format!("hash {point:.5} >= rate {}", repr(s.routine_rate)))
    }
}

/// The `inference` object of a prediction's graph record. Joins the prediction to its model
/// version's training run (`entry`, from the model-lineage table) unless the event names one, and
/// writes the run and the subject reference into `ev`. Snapshot fields start empty.
pub fn inference_lineage(
    ev: &mut V,
    entry: Option<&V>,
    subject_ref: &str,
    snapshot: Option<&V>,
    correlation_source: &str,
    tier: &str,
    tier_reason: &str,
) -> V {
    let given = ev.get("training_run_id").filter(|g| g.truthy()).map(py_str).unwrap_or_default();
    let entry = entry.filter(|e| e.truthy());
    let run = if !given.is_empty() {
        given.clone()
    } else {
        entry.and_then(|e| e.get("training_run_id")).map(py_str).unwrap_or_default()
    };
    ev.set("training_run_id", if run.is_empty() { V::Null } else { V::Str(run.clone()) });
    ev.set("subject_ref", V::s(subject_ref));
    let mut sets: Vec<String> = match entry.and_then(|e| e.get("feature_sets")) {
        Some(V::Arr(items)) => items.iter().map(py_str).collect(),
        _ => Vec::new(),
    };
    if let Some(fs) = snapshot.and_then(|s| s.get("feature_set")).filter(|f| f.truthy()) {
        sets.push(feature_set_name(fs));
    }
    sets.sort();
    sets.dedup();
    let text = |k: &str| ev.get(k).map(V::dup).unwrap_or(V::Null);
    V::obj([
        ("prediction_id", text("prediction_id")),
        ("model_name", text("model_name")),
        ("model_version", text("model_version")),
        ("endpoint", text("endpoint")),
        ("decision_type", text("decision_type")),
        ("risk_score", V::Float(as_float(ev.get("risk_score")))),
        ("regulatory_class", match ev.get("regulatory_class").filter(|r| r.truthy()) {
            Some(r) => r.dup(),
            None => V::s(""),
        }),
        ("subject_ref", V::s(subject_ref)),
        ("training_run_id", V::Str(run.clone())),
        ("training_run_source", V::s(if !given.is_empty() { "event" } else if !run.is_empty() { "table" } else { "" })),
        ("feature_sets", V::Arr(sets.into_iter().map(V::Str).collect())),
        ("tier", V::s(tier)),
        ("tier_reason", V::s(tier_reason)),
        ("snapshot_pointer", V::s("")),
        ("snapshot_sha256", V::s("")),
        ("snapshot_status", V::s("none")),
        ("lineage_complete", V::Bool(false)),
        ("unknown_model_version", V::Bool(entry.is_none())),
        ("correlation_source", V::s(correlation_source)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_the_8_4_4_4_12_form() {
        let b: [u8; 16] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21];
        assert_eq!(uuid_text(&b), "12345678-9abc-def0-0fed-cba987654321");
        assert_eq!(uuid_text(&[0; 16]), "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn uuid5_matches_python() {
        // uuid.uuid5(uuid.UUID("8f0a3c5e-2d4b-5e61-9a7c-4b1d2e3f5a60"), "run:abc")
        assert_eq!(uuid5(&CORRELATION_NS, "run:abc").len(), 36);
        assert_eq!(&uuid5(&CORRELATION_NS, "run:abc")[14..15], "5");
    }

    #[test]
    fn traceparent() {
        assert_eq!(trace_id(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01 ").as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("00-4bf9-00f067aa0ba902b7-01"), None);
    }
}
