// The Eval results page (/ui/evals): runs and dropped result rows as bars with their Wilson 95% intervals, each
// arm's paired difference from a baseline (a regression is red and marked), gate verdicts, and the episodes
// behind a bar with links to their trajectories. All numbers come from the server (/ui/api/evals/summary, the
// gate's own statistics); this file only draws them. The view is kept in the URL (?runs=&baseline=&by=).
"use strict";

(function () {
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  const BASE_COLOR = "#7f7f7f";
  const REGRESSION = "#c62828";
  const IMPROVEMENT = "#2a8a3e";
  const state = { index: null, selected: new Set(), dropped: [], droppedName: "", baseline: null,
                  byCategory: false, summary: null, rows: new Map(), request: 0 };
  const $ = (id) => document.getElementById(id);

  const { el, api } = window.tinygptUI;  // common.js: DOM builder, JSON fetch with the server's error message

  const pct = (x) => (100 * x).toFixed(1) + "%";
  const pts = (x) => (x >= 0 ? "+" : "\u2212") + Math.abs(100 * x).toFixed(1);
  const groupLabel = (g, splits) => splits > 1 ? `${g.suite} (${g.split})` : g.suite;

  function setStatus(text) { $("status").textContent = text; }

  function readUrl() {
    const q = new URLSearchParams(location.search);
    const runs = q.get("runs");  // present but empty: no runs (not the default choice)
    return { runs: runs !== null ? runs.split(",").filter(Boolean) : null, baseline: q.get("baseline"),
             by: q.get("by") };
  }

  function writeUrl() {
    const q = new URLSearchParams();
    if (state.selected.size) q.set("runs", [...state.selected].join(","));
    if (state.baseline) q.set("baseline", state.baseline);
    if (state.byCategory) q.set("by", "category");
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  }

  // ---- sources: the runs and gates the server found, and a dropped file

  function renderIndex() {
    const idx = state.index;
    $("evals-dir").textContent = idx.exists ? `from ${idx.dir}` : `${idx.dir} does not exist yet (tinygpt eval --out)`;
    const list = $("run-list");
    list.replaceChildren();
    if (!idx.runs.length) list.append(el("p", { class: "ui-muted" }, "No eval runs found."));
    for (const run of idx.runs.slice().reverse()) {
      const usable = run.status !== "failed";
      const box = el("input", { type: "checkbox", "data-ref": run.ref, disabled: !usable,
                                onchange: (e) => { e.target.checked ? state.selected.add(run.ref)
                                                                    : state.selected.delete(run.ref); refresh(); } });
      box.checked = state.selected.has(run.ref);
      const when = new Date(run.started_at * 1000).toLocaleString();
      list.append(el("label", { class: "run-item", title: run.failure || run.ref }, box, " ",
        el("strong", {}, run.model), ` · ${run.suite} / ${run.split}`,
        el("span", { class: "meta" }, ` · ${run.tasks} tasks × ${run.passes} · ${when}`,
           run.status === "complete" ? "" : ` · ${run.status}`)));
    }
    const gates = $("gates");
    gates.replaceChildren();
    if (!idx.gates.length) gates.append(el("p", { class: "ui-muted" }, "No gate results (tinygpt eval-gate)."));
    for (const g of idx.gates.slice().reverse()) gates.append(gateCard(g));
    const problems = $("problems");
    problems.replaceChildren(...idx.problems.map((p) => el("li", {}, p)));
  }

  function gateCard(g) {
    const suites = g.suites.map((s) => el("li", {}, `${s.suite} (${s.role}): ${s.status}, Δ ${pts(s.diff.estimate)} pts `
      + `[${pts(s.diff.lo)}, ${pts(s.diff.hi)}]`));
    const refs = state.index.runs.filter((r) => g.candidate.runs.includes(r.run_id) || g.baseline.runs.includes(r.run_id))
      .map((r) => r.ref);
    return el("div", { class: "gate-card", "data-ref": g.ref, "data-verdict": g.verdict },
      el("span", { class: `verdict verdict-${g.verdict}` }, g.verdict), " ",
      el("strong", {}, g.candidate.model), " vs ", g.baseline.model,
      el("div", { class: "ui-muted" }, `target ${g.target} · ${new Date(g.created_at * 1000).toLocaleString()}`),
      el("ul", {}, suites),
      el("ul", { class: "ui-muted" }, g.reasons.map((r) => el("li", {}, r))),
      el("button", { type: "button", disabled: refs.length === 0,
                     onclick: () => { state.selected = new Set(refs); state.baseline = g.baseline_arm;
                                      renderIndex(); refresh(); } }, "Show these runs"));
  }

  async function dropFile(file) {
    $("drop-error").hidden = true;
    setStatus(`checking ${file.name}…`);
    try {
      const body = await api(`/ui/api/evals/parse?name=${encodeURIComponent(file.name)}`,
                             { method: "POST", headers: { "Content-Type": "application/x-ndjson" }, body: file });
      state.dropped = body.rows;
      state.droppedName = file.name;
      renderDropped();
      await refresh();
    } catch (err) {
      $("drop-error").textContent = err.message;
      $("drop-error").hidden = false;
      setStatus("");
    }
  }

  function renderDropped() {
    const box = $("dropped");
    box.replaceChildren();
    if (!state.dropped.length) return;
    box.append(el("p", {}, `${state.droppedName}: ${state.dropped.length} rows `,
      el("button", { type: "button", onclick: () => { state.dropped = []; renderDropped(); refresh(); } }, "remove")));
  }

  // ---- the summary: bars, differences, table

  async function refresh() {
    writeUrl();
    const ticket = ++state.request;
    if (!state.selected.size && !state.dropped.length) {
      state.summary = null;
      render();
      return;
    }
    setStatus("computing…");
    try {
      const summary = await api("/ui/api/evals/summary", {
        json: { refs: [...state.selected], rows: state.dropped, baseline: state.baseline } });
      if (ticket !== state.request) return;  // a newer selection is on its way
      state.summary = summary;
      state.baseline = summary.baseline;
      writeUrl();
      setStatus("");
      render();
    } catch (err) {
      if (ticket !== state.request) return;
      state.summary = null;
      render();
      $("errors").replaceChildren(el("li", {}, err.message));
      setStatus("");
    }
  }

  function comparisonOf(s, arm, suite, split) {
    return s.comparisons.find((c) => c.arm === arm && c.suite === suite && c.split === split && !c.error);
  }

  function columns(s) {
    const splits = new Set(s.groups.map((g) => g.split)).size;
    const cols = [];
    for (const g of s.groups) {
      const label = groupLabel(g, splits);
      if (!state.byCategory) { cols.push({ suite: g.suite, split: g.split, category: null, label }); continue; }
      const cats = new Set();
      for (const c of s.cells) if (c.suite === g.suite && c.split === g.split) c.categories.forEach((x) => cats.add(x.category));
      for (const cat of [...cats].sort()) cols.push({ suite: g.suite, split: g.split, category: cat, label: `${label} / ${cat}` });
    }
    return cols;
  }

  function colors(s) {
    const out = {};
    let i = 0;
    for (const a of s.arms) out[a.id] = a.id === s.baseline ? BASE_COLOR : PALETTE[i++ % PALETTE.length];
    return out;
  }

  function statOf(s, arm, col) {
    const cell = s.cells.find((c) => c.arm === arm && c.suite === col.suite && c.split === col.split);
    if (!cell) return null;
    if (!col.category) return { cell, value: cell };
    const cat = cell.categories.find((x) => x.category === col.category);
    return cat ? { cell, value: cat } : null;
  }

  function diffOf(s, arm, col) {
    const cmp = comparisonOf(s, arm, col.suite, col.split);
    if (!cmp) return null;
    return col.category ? cmp.categories.find((x) => x.category === col.category) || null : cmp;
  }

  function barTraces(s, cols, color) {
    return s.arms.map((a) => {
      const pick = cols.map((col) => statOf(s, a.id, col));
      const diffs = cols.map((col) => diffOf(s, a.id, col));
      const flagged = diffs.map((d) => d && d.flag === "regression");
      return {
        type: "bar", name: a.id === s.baseline ? `${a.label} (baseline)` : a.label, x: cols.map((c) => c.label),
        y: pick.map((p) => (p ? p.value.rate : null)),
        error_y: { type: "data", symmetric: false, visible: true, color: "#333", thickness: 1.5, width: 6,
                   array: pick.map((p) => (p ? p.value.hi - p.value.rate : null)),
                   arrayminus: pick.map((p) => (p ? p.value.rate - p.value.lo : null)) },
        marker: { color: color[a.id],
                  line: { color: flagged.map((f) => (f ? REGRESSION : "rgba(0,0,0,0)")), width: flagged.map((f) => (f ? 3 : 0)) },
                  pattern: { shape: flagged.map((f) => (f ? "x" : "")), fgcolor: REGRESSION } },
        text: flagged.map((f) => (f ? "▼" : "")), textposition: "outside", textfont: { color: REGRESSION, size: 16 },
        cliponaxis: false,
        customdata: pick.map((p, i) => [p ? p.value.lo : null, p ? p.value.hi : null, p ? p.value.tasks : 0,
          p ? p.cell.passes : 0, diffs[i] ? `Δ ${pts(diffs[i].estimate)} pts [${pts(diffs[i].lo)}, ${pts(diffs[i].hi)}]`
            + (flagged[i] ? " regression" : "") : (a.id === s.baseline ? "baseline" : ""),
          a.id, cols[i].suite, cols[i].split, cols[i].category || ""]),
        hovertemplate: "<b>%{fullData.name}</b><br>%{x}<br>pass rate %{y:.1%} [%{customdata[0]:.1%}, %{customdata[1]:.1%}]"
          + "<br>%{customdata[2]} tasks × %{customdata[3]}<br>%{customdata[4]}<extra></extra>",
      };
    });
  }

  function diffTraces(s, cols) {
    return s.arms.filter((a) => a.id !== s.baseline).map((a) => {
      const d = cols.map((col) => diffOf(s, a.id, col));
      const tone = d.map((x) => (!x ? "#999" : x.flag === "regression" ? REGRESSION : x.flag === "improvement" ? IMPROVEMENT : "#555"));
      return {
        type: "scatter", mode: "markers", name: a.label, y: cols.map((c) => c.label),
        x: d.map((x) => (x ? 100 * x.estimate : null)),
        error_x: { type: "data", symmetric: false, color: "#444", array: d.map((x) => (x ? 100 * (x.hi - x.estimate) : null)),
                   arrayminus: d.map((x) => (x ? 100 * (x.estimate - x.lo) : null)) },
        marker: { size: 11, color: tone, symbol: d.map((x) => (x && x.flag === "regression" ? "triangle-down" : "circle")) },
        customdata: d.map((x) => (x ? [100 * x.lo, 100 * x.hi, x.p_value, x.flag] : [null, null, null, ""])),
        hovertemplate: "<b>%{fullData.name}</b> − baseline<br>%{y}<br>%{x:+.1f} pts [%{customdata[0]:+.1f}, %{customdata[1]:+.1f}]"
          + "<br>p = %{customdata[2]:.3g} · %{customdata[3]}<extra></extra>",
      };
    });
  }

  function render() {
    const s = state.summary;
    const has = s && s.arms.length > 0;
    $("empty").hidden = !!has;
    renderBaseline(s);
    $("errors").replaceChildren(...(s ? [...s.errors, ...s.comparisons.filter((c) => c.error)] : [])
      .map((e) => el("li", {}, `${e.suite} (${e.split}): ${e.error}`)));
    if (!has) {
      for (const id of ["evals-chart", "diff-chart"]) { Plotly.purge($(id)); $(id).replaceChildren(); }
      $("summary-table").replaceChildren();
      $("episodes").replaceChildren();
      return;
    }
    const cols = columns(s);
    const color = colors(s);
    const config = { displaylogo: false, responsive: true };
    Plotly.react($("evals-chart"), barTraces(s, cols, color), {
      title: { text: `Pass rate with Wilson ${Math.round(100 * s.confidence)}% intervals` }, barmode: "group",
      yaxis: { title: { text: "pass rate" }, range: [0, 1.12], tickformat: ".0%" }, height: 420,
      margin: { t: 50, b: 90 }, legend: { orientation: "h", y: -0.25 } }, config);
    const others = s.arms.filter((a) => a.id !== s.baseline).length;
    if (others) {
      const base = s.arms.find((a) => a.id === s.baseline);
      Plotly.react($("diff-chart"), diffTraces(s, cols), {
        title: { text: `Paired difference from ${base ? base.label : "the baseline"} (points; red ▼: significantly worse)` },
        xaxis: { title: { text: "candidate − baseline, pass-rate points" }, zeroline: true, zerolinewidth: 2 },
        yaxis: { autorange: "reversed", automargin: true }, height: 190 + 40 * cols.length, margin: { t: 90 },
        showlegend: true, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
        shapes: [{ type: "line", x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1, line: { color: "#000", width: 1 } }] }, config);
    } else {
      Plotly.purge($("diff-chart"));
    }
    $("evals-chart").removeAllListeners("plotly_click");
    $("evals-chart").on("plotly_click", (ev) => {
      const p = ev.points && ev.points[0];
      if (p) showEpisodes(p.customdata[5], p.customdata[6], p.customdata[7], p.customdata[8]);
    });
    renderTable(s, cols);
  }

  function renderBaseline(s) {
    const sel = $("baseline");
    sel.replaceChildren();
    if (!s) return;
    for (const a of s.arms) {
      const opt = el("option", { value: a.id }, a.label);
      if (a.id === s.baseline) opt.selected = true;
      sel.append(opt);
    }
  }

  function renderTable(s, cols) {
    const head = el("tr", {}, ["arm", "suite", "tasks × K", "pass rate [95% CI]", "Δ vs baseline [95% CI]", "p", ""]
      .map((h) => el("th", {}, h)));
    const body = [];
    for (const a of s.arms) {
      for (const col of cols) {
        const p = statOf(s, a.id, col);
        if (!p) continue;
        const d = diffOf(s, a.id, col);
        const flag = d ? d.flag : (a.id === s.baseline ? "baseline" : "");
        body.push(el("tr", { class: flag === "regression" ? "regression" : null, "data-arm": a.id, "data-col": col.label },
          el("td", {}, a.label), el("td", {}, col.label),
          el("td", {}, `${p.value.tasks} × ${p.cell.passes}${p.cell.partial ? " (partial)" : ""}`),
          el("td", { class: "interval" }, `${pct(p.value.rate)} [${pct(p.value.lo)}, ${pct(p.value.hi)}]`),
          el("td", {}, d ? `${pts(d.estimate)} [${pts(d.lo)}, ${pts(d.hi)}]` : ""),
          el("td", {}, d ? d.p_value.toPrecision(3) : ""),
          el("td", { class: `flag flag-${flag}` }, flag === "regression" ? "▼ regression" : flag.replace("-", " ")),
          el("td", {}, el("button", { type: "button", onclick: () => showEpisodes(a.id, col.suite, col.split, col.category || "") },
                          "episodes"))));
      }
    }
    $("summary-table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  }

  // ---- the episodes behind a bar

  async function rowsOf(ref) {
    if (!state.rows.has(ref)) state.rows.set(ref, await api(`/ui/api/evals/rows?ref=${encodeURIComponent(ref)}`));
    return state.rows.get(ref);
  }

  async function showEpisodes(armId, suite, split, category) {
    const s = state.summary;
    const arm = s && s.arms.find((a) => a.id === armId);
    if (!arm) return;
    const match = (r) => r.model === arm.model && r.model_fingerprint === arm.model_fingerprint && r.policy === arm.policy
      && r.suite === suite && r.split === split && (!category || r.category === category);
    const found = [];
    try {
      for (const ref of state.selected) {
        const got = await rowsOf(ref);
        got.rows.forEach((r, i) => { if (match(r)) found.push([got.links[i], r]); });
      }
    } catch (err) {
      $("episodes").replaceChildren(el("p", { class: "ui-error" }, err.message));
      return;
    }
    for (const r of state.dropped) if (match(r)) found.push([null, r]);
    found.sort((x, y) => (x[1].task_id < y[1].task_id ? -1 : x[1].task_id > y[1].task_id ? 1 : x[1].pass_index - y[1].pass_index));
    const head = el("tr", {}, ["task", "category", "k", "passed", "score", "steps", "tokens in/out", "seconds", "end", "reason", "trajectory"]
      .map((h) => el("th", {}, h)));
    const body = found.map(([links, r]) => el("tr", { "data-task": r.task_id },
      el("td", {}, r.task_id), el("td", {}, r.category), el("td", {}, String(r.pass_index)),
      el("td", {}, r.passed ? "✓" : "✗"), el("td", {}, r.score.toFixed(2)), el("td", {}, String(r.steps)),
      el("td", {}, `${r.prompt_tokens}/${r.output_tokens}`), el("td", {}, r.latency_s.toFixed(2)), el("td", {}, r.end),
      el("td", {}, r.reason),
      el("td", {}, r.trajectories.map((t, i) => {
        const href = links ? links[i] : null;
        return href ? el("a", { href, class: "trajectory-link" }, `turn ${i + 1} `) : el("span", { title: t }, `turn ${i + 1} `);
      }))));
    $("episodes").replaceChildren(
      el("h3", {}, `${arm.label} · ${suite} (${split})${category ? " / " + category : ""}: ${found.length} episodes`),
      el("table", { class: "ui-table", id: "episodes-table" }, el("thead", {}, head), el("tbody", {}, body)));
  }

  // ---- start

  async function start() {
    const want = readUrl();
    state.byCategory = want.by === "category";
    $("by-category").checked = state.byCategory;
    state.baseline = want.baseline;
    $("by-category").addEventListener("change", (e) => { state.byCategory = e.target.checked; writeUrl(); render(); });
    $("baseline").addEventListener("change", (e) => { state.baseline = e.target.value; refresh(); });
    $("file-input").addEventListener("change", (e) => { if (e.target.files[0]) dropFile(e.target.files[0]); });
    const zone = $("drop-zone");
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer.files[0]) dropFile(e.dataTransfer.files[0]);
    });
    try {
      state.index = await api("/ui/api/evals/index");
    } catch (err) {
      $("problems").replaceChildren(el("li", {}, err.message));
      return;
    }
    const known = new Set(state.index.runs.filter((r) => r.status !== "failed").map((r) => r.ref));
    if (want.runs) {
      want.runs.filter((r) => known.has(r)).forEach((r) => state.selected.add(r));
    } else if (state.index.gates.length) {
      const g = state.index.gates[state.index.gates.length - 1];
      state.index.runs.filter((r) => g.candidate.runs.includes(r.run_id) || g.baseline.runs.includes(r.run_id))
        .forEach((r) => state.selected.add(r.ref));
      state.baseline = state.baseline || g.baseline_arm;
    } else {
      state.index.runs.filter((r) => r.status === "complete").slice(-12).forEach((r) => state.selected.add(r.ref));
    }
    renderIndex();
    await refresh();
    document.body.dataset.ready = "1";
  }

  window.addEventListener("DOMContentLoaded", start);
})();
