// The shard dashboard page: no dependencies, no build step. Reads the JSON endpoints beside it (api/...),
// relative to this page, so it works under any base URL. Every value from the database is escaped: shard
// errors and file names come from the repository and the model, which are untrusted. Token figures, durations and
// costs arrive as text (the *_text fields and "figures", worded by core/health/figures.py exactly as
// `airflow-worktree report` and the Markdown report word them): this page formats none of them itself.
"use strict";

const STATUSES = ["pending", "running", "completed", "failed"];
const main = document.getElementById("main");
const state = { run: null, filter: "all", sort: { key: "shard_id", dir: 1 } };

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const NUMBER = new Intl.NumberFormat("en-US"); // one formatter: toLocaleString builds one per call (slow)
function fmtNum(n) { return n == null ? "" : NUMBER.format(n); }
function capital(text) { return text ? text[0].toUpperCase() + text.slice(1) : ""; }
function offlineBadge(offline) {
  return offline ? ' <span class="badge offline" data-testid="offline" title="the run used the offline Messages API test double, not Claude: its cost is the list price, nothing was billed">offline test double</span>' : "";
}
function fmtTime(epoch) {
  if (epoch == null) return "";
  return new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
}
function statusBadge(status, stale) {
  return `<span class="status ${esc(status)}">${esc(status)}</span>` + (stale ? ' <span class="status stale" title="no heartbeat: stale lock">stale</span>' : "");
}
function level(l) { return `<span class="level ${esc(l)}" data-testid="level">${esc(l)}</span>`; }
function airflowLink(path, text) {
  // Airflow UI pages: relative to the UI's base URL, one level above this app (…/worktree/).
  return path ? `<a href="../${esc(path)}" target="_top">${esc(text)}</a>` : "";
}
function runHref(runId) { return "#/run/" + encodeURIComponent(runId); }
function shardHref(runId, shardId) { return runHref(runId) + "/shard/" + encodeURIComponent(shardId); }
function progressBar(counts, total) {
  const seg = ["completed", "failed", "running"].map((s) =>
    `<span class="${s}" style="width:${total ? (100 * (counts[s] || 0)) / total : 0}%"></span>`).join("");
  return `<span class="progress" title="${fmtNum((counts.completed || 0) + (counts.failed || 0))} of ${fmtNum(total)} done">${seg}</span>`;
}
function actionsBlock(health) {
  if (!health || !health.actions || !health.actions.length) return "";
  return `<div class="actions ${esc(health.level)}" data-testid="actions">` + health.actions.map((a) =>
    `<div>${level(a.level)} ${esc(a.label)}: <b>${esc(a.action)}</b> <span class="dim">${esc(a.message || "")}</span></div>`).join("") + "</div>";
}

async function getJSON(url, options) {
  const resp = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {}));
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : resp.statusText;
    const err = new Error(detail);
    err.status = resp.status;
    throw err;
  }
  return body;
}
function showError(err) {
  const hint = err.status === 401 ? "Not signed in: log in to Airflow, then open this page from its menu."
    : err.status === 403 ? "Not allowed: " + err.message : err.message;
  main.innerHTML = `<div class="error" data-testid="error" data-status="${esc(err.status || "")}">${esc(hint)}</div>`;
}
function setNav(name) {
  document.querySelectorAll("nav a[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
}

// ------------------------------------------------------------------------------------------------ runs
async function showRuns() {
  setNav("runs");
  const view = await getJSON("api/runs");
  document.getElementById("db").textContent = view.database || "";
  if (!view.runs.length) {
    main.innerHTML = `<h1>Runs</h1><p class="dim" data-testid="empty">${esc(view.message || "No run in the shard database yet.")}</p>`;
    return;
  }
  const rows = view.runs.map((r) => `<tr data-run="${esc(r.run_id)}" data-level="${esc(r.health.level)}">
    <td class="wrap"><a href="${runHref(r.run_id)}">${esc(r.run_id)}</a>${offlineBadge(r.offline)}</td>
    <td>${r.dag_id ? airflowLink("dags/" + encodeURIComponent(r.dag_id) + "/runs/" + encodeURIComponent(r.run_id), r.dag_id) : '<span class="dim">-</span>'}</td>
    <td class="wrap">${STATUSES.map((s) => `<span class="badge" data-count="${s}">${s} ${fmtNum(r.counts[s])}</span>`).join("")}${r.stale ? `<span class="badge stale" data-count="stale">stale ${fmtNum(r.stale)}</span>` : ""}</td>
    <td>${progressBar(r.counts, r.total)} <span class="dim">${Math.round(r.progress * 100)}%</span></td>
    <td class="num" data-figure="duration">${esc(r.figures.duration)}</td>
    <td class="num" data-figure="tokens" title="${esc(r.figures.tokens)}">${esc(r.figures.tokens_short)}</td>
    <td class="num" data-figure="cost">${esc(r.figures.cost)}</td>
    <td>${level(r.health.level)} ${r.health.actions.map((a) => `<div class="dim">${esc(a.label)}: ${esc(a.action)}</div>`).join("")}</td>
  </tr>`).join("");
  main.innerHTML = `<h1>Runs</h1>
    <div class="hscroll"><table data-testid="runs"><thead><tr><th>Run</th><th>DAG run</th><th>Shards</th><th>Progress</th><th class="num">Duration</th>
    <th class="num">${esc(capital(view.labels.tokens))}</th><th class="num">Cost</th><th>Verdict</th></tr></thead><tbody>${rows}</tbody></table></div>
    <p class="dim">Stale: running with no heartbeat for ${esc(view.stale_after_text)}. Verdicts: the thresholds of <code>airflow-worktree check</code> per run.</p>`;
}

// ------------------------------------------------------------------------------------------------ a run
const COLUMNS = [ // key, label, numeric, width (px; the table has a fixed layout)
  ["shard_id", "Shard", 0, 150], ["status", "Status", 0, 130], ["worker_id", "Worker", 0, 150], ["attempt", "Attempt", 1, 75],
  ["started_at", "Started", 0, 150], ["heartbeat_age_s", "Heartbeat age", 1, 110], ["duration_s", "Duration", 1, 85],
  ["files", "Files", 1, 120], ["branch", "Branch", 0, 220], ["commit_sha", "Commit", 0, 100],
  ["input_tokens", "Tokens", 1, 130], ["cost_usd", "Cost", 1, 80], ["error", "Error", 0, 280], ["log", "Log", 0, 50],
];

async function showRun(runId) {
  setNav("runs");
  const view = await getJSON("api/run?run_id=" + encodeURIComponent(runId));
  state.run = view;
  const c = view.counts;
  const f = view.figures;
  const cards = [["Shards", fmtNum(view.total)], ...STATUSES.map((s) => [s, fmtNum(c[s])]), ["stale", fmtNum(view.stale)],
    ["Progress", Math.round(view.progress * 100) + "%"], ["Duration", f.duration], ["Shard duration", "avg " + f.avg_duration + ", max " + f.max_duration],
    ["Tokens", f.tokens], ["Cost", f.cost]];
  const reset = view.can_reset && view.stale ? `<button class="danger" id="reset" data-testid="reset">Reset ${view.stale} stale shard(s) to pending</button>` : "";
  main.innerHTML = `<h1>Run ${esc(view.run_id)}${offlineBadge(view.offline)}</h1>
    <div>${view.dag_id ? "DAG run: " + airflowLink(view.dag_run_path, view.dag_id + " / " + view.run_id) : '<span class="dim">not a run of this Airflow</span>'}
      · verdict ${level(view.health.level)} ${reset}</div>
    ${actionsBlock(view.health)}
    <div class="cards" data-testid="cards">${cards.map(([k, v]) => `<div class="card" data-card="${esc(k)}"><span class="dim">${esc(k)}</span><b>${esc(v)}</b></div>`).join("")}</div>
    ${view.message ? `<p class="note" data-testid="no-shards">${esc(capital(view.message))}.</p>` : ""}
    <h2>Timeline</h2>
    <canvas id="timeline" data-testid="timeline" height="120"></canvas><div id="tip"></div>
    <p class="dim" id="timeline-note"></p>
    <h2>Shards</h2>
    <div class="filters" data-testid="filters">${["all", ...STATUSES, "stale"].map((f) =>
      `<button data-filter="${f}" class="${state.filter === f ? "active" : ""}">${f} ${f === "all" ? view.total : f === "stale" ? view.stale : c[f]}</button>`).join("")}</div>
    <div class="scroll"><table class="shards" data-testid="shards"><thead><tr>${COLUMNS.map(([k, label, num, width]) =>
      `<th data-key="${k}" class="${k === "log" ? "" : "sortable"} ${num ? "num" : ""}" style="width:${width}px">${k === "input_tokens" ? esc(capital(view.labels.tokens)) : label}</th>`).join("")}</tr></thead><tbody id="shard-rows"></tbody></table></div>`;
  main.querySelectorAll(".filters button").forEach((b) => b.addEventListener("click", () => { state.filter = b.dataset.filter; renderShardRows(); }));
  main.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderShardRows();
  }));
  const btn = document.getElementById("reset");
  if (btn) btn.addEventListener("click", () => resetStale(view.run_id));
  drawTimeline(view); // before the rows: its width is read while the page is still small
  renderShardRows();
}

function renderShardRows() {
  const view = state.run;
  const f = state.filter;
  let shards = view.shards.filter((s) => f === "all" || (f === "stale" ? s.stale : s.status === f));
  const { key, dir } = state.sort;
  shards = shards.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x == null && y == null) return 0;
    if (x == null) return 1;
    if (y == null) return -1;
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
  const rows = shards.map((s) => `<tr data-shard="${esc(s.shard_id)}" data-status="${esc(s.status)}"${s.stale ? ' class="stale" data-stale="1"' : ""}>
    <td><a href="${shardHref(view.run_id, s.shard_id)}">${esc(s.shard_id)}</a></td>
    <td>${statusBadge(s.status, s.stale)}</td><td>${esc(s.worker_id || "")}</td><td class="num">${fmtNum(s.attempt)}</td>
    <td>${fmtTime(s.started_at)}</td><td class="num">${esc(s.heartbeat_age_text)}</td><td class="num">${esc(s.duration_text)}</td>
    <td class="num">${fmtNum(s.files)}${s.files_changed ? ` <span class="dim">(${fmtNum(s.files_changed)} changed)</span>` : ""}</td>
    <td class="wrap">${esc(s.branch || "")}</td><td><code>${esc((s.commit_sha || "").slice(0, 10))}</code></td>
    <td class="num" title="${esc(s.tokens_title)}">${esc(s.tokens_text)}</td><td class="num">${esc(s.cost_text)}</td>
    <td class="err" title="${esc(s.error || "")}">${esc(s.error || "")}</td><td>${s.log_path ? airflowLink(s.log_path, "log") : ""}</td></tr>`);
  // One insertion: measured faster than chunks (each chunk lays the growing table out again).
  const tbody = document.getElementById("shard-rows");
  tbody.innerHTML = rows.join("");
  tbody.dataset.complete = "1";
  main.querySelectorAll(".filters button").forEach((b) => b.classList.toggle("active", b.dataset.filter === f));
  main.querySelectorAll("th.sortable").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === key && dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === key && dir < 0);
  });
}

function drawTimeline(view) {
  // Shards as bars packed into lanes (a shard takes the first lane free at its start): the number of
  // lanes is the peak concurrency. Running shards extend to now; stale ones are orange.
  const canvas = document.getElementById("timeline");
  const bars = view.shards.filter((s) => s.started_at != null).map((s) => ({
    s, start: s.started_at, end: s.completed_at != null && s.status !== "running" ? s.completed_at : view.generated_at,
  })).sort((a, b) => a.start - b.start);
  const note = document.getElementById("timeline-note");
  if (!bars.length) { canvas.style.display = "none"; note.textContent = view.shards.length ? "No shard has started yet." : ""; return; }
  const laneEnds = [];
  for (const bar of bars) {
    let lane = laneEnds.findIndex((end) => end <= bar.start);
    if (lane < 0) { lane = laneEnds.length; laneEnds.push(0); }
    laneEnds[lane] = bar.end;
    bar.lane = lane;
  }
  const t0 = bars[0].start, t1 = Math.max(...bars.map((b) => b.end), t0 + 1);
  const laneH = Math.max(2, Math.min(14, Math.floor(240 / laneEnds.length)));
  const width = canvas.clientWidth || 900;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio;
  canvas.height = (laneEnds.length * laneH + 18) * ratio;
  canvas.style.height = laneEnds.length * laneH + 18 + "px";
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const css = getComputedStyle(document.documentElement);
  const colour = (b) => css.getPropertyValue("--" + (b.s.stale ? "stale" : b.s.status)).trim() || "#888";
  const x = (t) => ((t - t0) / (t1 - t0)) * (width - 2) + 1;
  for (const b of bars) {
    ctx.fillStyle = colour(b);
    ctx.fillRect(x(b.start), b.lane * laneH, Math.max(1, x(b.end) - x(b.start)), Math.max(1, laneH - 1));
  }
  ctx.fillStyle = "#69707a";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(fmtTime(t0), 2, laneEnds.length * laneH + 13);
  const endText = fmtTime(t1);
  ctx.fillText(endText, width - ctx.measureText(endText).width - 2, laneEnds.length * laneH + 13);
  note.textContent = `${bars.length} shard(s) started over ${view.figures.duration}; peak concurrency ${laneEnds.length}.`;
  note.dataset.peak = String(laneEnds.length);
  const tip = document.getElementById("tip");
  canvas.onmousemove = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, lane = Math.floor((ev.clientY - rect.top) / laneH);
    const hit = bars.find((b) => b.lane === lane && x(b.start) <= px && px <= Math.max(x(b.end), x(b.start) + 2));
    if (!hit) { tip.style.display = "none"; return; }
    tip.textContent = `${hit.s.shard_id} · ${hit.s.status}${hit.s.stale ? " (stale)" : ""} · ${hit.s.duration_text} · ${hit.s.worker_id || ""}`;
    tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px"; tip.style.display = "block";
  };
  canvas.onmouseleave = () => { tip.style.display = "none"; };
  canvas.onclick = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, lane = Math.floor((ev.clientY - rect.top) / laneH);
    const hit = bars.find((b) => b.lane === lane && x(b.start) <= px && px <= Math.max(x(b.end), x(b.start) + 2));
    if (hit) location.hash = shardHref(view.run_id, hit.s.shard_id);
  };
}

async function resetStale(runId) {
  if (!confirm("Reset the stale shards of this run to pending?")) return;
  try {
    const out = await getJSON("api/run/reset-stale?run_id=" + encodeURIComponent(runId),
      { method: "POST", headers: { Accept: "application/json", "X-Worktree-Action": "reset-stale" } });
    await showRun(runId);
    const msg = document.createElement("p");
    msg.dataset.testid = "reset-done";
    msg.textContent = `Reset ${out.reset.length} shard(s): ${out.reset.join(", ")}`;
    main.prepend(msg);
  } catch (err) { showError(err); }
}

// ------------------------------------------------------------------------------------------------ a shard
async function showShard(runId, shardId) {
  setNav("runs");
  const s = await getJSON("api/shard?run_id=" + encodeURIComponent(runId) + "&shard_id=" + encodeURIComponent(shardId));
  const facts = [["Status", statusBadge(s.status, s.stale)], ["Task", esc(s.task || "")], ["Worker", esc(s.worker_id || "")],
    ["Attempt", fmtNum(s.attempt)], ["Started", fmtTime(s.started_at)], ["Completed", fmtTime(s.completed_at)],
    ["Heartbeat age", esc(s.heartbeat_age_text)], ["Branch", esc(s.branch || "")], ["Commit", `<code>${esc(s.commit_sha || "")}</code>`],
    ["Tokens", esc(s.tokens_text)],
    ["Cost", esc(s.cost_text)], ["Log", s.log_path ? airflowLink(s.log_path, "task instance log in Airflow")
      : s.dag_run_path ? `<span class="dim">no task instance of the run ran as ${esc(s.worker_id || "-")}:</span> ` + airflowLink(s.dag_run_path, "DAG run")
      : '<span class="dim">not a run of this Airflow</span>']];
  const attempts = s.attempts == null ? '<p class="dim">This shard database keeps only the last attempt (schema before v3).</p>'
    : !s.attempts.length ? '<p class="dim">No attempt yet.</p>'
    : `<table data-testid="attempts"><thead><tr><th class="num">#</th><th>Status</th><th>Worker</th><th>Started</th><th>Ended</th>
       <th class="num">${esc(capital(s.labels.tokens))}</th><th class="num">Cost</th><th>Error</th><th>Log</th></tr></thead><tbody>` + s.attempts.map((a) => `<tr>
       <td class="num">${fmtNum(a.attempt)}</td><td>${statusBadge(a.status)}</td><td>${esc(a.worker_id || "")}</td>
       <td>${esc(a.started_at || "")}</td><td>${esc(a.ended_at || "")}</td>
       <td class="num">${esc(a.tokens_text)}</td>
       <td class="num">${esc(a.cost_text)}</td><td class="err">${esc(a.error_message || "")}</td>
       <td>${a.log_path ? airflowLink(a.log_path, "log") : ""}</td></tr>`).join("") + "</tbody></table>";
  const verify = s.verify ? `<p>${s.verify.ok ? '<span class="status completed">passed</span>' : '<span class="status failed">failed</span>'} exit ${esc(s.verify.returncode)}</p><pre data-testid="verify">${esc(s.verify.output_tail)}</pre>`
    : '<p class="dim">No verify command ran.</p>';
  main.innerHTML = `<p><a href="${runHref(s.run_id)}">← run ${esc(s.run_id)}</a></p>
    <h1>Shard ${esc(s.shard_id)}</h1>
    <table data-testid="facts">${facts.map(([k, v]) => `<tr><th>${k}</th><td style="white-space:normal">${v}</td></tr>`).join("")}</table>
    ${s.error_message ? `<h2>Error</h2><pre data-testid="shard-error">${esc(s.error_message)}</pre>` : ""}
    <h2>Files (${fmtNum(s.files.length)} planned, ${fmtNum(s.files_changed.length)} changed)</h2>
    <pre data-testid="files">${s.files.map((f) => (s.files_changed.includes(f) ? "M " : "  ") + esc(f)).join("\n")}${s.files_changed.filter((f) => !s.files.includes(f)).map((f) => "\nM " + esc(f)).join("")}</pre>
    <h2>Diffstat</h2><pre data-testid="diffstat">${esc(s.diffstat) || '<span class="dim">none</span>'}</pre>
    <h2>Verify output (tail)</h2>${verify}
    <h2>Result summary</h2><pre data-testid="summary">${esc(JSON.stringify(s.result_summary, null, 2))}</pre>
    <h2>Attempts</h2>${attempts}`;
}

// ------------------------------------------------------------------------------------------------ health
async function showHealth() {
  setNav("health");
  const h = await getJSON("api/health");
  document.getElementById("db").textContent = h.database || "";
  const rows = (h.metrics || []).map((m) => `<tr data-metric="${esc(m.metric)}" data-level="${esc(m.level)}"><td>${esc(m.label)}</td>
    <td class="num">${esc(m.value_text)}</td><td>${esc(m.warning)}</td><td>${esc(m.critical)}</td><td>${level(m.level)}</td>
    <td>${m.level === "ok" ? '<span class="dim">-</span>' : esc(m.action)}</td></tr>`).join("");
  const stale = (h.stale || []).length ? `<h2>Stale locks (${h.stale.length})</h2><table data-testid="stale"><thead><tr><th>Run</th><th>Shard</th><th>Worker</th><th>Last heartbeat</th></tr></thead><tbody>` +
    h.stale.map((s) => `<tr><td><a href="${runHref(s.run_id)}">${esc(s.run_id)}</a></td><td><a href="${shardHref(s.run_id, s.shard_id)}">${esc(s.shard_id)}</a></td>
    <td>${esc(s.worker_id || "")}</td><td>${esc(s.heartbeat_at || s.started_at || "")}</td></tr>`).join("") + "</tbody></table>" : "";
  main.innerHTML = `<h1>Health ${level(h.level)}</h1>
    <p class="dim">The runbook's thresholds, as <code>airflow-worktree check</code> evaluates them${h.worktree_root ? `; worktree root <code data-testid="worktree-root">${esc(h.worktree_root)}</code>` + (h.worktree_root_source ? ` (${esc(h.worktree_root_source)})` : "") : ""}.</p>
    ${actionsBlock(h)}
    <table data-testid="health"><thead><tr><th>Metric</th><th class="num">Value</th><th>Warning</th><th>Critical</th><th>Level</th><th>Action</th></tr></thead><tbody>${rows}</tbody></table>
    ${(h.not_measured || []).length ? `<p class="dim" data-testid="not-measured">Not measured: ${h.not_measured.map((m) => esc(m.label) + " (" + esc(m.why) + ")").join("; ")}</p>` : ""}
    ${stale}`;
}

// ------------------------------------------------------------------------------------------------ router
async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "run" && parts[2] === "shard") await showShard(parts[1], parts.slice(3).join("/"));
    else if (parts[0] === "run") await showRun(parts[1]);
    else if (parts[0] === "health") await showHealth();
    else await showRuns();
    document.body.dataset.loaded = location.hash || "#/";
  } catch (err) {
    showError(err);
    document.body.dataset.loaded = location.hash || "#/";
  }
}
window.addEventListener("hashchange", () => { document.body.dataset.loaded = ""; route(); });
route();
