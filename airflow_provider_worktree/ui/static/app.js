// The shard dashboard page: no dependencies, no build step. Reads the JSON endpoints beside it (api/...),
// relative to this page, so it works under any base URL. Every value from the database is escaped: shard
// errors and file names come from the repository and the model, which are untrusted. Token figures, durations and
// costs arrive as text (the *_text fields and "figures", worded by core/health/figures.py exactly as
// `airflow-worktree report` and the Markdown report word them): this page formats none of them itself.
"use strict";

const STATUSES = ["pending", "running", "completed", "failed"];
const main = document.getElementById("main");
const state = { run: null, filter: "all", sort: { key: "shard_id", dir: 1 }, changesets: null, stage: "all", repo: "", campaign: "" };

// Loaded as a DAG run's "Shards" tab (Airflow's external view worktree/?embed=run#/run/{RUN_ID}, in an iframe of
// the DAG run's page): the page shows that run only, without the dashboard's own navigation. Without the query
// parameter (an older plugin entry), an iframe whose top page is a DAG run page of the same origin counts too.
// index.html sets the class before the first paint; this repeats it when the inline script did not run.
const EMBEDDED = (() => {
  if (new URLSearchParams(location.search).get("embed") === "run") return true;
  try { return window.self !== window.top && /\/dags\/[^/]+\/runs\/[^/]+/.test(window.top.location.pathname); }
  catch (e) { return false; } // a top page of another origin: not Airflow's DAG run page
})();
if (EMBEDDED) document.documentElement.classList.add("embedded");

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
function fmtTimeCell(epoch) { // date and time, which may wrap between them in a narrow column (UTC)
  const t = fmtTime(epoch);
  return t ? `<span class="nobr">${t.slice(0, 10)}</span> <span class="nobr">${t.slice(11)}</span>` : "";
}
// Long values (branches, run ids, paths, workers) are shortened in the middle, the full value in the tooltip;
// `head` is the share kept from the start (the end of a branch or path names the shard, so keep more of it).
function shortMiddle(text, max, head = 0.5) {
  text = String(text ?? "");
  if (text.length <= max) return text;
  const start = Math.max(1, Math.round((max - 1) * head));
  return text.slice(0, start) + "…" + text.slice(text.length - (max - 1 - start));
}
function shortText(text, max, head) {
  const full = String(text ?? "");
  const shown = shortMiddle(full, max, head);
  return shown === full ? esc(full) : `<span title="${esc(full)}">${esc(shown)}</span>`;
}

// ------------------------------------------------------------------------------------------------ run ids
// Airflow run ids are RUNTYPE__ISO-TIMESTAMP (and _RANDOM when the run has no logical date): runs of one DAG
// share the start, so the page shows the run type and the date and time, as much of them as tells the runs
// shown apart (seconds, then milliseconds, then every digit and the suffix, else the whole id); the link
// and its tooltip hold the whole id.
const RUN_ID = /^([A-Za-z][A-Za-z_]*?)__(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d)?)(\.\d+)?(Z|[+-]\d\d:?\d\d)?(?:_(\w+))?$/;
const RUN_LABEL_MAX = 44; // other run ids (the CLI's, a custom one) longer than this are shortened in the middle
const DAG_ID_MAX = 36; // a DAG id in the Runs table, likewise
function runLabelAt(runId, level) {
  const m = RUN_ID.exec(runId);
  if (!m || level >= 3) return level >= 3 ? runId : shortMiddle(runId, RUN_LABEL_MAX);
  const [, type, date, time, frac, tz, suffix] = m;
  const zone = tz && !/^(Z|[+-]00:?00)$/.test(tz) ? " " + tz : "";
  const fraction = level === 0 ? "" : level === 1 ? (frac || "").slice(0, 4) : frac || "";
  return `${type} ${date} ${time}${fraction}${zone}${level === 2 && suffix ? " " + suffix : ""}`;
}
function runLabels(runIds) { // run id -> the shortest label no other run id of the list shares
  const ids = [...new Set(runIds.filter((r) => r != null))];
  const out = new Map();
  let left = ids;
  for (let level = 0; left.length; level++) {
    const seen = new Map();
    for (const id of ids) { const l = runLabelAt(id, level); seen.set(l, (seen.get(l) || 0) + 1); }
    left = left.filter((id) => {
      const l = runLabelAt(id, level);
      if (seen.get(l) > 1 && level < 3) return true;
      out.set(id, l);
      return false;
    });
  }
  return out;
}
function runLabel(runId, labels) { return (labels && labels.get(runId)) || runLabelAt(runId, 0); }
function runLink(runId, labels) {
  return `<a href="${runHref(runId)}" class="run-id" title="${esc(runId)}" data-run-label>${esc(runLabel(runId, labels))}</a>`;
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
  const labels = runLabels(view.runs.map((r) => r.run_id));
  const rows = view.runs.map((r) => `<tr data-run="${esc(r.run_id)}" data-level="${esc(r.health.level)}">
    <td class="run">${runLink(r.run_id, labels)}${offlineBadge(r.offline)}</td>
    <td class="dag">${r.dag_id ? `<a href="../dags/${esc(encodeURIComponent(r.dag_id))}/runs/${esc(encodeURIComponent(r.run_id))}" target="_top" title="${esc(r.dag_id)}">${esc(shortMiddle(r.dag_id, DAG_ID_MAX))}</a>` : '<span class="dim">-</span>'}</td>
    <td class="badges">${STATUSES.map((s) => `<span class="badge" data-count="${s}">${s} ${fmtNum(r.counts[s])}</span>`).join("")}${r.stale ? `<span class="badge stale" data-count="stale">stale ${fmtNum(r.stale)}</span>` : ""}</td>
    <td class="progress-cell">${progressBar(r.counts, r.total)} <span class="dim">${Math.round(r.progress * 100)}%</span></td>
    <td class="num" data-figure="duration">${esc(r.figures.duration)}</td>
    <td class="num fig" data-figure="tokens" title="${esc(r.figures.tokens)}">${breakAtSlash(r.figures.tokens_short)}</td>
    <td class="num" data-figure="cost">${esc(r.figures.cost)}</td>
    <td class="verdict">${level(r.health.level)} ${r.health.actions.map((a) => `<div class="dim">${esc(a.label)}: ${esc(a.action)}</div>`).join("")}</td>
  </tr>`).join("");
  main.innerHTML = `<h1>Runs</h1>
    <div class="hscroll"><table class="runs" data-testid="runs"><thead><tr><th>Run</th><th>DAG run</th><th>Shards</th><th>Progress</th><th class="num">Duration</th>
    <th class="num">${esc(capital(view.labels.tokens))}</th><th class="num">Cost</th><th>Verdict</th></tr></thead><tbody>${rows}</tbody></table></div>
    <p class="dim">Run: its type and start (UTC) from the run id, as much of them as tells the runs apart; hover for the whole id.
    Stale: running with no heartbeat for ${esc(view.stale_after_text)}. Verdicts: the thresholds of <code>airflow-worktree check</code> per run.</p>`;
}

// ------------------------------------------------------------------------------------------------ a run
// The shards table has a fixed layout (one insertion of 2,000 rows stays fast) that fits the DAG run's Shards tab
// at 1280 px: ten columns, some holding two facts (the worker with its attempt and log, the branch with its
// commit, the status with the heartbeat age); every fact can still be sorted by, from the "Sort by" list.
const COLUMNS = [ // key (a header click sorts by it), label, numeric, width (px; null: an equal share of the rest)
  ["shard_id", "Shard", 0, 84], ["status", "Status", 0, 96], ["worker_id", "Worker", 0, 104], ["started_at", "Started", 0, 92],
  ["duration_s", "Duration", 1, 76], ["files", "Files", 1, 76], ["branch", "Branch", 0, null],
  ["input_tokens", "Tokens", 1, 92], ["cost_usd", "Cost", 1, 84], ["error", "Error", 0, null],
];
const SORT_KEYS = [["shard_id", "shard"], ["status", "status"], ["heartbeat_age_s", "heartbeat age"], ["worker_id", "worker"],
  ["attempt", "attempt"], ["started_at", "started"], ["duration_s", "duration"], ["files", "files"], ["files_changed", "files changed"],
  ["branch", "branch"], ["commit_sha", "commit"], ["input_tokens", "tokens in"], ["output_tokens", "tokens out"], ["cost_usd", "cost"], ["error", "error"]];
const MIN_SHARED_PX = 90; // the least each shared column gets: narrower than this, the table scrolls in its box

async function showRun(runId) {
  setNav("runs");
  const [view, batches] = await Promise.all([getJSON("api/run?run_id=" + encodeURIComponent(runId)),
    getJSON("api/batches?run_id=" + encodeURIComponent(runId)).catch(() => null)]); // batches are extra: never fail the page
  state.run = view;
  const c = view.counts;
  const f = view.figures;
  const labels = runLabels([view.run_id]);
  const cards = [["Shards", fmtNum(view.total)], ...STATUSES.map((s) => [s, fmtNum(c[s])]), ["stale", fmtNum(view.stale)],
    ["Progress", Math.round(view.progress * 100) + "%"], ["Duration", f.duration], ["Shard duration", "avg " + f.avg_duration + ", max " + f.max_duration],
    ["Tokens", f.tokens], ["Cost", f.cost]];
  const reset = view.can_reset && view.stale ? `<button class="danger" id="reset" data-testid="reset">Reset ${view.stale} stale shard(s) to pending</button>` : "";
  const dagRun = EMBEDDED ? "" // inside the DAG run's own page: no link to it
    : view.dag_id ? `DAG run: <a href="../${esc(view.dag_run_path)}" target="_top" title="${esc(view.dag_id + " / " + view.run_id)}">${esc(view.dag_id)} / ${esc(runLabel(view.run_id, labels))}</a> · `
    : '<span class="dim">not a run of this Airflow</span> · ';
  const fixed = COLUMNS.reduce((n, col) => n + (col[3] || 0), 0), shared = COLUMNS.filter((col) => !col[3]).length;
  main.innerHTML = `<h1>Run ${esc(runLabel(view.run_id, labels))}${offlineBadge(view.offline)}</h1>
    <div class="run-id-full dim" data-testid="run-id">${esc(view.run_id)}</div>
    <div>${dagRun}verdict ${level(view.health.level)} ${reset}</div>
    ${actionsBlock(view.health)}
    <div class="cards" data-testid="cards">${cards.map(([k, v]) => `<div class="card" data-card="${esc(k)}"><span class="dim">${esc(k)}</span><b>${esc(v)}</b></div>`).join("")}</div>
    ${view.message ? `<p class="note" data-testid="no-shards">${esc(capital(view.message))}.</p>` : ""}
    ${batches && batches.batch_mode ? batchesSection(batches) : ""}
    <h2>Timeline</h2>
    <canvas id="timeline" data-testid="timeline" height="120"></canvas><div id="tip"></div>
    <p class="dim" id="timeline-note"></p>
    <h2>Shards</h2>
    <div class="toolbar">
      <div class="filters" data-testid="filters">${["all", ...STATUSES, "stale"].map((f) =>
        `<button data-filter="${f}" class="${state.filter === f ? "active" : ""}">${f} ${f === "all" ? view.total : f === "stale" ? view.stale : c[f]}</button>`).join("")}</div>
      <label>Sort by <select id="sort-key" data-testid="sort-key">${SORT_KEYS.map(([k, label]) => `<option value="${k}">${label}</option>`).join("")}</select></label>
      <button id="sort-dir" data-testid="sort-dir" class="plain" title="reverse the order"></button>
    </div>
    <div class="scroll" id="shards-box"><table class="shards" data-testid="shards" style="min-width:${fixed + shared * MIN_SHARED_PX}px"><colgroup>${COLUMNS.map((col) =>
      `<col${col[3] ? ` style="width:${col[3]}px"` : ""}>`).join("")}</colgroup><thead><tr>${COLUMNS.map(([k, label, num]) =>
      `<th data-key="${k}" class="sortable${num ? " num" : ""}">${k === "input_tokens" ? esc(capital(view.labels.tokens)) : label}</th>`).join("")}</tr></thead><tbody id="shard-rows"></tbody></table></div>`;
  main.querySelectorAll(".filters button").forEach((b) => b.addEventListener("click", () => { state.filter = b.dataset.filter; renderShardRows(); }));
  main.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderShardRows();
  }));
  document.getElementById("sort-key").addEventListener("change", (ev) => { state.sort = { key: ev.target.value, dir: 1 }; renderShardRows(); });
  document.getElementById("sort-dir").addEventListener("click", () => { state.sort = { ...state.sort, dir: -state.sort.dir }; renderShardRows(); });
  const btn = document.getElementById("reset");
  if (btn) btn.addEventListener("click", () => resetStale(view.run_id));
  drawTimeline(view); // before the rows: its width is read while the page is still small
  renderShardRows();
}

function batchesSection(b) {
  // The run's Message Batches (batch mode): one row per batch, then what became of the shards' entries.
  const list = (ids) => esc(ids.slice(0, 20).join(", ")) + (ids.length > 20 ? ` and ${fmtNum(ids.length - 20)} more` : "");
  const rows = b.parts.map((p) => `<tr data-part="${esc(p.part)}" data-batch="${esc(p.batch_id || "")}">
    <td class="id"><span data-field="batch-id">${p.batch_id ? `<code>${esc(p.batch_id)}</code>` : '<span class="dim">not recorded</span>'}</span><div class="sub" data-field="part">part ${fmtNum(p.part)}</div></td>
    <td><span class="status batch-${esc(p.status)}">${esc((p.status || "").replace("_", " "))}</span></td>
    <td class="num">${fmtNum(p.requests)}</td>
    <td data-field="request_counts">${esc(p.request_counts_text)}</td>
    <td data-field="entries">${esc(p.entries_text)}</td>
    <td class="num fig" title="${esc(p.tokens_title)}">${breakAtSlash(p.tokens_text)}</td>
    <td class="num" data-field="cost">${esc(p.cost_text)}</td>
    <td class="stack" data-field="submitted">${fmtTimeCell(p.created_at)}</td>
    <td class="stack" data-field="ended">${fmtTimeCell(p.ended_at)}</td></tr>`).join("");
  return `<h2 id="batches-heading">Batches</h2>
    <div data-testid="batches">
    <p>Entries: <span data-testid="batch-entries">${esc(b.entries_text)}</span> · cost at batch prices <b data-testid="batch-cost">${esc(b.cost_text)}</b>${b.collected ? "" : ' · <span class="status running">waiting for the batch</span>'}</p>
    ${b.interactive.length ? `<p class="dim wrap-text">Run interactively (too large for one prompt): ${list(b.interactive)}</p>` : ""}
    ${b.over_budget.length ? `<p class="dim wrap-text">Not sent, over the budget: ${list(b.over_budget)}</p>` : ""}
    ${rows ? `<div class="hscroll"><table class="batches" data-testid="batch-parts"><thead><tr><th>Batch</th><th>Status</th>
      <th class="num">Requests</th><th>Request counts</th><th>Entries</th><th class="num">Tokens in/out</th><th class="num">Cost</th><th>Submitted</th><th>Ended</th></tr></thead>
      <tbody>${rows}</tbody></table></div>` : '<p class="dim">No batch was created yet.</p>'}
    </div>`;
}
function breakAtSlash(text) { return esc(text).replace("/", "/<wbr>"); }

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
    <td class="id"><a href="${shardHref(view.run_id, s.shard_id)}" title="${esc(s.shard_id)}">${esc(shortMiddle(s.shard_id, 28))}</a></td>
    <td>${statusBadge(s.status, s.stale)}${s.heartbeat_age_text ? `<div class="sub" data-heartbeat title="time since the shard's last heartbeat">heartbeat ${esc(s.heartbeat_age_text)} ago</div>` : ""}</td>
    <td class="id">${shortText(s.worker_id || "", 32)}${s.attempt || s.log_path ? `<div class="sub">${s.attempt ? "attempt " + fmtNum(s.attempt) : ""}${s.log_path ? (s.attempt ? " · " : "") + airflowLink(s.log_path, "log") : ""}</div>` : ""}</td>
    <td>${fmtTimeCell(s.started_at)}</td><td class="num">${esc(s.duration_text)}</td>
    <td class="num">${fmtNum(s.files)}${s.files_changed ? `<div class="sub">${fmtNum(s.files_changed)} changed</div>` : ""}</td>
    <td class="id">${shortText(s.branch || "", 48, 0.35)}${s.commit_sha ? `<div class="sub"><code title="${esc(s.commit_sha)}">${esc(s.commit_sha.slice(0, 10))}</code></div>` : ""}</td>
    <td class="num fig" title="${esc(s.tokens_title)}">${breakAtSlash(s.tokens_text)}</td><td class="num">${esc(s.cost_text)}</td>
    <td class="err" title="${esc(s.error || "")}">${esc(s.error || "")}</td></tr>`);
  // One insertion: measured faster than chunks (each chunk lays the growing table out again).
  const tbody = document.getElementById("shard-rows");
  tbody.innerHTML = rows.join("");
  tbody.dataset.complete = "1";
  main.querySelectorAll(".filters button").forEach((b) => b.classList.toggle("active", b.dataset.filter === f));
  main.querySelectorAll("th.sortable").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === key && dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === key && dir < 0);
  });
  const select = document.getElementById("sort-key"), reverse = document.getElementById("sort-dir");
  if (select) select.value = key;
  if (reverse) reverse.textContent = dir > 0 ? "▲ ascending" : "▼ descending";
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
  const batch = s.batch ? `entry ${esc(s.batch.status)}${s.batch.batch_id ? ` in batch <code data-testid="shard-batch-id">${esc(s.batch.batch_id)}</code>` : ""}`
    + (s.batch.part != null ? ` (part ${fmtNum(s.batch.part)})` : "") + (s.batch.reason ? `: ${esc(s.batch.reason)}` : "") : "";
  const facts = [["Status", statusBadge(s.status, s.stale)], ["Task", esc(s.task || "")], ["Worker", esc(s.worker_id || "")],
    ["Attempt", fmtNum(s.attempt)], ["Started", fmtTime(s.started_at)], ["Completed", fmtTime(s.completed_at)],
    ["Heartbeat age", esc(s.heartbeat_age_text)], ["Branch", esc(s.branch || "")], ["Commit", `<code>${esc(s.commit_sha || "")}</code>`],
    ...(batch ? [["Message Batch", batch]] : []),
    ["Tokens", esc(s.tokens_text)],
    ["Cost", esc(s.cost_text)], ["Log", s.log_path ? airflowLink(s.log_path, "task instance log in Airflow")
      : s.dag_run_path ? `<span class="dim">no task instance of the run ran as ${esc(s.worker_id || "-")}:</span> ` + airflowLink(s.dag_run_path, "DAG run")
      : '<span class="dim">not a run of this Airflow</span>']];
  // Attempt 0 (status "batch") is the shard's Message Batches entry: its spend, collected from the batch.
  const attempts = s.attempts == null ? '<p class="dim">This shard database keeps only the last attempt (schema before v3).</p>'
    : !s.attempts.length ? '<p class="dim">No attempt yet.</p>'
    : `<div class="hscroll"><table class="attempts" data-testid="attempts"><thead><tr><th class="num">#</th><th>Status</th><th>Worker</th><th>Started</th><th>Ended</th>
       <th class="num">${esc(capital(s.labels.tokens))}</th><th class="num">Cost</th><th>Error</th><th>Log</th></tr></thead><tbody>` + s.attempts.map((a) => `<tr data-attempt="${esc(a.attempt)}"${a.batch ? ` data-batch="${esc(a.batch_id || "")}"` : ""}>
       <td class="num">${fmtNum(a.attempt)}</td>
       <td>${a.batch ? '<span class="status batch" title="the shard\'s Message Batches entry: its spend, recorded when the batch was collected">batch</span>' : statusBadge(a.status)}</td>
       <td class="id">${a.batch ? (a.batch_id ? `Message Batch <code>${esc(a.batch_id)}</code>` : '<span class="dim">Message Batch</span>') : esc(a.worker_id || "")}</td>
       <td>${fmtTimeCell(a.started_at)}</td><td>${fmtTimeCell(a.ended_at)}</td>
       <td class="num fig">${breakAtSlash(a.tokens_text)}</td>
       <td class="num">${esc(a.cost_text)}</td><td class="err">${esc(a.error_message || "")}</td>
       <td>${a.log_path ? airflowLink(a.log_path, "log") : ""}</td></tr>`).join("") + "</tbody></table></div>";
  const verify = s.verify ? `<p>${s.verify.ok ? '<span class="status completed">passed</span>' : '<span class="status failed">failed</span>'} exit ${esc(s.verify.returncode)}</p><pre data-testid="verify">${esc(s.verify.output_tail)}</pre>`
    : '<p class="dim">No verify command ran.</p>';
  main.innerHTML = `<p><a href="${runHref(s.run_id)}" title="${esc(s.run_id)}">← run ${esc(runLabel(s.run_id))}</a></p>
    <h1>Shard ${esc(s.shard_id)}</h1>
    <table class="facts" data-testid="facts">${facts.map(([k, v]) => `<tr><th>${k}</th><td class="id">${v}</td></tr>`).join("")}</table>
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
    <td class="num">${esc(m.value_text)}</td><td class="num">${esc(m.warning)}</td><td class="num">${esc(m.critical)}</td><td>${level(m.level)}</td>
    <td>${m.level === "ok" ? '<span class="dim">-</span>' : esc(m.action)}</td></tr>`).join("");
  const labels = runLabels((h.stale || []).map((s) => s.run_id));
  const stale = (h.stale || []).length ? `<h2>Stale locks (${h.stale.length})</h2><div class="hscroll"><table data-testid="stale"><thead><tr><th>Run</th><th>Shard</th><th>Worker</th><th>Last heartbeat</th></tr></thead><tbody>` +
    h.stale.map((s) => `<tr><td class="run">${runLink(s.run_id, labels)}</td><td class="id"><a href="${shardHref(s.run_id, s.shard_id)}">${esc(s.shard_id)}</a></td>
    <td class="id">${esc(s.worker_id || "")}</td><td>${esc(String(s.heartbeat_at || s.started_at || "").replace("T", " ").slice(0, 19))}</td></tr>`).join("") + "</tbody></table></div>" : "";
  main.innerHTML = `<h1>Health ${level(h.level)}</h1>
    <p class="dim">The runbook's thresholds, as <code>airflow-worktree check</code> evaluates them${h.worktree_root ? `; worktree root <code data-testid="worktree-root">${esc(h.worktree_root)}</code>` + (h.worktree_root_source ? ` (${esc(h.worktree_root_source)})` : "") : ""}.</p>
    ${actionsBlock(h)}
    <div class="hscroll"><table data-testid="health"><thead><tr><th>Metric</th><th class="num">Value</th><th class="num">Warning</th><th class="num">Critical</th><th>Level</th><th>Action</th></tr></thead><tbody>${rows}</tbody></table></div>
    ${(h.not_measured || []).length ? `<p class="dim" data-testid="not-measured">Not measured: ${h.not_measured.map((m) => esc(m.label) + " (" + esc(m.why) + ")").join("; ")}</p>` : ""}
    ${stale}`;
}

// ------------------------------------------------------------------------------------------------ changesets
// The pull/merge requests runs published (api/changesets) and their burndown (api/changesets/burndown). A
// changeset's title, url and error come from the forge: escaped, and only an http(s) url becomes a link.
const STAGES = ["draft", "open", "merged", "closed"];
const STAGE_COLOURS = { draft: "var(--draft)", open: "var(--open)", merged: "var(--merged)", closed: "var(--closed)" };
const SVG_NS = "http://www.w3.org/2000/svg";

function safeUrl(url) { return /^https?:\/\//i.test(url || "") ? url : null; }
function changesetLink(c) {
  const text = c.number != null ? "#" + c.number : "(no number)";
  const url = safeUrl(c.url);
  return url ? `<a href="${esc(url)}" target="_blank" rel="noopener" data-testid="changeset-link">${esc(text)}</a>` : esc(text);
}
function stageBadge(stage) { return `<span class="stage ${esc(stage)}">${esc(stage)}</span>`; }
function stateWord(kind, value) { return `<span class="cs-${kind} ${esc(value)}">${esc((value || "").replace("_", " "))}</span>`; }

async function showChangesets() {
  setNav("changesets");
  const [view, chart] = await Promise.all([getJSON("api/changesets"), getJSON("api/changesets/burndown")]);
  document.getElementById("db").textContent = view.database || "";
  if (!view.changesets.length) {
    main.innerHTML = `<h1>Changesets</h1><p class="note" data-testid="empty">${esc(view.message)}.</p>`;
    return;
  }
  state.changesets = view;
  const counts = view.counts;
  main.innerHTML = `<h1>Changesets</h1>
    <p class="dim">The pull requests (GitHub) and merge requests (GitLab) runs published, as last recorded by a publish or a sync.</p>
    <h2 id="burndown-heading">Burndown</h2>
    <div id="burndown" data-testid="burndown"></div>
    ${view.campaigns && view.campaigns.length ? `<h2>Campaigns</h2>
    <div class="hscroll"><table class="campaigns" data-testid="campaigns"><thead><tr><th>Campaign</th><th class="num">Pull requests</th>
      <th class="num">Draft</th><th class="num">Open</th><th class="num">Merged</th><th class="num">Closed</th><th class="num">Cost</th><th class="num">Cost per merged change</th></tr></thead>
      <tbody>${view.campaigns.map((g) => `<tr data-campaign="${esc(g.campaign)}"><td><button class="linkish" data-pick-campaign="${esc(g.campaign)}">${esc(g.campaign)}</button></td>
        <td class="num">${g.total}</td><td class="num">${g.counts.draft}</td><td class="num">${g.counts.open}</td><td class="num">${g.counts.merged}</td>
        <td class="num">${g.counts.closed}</td><td class="num">${esc(g.cost_text)}</td><td class="num" data-testid="cost-per-merged">${esc(g.cost_per_merged_text)}</td></tr>`).join("")}</tbody></table></div>` : ""}
    <h2>Pull requests</h2>
    <div class="toolbar">
      <div class="filters" data-testid="changeset-filters">${["all", ...STAGES, ...(counts.unpublished ? ["unpublished"] : [])].map((f) =>
        `<button data-stage="${f}" class="${state.stage === f ? "active" : ""}">${f} ${f === "all" ? view.total : counts[f]}</button>`).join("")}</div>
      ${view.repositories.length > 1 ? `<label>Repository <select id="cs-repo" data-testid="changeset-repo"><option value="">all</option>${view.repositories.map((r) =>
        `<option value="${esc(r)}"${state.repo === r ? " selected" : ""}>${esc(r)}</option>`).join("")}</select></label>` : ""}
      ${view.campaigns && view.campaigns.length ? `<label>Campaign <select id="cs-campaign" data-testid="changeset-campaign"><option value="">all</option>${view.campaigns.map((g) =>
        `<option value="${esc(g.campaign)}"${state.campaign === g.campaign ? " selected" : ""}>${esc(g.campaign)}</option>`).join("")}</select></label>` : ""}
    </div>
    <div class="hscroll" id="changesets-box"><table class="changesets" data-testid="changesets"><thead><tr><th>Repository</th><th class="num">Number</th><th>Title</th>
      <th>Publication</th><th>State</th><th>Review</th><th>Checks</th><th class="num">Failures</th><th>Run</th><th class="num">Cost</th></tr></thead>
      <tbody id="changeset-rows"></tbody></table></div>
    <p class="dim">Cost: every shard of the run that last published the changeset, summed (the Runs page's figure); for a campaign's pull request, only its repository's shards of that run.</p>`;
  main.querySelectorAll("[data-stage]").forEach((b) => b.addEventListener("click", () => { state.stage = b.dataset.stage; renderChangesetRows(); }));
  const repo = document.getElementById("cs-repo");
  if (repo) repo.addEventListener("change", () => { state.repo = repo.value; renderChangesetRows(); });
  const campaign = document.getElementById("cs-campaign");
  const pick = (name) => { state.campaign = name; if (campaign) campaign.value = name; renderChangesetRows(); };
  if (campaign) campaign.addEventListener("change", () => pick(campaign.value));
  main.querySelectorAll("[data-pick-campaign]").forEach((b) => b.addEventListener("click", () => pick(b.dataset.pickCampaign)));
  drawBurndown(document.getElementById("burndown"), chart);
  renderChangesetRows();
}

function renderChangesetRows() {
  const view = state.changesets;
  const shown = view.changesets.filter((c) => (state.stage === "all" || c.stage === state.stage) && (!state.repo || c.repository === state.repo)
    && (!state.campaign || c.campaign === state.campaign));
  const labels = runLabels(view.changesets.map((c) => c.run_id));
  const rows = shown.map((c) => `<tr data-changeset="${esc(c.repository + "#" + (c.number ?? c.head))}" data-stage="${esc(c.stage)}" data-repository="${esc(c.repository)}">
    <td class="wrap">${esc(c.repository)} <span class="badge">${esc(c.forge)}</span></td>
    <td class="num">${changesetLink(c)}</td>
    <td class="title">${esc(c.title)}<div class="dim"><code>${esc(c.head)}</code> → <code>${esc(c.base)}</code></div></td>
    <td>${stateWord("publication", c.publication)}</td><td>${stageBadge(c.stage)}</td>
    <td>${stateWord("review", c.review)}</td><td>${stateWord("checks", c.checks)}</td>
    <td class="num failures" data-failures="${c.failures}">${c.failures ? (c.last_error
      ? `<details title="${esc(c.last_error)}"><summary>${fmtNum(c.failures)}</summary><div class="err" data-testid="last-error">${esc(c.last_error)}</div></details>`
      : fmtNum(c.failures)) : '<span class="dim">0</span>'}</td>
    <td class="run">${c.run_id ? (c.cost_usd != null ? runLink(c.run_id, labels) : `<span title="${esc(c.run_id)}">${esc(runLabel(c.run_id, labels))}</span>`) : '<span class="dim">-</span>'}</td>
    <td class="num" data-figure="cost" title="${esc(c.cost_title)}">${esc(c.cost_text)}${c.offline ? ' <span class="badge offline" data-testid="offline">offline</span>' : ""}</td></tr>`);
  const tbody = document.getElementById("changeset-rows");
  tbody.innerHTML = rows.join("") || `<tr><td colspan="10" class="dim" data-testid="no-match">No changeset matches the filter.</td></tr>`;
  tbody.dataset.complete = "1";
  main.querySelectorAll("[data-stage]").forEach((b) => b.tagName === "BUTTON" && b.classList.toggle("active", b.dataset.stage === state.stage));
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text != null) el.textContent = text;
  return el;
}

function drawBurndown(box, chart) {
  // Stacked step areas, one band per UTC day (the counts hold from the end of one day to the end of the next),
  // merged at the bottom, then closed, open and draft. Each day has a transparent column with the day's counts in
  // data attributes and a <title> (the hover text; the test reads them).
  const days = chart.days || [];
  if (!days.length) { box.innerHTML = `<p class="dim" data-testid="no-burndown">${esc(chart.message || "No changeset has a creation day yet.")}</p>`; return; }
  const series = chart.series; // bottom first
  const width = Math.max(320, Math.floor(box.clientWidth || 900)), height = 240;
  const m = { left: 48, right: 12, top: 10, bottom: 42 };
  const plotW = width - m.left - m.right, plotH = height - m.top - m.bottom;
  const maxTotal = Math.max(1, ...days.map((d) => series.reduce((n, s) => n + d[s], 0)));
  const step = Math.max(1, Math.ceil(maxTotal / 5));
  const yMax = Math.ceil(maxTotal / step) * step;
  const band = plotW / days.length;
  const x = (i) => m.left + i * band;
  const y = (v) => m.top + plotH - (v / yMax) * plotH;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-labelledby": "burndown-title burndown-desc",
    "data-testid": "burndown-chart", "data-from": chart.from, "data-to": chart.to });
  const last = days[days.length - 1];
  svg.append(svgEl("title", { id: "burndown-title" }, `Changesets per day, ${chart.from} to ${chart.to} (UTC)`),
    svgEl("desc", { id: "burndown-desc" }, `At the end of ${last.date}: ` + STAGES.map((s) => `${last[s]} ${s}`).join(", ") + "."));
  for (let v = 0; v <= yMax; v += step) { // grid and y ticks
    svg.append(svgEl("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "grid" }),
      svgEl("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmtNum(v)));
  }
  const below = days.map(() => 0);
  for (const s of series) {
    const top = [], bottom = [];
    days.forEach((d, i) => {
      top.push(`${x(i).toFixed(1)},${y(below[i] + d[s]).toFixed(1)}`, `${x(i + 1).toFixed(1)},${y(below[i] + d[s]).toFixed(1)}`);
      bottom.push(`${x(i).toFixed(1)},${y(below[i]).toFixed(1)}`, `${x(i + 1).toFixed(1)},${y(below[i]).toFixed(1)}`);
      below[i] += d[s];
    });
    const path = svgEl("path", { d: "M" + top.join("L") + "L" + bottom.reverse().join("L") + "Z", fill: STAGE_COLOURS[s],
      class: "area", "data-series": s, "data-last": last[s] });
    path.append(svgEl("title", {}, `${s}: ${last[s]} at the end of ${last.date}`));
    svg.append(path);
  }
  const every = Math.max(1, Math.ceil(days.length / Math.max(2, Math.floor(plotW / 90)))); // x labels ~90 px apart
  days.forEach((d, i) => {
    const col = svgEl("rect", { x: x(i), y: m.top, width: Math.max(band, 1), height: plotH, class: "day", "data-day": d.date,
      ...Object.fromEntries(STAGES.map((s) => ["data-" + s, d[s]])) });
    col.append(svgEl("title", {}, `${d.date}: ` + STAGES.map((s) => `${s} ${d[s]}`).join(", ")));
    svg.append(col);
    if (i % every === 0) {
      svg.append(svgEl("text", { x: x(i) + band / 2, y: m.top + plotH + 16, "text-anchor": "middle", class: "tick" }, d.date.slice(5)));
    }
  });
  svg.append(svgEl("line", { x1: m.left, x2: width - m.right, y1: y(0), y2: y(0), class: "axis" }),
    svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: y(0), class: "axis" }),
    svgEl("text", { x: m.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "label" }, `Day (UTC, month-day), ${chart.from} to ${chart.to}`),
    svgEl("text", { x: 12, y: m.top + plotH / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 12 ${m.top + plotH / 2})` }, "Changesets"));
  box.innerHTML = "";
  box.append(svg);
  const legend = document.createElement("ul");
  legend.className = "legend";
  legend.dataset.testid = "burndown-legend";
  legend.innerHTML = series.slice().reverse().map((s) => `<li data-series="${s}"><span class="swatch" style="background:${STAGE_COLOURS[s]}"></span>${s} <b>${fmtNum(last[s])}</b></li>`).join("")
    + (chart.uncounted ? `<li class="dim">${fmtNum(chart.uncounted)} not on the forge yet</li>` : "")
    + (chart.truncated ? `<li class="dim">the last ${days.length} days</li>` : "");
  box.append(legend);
  const note = document.createElement("p");
  note.className = "dim";
  note.textContent = "Derived from what the table keeps: a changeset counts from the day it was first recorded; a merged or closed one as such from the day of its last recorded change, before that as draft or open by its publication.";
  box.append(note);
}

// ------------------------------------------------------------------------------------------------ router
async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "run" && parts[2] === "shard") await showShard(parts[1], parts.slice(3).join("/"));
    else if (parts[0] === "run") await showRun(parts[1]);
    else if (parts[0] === "health") await showHealth();
    else if (parts[0] === "changesets") await showChangesets();
    else await showRuns();
    document.body.dataset.loaded = location.hash || "#/";
  } catch (err) {
    showError(err);
    document.body.dataset.loaded = location.hash || "#/";
  }
}
window.addEventListener("hashchange", () => { document.body.dataset.loaded = ""; route(); });
route();
