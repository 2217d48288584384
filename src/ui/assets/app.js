// runner ui: plain JS, no framework, no build step. Every page reads the
// JSON API under /api/ (documented in the README); charts and the DAG are
// SVG drawn here.
"use strict";

const main = document.getElementById("main");
let info = { actions: false };
// Each page render gets a generation: late answers of a page left behind are dropped.
let generation = 0;
let cleanups = [];

const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const short = (sha) => (sha ? String(sha).replace("blake3:", "").slice(0, 12) : "");
const seconds = (ms) => (ms == null ? "" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
// Only web addresses become links: a record's `javascript:` URL must not run here.
const webUrl = (url) => typeof url === "string" && /^https?:\/\//i.test(url);
const badge = (status) => status ? `<span class="status ${esc(status)}">${esc(String(status).replace(/_/g, " "))}</span>` : "";

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const token = sessionStorage.getItem("runner-token");
  if (options.method === "POST" && token) headers["x-runner-token"] = token;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${text}`);
  return body;
}

function route() {
  generation += 1;
  cleanups.forEach((f) => f());
  cleanups = [];
  const hash = location.hash.replace(/^#\/?/, "") || "pipelines";
  const [path, query] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === parts[0]));
  const pages = {
    pipelines: () => pipelinesPage(),
    runs: () => (parts[1] ? runPage(parts[1]) : runsPage(params)),
    deployments: () => (parts[2] ? deploymentPage(parts[1], parts[2]) : deploymentsPage()),
    metrics: () => metricsPage(params),
    predict: () => predictPage(params),
  };
  const page = pages[parts[0]];
  if (!page) { main.innerHTML = `<p class="error">no page ${esc(parts[0])}</p>`; return; }
  const mine = generation;
  page().catch((err) => { if (mine === generation) main.innerHTML = `<p class="error">${esc(err.message)}</p>`; });
}

const current = (mine) => mine === generation;

// ---------------------------------------------------------------- pipelines

async function pipelinesPage() {
  const mine = generation;
  const list = await api("/api/pipelines");
  const details = await Promise.all(list.map((p) => api(`/api/pipelines/${encodeURIComponent(p.name)}`).catch((e) => ({ name: p.name, error: e.message }))));
  if (!current(mine)) return;
  main.innerHTML = `<h1>Pipelines</h1>` + details.map((p) => p.error
    ? `<div class="card"><h2>${esc(p.name)}</h2><p class="error">${esc(p.error)}</p></div>`
    : `<div class="card pipeline" data-name="${esc(p.name)}">
        <h2>${esc(p.name)} ${info.actions ? `<button class="run-btn" data-pipeline="${esc(p.name)}">Run</button>` : ""}</h2>
        <p class="muted">${esc(p.description || "")} · stack ${esc(p.stack)}${p.git ? ` · commit <code>${esc(short(p.git.sha))}</code>` : ""}
        · <a href="#/runs?pipeline=${encodeURIComponent(p.name)}">runs</a> · <a href="#/metrics?pipeline=${encodeURIComponent(p.name)}">metrics</a></p>
        ${dag(p.steps)}
        <table class="plan"><thead><tr><th>step</th><th>plan (now)</th><th>why</th><th>last status</th><th>duration</th><th>last run</th></tr></thead><tbody>
        ${p.steps.map((s) => `<tr data-step="${esc(s.name)}"><td><code>${esc(s.name)}</code></td>
          <td>${badge(s.plan.action)}</td>
          <td class="muted">${esc((s.plan.reasons || s.plan.outputs || []).join("; "))}</td>
          <td>${s.last ? badge(s.last.status) : ""}</td><td>${s.last ? seconds(s.last.duration_ms) : ""}</td>
          <td>${s.last ? `<a href="#/runs/${encodeURIComponent(s.last.run)}">${esc(s.last.run)}</a>` : ""}</td></tr>`).join("")}
        </tbody></table>
        ${p.promote ? `<p class="muted">promotes <code>${esc(p.promote.model)}</code> to service <code>${esc(p.promote.service)}</code> when ${p.promote.gate.map((g) => `<code>${esc(g)}</code>`).join(" and ") || "always"}</p>` : ""}
      </div>`).join("");
  main.querySelectorAll(".run-btn").forEach((b) => b.addEventListener("click", async () => {
    try {
      await api("/api/runs", { method: "POST", body: JSON.stringify({ pipeline: b.dataset.pipeline }) });
      b.textContent = "started";
    } catch (err) { b.insertAdjacentHTML("afterend", ` <span class="error">${esc(err.message)}</span>`); }
  }));
}

/// The DAG as SVG: a column per depth (longest path from a source).
function dag(steps) {
  const depth = {};
  const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
  const depthOf = (name, seen = new Set()) => {
    if (depth[name] !== undefined) return depth[name];
    if (seen.has(name)) return 0;
    seen.add(name);
    const ups = (byName[name]?.upstream || []).filter((u) => byName[u]);
    depth[name] = ups.length ? 1 + Math.max(...ups.map((u) => depthOf(u, seen))) : 0;
    return depth[name];
  };
  steps.forEach((s) => depthOf(s.name));
  const columns = [];
  steps.forEach((s) => { (columns[depth[s.name]] ||= []).push(s.name); });
  const W = 152, H = 58, GX = 26, GY = 16;
  const pos = {};
  columns.forEach((col, x) => col.forEach((name, y) => { pos[name] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; }));
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY) - GY;
  const edges = steps.flatMap((s) => s.upstream.filter((u) => pos[u]).map((u) => {
    const a = pos[u], b = pos[s.name];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    return `<path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>`;
  }));
  const nodes = steps.map((s) => {
    const p = pos[s.name];
    const last = s.last ? `last: ${s.last.status ? s.last.status.replace(/_/g, " ") : ""} ${seconds(s.last.duration_ms)}` : "never ran";
    return `<g class="node" data-step="${esc(s.name)}"><title>${esc(s.command)}</title>
      <rect class="${esc(s.plan.action)}" x="${p.x}" y="${p.y}" width="${W}" height="${H}"/>
      <text x="${p.x + 8}" y="${p.y + 18}" font-weight="600">${esc(s.name)}</text>
      <text x="${p.x + 8}" y="${p.y + 34}" fill="#6b7480">now: ${esc(s.plan.action.replace(/_/g, " "))}</text>
      <text x="${p.x + 8}" y="${p.y + 49}" fill="#6b7480">${esc(last)}</text></g>`;
  });
  return `<svg class="dag" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8c959f"/></marker></defs>
    ${edges.join("")}${nodes.join("")}</svg>`;
}

// ---------------------------------------------------------------- runs

async function runsPage(params) {
  const mine = generation;
  const [runs, pipelines] = await Promise.all([api(`/api/runs?${params}`), api("/api/pipelines").catch(() => [])]);
  if (!current(mine)) return;
  const pipeline = params.get("pipeline") || "", status = params.get("status") || "";
  const option = (value, selected) => `<option value="${esc(value)}" ${value === selected ? "selected" : ""}>${esc(value || "all")}</option>`;
  main.innerHTML = `<h1>Runs</h1>
    <div class="filters">
      <label>pipeline <select id="filter-pipeline">${["", ...pipelines.map((p) => p.name)].map((p) => option(p, pipeline)).join("")}</select></label>
      <label>status <select id="filter-status">${["", "running", "succeeded", "failed", "cancelled", "interrupted"].map((s) => option(s, status)).join("")}</select></label>
    </div>
    ${runs.length === 0 ? `<p class="muted">no runs${pipeline || status ? " match" : " yet: start one with <code>runner run</code>"}</p>` : `
    <table id="runs-table"><thead><tr><th>run</th><th>pipeline</th><th>status</th><th>started</th><th>duration</th><th>steps</th><th>commit</th><th>promotion</th></tr></thead><tbody>
    ${runs.map((r) => `<tr class="run-row" data-id="${esc(r.id)}"><td><a href="#/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td>
      <td>${esc(r.pipeline)}</td><td>${badge(r.status)}</td><td>${esc(r.started_at)}</td><td>${seconds(r.duration_ms)}</td>
      <td>${r.steps}</td><td><code>${esc(short(r.commit))}</code></td><td>${badge(r.promotion)}</td></tr>`).join("")}
    </tbody></table>`}`;
  const refilter = () => {
    const q = new URLSearchParams();
    const p = document.getElementById("filter-pipeline").value, s = document.getElementById("filter-status").value;
    if (p) q.set("pipeline", p);
    if (s) q.set("status", s);
    location.hash = `#/runs${q.toString() ? `?${q}` : ""}`;
  };
  document.getElementById("filter-pipeline").addEventListener("change", refilter);
  document.getElementById("filter-status").addEventListener("change", refilter);
  if (runs.some((r) => r.status === "running")) {
    const timer = setTimeout(() => { if (current(mine)) route(); }, 2000);
    cleanups.push(() => clearTimeout(timer));
  }
}

async function runPage(id) {
  const mine = generation;
  let run = await api(`/api/runs/${encodeURIComponent(id)}`);
  if (!current(mine)) return;
  let chosen = null; // the step the user picked; else the running one is followed
  let shown = null, source = null;
  cleanups.push(() => source && source.close());
  main.innerHTML = `<h1>Run <code>${esc(run.id)}</code></h1><div id="run-head"></div>
    <h2>Steps</h2><div id="run-steps"></div><div id="run-gate"></div><div id="run-deploy"></div>
    <h2>Logs</h2><div class="steps-tabs" id="log-tabs"></div><pre class="log" id="log"></pre>`;
  const render = () => {
    const commit = run.git ? run.git.sha : "";
    document.getElementById("run-head").innerHTML = `<dl class="kv">
      <dt>pipeline</dt><dd><a href="#/runs?pipeline=${encodeURIComponent(run.pipeline)}">${esc(run.pipeline)}</a> on stack ${esc(run.stack)}</dd>
      <dt>status</dt><dd id="run-status">${badge(run.status)}</dd>
      <dt>started</dt><dd>${esc(run.started_at)}${run.duration_ms != null ? ` · took ${seconds(run.duration_ms)}` : ""}</dd>
      <dt>commit</dt><dd><code id="run-commit">${esc(commit)}</code> ${esc(run.git?.branch || "")}</dd>
      ${Object.keys(run.metrics || {}).length ? `<dt>metrics</dt><dd>${Object.entries(run.metrics).map(([k, v]) => `${esc(k)} <b>${esc(+v.toFixed(4))}</b>`).join(" · ")}</dd>` : ""}
      ${run.tracking?.url ? `<dt>MLflow</dt><dd>${webUrl(run.tracking.url) ? `<a href="${esc(run.tracking.url)}">${esc(run.tracking.run_id)}</a>` : `${esc(run.tracking.run_id)} <code>${esc(run.tracking.url)}</code>`}</dd>` : ""}
    </dl>`;
    document.getElementById("run-steps").innerHTML = `<table id="steps"><thead><tr><th>step</th><th>status</th><th>exit</th><th>duration</th><th>attempts</th><th>note</th></tr></thead><tbody>
      ${run.steps.map((s) => `<tr data-step="${esc(s.name)}"><td><code>${esc(s.name)}</code></td>
        <td>${badge(s.status || (s.started_at ? "running" : "not run"))}</td><td>${s.exit_code ?? ""}</td>
        <td>${seconds(s.duration_ms)}</td><td>${s.attempts || ""}</td>
        <td class="muted">${esc(s.reason || "")}${(s.checks || []).map((c) => ` ${badge(c.passed ? "pass" : "fail")} <code>${esc(c.check)}</code> ${esc(c.shown)}`).join("")}</td></tr>`).join("")}
      </tbody></table>`;
    document.getElementById("run-gate").innerHTML = run.gate && run.gate.length ? `<h2>Gate</h2>
      <table id="gate"><thead><tr><th>check</th><th>result</th><th>values</th></tr></thead><tbody>
      ${run.gate.map((c) => `<tr class="gate-check"><td><code>${esc(c.check)}</code></td><td>${badge(c.passed ? "pass" : "fail")}</td><td class="mono">${esc(c.shown)}</td></tr>`).join("")}
      </tbody></table>` : "";
    const p = run.promotion, w = run.write_back;
    document.getElementById("run-deploy").innerHTML = p || w ? `<h2>Deployment</h2><dl class="kv" id="deploy">
      ${p ? `<dt>service</dt><dd>${esc(p.service)} ${badge(p.status)} <span class="muted">${esc(p.message)}</span></dd>
      ${p.digest ? `<dt>model</dt><dd><code>${esc(p.digest)}</code></dd>` : ""}${p.url ? `<dt>url</dt><dd>${esc(p.url)}</dd>` : ""}` : ""}
      ${w ? `<dt>write-back</dt><dd>${badge(w.status)} ${w.sha ? `<code id="deploy-commit">${esc(w.sha)}</code>` : ""} <span class="muted">${esc(w.message)}</span></dd>` : ""}
      ${p ? `<dt>state</dt><dd><a href="#/deployments/${encodeURIComponent(run.stack)}/${encodeURIComponent(p.service)}">deployment of ${esc(p.service)}</a></dd>` : ""}
    </dl>` : "";
    const running = run.steps.find((s) => s.started_at && !s.status);
    const want = chosen || (running && running.name) || shown || (run.steps.find((s) => s.status && s.status !== "up_to_date") || run.steps[0] || {}).name;
    document.getElementById("log-tabs").innerHTML = run.steps.map((s) =>
      `<button data-step="${esc(s.name)}" class="${s.name === want ? "sel" : ""}">${esc(s.name)}</button>`).join("");
    document.querySelectorAll("#log-tabs button").forEach((b) => b.addEventListener("click", () => { chosen = b.dataset.step; render(); }));
    if (want && want !== shown) follow(want);
  };
  const follow = (step) => {
    shown = step;
    if (source) source.close();
    const log = document.getElementById("log");
    log.textContent = "";
    log.dataset.step = step;
    log.dataset.state = "following";
    source = new EventSource(`/api/runs/${encodeURIComponent(run.id)}/logs/${encodeURIComponent(step)}/stream`);
    source.addEventListener("log", (e) => {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      // A text node per event: `textContent +=` copies the whole log each time.
      log.appendChild(document.createTextNode(JSON.parse(e.data).text));
      if (atEnd) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", () => { log.dataset.state = "ended"; source.close(); });
    source.onerror = () => { if (source.readyState === EventSource.CLOSED) log.dataset.state = "ended"; };
  };
  render();
  const poll = async () => {
    if (!current(mine) || run.status !== "running") return;
    try { run = await api(`/api/runs/${encodeURIComponent(id)}`); } catch { /* next time */ }
    if (!current(mine)) return;
    render();
    timer = setTimeout(poll, 1000);
  };
  let timer = setTimeout(poll, 1000);
  cleanups.push(() => clearTimeout(timer));
}

// ---------------------------------------------------------------- deployments

async function deploymentsPage() {
  const mine = generation;
  const list = await api("/api/deployments");
  if (!current(mine)) return;
  main.innerHTML = `<h1>Deployments</h1>${list.length === 0 ? `<p class="muted">nothing deployed yet: a run whose gate passes deploys and commits <code>deployments/STACK/SERVICE.yaml</code></p>` : `
    <table id="deployments-table"><thead><tr><th>stack</th><th>service</th><th>pipeline</th><th>model</th><th>metrics</th><th>deployed</th></tr></thead><tbody>
    ${list.map((d) => `<tr><td>${esc(d.stack)}</td><td><a href="#/deployments/${encodeURIComponent(d.stack)}/${encodeURIComponent(d.service)}">${esc(d.service)}</a></td>
      <td>${esc(d.pipeline)}</td><td><code>${esc(short(d.model.digest))}</code></td>
      <td>${Object.entries(d.metrics).map(([k, v]) => `${esc(k)} ${esc(+v.toFixed(4))}`).join(" · ")}</td><td>${esc(d.deployed_at)}</td></tr>`).join("")}
    </tbody></table>`}`;
}

async function deploymentPage(stack, service) {
  const mine = generation;
  const d = await api(`/api/deployments/${encodeURIComponent(stack)}/${encodeURIComponent(service)}`);
  if (!current(mine)) return;
  const dep = d.deployment || {};
  const live = d.live || {};
  main.innerHTML = `<h1>${esc(service)} <span class="muted">on ${esc(stack)}</span></h1>
    <div class="grid">
    <div class="card"><h2>Committed deployment</h2><dl class="kv">
      <dt>file</dt><dd><code>${esc(d.file)}</code></dd>
      <dt>commit</dt><dd><code id="deployment-commit">${esc(d.commit)}</code></dd>
      <dt>model</dt><dd><code id="deployment-digest">${esc(dep.model?.digest)}</code> <span class="muted">${esc(dep.model?.path)}</span></dd>
      <dt>metrics</dt><dd>${Object.entries(dep.metrics || {}).map(([k, v]) => `${esc(k)} <b>${esc(+v.toFixed(4))}</b>`).join(" · ")}</dd>
      <dt>gate</dt><dd>${(dep.gate || []).map((g) => `${badge(g.value ? "pass" : "fail")} <code>${esc(g.check)}</code>`).join("<br>")}</dd>
      <dt>trained on</dt><dd><code id="deployment-source">${esc(dep.source?.commit)}</code></dd>
      <dt>run</dt><dd><a href="#/runs/${encodeURIComponent(dep.source?.run || "")}">${esc(dep.source?.run)}</a></dd>
      <dt>deployed</dt><dd>${esc(dep.deployed_at)}</dd>
    </dl></div>
    <div class="card"><h2>Service now</h2><dl class="kv" id="live">
      <dt>state</dt><dd id="live-state">${badge(live.state)}</dd>
      ${live.url ? `<dt>url</dt><dd>${esc(live.url)}</dd>` : ""}
      ${live.model ? `<dt>serves</dt><dd><code>${esc(short(live.model.digest))}</code>${live.model.digest === dep.model?.digest ? " (the committed model)" : ' <span class="error">(not the committed model: <code>runner services sync</code>)</span>'}</dd>` : ""}
      ${live.pid ? `<dt>pid</dt><dd>${esc(live.pid)}</dd>` : ""}
      ${live.started_at ? `<dt>started</dt><dd>${esc(live.started_at)}</dd>` : ""}
      ${live.last_error ? `<dt>error</dt><dd class="error">${esc(live.last_error)}</dd>` : ""}
    </dl>
    ${info.actions ? `<p><button id="svc-start">Start</button> <button id="svc-stop">Stop</button> <span id="svc-msg"></span></p>` : ""}
    <p><a href="#/predict?service=${encodeURIComponent(service)}">predict with it</a></p></div>
    </div>
    <h2>History <span class="muted">(git log ${esc(d.file)})</span></h2>
    <table id="history"><thead><tr><th>commit</th><th>when</th><th>who</th><th>model</th><th>metrics</th><th>what</th></tr></thead><tbody>
    ${d.history.map((h) => `<tr><td><code>${esc(short(h.commit))}</code></td><td>${esc(h.time)}</td><td>${esc(h.author)}</td>
      <td><code>${esc(short(h.deployment?.model?.digest))}</code></td>
      <td>${Object.entries(h.deployment?.metrics || {}).map(([k, v]) => `${esc(k)} ${esc(+v.toFixed(4))}`).join(" · ")}</td>
      <td>${esc(h.summary)}${h.problem ? ` <span class="error">${esc(h.problem)}</span>` : ""}</td></tr>`).join("")}
    </tbody></table>`;
  for (const action of ["start", "stop"]) {
    const button = document.getElementById(`svc-${action}`);
    if (!button) continue;
    button.addEventListener("click", async () => {
      const msg = document.getElementById("svc-msg");
      msg.textContent = `${action}…`;
      try { await api(`/api/services/${encodeURIComponent(service)}/${action}?stack=${encodeURIComponent(stack)}`, { method: "POST" }); route(); }
      catch (err) { msg.innerHTML = `<span class="error">${esc(err.message)}</span>`; }
    });
  }
}

// ---------------------------------------------------------------- metrics

async function metricsPage(params) {
  const mine = generation;
  const pipelines = await api("/api/pipelines");
  const name = params.get("pipeline") || (pipelines.find((p) => p.service) || pipelines[0] || {}).name;
  if (!name) { main.innerHTML = `<h1>Metrics</h1><p class="muted">no pipelines</p>`; return; }
  const data = await api(`/api/pipelines/${encodeURIComponent(name)}/metrics`);
  if (!current(mine)) return;
  // Top-level metrics (what gates read) first, then those nested under a step's name.
  const names = [...new Set([...data.runs, ...data.deployments].flatMap((p) => Object.keys(p.metrics)))]
    .sort((a, b) => (a.includes(".") - b.includes(".")) || a.localeCompare(b));
  main.innerHTML = `<h1>Metrics</h1>
    <div class="filters"><label>pipeline <select id="metrics-pipeline">${pipelines.map((p) =>
      `<option ${p.name === name ? "selected" : ""}>${esc(p.name)}</option>`).join("")}</select></label></div>
    ${(data.plots || []).map((p) => `<figure class="plot" data-path="${esc(p.path)}"><figcaption><code>${esc(p.path)}</code> of ${esc(p.step)}${p.base ? " <span class=\"muted\">(dashed: as committed)</span>" : ""}</figcaption>${p.problem ? `<p class="muted">${esc(p.problem)}</p>` : p.svg}</figure>`).join("")}
    ${names.length === 0 ? `<p class="muted">no metrics recorded for ${esc(name)} yet</p>` : names.map((m) => `
      <div class="card metric" data-metric="${esc(m)}"><h2><code>${esc(m)}</code></h2><div class="grid">
        <div><p class="muted">over the runs (${data.runs.filter((r) => m in r.metrics).length})</p>${chart(m, "runs", data.runs.filter((r) => m in r.metrics).map((r) => ({ label: r.run, at: r.at, value: r.metrics[m] })))}</div>
        <div><p class="muted">over the deployments (${data.deployments.filter((d) => m in d.metrics).length})</p>${chart(m, "deployments", data.deployments.filter((d) => m in d.metrics).map((d) => ({ label: `${short(d.commit)} ${d.service}`, at: d.at, value: d.metrics[m] })))}</div>
      </div></div>`).join("")}`;
  document.getElementById("metrics-pipeline").addEventListener("change", (e) => {
    location.hash = `#/metrics?pipeline=${encodeURIComponent(e.target.value)}`;
  });
}

/// A line chart as SVG: one circle per point, in order, scaled to the values.
function chart(metric, series, points) {
  const W = 520, H = 200, R = 12, T = 12, B = 28;
  if (points.length === 0) return `<svg class="chart ${series}" data-metric="${esc(metric)}" data-series="${series}" data-points="0" width="${W}" height="60"><text x="12" y="34">no points</text></svg>`;
  const values = points.map((p) => p.value);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  // Enough digits to tell the ticks apart, and room on the left for them.
  const digits = Math.min(8, Math.max(0, 2 - Math.floor(Math.log10(hi - lo))));
  const fmt = (v) => (Math.abs(v) >= 1e6 ? v.toExponential(2) : v.toFixed(digits));
  const ticks = [lo, (lo + hi) / 2, hi];
  const L = 14 + 7 * Math.max(...ticks.map((t) => fmt(t).length));
  const x = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (points.length - 1));
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  return `<svg class="chart ${series}" data-metric="${esc(metric)}" data-series="${series}" data-points="${points.length}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
    ${ticks.map((t) => `<line x1="${L}" x2="${W - R}" y1="${y(t)}" y2="${y(t)}" stroke="#eef0f3"/><text x="${L - 6}" y="${y(t) + 4}" text-anchor="end">${esc(fmt(t))}</text>`).join("")}
    <text x="${L}" y="${H - 8}">${esc(points[0].at)}</text><text x="${W - R}" y="${H - 8}" text-anchor="end">${esc(points[points.length - 1].at)}</text>
    <polyline points="${points.map((p, i) => `${x(i)},${y(p.value)}`).join(" ")}"/>
    ${points.map((p, i) => `<circle class="point" cx="${x(i)}" cy="${y(p.value)}" r="4"><title>${esc(p.label)}: ${esc(p.value)}</title></circle>`).join("")}
  </svg>`;
}

// ---------------------------------------------------------------- predict

async function predictPage(params) {
  const mine = generation;
  const services = (await api("/api/services")).filter((s) => s.name);
  if (!current(mine)) return;
  const name = params.get("service") || (services[0] || {}).name;
  if (!name) { main.innerHTML = `<h1>Predict</h1><p class="muted">no services: a run whose gate passes deploys one</p>`; return; }
  const service = services.find((s) => s.name === name) || { name };
  let sample = null, problem = "";
  try { sample = await api(`/api/services/${encodeURIComponent(name)}/sample`); } catch (err) { problem = err.message; }
  if (!current(mine)) return;
  // The form edits the first row of {"rows": [...]}, or the object itself.
  const row = sample && Array.isArray(sample.rows) && typeof sample.rows[0] === "object" ? sample.rows[0]
    : sample && typeof sample === "object" && !Array.isArray(sample) ? sample : null;
  const fields = row ? Object.entries(row).filter(([, v]) => v === null || typeof v !== "object") : [];
  main.innerHTML = `<h1>Predict</h1>
    <div class="filters"><label>service <select id="predict-service">${services.map((s) =>
      `<option ${s.name === name ? "selected" : ""}>${esc(s.name)}</option>`).join("")}</select></label>
      <span>${badge(service.state)} ${esc(service.url || "")}${service.predict ? esc(service.predict) : ""}</span></div>
    ${problem ? `<p class="muted">${esc(problem)}; write the request as JSON:</p>` : ""}
    <form class="predict" id="predict-form">
      <div class="fields">${fields.map(([k, v]) => `<label><code>${esc(k)}</code><input name="${esc(k)}" value="${esc(v)}" data-type="${typeof v}"></label>`).join("")}</div>
      ${row ? "" : `<textarea id="predict-json" rows="10" cols="80">${esc(JSON.stringify(sample ?? { rows: [{}] }, null, 2))}</textarea>`}
      <p class="submit"><button class="primary" type="submit">Predict</button> <span class="answer" id="answer"></span></p>
    </form>
    <pre class="mono" id="answer-json"></pre>`;
  document.getElementById("predict-service").addEventListener("change", (e) => {
    location.hash = `#/predict?service=${encodeURIComponent(e.target.value)}`;
  });
  document.getElementById("predict-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const answer = document.getElementById("answer"), raw = document.getElementById("answer-json");
    answer.textContent = "…";
    raw.textContent = "";
    try {
      let body;
      if (row) {
        // By position: `elements[name]` is the form's own property for names like `length`.
        const inputs = e.target.querySelectorAll(".fields input");
        const edited = Object.fromEntries(fields.map(([k], i) => {
          const input = inputs[i];
          const n = Number(input.value);
          return [k, input.dataset.type === "number" && input.value.trim() !== "" && !Number.isNaN(n) ? n : input.value];
        }));
        body = Array.isArray(sample.rows) ? { ...sample, rows: [{ ...row, ...edited }] } : { ...row, ...edited };
      } else {
        body = JSON.parse(document.getElementById("predict-json").value);
      }
      const result = await api(`/api/services/${encodeURIComponent(name)}/predict`, { method: "POST", body: JSON.stringify(body) });
      const number = firstNumber(result.answer);
      answer.textContent = number === null ? "(no number in the answer)" : String(+number.toFixed(4));
      answer.dataset.value = number ?? "";
      raw.textContent = JSON.stringify(result.answer, null, 2);
    } catch (err) {
      answer.textContent = "";
      raw.innerHTML = `<span class="error">${esc(err.message)}</span>`;
    }
  });
}

function firstNumber(value) {
  if (typeof value === "number") return value;
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) {
      const n = firstNumber(v);
      if (n !== null) return n;
    }
  }
  return null;
}

// ---------------------------------------------------------------- start

(async () => {
  try { info = await api("/api/info"); } catch { /* the pages say what fails */ }
  document.getElementById("root").textContent = info.root || "";
  if (info.actions) {
    const box = document.getElementById("token-box"), input = document.getElementById("token");
    box.hidden = false;
    const fromUrl = new URLSearchParams(location.search).get("token");
    if (fromUrl) {
      sessionStorage.setItem("runner-token", fromUrl);
      // Out of the address bar and the history.
      history.replaceState(null, "", location.pathname + location.hash);
    }
    input.value = sessionStorage.getItem("runner-token") || "";
    input.addEventListener("change", () => sessionStorage.setItem("runner-token", input.value));
  }
  window.addEventListener("hashchange", route);
  route();
})();
