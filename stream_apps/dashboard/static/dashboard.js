// SRE dashboard: signs in with an API key (an HttpOnly session cookie; the key itself is never kept),
// then polls /api/dashboard/data every 2 s and draws plain SVG charts (no libraries). Signed out,
// it shows only the sign-in form and requests no data.
"use strict";
(function () {
  const POLL_MS = 2000;
  const COLORS = ["#4ea8de", "#f0b429", "#3ebd93", "#ef4e4e", "#b983ff", "#ff8fab", "#90be6d", "#f9844a", "#43aa8b", "#577590", "#e9c46a", "#2a9d8f"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVGNS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "-";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    if (Math.abs(v) >= 10) return v.toFixed(0);
    return v.toFixed(2);
  }

  function clock(ts) {
    return new Date(ts * 1000).toISOString().substring(11, 19);
  }

  // series: [{name, points: [[ts, v], ...]}]; opts: {threshold}
  function drawChart(svg, series, opts) {
    opts = opts || {};
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const vb = svg.viewBox.baseVal;
    const W = vb.width, H = vb.height, L = 50, R = 8, T = 8, B = 20;
    let tMin = Infinity, tMax = -Infinity, vMax = 0;
    for (const s of series) for (const [t, v] of s.points) {
      if (t < tMin) tMin = t;
      if (t > tMax) tMax = t;
      if (v > vMax) vMax = v;
    }
    // Scale to the threshold only when it is near the data (a huge threshold would flatten the lines).
    if (opts.threshold !== undefined && opts.threshold > vMax && opts.threshold <= Math.max(vMax, 1) * 5) vMax = opts.threshold;
    if (!isFinite(tMin)) {
      el("text", { x: W / 2 - 30, y: H / 2 }, svg).textContent = "no data yet";
      return 0;
    }
    if (tMax === tMin) tMax = tMin + 1;
    vMax = vMax > 0 ? vMax * 1.1 : 1;
    const x = (t) => L + ((t - tMin) / (tMax - tMin)) * (W - L - R);
    const y = (v) => T + (1 - v / vMax) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (vMax * i) / 4;
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, svg);
      el("text", { x: 2, y: y(v) + 4 }, svg).textContent = fmt(v);
    }
    el("text", { x: L, y: H - 4 }, svg).textContent = clock(tMin);
    el("text", { x: W - R - 50, y: H - 4 }, svg).textContent = clock(tMax);
    if (opts.threshold !== undefined && opts.threshold <= vMax) {
      el("line", { x1: L, x2: W - R, y1: y(opts.threshold), y2: y(opts.threshold), class: "threshold" }, svg);
    }
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map(([t, v], j) => (j ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1)).join(" ");
      el("path", { d: d, class: "line", stroke: COLORS[i % COLORS.length], "data-name": s.name }, svg);
    });
    return vMax;
  }

  function legend(ul, series) {
    ul.textContent = "";
    series.forEach((s, i) => {
      const li = document.createElement("li");
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      const sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = COLORS[i % COLORS.length];
      li.appendChild(sw);
      li.appendChild(document.createTextNode(s.name + ": " + fmt(last)));
      li.dataset.name = s.name;
      li.dataset.value = last === null ? "" : String(last);
      ul.appendChild(li);
    });
  }

  function named(list, namer) {
    return list.map((s) => ({ name: namer(s.labels), points: s.points }));
  }

  function alertItem(a) {
    const li = document.createElement("li");
    li.className = a.severity + (a.state === "resolved" ? " resolved" : "");
    li.dataset.fingerprint = a.fingerprint;
    li.dataset.name = a.name;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = a.name + (a.state === "resolved" ? " (resolved)" : "");
    li.appendChild(name);
    li.appendChild(document.createTextNode(a.summary + " - since " + clock(a.starts_at)));
    return li;
  }

  function render(d) {
    $("lag-threshold").textContent = "threshold " + fmt(d.thresholds.lag);
    const lag = named(d.lag, (l) => l.group + " " + l.topic + "[" + l.partition + "]");
    lag.sort((a, b) => a.name.localeCompare(b.name));
    drawChart($("lag-chart"), lag, { threshold: d.thresholds.lag });
    let maxLag = 0;
    for (const s of lag) if (s.points.length) maxLag = Math.max(maxLag, s.points[s.points.length - 1][1]);
    $("lag-chart").dataset.maxLag = String(maxLag);
    legend($("lag-legend"), lag);

    const tput = named(d.throughput, (l) => l.topic);
    drawChart($("throughput-chart"), tput);
    legend($("throughput-legend"), tput);
    drawChart($("dlq-chart"), named(d.dlq_rate, () => "dead letters/s"), { threshold: d.thresholds.dlq_rate });
    const total = d.dlq_total.length && d.dlq_total[0].points.length ? d.dlq_total[0].points.slice(-1)[0][1] : 0;
    $("dlq-total").textContent = "total " + fmt(total);
    const lat = named(d.latency, (l) => "p" + Math.round(parseFloat(l.quantile) * 100) + (l.worker ? " " + l.worker : ""));
    drawChart($("latency-chart"), lat);
    legend($("latency-legend"), lat);

    const active = $("alerts-active");
    active.textContent = "";
    d.alerts.active.forEach((a) => active.appendChild(alertItem(a)));
    const count = $("alert-count");
    count.textContent = String(d.alerts.active.length);
    count.className = "badge" + (d.alerts.active.length ? " firing" : "");
    const recent = $("alerts-recent");
    recent.textContent = "";
    d.alerts.recent.slice(0, 15).forEach((a) => recent.appendChild(alertItem(a)));

    const tbody = document.querySelector("#completeness tbody");
    tbody.textContent = "";
    for (const row of d.completeness) {
      const tr = document.createElement("tr");
      const share = row.share === null ? null : row.share;
      const cells = [row.model, fmt(row.events), share === null ? "-" : (share * 100).toFixed(1) + "%", fmt(row.uncaptured)];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        td.textContent = c;
        if (i === 2 && share !== null && share < d.thresholds.lineage_share_min) td.className = "bad";
        if (i === 3 && row.uncaptured > 0) td.className = "bad";
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    const tiers = $("tiers");
    tiers.textContent = "";
    for (const t of d.tiers) {
      const li = document.createElement("li");
      li.textContent = (t.labels.tier || "?") + ": " + fmt(t.total);
      tiers.appendChild(li);
    }
    const pii = $("pii");
    pii.textContent = "";
    const unsealed = [
      ["inference events accepted", d.pii.inference_accepted, false],
      ["arrived unsealed, refused", d.pii.unsealed_refused, d.pii.unsealed_refused > 0],
      ["arrived unsealed, accepted (migration setting " + (d.pii.accept_unsealed ? "on" : "off") + ")",
       d.pii.unsealed_accepted, d.pii.unsealed_accepted > 0],
    ];
    for (const [label, n, bad] of unsealed) {
      const li = document.createElement("li");
      li.textContent = label + ": " + String(n);
      if (bad) li.className = "bad";
      pii.appendChild(li);
    }
    $("status").textContent = "updated " + clock(d.now) + " UTC, monitor ticks " + d.monitor.ticks + (d.monitor.errors ? ", errors " + d.monitor.errors : "");
    document.body.dataset.updated = String(d.now);
  }

  // Signed-in state. `generation` changes on every sign-in and sign-out, so a poll answered for an
  // earlier session draws nothing and schedules nothing.
  let generation = 0;
  let timer = null;
  let who = null;

  function stopPolling() {
    generation += 1;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function clearPanels() {
    $("panels").hidden = true;
    for (const id of ["lag-chart", "throughput-chart", "dlq-chart", "latency-chart"]) {
      const svg = $(id);
      while (svg.firstChild) svg.removeChild(svg.firstChild);
    }
    $("lag-chart").dataset.maxLag = "0";
    for (const id of ["lag-legend", "alerts-active", "alerts-recent", "throughput-legend", "latency-legend", "tiers",
                      "lag-threshold", "dlq-total", "pii"]) $(id).textContent = "";
    $("alert-count").textContent = "0";
    $("alert-count").className = "badge";
    document.querySelector("#completeness tbody").textContent = "";
    delete document.body.dataset.updated;
  }

  // Signed out: no data on the page and no data requests until a key signs in again.
  function showSignIn(message) {
    stopPolling();
    who = null;
    clearPanels();
    $("whoami").textContent = "";
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("status").textContent = "signed out";
    $("signin-token").focus();
  }

  function signedIn(key) {
    stopPolling();
    who = key;
    $("signin").hidden = true;
    $("signin-error").textContent = "";
    $("whoami").textContent = key.name + " (" + key.role + ")";
    $("signout").hidden = false;
    $("status").textContent = "connecting...";
    poll(generation);
  }

  // The server's one-line reason for a refusal, else the status.
  async function reasonOf(resp) {
    try {
      const body = await resp.json();
      if (body && body.error) return body.error + " (HTTP " + resp.status + ")";
    } catch (err) {
      // not JSON
    }
    return "HTTP " + resp.status;
  }

  async function endSession() {
    try {
      await fetch("/api/session", { method: "DELETE", credentials: "same-origin", cache: "no-store" });
    } catch (err) {
      // the cookie stays until it expires; the page shows no data either way
    }
  }

  async function poll(mine) {
    timer = null;
    try {
      const resp = await fetch("/api/dashboard/data", { cache: "no-store", credentials: "same-origin" });
      if (mine !== generation) return;
      if (resp.status === 401) return showSignIn("The session ended (expired, signed out elsewhere, or its key was revoked or rotated); sign in again.");
      if (resp.status === 403) {  // a valid key of a role without the right: its session is of no use here
        const role = who ? who.role : "?";
        stopPolling();
        await endSession();
        return showSignIn("This key's role (" + role + ") may not read the dashboard; sign in with an analyst key or above.");
      }
      if (!resp.ok) throw new Error(await reasonOf(resp));
      const d = await resp.json();
      if (mine !== generation) return;
      render(d);
      $("panels").hidden = false;
    } catch (err) {
      if (mine !== generation) return;
      $("status").textContent = "update failed: " + err.message + " (retrying)";
    }
    timer = setTimeout(() => poll(mine), POLL_MS);
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("signin-token");
    const button = $("signin-form").querySelector("button[type=submit]");
    const token = input.value.trim();
    input.value = "";  // the key is sent once and not kept by the page
    if (!token) return;
    button.disabled = true;
    $("signin-error").textContent = "";
    try {
      const resp = await fetch("/api/session", {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: token }),
      });
      if (resp.ok) return signedIn(await resp.json());
      $("signin-error").textContent = resp.status === 401
        ? "That key is not valid (unknown, revoked or expired)."
        : "Sign-in refused: " + (await reasonOf(resp));
    } catch (err) {
      $("signin-error").textContent = "Sign-in failed: " + err.message;
    } finally {
      button.disabled = false;
    }
  });

  $("signout").addEventListener("click", async () => {
    stopPolling();
    await endSession();
    showSignIn("Signed out.");
  });

  (async function start() {
    try {
      const resp = await fetch("/api/session", { credentials: "same-origin", cache: "no-store" });
      if (resp.ok) return signedIn(await resp.json());
      showSignIn(resp.status === 401 ? "" : "Cannot check the session: " + (await reasonOf(resp)));
    } catch (err) {
      showSignIn("Cannot reach the API: " + err.message);
    }
  })();
})();
