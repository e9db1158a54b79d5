//! The graph record of one accepted event (README "How it fits together"): its nodes, edges and
//! column edges, the payload, and for a prediction its inference lineage, as the JSON document the
//! sink reads (`lineage.graph.GraphRecord.from_bytes`).
use crate::decode::V;
use crate::openlineage::pytext::{float_repr, py_str, py_str_opt};
use crate::value;

/// Run facet of a record converted from a static DatasetEvent / JobEvent.
const STATIC_FACET: &str = "static_lineage";

struct Node {
    id: String,
    node_type: &'static str,
    namespace: String,
    name: String,
    version: String,
    attributes: Vec<(String, V)>,
}

struct Edge {
    src: String,
    dst: String,
    edge_type: &'static str,
    run_id: String,
}

#[derive(PartialEq)]
pub(crate) struct ColumnEdge {
    src: String,
    src_column: String,
    dst: String,
    dst_column: String,
    ttype: String,
    subtype: String,
    description: String,
    masking: bool,
    dataset_wide: bool,
    run_id: String,
}

fn node(id: String, node_type: &'static str, namespace: &str, name: &str, version: &str, attributes: Vec<(String, V)>) -> Node {
    Node { id, node_type, namespace: namespace.to_string(), name: name.to_string(), version: version.to_string(), attributes }
}

fn edge(src: &str, dst: &str, edge_type: &'static str, run_id: &str) -> Edge {
    Edge { src: src.to_string(), dst: dst.to_string(), edge_type, run_id: run_id.to_string() }
}

/// `str(value or "")`.
fn text_or_empty(v: Option<&V>) -> String {
    match v.filter(|x| x.truthy()) {
        Some(x) => py_str(x),
        None => String::new(),
    }
}

fn s<'a>(v: &'a V, key: &str) -> &'a str {
    v.str_at(key).unwrap_or_default()
}

fn dataset_id(ns: &str, name: &str) -> String {
    format!("dataset:{ns}/{name}")
}

fn run_node_id(run: &str) -> String {
    format!("run:{run}")
}

/// A facet's value: JSON text parsed (None when it does not parse), anything else as it is.
fn facet(v: Option<&V>) -> Option<V> {
    match v? {
        V::Str(t) => value::from_json(t.as_bytes()).ok(),
        V::Bytes(b) => value::from_json(b).ok(),
        other => Some(other.dup()),
    }
}

fn facet_of(facets: Option<&V>, name: &str) -> Option<V> {
    facet(facets.filter(|f| f.truthy()).and_then(|f| f.get(name))).filter(V::is_object)
}

fn list(v: Option<&V>) -> &[V] {
    match v {
        Some(V::Arr(a)) => a,
        _ => &[],
    }
}

fn json_text(v: &V) -> V {
    V::Str(String::from_utf8(value::to_json(v).unwrap_or_default()).unwrap_or_default())
}

fn quality_attributes(ev: &V) -> Vec<(String, V)> {
    let mut out = Vec::new();
    let Some(q) = ev.get("quality").filter(|q| q.is_object()) else { return out };
    if let Some(inc) = q.get("incomplete").filter(|i| i.truthy()) {
        let parts: Vec<String> = list(Some(inc)).iter().map(py_str).collect();
        out.push(("incomplete".into(), V::Str(parts.join(","))));
    }
    if let Some(d) = q.get("dropped_facets").filter(|d| d.truthy()) {
        out.push(("dropped_facets".into(), json_text(d)));
    }
    out
}

fn processing_type(job_facets: Option<&V>) -> String {
    match facet_of(job_facets, "jobType").as_ref().and_then(|f| f.get("processingType")) {
        Some(V::Str(p)) => p.to_uppercase(),
        _ => String::new(),
    }
}

/// (run id, job namespace, job name) of a parent facet's `{run: {runId}, job: {namespace, name}}`.
fn run_ref(v: Option<&V>) -> Option<(String, String, String)> {
    let v = v.filter(|v| v.is_object())?;
    let run = v.get("run").filter(|r| r.is_object())?;
    let rid = match run.get("runId") {
        Some(V::Str(r)) if !r.is_empty() && r.chars().count() <= 256 => r.clone(),
        _ => return None,
    };
    let job = v.get("job").filter(|j| j.is_object());
    let part = |k: &str| job.and_then(|j| j.str_at(k)).unwrap_or_default().to_string();
    Some((rid, part("namespace"), part("name")))
}

fn symlinks(facets: Option<&V>) -> Vec<(String, V)> {
    let Some(links) = facet_of(facets, "symlinks") else { return Vec::new() };
    let Some(V::Arr(ids)) = links.get("identifiers") else { return Vec::new() };
    let ids: Vec<V> = ids
        .iter()
        .filter(|i| i.is_object() && i.get("namespace").is_some_and(V::truthy) && i.get("name").is_some_and(V::truthy))
        .map(|i| V::Str(dataset_id(&py_str_opt(i.get("namespace")), &py_str_opt(i.get("name")))))
        .collect();
    if ids.is_empty() {
        Vec::new()
    } else {
        vec![("symlinks".into(), json_text(&V::Arr(ids)))]
    }
}

fn datasets(items: &[V]) -> Vec<Node> {
    items
        .iter()
        .map(|d| node(dataset_id(s(d, "namespace"), s(d, "name")), "dataset", s(d, "namespace"), s(d, "name"), &text_or_empty(d.get("version")), symlinks(d.get("facets"))))
        .collect()
}

fn static_class(run: &V) -> &'static str {
    match facet_of(run.get("facets"), STATIC_FACET).as_ref().and_then(|f| f.str_at("eventClass")) {
        Some("DatasetEvent") => "DatasetEvent",
        Some("JobEvent") => "JobEvent",
        _ => "",
    }
}

fn dataset_attributes(facets: Option<&V>) -> Vec<(String, V)> {
    let mut out = Vec::new();
    if let Some(schema) = facet_of(facets, "schema") {
        if let Some(V::Arr(fields)) = schema.get("fields") {
            let rows: Vec<V> = fields
                .iter()
                .filter(|f| f.is_object())
                .map(|f| V::Arr(vec![V::Str(py_str_opt(f.get("name"))), V::Str(text_or_empty(f.get("type")))]))
                .collect();
            out.push(("schema".into(), json_text(&V::Arr(rows))));
        }
    }
    if let Some(owners) = facet_of(facets, "ownership") {
        if let Some(V::Arr(list)) = owners.get("owners") {
            let names: Vec<String> = list.iter().filter(|o| o.is_object()).map(|o| py_str_opt(o.get("name"))).collect();
            out.push(("owners".into(), V::Str(names.join(","))));
        }
    }
    if let Some(tags) = facet_of(facets, "tags") {
        if let Some(V::Arr(list)) = tags.get("tags") {
            let pairs: Vec<String> = list.iter().filter(|t| t.is_object()).map(|t| format!("{}={}", py_str_opt(t.get("key")), py_str_opt(t.get("value")))).collect();
            out.push(("tags".into(), V::Str(pairs.join(","))));
        }
    }
    for (k, v) in symlinks(facets) {
        set_attr(&mut out, k, v);
    }
    out
}

fn set_attr(attrs: &mut Vec<(String, V)>, k: String, v: V) {
    match attrs.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = v,
        None => attrs.push((k, v)),
    }
}

fn with_static(what: &str, rest: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut attrs = vec![("static".to_string(), V::s(what))];
    for (k, v) in rest {
        set_attr(&mut attrs, k, v);
    }
    attrs
}

fn static_rows(what: &'static str, ev: &V) -> (Vec<Node>, Vec<Edge>) {
    let mut ds = Vec::new();
    for side in ["inputs", "outputs"] {
        for d in list(ev.get(side)) {
            ds.push(node(dataset_id(s(d, "namespace"), s(d, "name")), "dataset", s(d, "namespace"), s(d, "name"), &text_or_empty(d.get("version")), with_static(what, dataset_attributes(d.get("facets")))));
        }
    }
    if what == "DatasetEvent" {
        return (ds, Vec::new());
    }
    let job = ev.get("job").unwrap_or(&V::Null);
    let job_node = node(format!("job:{}/{}", s(job, "namespace"), s(job, "name")), "job", s(job, "namespace"), s(job, "name"), "", with_static(what, quality_attributes(ev)));
    let n_in = list(ev.get("inputs")).len();
    let mut edges: Vec<Edge> = ds[..n_in].iter().map(|n| edge(&n.id, &job_node.id, "declared_input", "")).collect();
    edges.extend(ds[n_in..].iter().map(|n| edge(&job_node.id, &n.id, "declared_output", "")));
    let mut nodes = vec![job_node];
    nodes.extend(ds);
    (nodes, edges)
}

fn run_event_rows(kind: &str, ev: &V) -> (Vec<Node>, Vec<Edge>) {
    let job = ev.get("job").unwrap_or(&V::Null);
    let run = ev.get("run").unwrap_or(&V::Null);
    let rid = s(run, "runId");
    let what = static_class(run);
    if !what.is_empty() {
        return static_rows(what, ev);
    }
    let mut attributes = vec![("event_class".to_string(), V::s(kind)), ("event_type".to_string(), V::Str(text_or_empty(ev.get("eventType"))))];
    for (k, v) in quality_attributes(ev) {
        set_attr(&mut attributes, k, v);
    }
    let processing = processing_type(job.get("facets"));
    if !processing.is_empty() {
        set_attr(&mut attributes, "processing_type".into(), V::Str(processing));
    }
    let (jns, jname) = (s(job, "namespace"), s(job, "name"));
    let run_node = node(run_node_id(rid), "run", jns, jname, rid, attributes);
    let job_node = node(format!("job:{jns}/{jname}"), "job", jns, jname, "", Vec::new());
    let inputs = datasets(list(ev.get("inputs")));
    let outputs = datasets(list(ev.get("outputs")));
    let mut edges = vec![edge(&job_node.id, &run_node.id, "executes", rid)];
    let parent_facet = facet_of(run.get("facets"), "parent");
    let (parent, root) = match &parent_facet {
        Some(f) => (run_ref(Some(f)), run_ref(f.get("root"))),
        None => (None, None),
    };
    let parent_run = run.get("parentRunId").filter(|p| p.truthy());
    let mut extra = Vec::new();
    if parent_run.is_some() || parent.is_some() {
        let parent_id = match parent_run {
            Some(p) => py_str(p),
            None => parent.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
        };
        edges.push(edge(&run_node_id(&parent_id), &run_node.id, "parent_of", rid));
        if let Some((pid, pns, pname)) = &parent {
            if *pid == parent_id && !pns.is_empty() {
                extra.push(node(run_node_id(&parent_id), "run", pns, pname, &parent_id, vec![("stated_by".into(), V::s("child"))]));
            }
        }
    }
    if let Some((rid0, rns, rname)) = &root {
        if rid0 != rid {
            let parent_first = parent.as_ref().map(|p| p.0.as_str()).unwrap_or("");
            let declared = run.get("parentRunId").and_then(V::as_str);
            if rid0 != parent_first && Some(rid0.as_str()) != declared {
                edges.push(edge(&run_node_id(rid0), &run_node.id, "root_of", rid));
            }
            if !rns.is_empty() {
                extra.push(node(run_node_id(rid0), "run", rns, rname, rid0, vec![("stated_by".into(), V::s("child"))]));
            }
        }
    }
    edges.extend(inputs.iter().map(|n| edge(&n.id, &run_node.id, "read_by", rid)));
    edges.extend(outputs.iter().map(|n| edge(&run_node.id, &n.id, "produced", rid)));
    let run_id = run_node.id.clone();
    let mut nodes = vec![job_node, run_node];
    nodes.extend(inputs);
    nodes.extend(outputs);
    nodes.extend(extra);
    if kind == "feature" {
        if let Some(fs) = ev.get("feature_set").filter(|f| f.truthy()) {
            let features: Vec<String> = list(fs.get("features")).iter().map(py_str).collect();
            let id = format!("feature_set:{}@{}", py_str_opt(fs.get("name")), py_str_opt(fs.get("version")));
            nodes.push(node(id.clone(), "feature_set", "", s(fs, "name"), s(fs, "version"), vec![
                ("features".into(), V::Str(features.join(","))),
                ("entity".into(), V::Str(text_or_empty(fs.get("entity")))),
            ]));
            edges.push(edge(&run_id, &id, "produced", rid));
        }
    }
    if kind == "training" {
        if let Some(tr) = ev.get("training").filter(|t| t.truthy()) {
            let (mname, mver) = (s(tr, "model_name"), s(tr, "model_version"));
            let mv = format!("model_version:{}@{}", py_str_opt(tr.get("model_name")), py_str_opt(tr.get("model_version")));
            let mut attrs = vec![
                ("artifact_digest".to_string(), V::Str(text_or_empty(tr.get("artifact_digest")))),
                ("code_version".to_string(), tr.get("code_version").map(V::dup).unwrap_or_else(|| V::s(""))),
                ("training_run_id".to_string(), V::s(rid)),
            ];
            for (k, v) in quality_attributes(ev) {
                set_attr(&mut attrs, k, v);
            }
            nodes.push(node(mv.clone(), "model_version", "", mname, mver, attrs));
            let model = format!("model:{}", py_str_opt(tr.get("model_name")));
            nodes.push(node(model.clone(), "model", "", mname, "", Vec::new()));
            edges.push(edge(&run_id, &mv, "produced", rid));
            edges.push(edge(&mv, &model, "version_of", rid));
            for fs in list(tr.get("feature_sets")) {
                let fid = format!("feature_set:{}@{}", py_str_opt(fs.get("name")), py_str_opt(fs.get("version")));
                nodes.push(node(fid.clone(), "feature_set", "", s(fs, "name"), s(fs, "version"), Vec::new()));
                edges.push(edge(&fid, &run_id, "trained", rid));
            }
        }
    }
    (nodes, edges)
}

fn transformations(item: &V, legacy: Option<&V>) -> Vec<(String, String, String, bool)> {
    let mut out: Vec<(String, String, String, bool)> = list(item.get("transformations"))
        .iter()
        .filter(|t| t.is_object())
        .map(|t| (text_or_empty(t.get("type")), text_or_empty(t.get("subtype")), text_or_empty(t.get("description")), t.get("masking").is_some_and(V::truthy)))
        .collect();
    if out.is_empty() {
        let subtype = text_or_empty(legacy.and_then(|l| l.get("transformationType")));
        let desc = text_or_empty(legacy.and_then(|l| l.get("transformationDescription")));
        out.push((if subtype.is_empty() { String::new() } else { "DIRECT".into() }, subtype, desc, false));
    }
    out
}

fn usable(item: &V) -> bool {
    item.is_object() && item.get("namespace").is_some_and(V::truthy) && item.get("name").is_some_and(V::truthy)
}

/// The column edges stated by the `columnLineage` facets of an event's outputs.
pub(crate) fn column_edges(ev: &V, rid: &str) -> Vec<ColumnEdge> {
    let mut out: Vec<ColumnEdge> = Vec::new();
    let mut add = |e: ColumnEdge| {
        if !out.contains(&e) {
            out.push(e);
        }
    };
    for ds in list(ev.get("outputs")) {
        let facets = ds.get("facets");
        let Some(cl) = facet_of(facets, "columnLineage") else { continue };
        let dst = dataset_id(s(ds, "namespace"), s(ds, "name"));
        let fields: Vec<(&str, &V)> = cl.get("fields").filter(|f| f.is_object()).map(V::entries).unwrap_or_default();
        let mut columns: Vec<String> = fields.iter().map(|(c, _)| c.to_string()).collect();
        if let Some(schema) = facet_of(facets, "schema") {
            let base = columns.clone();
            for f in list(schema.get("fields")) {
                if f.is_object() && f.get("name").is_some_and(V::truthy) {
                    let name = py_str_opt(f.get("name"));
                    if !base.contains(&name) {
                        columns.push(name);
                    }
                }
            }
        }
        for (column, spec) in &fields {
            if !spec.is_object() {
                continue;
            }
            for item in list(spec.get("inputFields")).iter().filter(|i| usable(i)) {
                let src = dataset_id(&py_str_opt(item.get("namespace")), &py_str_opt(item.get("name")));
                for (ttype, subtype, description, masking) in transformations(item, Some(spec)) {
                    add(ColumnEdge { src: src.clone(), src_column: text_or_empty(item.get("field")), dst: dst.clone(), dst_column: column.to_string(), ttype, subtype, description, masking, dataset_wide: false, run_id: rid.to_string() });
                }
            }
        }
        for item in list(cl.get("dataset")).iter().filter(|i| usable(i)) {
            let src = dataset_id(&py_str_opt(item.get("namespace")), &py_str_opt(item.get("name")));
            for (ttype, subtype, description, masking) in transformations(item, None) {
                for column in &columns {
                    add(ColumnEdge { src: src.clone(), src_column: text_or_empty(item.get("field")), dst: dst.clone(), dst_column: column.clone(), ttype: ttype.clone(), subtype: subtype.clone(), description: description.clone(), masking, dataset_wide: true, run_id: rid.to_string() });
                }
            }
        }
    }
    out
}

fn inference_rows(ev: &V) -> (Vec<Node>, Vec<Edge>) {
    let mv = format!("model_version:{}@{}", py_str_opt(ev.get("model_name")), py_str_opt(ev.get("model_version")));
    let pid = s(ev, "prediction_id");
    let score = match ev.get("risk_score") {
        Some(V::Float(f)) => {
            let mut t = String::new();
            float_repr(*f, &mut t);
            t
        }
        other => py_str_opt(other),
    };
    let pred = node(format!("prediction:{pid}"), "prediction", s(ev, "endpoint"), pid, s(ev, "model_version"), vec![
        ("decision_type".into(), ev.get("decision_type").map(V::dup).unwrap_or(V::Null)),
        ("risk_score".into(), V::Str(score)),
    ]);
    let run = text_or_empty(ev.get("training_run_id"));
    let edges = vec![edge(&mv, &pred.id, "predicted", &run)];
    let nodes = vec![node(mv, "model_version", "", s(ev, "model_name"), s(ev, "model_version"), Vec::new()), pred];
    (nodes, edges)
}


/// A record's event time (microseconds) and event type: `PREDICTION`, the static event's class, or
/// the run event's `eventType`.
fn time_and_type(kind: &str, ev: &V) -> (i64, V) {
    if kind == "inference" {
        return (V::micros(ev.get("event_time")), V::s("PREDICTION"));
    }
    let what = static_class(ev.get("run").unwrap_or(&V::Null));
    let etype = if what.is_empty() { ev.get("eventType").map(V::dup).unwrap_or(V::Null) } else { V::s(what) };
    (V::micros(ev.get("eventTime")), etype)
}

/// A prediction's lineage as the completeness windows count it: (model, version, whether its
/// training run is known, tier, whether its lineage is complete, whether its snapshot was stored,
/// whether its version was unknown).
pub type InferenceFacts = (String, String, bool, String, bool, bool, bool);

/// What the completeness windows read of one record (`stream_apps.alerts.feed`): kind, event time,
/// event type, emitter, run id, job, whether the run streams, and a prediction's lineage facts.
pub type Facts = (String, i64, String, String, String, String, bool, Option<InferenceFacts>);

pub fn record_facts(kind: &str, ev: &V, inference: Option<&V>) -> Facts {
    let (etime, etype) = time_and_type(kind, ev);
    let run = ev.get("run").unwrap_or(&V::Null);
    let job = ev.get("job").unwrap_or(&V::Null);
    let streaming = kind != "inference" && static_class(run).is_empty() && processing_type(job.get("facets")) == "STREAMING";
    let truthy = |info: &V, key: &str| info.get(key).is_some_and(V::truthy);
    let facts = inference.filter(|_| kind == "inference").map(|info| (
        text_or_empty(info.get("model_name")),
        text_or_empty(info.get("model_version")),
        truthy(info, "training_run_id"),
        text_or_empty(info.get("tier")),
        truthy(info, "lineage_complete"),
        truthy(info, "snapshot_pointer"),
        truthy(info, "unknown_model_version"),
    ));
    let job_name = if kind == "inference" { String::new() } else { format!("{}/{}", s(job, "namespace"), s(job, "name")) };
    (kind.to_string(), etime, text_or_empty(Some(&etype)), text_or_empty(ev.get("producer")), text_or_empty(run.get("runId")),
     job_name, streaming, facts)
}

/// The graph record of one validated, PII-free event, as JSON bytes. A run event marked with a
/// `run_anomaly` carries it on every run node too.
pub fn build_record(kind: &str, ev: &V, correlation_id: &str, inference: Option<&V>) -> Result<Vec<u8>, String> {
    let (etime, etype) = time_and_type(kind, ev);
    let (mut nodes, edges, columns) = if kind == "inference" {
        let (n, e) = inference_rows(ev);
        (n, e, Vec::new())
    } else {
        let (n, e) = run_event_rows(kind, ev);
        (n, e, column_edges(ev, s(ev.get("run").unwrap_or(&V::Null), "runId")))
    };
    if let Some(anomaly) = ev.get("run_anomaly").filter(|a| a.truthy()) {
        for n in nodes.iter_mut().filter(|n| n.node_type == "run") {
            set_attr(&mut n.attributes, "run_anomaly".into(), anomaly.dup());
        }
    }
    let payload: Vec<(String, V)> = ev.entries().into_iter().filter(|(k, _)| *k != "eventTime" && *k != "event_time").map(|(k, v)| (k.to_string(), v.dup())).collect();
    let doc = V::obj([
        ("event_id", ev.get("event_id").map(V::dup).unwrap_or(V::Null)),
        ("kind", V::s(kind)),
        ("event_time", V::Int(etime)),
        ("correlation_id", V::s(correlation_id)),
        ("event_type", etype),
        ("payload", V::Map(payload)),
        ("nodes", V::Arr(nodes.into_iter().map(|n| V::obj([
            ("node_id", V::Str(n.id)),
            ("node_type", V::s(n.node_type)),
            ("namespace", V::Str(n.namespace)),
            ("name", V::Str(n.name)),
            ("version", V::Str(n.version)),
            ("attributes", V::Map(n.attributes)),
        ])).collect())),
        ("edges", V::Arr(edges.into_iter().map(|e| V::obj([
            ("src", V::Str(e.src)),
            ("dst", V::Str(e.dst)),
            ("edge_type", V::s(e.edge_type)),
            ("run_id", V::Str(e.run_id)),
        ])).collect())),
        ("inference", inference.map(V::dup).unwrap_or(V::Null)),
        ("column_edges", column_edges_value(columns)),
    ]);
    value::to_json(&doc)
}

/// Column edges as the record's `column_edges` list.
pub(crate) fn column_edges_value(columns: Vec<ColumnEdge>) -> V {
    V::Arr(columns.into_iter().map(|c| V::obj([
            ("src", V::Str(c.src)),
            ("src_column", V::Str(c.src_column)),
            ("dst", V::Str(c.dst)),
            ("dst_column", V::Str(c.dst_column)),
            ("transformation_type", V::Str(c.ttype)),
            ("subtype", V::Str(c.subtype)),
            ("description", V::Str(c.description)),
            ("masking", V::Bool(c.masking)),
            ("dataset_wide", V::Bool(c.dataset_wide)),
            ("run_id", V::Str(c.run_id)),
        ])).collect())
}
