// Lineage explorer: signs in with an API key (an HttpOnly session cookie; the key is never kept),
// searches nodes, draws a node's neighbourhood left to right with cytoscape.js (dagre layout for
// ordinary graphs, a layered layout by depth for large ones), and shows the selected node's panel.
// Everything comes from this server; the URL holds only the node id (?node=...).
"use strict";
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";

cytoscape.use(dagre);

const $ = (id) => document.getElementById(id);
const API = "/api/v1/explore";
const DAGRE_MAX = 300; // above this many nodes dagre gets slow: a layered layout by depth is used
const LABEL_MAX_EDGES = 400; // edge labels are drawn only for graphs with at most this many edges
const TYPES = {
  dataset: { color: "#4ea8de", shape: "round-rectangle" },
  job: { color: "#f0b429", shape: "diamond" },
  run: { color: "#b983ff", shape: "ellipse" },
  feature_set: { color: "#3ebd93", shape: "hexagon" },
  model: { color: "#ef4e4e", shape: "star" },
  model_version: { color: "#ff8fab", shape: "octagon" },
  prediction: { color: "#e9c46a", shape: "triangle" },
};

const state = { config: null, cy: null, focus: null, selected: null, expansions: new Map(), timings: null, searchSeq: 0 };
window.lineageExplorer = state;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return node;
}

function short(text, n) {
  text = String(text || "");
  return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
}

function when(ts) {
  return ts ? String(ts).replace("T", " ").slice(0, 19) : "";
}

async function call(path, opts) {
  const headers = Object.assign({ Accept: "application/json" }, (opts && opts.headers) || {});
  const reason = $("reason").value.trim();
  if (reason) headers["X-Lineage-Reason"] = reason;
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}, { headers }));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (res.status === 401 && path !== "/api/session") signedOut("session ended; sign in again");
  if (!res.ok) throw new Error((body && body.error) || "HTTP " + res.status);
  return body;
}

// -- signing in ------------------------------------------------------------------------------

function signedOut(message) {
  state.config = null;
  if (state.cy) { state.cy.destroy(); state.cy = null; }
  $("workspace").hidden = true;
  $("search-box").hidden = true;
  $("signout").hidden = true;
  $("whoami").textContent = "";
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("panel").textContent = "";
}

async function signedIn() {
  let config;
  try {
    config = await call(API + "/config");
  } catch (e) {
    await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
    signedOut(e.message);
    return;
  }
  state.config = config;
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("search-box").hidden = false;
  $("signout").hidden = false;
  $("whoami").textContent = config.name + " (" + config.role + ")";
  $("reason-label").hidden = !config.reason_required;
  $("depth").max = String(config.max_depth);
  $("cap").max = String(config.node_cap);
  if (!$("cap").value) $("cap").value = String(config.node_cap);
  legend();
  const node = new URLSearchParams(location.search).get("node");
  if (node && config.reason_required && !$("reason").value.trim()) {
    // this role states a reason for every query: ask for it before loading the linked node
    state.focus = node;
    $("graph-status").textContent = "state a reason (recorded in the audit log), then Show";
    $("reason").focus();
  } else if (node) openNode(node);
}

async function start() {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("signin-token");
    const token = input.value;
    input.value = "";
    const res = await fetch("/api/session", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: token }) });
    if (!res.ok) { $("signin-error").textContent = res.status === 401 ? "that key is not valid" : "sign-in refused (" + res.status + ")"; return; }
    signedIn();
  });
  $("signout").addEventListener("click", async () => {
    await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
    signedOut("");
  });
  setupSearch();
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); if (state.focus) openNode(state.focus); });
  $("fit").addEventListener("click", () => state.cy && state.cy.fit(undefined, 30));
  $("panel").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); $("search").focus(); }
  });
  const res = await fetch("/api/session", { credentials: "same-origin" });
  if (res.ok) signedIn(); else signedOut("");
}

// -- search with type-ahead ------------------------------------------------------------------

function setupSearch() {
  const input = $("search");
  const list = $("search-results");
  let timer = null;
  let active = -1;
  const items = () => Array.from(list.querySelectorAll("li"));
  const close = () => { list.hidden = true; input.setAttribute("aria-expanded", "false"); input.removeAttribute("aria-activedescendant"); active = -1; };
  const mark = (i) => {
    const all = items();
    if (!all.length) return;
    active = (i + all.length) % all.length;
    all.forEach((li, j) => { li.classList.toggle("active", j === active); li.setAttribute("aria-selected", j === active ? "true" : "false"); });
    input.setAttribute("aria-activedescendant", all[active].id);
    all[active].scrollIntoView({ block: "nearest" });
  };
  const choose = (li) => { close(); input.value = li.dataset.label; openNode(li.dataset.node); };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) { close(); list.textContent = ""; return; }
    timer = setTimeout(async () => {
      const seq = ++state.searchSeq;
      let body;
      try { body = await call(API + "/search?q=" + encodeURIComponent(q)); } catch (e) { $("graph-status").textContent = e.message; return; }
      if (seq !== state.searchSeq) return; // a newer query answered or is on its way
      list.textContent = "";
      body.results.forEach((r, i) => {
        const label = r.name + (r.version ? " @" + r.version : "");
        const li = el("li", { id: "sr-" + i, role: "option", "aria-selected": "false" },
          el("span", { class: "kind", text: r.node_type }), el("span", { text: short(label, 60) }),
          el("span", { class: "muted", text: short(r.namespace, 30) }));
        li.dataset.node = r.node_id;
        li.dataset.type = r.node_type;
        li.dataset.label = label;
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); choose(li); });
        list.appendChild(li);
      });
      if (!body.results.length) list.appendChild(el("li", { class: "muted", role: "option", "aria-disabled": "true", text: "no match" }));
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
    }, 150);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") { ev.preventDefault(); mark(active + 1); }
    else if (ev.key === "ArrowUp") { ev.preventDefault(); mark(active - 1); }
    else if (ev.key === "Enter") {
      ev.preventDefault();
      const all = items().filter((li) => li.dataset.node);
      const li = active >= 0 ? items()[active] : all[0];
      if (li && li.dataset.node) choose(li);
    } else if (ev.key === "Escape") close();
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
}

// -- the graph -------------------------------------------------------------------------------

function legend() {
  const ul = $("legend");
  ul.textContent = "";
  for (const [type, t] of Object.entries(TYPES)) {
    const sw = el("span", { class: "sw" });
    sw.style.background = t.color;
    ul.appendChild(el("li", {}, sw, type.replace("_", " ") + " (" + t.shape + ")"));
  }
}

function nodeLabel(n) {
  if (n.group) return n.name + "\n\u00d7" + n.count;
  const name = n.node_type === "run" ? "run \u2026" + (n.version || n.node_id.slice(4)).slice(-12) + "\n" + short(n.name, 28) : short(n.name, 34);
  return n.version && n.node_type !== "run" ? name + "\n@" + short(n.version, 16) : name;
}

function elements(graph, labels) {
  const els = [];
  for (const n of graph.nodes) {
    els.push({ group: "nodes", data: { id: n.node_id, label: nodeLabel(n), type: n.node_type, depth: n.depth || 0, raw: n },
      classes: (n.group ? "group " : "") + (n.node_id === graph.focus ? "focus" : "") });
  }
  for (const e of graph.edges) {
    const run = e.count ? e.count + " edges" : (e.run_id ? "run \u2026" + e.run_id.slice(-8) + " " : "") + when(e.time).slice(0, 16);
    els.push({ group: "edges", data: { id: e.src + "->" + e.dst + "#" + e.edge_type, source: e.src, target: e.dst,
      label: labels ? run : "", raw: e } });
  }
  return els;
}

function layeredLayout(cy) {
  // Columns by signed depth (upstream left, downstream right); rows in id order within a column.
  const columns = new Map();
  cy.nodes().forEach((n) => {
    const d = n.data("depth") || 0;
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(n);
  });
  const positions = {};
  for (const [d, nodes] of columns) {
    nodes.sort((a, b) => (a.id() < b.id() ? -1 : 1));
    const h = nodes.length * 46;
    nodes.forEach((n, i) => { positions[n.id()] = { x: d * 260, y: i * 46 - h / 2 }; });
  }
  return { name: "preset", positions: positions, fit: true, padding: 30 };
}

function style(labels) {
  const s = [
    { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 10, color: "#e6e9ef",
      "text-valign": "bottom", "text-margin-y": 4, width: 26, height: 26, "border-width": 1, "border-color": "#0b0f14",
      "text-max-width": 160 } },
    { selector: "edge", style: { width: 1.2, "line-color": "#56627a", "target-arrow-color": "#56627a", "target-arrow-shape": "triangle",
      "curve-style": labels ? "bezier" : "haystack", "font-size": 8, color: "#9fb3c8", label: "data(label)",
      "text-rotation": "autorotate", "text-background-color": "#0b0f14", "text-background-opacity": 0.8 } },
    { selector: "node.group", style: { width: 44, height: 44, "border-width": 3, "border-style": "double" } },
    { selector: "node.focus", style: { "border-width": 4, "border-color": "#ffffff" } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": "#f0b429" } },
  ];
  for (const [type, t] of Object.entries(TYPES)) {
    s.push({ selector: 'node[type = "' + type + '"]', style: { "background-color": t.color, shape: t.shape } });
  }
  return s;
}

function graphQuery(node, depth) {
  const p = new URLSearchParams({ node: node, direction: $("direction").value, depth: String(depth || $("depth").value || 6) });
  const cap = parseInt($("cap").value, 10);
  if (cap && state.config && cap < state.config.node_cap) p.set("cap", String(cap));
  for (const [id, key] of [["since", "since"], ["until", "until"], ["as-of", "as_of"]]) {
    const v = $(id).value.trim();
    if (v) p.set(key, v);
  }
  return API + "/graph?" + p.toString();
}

async function openNode(nodeId) {
  state.focus = nodeId;
  state.expansions = new Map();
  history.replaceState(null, "", "/explore?node=" + encodeURIComponent(nodeId));
  $("graph-status").textContent = "loading\u2026";
  document.body.dataset.graph = "loading";
  const t0 = performance.now();
  let graph;
  try {
    graph = await call(graphQuery(nodeId));
  } catch (e) {
    $("graph-status").textContent = e.message;
    document.body.dataset.graph = "error";
    return;
  }
  const t1 = performance.now();
  draw(graph, () => {
    const t2 = performance.now();
    state.timings = { fetch_ms: Math.round(t1 - t0), render_ms: Math.round(t2 - t1), nodes: graph.nodes.length,
                      edges: graph.edges.length, total_nodes: graph.total_nodes, grouped: graph.grouped };
    $("graph-status").textContent = (graph.grouped
      ? graph.total_nodes + " nodes, grouped by type and namespace past " + graph.cap
      : graph.nodes.length + " nodes, " + graph.edges.length + " edges") + (graph.truncated ? " (walk stopped at its limit)" : "");
    document.body.dataset.graph = "ready";
  });
  select(nodeId);
}

function draw(graph, done) {
  if (state.cy) state.cy.destroy();
  const labels = graph.edges.length <= LABEL_MAX_EDGES;
  const big = graph.nodes.length > DAGRE_MAX;
  const cy = cytoscape({ container: $("graph"), elements: elements(graph, labels), style: style(labels),
    minZoom: 0.02, maxZoom: 4, wheelSensitivity: 0.3, textureOnViewport: big, hideEdgesOnViewport: big,
    pixelRatio: big ? 1 : "auto" });
  state.cy = cy;
  state.graph = graph;
  cy.on("tap", "node", (ev) => select(ev.target.id()));
  cy.on("dbltap", "node", (ev) => toggleExpand(ev.target.id()));
  const layout = cy.layout(big ? layeredLayout(cy) : { name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 90, fit: true, padding: 30 });
  layout.one("layoutstop", () => requestAnimationFrame(() => requestAnimationFrame(done)));
  layout.run();
  nodeList();
}

function nodeList() {
  const ul = $("node-list");
  ul.textContent = "";
  const nodes = state.cy.nodes().toArray().slice(0, 300);
  for (const n of nodes) {
    const b = el("button", { type: "button", "data-node": n.id(), text: n.data("type") + ": " + short(n.data("raw").name, 40) });
    b.addEventListener("click", () => select(n.id()));
    ul.appendChild(el("li", {}, b));
  }
  if (state.cy.nodes().length > nodes.length) ul.appendChild(el("li", { class: "muted", text: "+" + (state.cy.nodes().length - nodes.length) + " more" }));
}

async function toggleExpand(nodeId) {
  const cy = state.cy;
  if (!cy || nodeId.startsWith("group:")) return;
  const added = state.expansions.get(nodeId);
  if (added) { // collapse: remove what this node's expansion added
    cy.remove(cy.collection(added.map((id) => cy.getElementById(id)).filter((x) => x.length)));
    state.expansions.delete(nodeId);
    nodeList();
    select(nodeId);
    return;
  }
  let graph;
  try { graph = await call(graphQuery(nodeId, 1)); } catch (e) { $("graph-status").textContent = e.message; return; }
  if (graph.grouped) { $("graph-status").textContent = "too many neighbours to expand here; open the node instead"; return; }
  const base = cy.getElementById(nodeId).data("depth") || 0;
  const fresh = elements(graph, cy.edges().length + graph.edges.length <= LABEL_MAX_EDGES)
    .filter((e) => cy.getElementById(e.data.id).length === 0);
  for (const e of fresh) if (e.group === "nodes") e.data.depth = base + e.data.depth;
  cy.add(fresh);
  state.expansions.set(nodeId, fresh.map((e) => e.data.id));
  const layout = cy.layout(cy.nodes().length > DAGRE_MAX ? layeredLayout(cy) : { name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 90, fit: true, padding: 30 });
  layout.run();
  nodeList();
  select(nodeId);
}

// -- the side panel --------------------------------------------------------------------------

function table(headers, rows) {
  const t = el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const r of rows) body.appendChild(el("tr", {}, ...r.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", { text: String(c === null || c === undefined ? "" : c) })))));
  t.appendChild(body);
  return t;
}

function nodeButton(id, text) {
  const b = el("button", { type: "button", class: "link", "data-node": id, text: text || id });
  b.addEventListener("click", () => openNode(id));
  return b;
}

async function select(nodeId) {
  state.selected = nodeId;
  const cy = state.cy;
  if (cy) { cy.$(":selected").unselect(); cy.getElementById(nodeId).select(); }
  const panel = $("panel");
  panel.dataset.node = nodeId;
  panel.dataset.state = "loading";
  panel.textContent = "";
  if (nodeId.startsWith("group:")) {
    const g = cy && cy.getElementById(nodeId).data("raw");
    panel.appendChild(el("h2", { text: g ? g.name : nodeId }));
    if (g) panel.appendChild(el("p", { text: g.count + " nodes of type " + g.node_type + " in namespace '" + g.namespace + "' (" + g.internal_edges + " edges among them). Narrow the depth or the time window to see them one by one." }));
    panel.dataset.state = "ready";
    return;
  }
  let info;
  try { info = await call(API + "/node?node=" + encodeURIComponent(nodeId) + ($("as-of").value.trim() ? "&as_of=" + encodeURIComponent($("as-of").value.trim()) : "")); }
  catch (e) { panel.appendChild(el("p", { class: "error", text: e.message })); panel.dataset.state = "error"; return; }
  if (state.selected !== nodeId) return;
  panel.appendChild(el("h2", { id: "panel-title" }, el("span", { class: "kind", text: info.node_type }), " " + (info.name || nodeId)));
  const actions = el("div", { class: "actions" });
  if (nodeId !== state.focus) actions.appendChild(nodeButton(nodeId, "Open as focus"));
  const ex = el("button", { type: "button", id: "expand", text: state.expansions.has(nodeId) ? "Collapse" : "Expand neighbours" });
  ex.addEventListener("click", () => toggleExpand(nodeId));
  actions.appendChild(ex);
  panel.appendChild(actions);
  if (info.found && info.node_type === "dataset") reportButtons(actions, panel, "impact", { namespace: info.namespace, name: info.name }, "Impact report");
  if (info.found && info.node_type === "model") reportButtons(actions, panel, "completeness", { model: info.name }, "Completeness report");
  if (!info.found) { panel.appendChild(el("p", { class: "muted", text: "no node with this id as of the time asked" })); panel.dataset.state = "ready"; return; }
  panel.appendChild(table(["", ""], [["id", info.node_id], ["namespace", info.namespace], ["version", info.version],
    ["first seen", when(info.first_seen)], ["last seen", when(info.last_seen)], ["events", info.events]]));
  if (info.node_type === "prediction") await predictionView(panel, info.name);
  const attrs = Object.entries(info.attributes || {});
  if (attrs.length) { panel.appendChild(el("h3", { text: "Attributes" })); panel.appendChild(table(["key", "value"], attrs)); }
  panel.appendChild(el("h3", { text: "Versions over time (" + info.versions.length + ")" }));
  panel.appendChild(table(["version", "first seen", "last seen", "events"], info.versions.map((v) => [v.version, when(v.first_seen), when(v.last_seen), v.events])));
  const facets = Object.entries(info.facets || {});
  panel.appendChild(el("h3", { text: "Facets" + (facets.length ? "" : ": none recorded") }));
  for (const [name, value] of facets) {
    panel.appendChild(el("h3", { class: "facet", "data-facet": name, text: name }));
    if (name === "schema" && value && Array.isArray(value.fields)) panel.appendChild(table(["column", "type", "description"], value.fields.map((f) => [f.name, f.type || "", f.description || ""])));
    else if (name === "sql" && value && value.query) panel.appendChild(el("pre", { text: value.query }));
    else panel.appendChild(el("pre", { text: JSON.stringify(value, null, 1) }));
  }
  panel.appendChild(el("h3", { text: "Runs (" + info.runs.length + ")" }));
  panel.appendChild(table(["run", "edges", "last seen"], info.runs.map((r) => [nodeButton("run:" + r.run_id, "\u2026" + r.run_id.slice(-12)), (r.edge_types || []).join(", "), when(r.last_seen)])));
  panel.appendChild(el("h3", { text: "Alerts naming it (" + info.alerts.length + ")" }));
  panel.appendChild(table(["alert", "state", "summary", "since"], info.alerts.map((a) => [a.name, a.state, a.summary, when(a.since)])));
  if (info.node_type === "dataset") await columnView(panel, nodeId);
  panel.dataset.state = "ready";
}

async function columnView(panel, nodeId) {
  let cols;
  try { cols = await call(API + "/columns?node=" + encodeURIComponent(nodeId)); } catch (e) { panel.appendChild(el("p", { class: "error", text: e.message })); return; }
  const box = el("section", { id: "columns" });
  box.appendChild(el("h3", { text: "Column lineage: into this dataset (" + cols.inputs.length + ")" }));
  box.appendChild(table(["column", "from", "transformation"], cols.inputs.map((c) => [c.dst_column || "(whole dataset)", c.src.replace(/^dataset:/, "") + "." + c.src_column,
    c.transformation_type + (c.subtype ? "/" + c.subtype : "") + (c.masking ? " (masked)" : "")])));
  box.appendChild(el("h3", { text: "Column lineage: out of this dataset (" + cols.outputs.length + ")" }));
  box.appendChild(table(["column", "to", "transformation"], cols.outputs.map((c) => [c.src_column, c.dst.replace(/^dataset:/, "") + "." + c.dst_column,
    c.transformation_type + (c.subtype ? "/" + c.subtype : "")])));
  panel.appendChild(box);
}

async function predictionView(panel, predictionId) {
  let p;
  try { p = await call(API + "/prediction?id=" + encodeURIComponent(predictionId)); } catch (e) { panel.appendChild(el("p", { class: "error", text: e.message })); return; }
  const box = el("section", { id: "prediction" });
  box.appendChild(el("h3", { text: "Prediction" }));
  if (!p.found) { box.appendChild(el("p", { class: "muted", text: "no inference lineage row for this prediction" })); panel.appendChild(box); return; }
  const r = p.row;
  const rows = [["model", r.model_name + " @" + r.model_version], ["time", when(r.event_time)], ["decision", r.decision_type],
    ["risk score", r.risk_score], ["sampling tier", p.tier], ["tier reason", p.tier_reason], ["training run", r.training_run_id],
    ["feature sets", (r.feature_sets || []).join(", ")], ["lineage complete", r.lineage_complete ? "yes" : "no"],
    ["snapshot", p.snapshot.status + ": " + p.snapshot.detail]];
  if ("subject_ref" in r) rows.push(["subject (pseudonym)", r.subject_ref]);
  const t = table(["", ""], rows);
  t.id = "prediction-facts";
  box.appendChild(t);
  const actions = el("div", { class: "actions" });
  reportButtons(actions, box, "provenance", { prediction: predictionId }, "Provenance report");
  if (r.subject_ref) reportButtons(actions, box, "erasure", { subject_ref: r.subject_ref }, "Subject (erasure) report");
  if (state.config.may_decrypt && p.snapshot.pointer) {
    const b = el("button", { type: "button", id: "decrypt", text: "Decrypt snapshot\u2026" });
    b.addEventListener("click", () => decrypt(box, p.snapshot));
    actions.appendChild(b);
  }
  box.appendChild(actions);
  box.appendChild(el("h3", { text: "Provenance chain (" + p.chain.length + " edges)" }));
  box.appendChild(table(["depth", "node", "version", "edge", "run", "time"], p.chain.map((c) => [c.depth, nodeButton(c.node_id, short(c.node_id, 48)),
    c.version || "", c.edge_type, short(c.run_id, 12), when(c.edge_time)])));
  panel.appendChild(box);
}

// Download buttons for one report (HTML, PDF, JSON), for roles with the reports right.
function reportButtons(actions, box, kind, params, label) {
  if (!state.config.may_report) return;
  for (const fmt of ["html", "pdf", "json"]) {
    const b = el("button", { type: "button", class: "download", "data-report": kind, "data-format": fmt, text: label + " (" + fmt.toUpperCase() + ")" });
    b.addEventListener("click", () => downloadReport(box, kind, params, fmt));
    actions.appendChild(b);
  }
}

// A report is fetched with the session cookie and, for roles that state one, the reason header (a
// plain link could not send it), then saved from memory under the name the server gives it.
async function downloadReport(box, kind, params, fmt) {
  let out = box.querySelector(".report-out");
  if (!out) { out = el("p", { class: "report-out", role: "status" }); box.appendChild(out); }
  out.className = "report-out";
  out.textContent = "preparing the " + kind + " report (" + fmt.toUpperCase() + ")\u2026";
  const headers = {};
  const reason = $("reason").value.trim();
  if (reason) headers["X-Lineage-Reason"] = reason;
  const query = new URLSearchParams(Object.assign({}, params, { format: fmt }));
  try {
    const res = await fetch(state.config.reports_path + encodeURIComponent(kind) + "?" + query.toString(), { credentials: "same-origin", headers });
    if (res.status === 401) { signedOut("session ended; sign in again"); return; }
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      throw new Error((body && body.error) || "HTTP " + res.status);
    }
    const blob = await res.blob();
    const named = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
    const name = named ? named[1] : kind + "." + fmt;
    const href = URL.createObjectURL(blob);
    const a = el("a", { href, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
    const sha = res.headers.get("X-Report-SHA256") || "";
    out.textContent = "saved " + name + " (SHA-256 " + sha.slice(0, 16) + "\u2026, recorded in the audit log)";
    out.dataset.sha256 = sha;
  } catch (e) { out.className = "report-out error"; out.textContent = e.message; }
}

function decrypt(box, snapshot) {
  const old = $("decrypt-form");
  if (old) { old.querySelector("input").focus(); return; }
  const input = el("input", { id: "decrypt-reason", type: "text", size: "36", "aria-required": "true", "aria-label": "Reason for decrypting (recorded in the audit log)",
    placeholder: "reason (recorded in the audit log)" });
  const form = el("form", { id: "decrypt-form" }, input, el("button", { type: "submit", text: "Decrypt" }), el("p", { id: "decrypt-out" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const reason = input.value.trim();
    const out = $("decrypt-out");
    if (!reason) { out.className = "error"; out.textContent = "a reason is required"; return; }
    out.className = "";
    out.textContent = "decrypting\u2026";
    try {
      const body = await call("/api/snapshots/" + encodeURI(snapshot.pointer) + ":decrypt", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason: reason, sha256: snapshot.sha256 }) });
      out.textContent = "";
      out.appendChild(el("pre", { id: "snapshot-plain", text: JSON.stringify(body.snapshot, null, 1) }));
    } catch (e) { out.className = "error"; out.textContent = e.message; }
  });
  box.appendChild(form);
  input.focus();
}

start();
