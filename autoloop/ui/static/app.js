/* autoloop dashboard: draws the pages from /api JSON with uPlot, and redraws when /api/version changes.
   No framework, no network beyond this server. */
"use strict";

const KIND_COLORS = {
  keep: "#2ca02c", revert: "#9a9a9a", crash: "#d62728", timeout: "#ff7f0e", oom: "#9467bd",
  nonfinite: "#8c564b", invalid: "#e377c2", interrupted: "#555555", running: "#1f77b4",
};
const FAILED = ["crash", "timeout", "oom", "nonfinite", "invalid", "interrupted"];
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f"];
const FIRST_ROWS = 40;  // rows drawn with the charts (more than the table box shows); the rest follow
const TABLE_ROWS = 200;  // newest iterations in the table; "show all" draws every one (a 1,000-row layout
                         // blocks the page for seconds on a busy machine)
let showAll = false;
const POLL_MS = Number(new URLSearchParams(location.search).get("poll") || 1000);

const $ = (sel) => document.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

function fmt(v) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 1e5 ? v.toFixed(4) : v.toPrecision(4);
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function hms(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(x).padStart(2, "0")}`;
}
function usd(v) { return v ? "$" + Number(v).toFixed(v < 1 ? 4 : 2) : ""; }
function badge(status) { return `<span class="badge s-${esc(status)}">${esc(status)}</span>`; }
function dirText(direction) { return direction === "min" ? "lower is better" : "higher is better"; }

const preloaded = new Set([...document.querySelectorAll('link[rel="preload"][as="fetch"]')].map((l) => l.href));

async function getJSON(url, withVersion = false) {
  const abs = new URL(url, location.href).href;
  // A URL the page preloads is fetched once as the preload asked (the browser hands over that response).
  const r = await fetch(url, preloaded.delete(abs) ? {} : {cache: "no-store"});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${url}`);
  // The server stamps each answer with the history's version taken before it read the data.
  return withVersion ? [body, r.headers.get("X-Autoloop-Version")] : body;
}

function showError(e) {
  let box = $("#error");
  if (!box) {
    box = document.createElement("div");
    box.id = "error";
    box.className = "error";
    document.querySelector("main").prepend(box);
  }
  box.textContent = String(e.message || e);
}
function clearError() { const b = $("#error"); if (b) b.remove(); }

/* Poll a cheap stamp; call redraw() when it changes. */
function watch(versionUrl, redraw) {
  let last = null, busy = false;
  async function tick(first) {
    if (busy) return;
    busy = true;
    try {
      if (first) {  // no round trip first: the data comes stamped with the version it is at least as new as
        last = await redraw();
      } else {
        const v = (await getJSON(versionUrl)).version;
        if (v !== last) { last = v; await redraw(); }
      }
      clearError();
    } catch (e) { showError(e); }
    finally { busy = false; }
  }
  tick(true);
  setInterval(tick, POLL_MS);
}

function chartWidth(el) { return Math.max(320, el.clientWidth || el.parentElement.clientWidth || 800); }
const pointsOnly = (color, size = 7) => ({stroke: color, fill: color, width: 0, paths: () => null,
  points: {show: true, size, stroke: color, fill: color}});
function timeAxis(x) {
  // Short spans in seconds (h:mm:ss would print the same label at every tick), long ones as h:mm:ss.
  const span = (u) => (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
  return x === "time" ? {label: "wall time since start",
                         values: (u, vals) => vals.map((v) => span(u) >= 120 ? hms(v)
                           : `${+v.toFixed(span(u) < 0.1 ? 4 : span(u) < 1 ? 3 : span(u) < 10 ? 2 : 1)} s`)}
                      : {label: "iteration", incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000]};
}
function keepChart(key, el, opts, data) {
  window._charts = window._charts || {};
  const old = window._charts[key];
  if (old && old._sig === opts._sig) { old.setData(data); return old; }
  if (old) old.destroy();
  el.innerHTML = "";
  const u = new uPlot(opts, data, el);
  u._sig = opts._sig;
  window._charts[key] = u;
  return u;
}

/* ------------------------------------------------------------------ runs page */
const selected = new Set(JSON.parse(localStorage.getItem("autoloop.overlay") || "null") || []);
let runsCache = [];

async function drawRuns() {
  const [runs, version] = await getJSON("/api/runs", true);
  runsCache = runs;
  $("#runs-dir").textContent = document.body.dataset.runsDir;
  if (!localStorage.getItem("autoloop.overlay")) runs.slice(0, 3).forEach((r) => selected.add(r.run_id));
  const cols = ["overlay", "run", "target", "started", "status", "stop reason", "best", "iterations", "kept", "cost"];
  $("#runs thead").innerHTML = "<tr>" + cols.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  $("#runs tbody").innerHTML = runs.map((r) => `<tr data-run="${esc(r.run_id)}">
      <td><input type="checkbox" class="ov" value="${esc(r.run_id)}" ${selected.has(r.run_id) ? "checked" : ""}></td>
      <td><a href="/run/${encodeURIComponent(r.run_id)}">${esc(r.run_id)}</a></td>
      <td>${esc(r.target_name)} <span class="muted">(${esc(dirText(r.direction))})</span></td>
      <td>${esc((r.started_at || "").replace("T", " ").slice(0, 19))}</td>
      <td>${badge(r.status)}</td><td>${esc(r.stop_reason || "")}</td>
      <td class="num">${fmt(r.best)}${r.best_iter !== null ? ` <span class="muted">#${r.best_iter}</span>` : ""}</td>
      <td class="num">${r.iterations}</td><td class="num">${r.kept}</td>
      <td class="num">${usd(r.cost_usd)}${r.llm_calls ? ` <span class="muted">${r.llm_calls} calls</span>` : ""}</td></tr>`).join("");
  document.querySelectorAll("input.ov").forEach((cb) => cb.addEventListener("change", () => {
    cb.checked ? selected.add(cb.value) : selected.delete(cb.value);
    localStorage.setItem("autoloop.overlay", JSON.stringify([...selected]));
    drawOverlay();
  }));
  document.body.dataset.runs = runs.length;
  await drawOverlay();
  return version;
}

async function drawOverlay() {
  const ids = runsCache.map((r) => r.run_id).filter((id) => selected.has(id));
  const el = $("#overlay");
  const x = $("#overlay-x").value, showPts = $("#overlay-points").checked;
  if (!ids.length) {
    el.innerHTML = '<p class="muted">No run ticked.</p>';
    window._charts && delete window._charts.overlay;
    document.body.dataset.overlay = 0;
    return;
  }
  const curves = await getJSON("/api/curves?" + ids.map((id) => "run=" + encodeURIComponent(id)).join("&"));
  const tables = [], series = [{label: x === "time" ? "wall time" : "iteration", value: (u, v) => x === "time" ? hms(v) : v}];
  curves.forEach((c, k) => {
    const pts = c.points.filter((p) => (x === "time" ? p.elapsed_s : p.iter) !== null);
    const xs = pts.map((p) => x === "time" ? p.elapsed_s : p.iter);
    const color = PALETTE[k % PALETTE.length];
    const t = [xs, pts.map((p) => p.best_so_far)];
    series.push({label: `${c.run_id} best (${c.direction})`, stroke: color, width: 2,
      paths: uPlot.paths.stepped({align: 1}), spanGaps: true, points: {show: false}});
    if (showPts) {
      t.push(pts.map((p) => p.score));
      series.push(Object.assign(pointsOnly(color, 5), {label: `${c.run_id} score`}));
    }
    tables.push(t);
  });
  const data = uPlot.join(tables);
  const opts = {
    _sig: "ov" + x + showPts + curves.map((c) => c.run_id).join(","),
    width: chartWidth(el), height: 360, series, scales: {x: {time: false}},
    axes: [timeAxis(x), {label: "score"}], legend: {live: true},
  };
  keepChart("overlay", el, opts, data);
  document.body.dataset.overlay = curves.length;
  el.dataset.series = curves.map((c) => c.run_id).join(",");
}

/* ------------------------------------------------------------------ run page */
let detail = null, openIter = null;

function timed(name, fn) {  // performance.measure entries: the bench reads where page-load time goes
  const t = performance.now();
  const out = fn();
  performance.measure(name, {start: t, end: performance.now()});
  return out;
}

async function drawRun() {
  const rid = document.body.dataset.run;
  const t = performance.now();
  let version;
  [detail, version] = await getJSON(`/api/runs/${encodeURIComponent(rid)}`, true);
  performance.measure("fetch run", {start: t, end: performance.now()});
  const r = detail.run;
  $("#title").innerHTML = `${esc(r.run_id)} ${badge(r.status)}`;
  const live = detail.live;
  $("#live").innerHTML = r.status === "running" && live
    ? `● running: iteration ${esc(live.iter)} · ${esc(live.phase || "")} ${Number(live.phase_elapsed_s || 0).toFixed(1)} s` +
      (live.phase_budget_s ? ` / ${Math.round(live.phase_budget_s)} s` : "")
    : "";
  drawMembers(r.status === "running" && live ? live.members || [] : []);
  $("#summary").innerHTML = `
    <div><b>target</b> ${esc(r.target_name)} <span class="muted">${esc(r.target_path || "")}</span></div>
    <div><b>direction</b> ${esc(r.direction)}: ${dirText(r.direction)}</div>
    <div><b>best</b> ${fmt(r.best)} ${r.best_iter !== null ? `at #${r.best_iter}` : ""}</div>
    <div><b>iterations</b> ${r.iterations_done} <span class="muted">(baseline not counted)</span> · <b>kept</b> ${r.kept}</div>
    <div><b>started</b> ${esc((r.started_at || "").replace("T", " ").slice(0, 19))}
      ${r.ended_at ? ` · <b>ended</b> ${esc(r.ended_at.replace("T", " ").slice(0, 19))}` : ""}</div>
    <div><b>stop reason</b> ${esc(r.stop_reason || "—")}</div>
    ${r.cost_usd ? `<div><b>cost</b> ${usd(r.cost_usd)} · ${detail.llm_calls} LLM calls</div>` : ""}`;
  $("#score-title").textContent = `score (${r.direction}: ${dirText(r.direction)})`;
  timed("score chart", drawScore);
  timed("components", drawComponents);
  timed("table", drawTable);
  // First frame with the charts and the table's newest rows: what the bench calls page load (ms since
  // navigation started, like every performance.now()).
  if (!window.__readyAt) requestAnimationFrame(() => { window.__readyAt = performance.now(); });
  if (detail.llm_calls || r.cost_usd) await drawLLM(); else $("#llm-box").hidden = true;
  if (openIter === null) {
    const m = location.hash.match(/iter=(\d+)/);
    if (m) await openCandidate(Number(m[1]));
  } else {
    const it = detail.iterations.find((d) => d.iter === openIter);
    if (it && $("#candidate").dataset.status !== it.status) await openCandidate(openIter);
  }
  return version;
}

/* Members of the batch in flight, per node (live.members: the executor's members.json, as `autoloop status`
   reads it). Elapsed counts on from the server's figure, by this page's own clock (no clock skew). */
let membersAt = 0;
function drawMembers(rows) {
  $("#members-box").hidden = rows.length === 0;
  membersAt = performance.now();
  $("#members tbody").innerHTML = rows.map((m) => `<tr data-node="${esc(m.node)}" data-label="${esc(m.label)}">
    <td>${esc(m.node)}</td><td>${esc(m.member || "—")}</td><td>${esc(m.phase)}${m.status === "queued" ? " (queued)" : ""}</td>
    <td class="num" data-elapsed="${m.elapsed_s ?? ""}">${m.elapsed_s === null ? "" : hms(m.elapsed_s)}</td></tr>`).join("");
}
setInterval(() => {
  const dt = (performance.now() - membersAt) / 1000;
  document.querySelectorAll("#members td[data-elapsed]").forEach((td) => {
    if (td.dataset.elapsed !== "") td.textContent = hms(Number(td.dataset.elapsed) + dt);
  });
}, 1000);

function finished() { return detail.iterations.filter((d) => d.status !== "running"); }
function xOf(d, x) { return x === "time" ? d.elapsed_s : d.iter; }

function drawScore() {
  const x = $("#x-axis").value, r = detail.run;
  const its = finished().filter((d) => xOf(d, x) !== null);
  const scores = its.map((d) => d.score).filter((v) => v !== null);
  const worst = scores.length ? (r.direction === "min" ? Math.max(...scores) : Math.min(...scores)) : 0;
  const xs = its.map((d) => xOf(d, x));
  const kinds = FAILED.filter((k) => its.some((d) => d.status === k));
  const data = [xs, its.map((d) => d.score), its.map((d) => d.best_so_far),
    its.map((d) => d.status === "keep" ? d.score : null),
    ...kinds.map((k) => its.map((d) => d.status === k ? (d.score ?? worst) : null))];
  const series = [
    {label: x === "time" ? "wall time" : "iteration", value: (u, v) => x === "time" ? hms(v) : v},
    {label: "score", stroke: "#9a9a9a", width: 1, spanGaps: true, points: {show: true, size: 5, fill: "#9a9a9a"}},
    {label: "best so far", stroke: KIND_COLORS.keep, width: 2, paths: uPlot.paths.stepped({align: 1}), points: {show: false}},
    Object.assign(pointsOnly(KIND_COLORS.keep, 10), {label: "kept checkpoint"}),
    ...kinds.map((k) => Object.assign(pointsOnly(KIND_COLORS[k], 9), {label: `${k} (no score: drawn at the worst)`})),
  ];
  const el = $("#score-chart");
  const u = keepChart("score", el, {
    _sig: "score" + x + kinds.join(","), width: chartWidth(el), height: 340, series,
    scales: {x: {time: false}}, axes: [timeAxis(x), {label: `score (${dirText(r.direction)})`, size: 70}],
    cursor: {points: {size: 10}},
  }, data);
  if (!u._clickBound) {
    u.over.addEventListener("click", () => {
      const idx = u.cursor.idx;
      if (idx === null || idx === undefined) return;
      const xv = u.data[0][idx];
      const d = finished().find((t) => xOf(t, $("#x-axis").value) === xv);
      if (d) openCandidate(d.iter, true);
    });
    u._clickBound = true;
  }
  el.dataset.points = scores.length;
  el.dataset.iterations = its.length;
  el.dataset.kept = its.filter((d) => d.status === "keep").length;
  document.body.dataset.ready = "1";
}

function drawComponents() {
  const box = $("#components"), x = $("#x-axis").value;
  const its = finished().filter((d) => xOf(d, x) !== null);
  const names = detail.components;
  if (!names.length) { box.innerHTML = '<p class="muted">No components recorded.</p>'; return; }
  const sig = names.join(",") + x;
  if (box.dataset.sig !== sig) {
    box.innerHTML = names.map((n, k) => `<div class="small"><h3>${esc(n)}</h3><div id="comp-${k}"></div></div>`).join("");
    box.dataset.sig = sig;
  }
  names.forEach((n, k) => {
    const el = $(`#comp-${k}`);
    const color = PALETTE[k % PALETTE.length];
    const data = [its.map((d) => xOf(d, x)), its.map((d) => d.components[n] ?? null),
      its.map((d) => d.status === "keep" ? (d.components[n] ?? null) : null)];
    keepChart("comp-" + n, el, {
      _sig: sig + n, width: Math.max(280, Math.min(420, box.clientWidth / 2 - 20)), height: 170,
      series: [{label: x === "time" ? "wall time" : "iteration", value: (u, v) => x === "time" ? hms(v) : v},
        {label: n, stroke: color, width: 1.5, spanGaps: true, points: {show: true, size: 4}},
        Object.assign(pointsOnly(KIND_COLORS.keep, 8), {label: "kept"})],
      scales: {x: {time: false}}, axes: [timeAxis(x), {label: n, size: 60}], legend: {show: false},
    }, data);
  });
}

function drawTable() {
  const comps = detail.components, params = detail.params;
  const cols = ["iter", "checkpoint", "status", "score", ...comps, ...params.map((p) => "params." + p), "delta",
    "ci", "description", "reason", "propose_s", "run_s", "score_s", "overhead_s", "total_s", "peak_rss_mb",
    "cost_usd", "llm_calls", "error"];
  $("#iters thead").innerHTML = "<tr>" + cols.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
  const rows = detail.iterations.slice().reverse().map((d) => {
    const cells = [
      d.iter, d.tag ? `<a class="ckpt">${esc(d.tag.split("/").pop())}</a>` : "", badge(d.status), fmt(d.score),
      ...comps.map((c) => fmt(d.components[c])), ...params.map((p) => esc(fmt((d.params || {})[p]))),
      fmt(d.delta), d.ci_low !== null ? `[${fmt(d.ci_low)}, ${fmt(d.ci_high)}]` : "",
      esc(d.description), esc(d.reason), fmt(d.propose_s), fmt(d.run_s), fmt(d.score_s), fmt(d.overhead_s),
      fmt(d.total_s), fmt(d.peak_rss_mb), usd(d.cost_usd), d.llm_calls || "",
      d.error_excerpt ? `<span class="err">${esc(d.error_excerpt)}</span>` : "",
    ];
    return `<tr data-iter="${d.iter}" class="s-row-${esc(d.status)}${d.iter === openIter ? " open" : ""}">` +
      cells.map((c) => `<td>${c}</td>`).join("") + "</tr>";
  });
  // The newest rows at once, with the charts; up to TABLE_ROWS more in one insert after the first frame
  // (one layout of the table, not one per chunk); every row only when asked.
  const body = $("#iters tbody"), gen = (body._gen || 0) + 1;
  const limit = showAll ? rows.length : Math.min(rows.length, TABLE_ROWS);
  body._gen = gen;
  body.innerHTML = rows.slice(0, FIRST_ROWS).join("");
  body.dataset.rows = Math.min(limit, FIRST_ROWS);
  body.dataset.complete = limit <= FIRST_ROWS ? "1" : "";
  if (limit > FIRST_ROWS) {
    requestAnimationFrame(() => setTimeout(() => {
      if (body._gen !== gen) return;
      body.insertAdjacentHTML("beforeend", rows.slice(FIRST_ROWS, limit).join(""));
      body.dataset.rows = limit;
      body.dataset.complete = "1";
    }, 0));
  }
  const more = $("#iters-more");
  more.hidden = limit >= rows.length;
  more.textContent = `show all ${rows.length} iterations (${rows.length - limit} older not shown)`;
}

async function drawLLM() {
  const rid = document.body.dataset.run;
  const d = await getJSON(`/api/runs/${encodeURIComponent(rid)}/llm`);
  const src = d.calls.t.length ? d.calls : d.iterations;
  $("#llm-box").hidden = false;
  const el = $("#llm-chart");
  keepChart("llm", el, {
    _sig: "llm" + (src === d.calls), width: chartWidth(el), height: 240, scales: {x: {time: false}, usd: {}, n: {}},
    series: [{label: "wall time", value: (u, v) => hms(v)},
      {label: "dollars (cumulative)", stroke: "#d62728", width: 2, scale: "usd", value: (u, v) => usd(v)},
      {label: src === d.calls ? "calls (cumulative)" : "calls (cumulative, per iteration)", stroke: "#1f77b4",
        width: 2, scale: "n", dash: [6, 4], points: {show: true, size: 6}}],
    axes: [timeAxis("time"), {scale: "usd", label: "dollars", values: (u, vals) => vals.map((v) => "$" + v.toFixed(3)), size: 70},
      {scale: "n", label: "calls", side: 1, grid: {show: false}}],
  }, [src.t, src.usd, src.n]);
  const models = Object.entries(d.models);
  $("#llm-models").innerHTML = models.length ? "<table class='grid'><tr><th>model</th><th>calls</th><th>dollars</th>" +
    "<th>input tokens</th><th>output tokens</th><th>cache hits</th></tr>" + models.map(([m, v]) =>
      `<tr><td>${esc(m)}</td><td>${v.calls}</td><td>${usd(v.cost_usd)}</td><td>${v.input_tokens}</td>` +
      `<td>${v.output_tokens}</td><td>${v.cache_hits}</td></tr>`).join("") + "</table>" : "";
}

function size(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function diffHtml(text) {
  return text.split("\n").map((ln) => {
    const c = ln.startsWith("+") ? "add" : ln.startsWith("-") ? "del" : ln.startsWith("@@") ? "hunk" : "";
    return `<span class="${c}">${esc(ln)}</span>`;
  }).join("\n");
}

async function openCandidate(n, scroll = false) {
  const rid = document.body.dataset.run;
  openIter = n;
  history.replaceState(null, "", `#iter=${n}`);
  document.querySelectorAll("#iters tr.open").forEach((tr) => tr.classList.remove("open"));
  const tr = document.querySelector(`#iters tr[data-iter="${n}"]`);
  if (tr) tr.classList.add("open");
  const box = $("#candidate");
  box.hidden = false;
  box.dataset.iter = n;
  box.dataset.loaded = "";
  box.innerHTML = `<p class="muted">loading iteration ${n}…</p>`;
  let c;
  try { c = await getJSON(`/api/runs/${encodeURIComponent(rid)}/iter/${n}`); }
  catch (e) { box.innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  const it = c.iteration, inc = c.incumbent, dir = c.run.direction, diff = c.diff, items = c.items;
  const metrics = Object.keys(Object.assign({}, it.metrics, inc ? inc.metrics : {}));
  let h = `<div class="cand-head"><h2>Iteration ${it.iter} ${badge(it.status)} ${it.tag ? `<code>${esc(it.tag)}</code>` : ""}</h2>
    <button id="close-cand" type="button">close</button></div>
    <p class="desc">${esc(it.description)}</p>
    <div class="cols"><div><h3>Decision</h3><p>${esc(it.reason || "")}</p>
      <table class="grid small-table"><tr><th></th><th>candidate</th><th>incumbent${inc ? ` (#${inc.iter})` : ""}</th></tr>
      <tr><td>score <span class="muted">(${dirText(dir)})</span></td><td>${fmt(it.score)}</td><td>${fmt(inc ? inc.score : null)}</td></tr>
      ${metrics.map((m) => `<tr><td>${esc(m)}</td><td>${fmt(it.metrics[m])}</td><td>${fmt(inc ? inc.metrics[m] : null)}</td></tr>`).join("")}
      <tr><td>delta <span class="muted">(candidate − incumbent)</span></td><td colspan="2">${fmt(it.delta)}</td></tr>
      ${it.ci_low !== null ? `<tr><td>interval</td><td colspan="2">[${fmt(it.ci_low)}, ${fmt(it.ci_high)}]</td></tr>` : ""}
      </table>
      <p class="muted">propose ${fmt(it.propose_s)} s · run ${fmt(it.run_s)} s · score ${fmt(it.score_s)} s ·
        overhead ${fmt(it.overhead_s)} s · peak RSS ${fmt(it.peak_rss_mb)} MB${it.cost_usd ? ` · ${usd(it.cost_usd)}` : ""}</p>
      ${it.error ? `<h3>Error</h3><pre class="error-text">${esc(it.error)}</pre>` : ""}</div>
    <div><h3>Params</h3><pre class="params">${esc(JSON.stringify(it.params || {}, null, 2))}</pre></div></div>`;
  h += `<h3>Diff against ${inc ? `the incumbent (#${inc.iter}, <code>${esc((inc.commit || "").slice(0, 12))}</code>)` : "nothing (the baseline)"}</h3>`;
  if (!diff) h += `<p class="muted">No commit for this iteration (${esc(it.status)}).</p>`;
  else if (diff.error) h += `<p class="error">${esc(diff.error)}</p>`;
  else {
    if (!diff.files.length && !diff.large_files.length) h += `<p class="muted">No change to the state.</p>`;
    h += `<div id="diff">` + diff.files.map((f) => `<div class="file"><div class="file-head"><code>${esc(f.path)}</code>
        <span class="st">${esc(f.status)}</span>
        ${f.binary ? "" : `<span class="add">+${f.added}</span> <span class="del">−${f.deleted}</span>`}
        <span class="muted">${size(f.size_before)} → ${size(f.size_after)}</span>
        ${f.note ? `<span class="muted">${esc(f.note)}</span>` : ""}</div>
        ${f.diff ? `<pre class="diff">${diffHtml(f.diff)}</pre>` : ""}</div>`).join("") + `</div>`;
    if (diff.large_files.length) {
      h += `<h3>Large files <span class="muted">(stored by sha256 outside git)</span></h3><table class="grid" id="large-files">
        <tr><th>file</th><th>change</th><th>size before</th><th>size after</th><th>sha256</th></tr>` +
        diff.large_files.map((f) => `<tr><td><code>${esc(f.path)}</code></td><td>${esc(f.status)}</td>
          <td>${size(f.size_before)}</td><td>${size(f.size_after)}</td>
          <td><code>${esc((f.sha256_after || f.sha256_before || "").slice(0, 12))}</code></td></tr>`).join("") + "</table>";
    }
    if (diff.truncated) h += `<p class="muted">Some diffs were left out to keep the page small.</p>`;
  }
  h += `<h3>Per-item changes</h3>`;
  if (!items.n) h += `<p class="muted">No per-item scores for this iteration.</p>`;
  else {
    h += `<p id="item-summary"><b class="better">${items.better} better</b> · <b class="worse">${items.worse} worse</b> ·
      ${items.same} unchanged of ${items.n} gold items ${items.source ? `<span class="muted">(against ${esc(items.source)}; ${dirText(dir)})</span>` : ""}</p>
      <div class="table-wrap short"><table class="grid" id="items"><tr><th>item</th><th>incumbent</th><th>candidate</th><th>delta</th><th>change</th></tr>` +
      items.rows.map((r) => `<tr class="${esc(r.change)}"><td>${esc(r.item_id)}</td><td>${fmt(r.before)}</td>
        <td>${fmt(r.after)}</td><td>${fmt(r.delta)}</td><td>${esc(r.change)}</td></tr>`).join("") + "</table></div>";
    if (items.truncated) h += `<p class="muted">The ${items.rows.length} largest changes are shown.</p>`;
  }
  box.innerHTML = h;
  box.dataset.status = it.status;
  box.dataset.loaded = "1";
  if (scroll) box.scrollIntoView({block: "start"});
  $("#close-cand").addEventListener("click", () => {
    box.hidden = true; openIter = null; history.replaceState(null, "", location.pathname + location.search);
    document.querySelectorAll("#iters tr.open").forEach((t) => t.classList.remove("open"));
  });
}

/* ------------------------------------------------------------------ start */
function start() {
  const page = document.body.dataset.page;
  if (page === "runs") {
    $("#overlay-x").addEventListener("change", drawOverlay);
    $("#overlay-points").addEventListener("change", drawOverlay);
    watch("/api/version", drawRuns);
  } else if (page === "run") {
    const rid = document.body.dataset.run;
    $("#x-axis").addEventListener("change", () => { drawScore(); drawComponents(); });
    $("#iters-more").addEventListener("click", () => { showAll = true; drawTable(); });
    $("#iters").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-iter]");
      if (tr) openCandidate(Number(tr.dataset.iter), true);
    });
    watch(`/api/version?run=${encodeURIComponent(rid)}`, drawRun);
  }
  let t = null;
  window.addEventListener("resize", () => {
    clearTimeout(t);
    t = setTimeout(() => Object.entries(window._charts || {}).forEach(([k, u]) => {
      if (k === "score" || k === "overlay" || k === "llm") u.setSize({width: chartWidth(u.root.parentElement), height: u.height});
    }), 150);
  });
}
start();
