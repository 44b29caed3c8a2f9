// The Training runs page (/ui/runs): loss, validation loss and tokens/s against step for the chosen runs, drawn
// with plotly. A run's metrics are read from a byte offset (/ui/api/runs/metrics); while the run is live the page
// polls and appends the new points to the charts (Plotly.extendTraces); when the trainer rewrote the file (a
// resume) the server says `reset` and the run's curves start over. The list of runs refreshes too, so a new run
// appears. The selection is kept in the URL (?runs=ref,ref).
"use strict";

(function () {
  const POLL_MS = 1000;
  const INDEX_MS = 5000;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const state = { index: null, selected: [], runs: new Map(), busy: false, drawn: false };
  const $ = (id) => document.getElementById(id);

  const { el, api } = window.tinygptUI;  // common.js: DOM builder, JSON fetch with the server's error message

  function fresh(ref) {
    return { ref, file: null, offset: 0, info: null, needsRead: true,
             loss: { x: [], y: [] }, val: { x: [], y: [] }, speed: { x: [], y: [] } };
  }

  function writeUrl() {
    const q = new URLSearchParams();
    if (state.selected.length) q.set("runs", state.selected.join(","));
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  }

  function labelOf(ref) {
    const info = state.index && state.index.runs.find((r) => r.ref === ref);
    const names = state.index ? state.index.runs.map((r) => r.name) : [];
    return info && names.filter((n) => n === info.name).length === 1 ? info.name : ref;
  }

  // ---- the list

  function renderList() {
    const idx = state.index;
    $("runs-dir").textContent = idx.exists ? `from ${idx.dir}` : `${idx.dir} does not exist yet`;
    const list = $("run-list");
    list.replaceChildren();
    if (!idx.runs.length) list.append(el("p", { class: "ui-muted" }, "No training runs found (tinygpt train --out ...)."));
    for (const r of idx.runs) {
      const box = el("input", { type: "checkbox", "data-ref": r.ref, onchange: (e) => toggle(r.ref, e.target.checked) });
      box.checked = state.selected.includes(r.ref);
      const s = r.summary || {};
      const steps = s.step !== undefined ? ` · step ${s.step}${s.iters ? "/" + s.iters : ""}` : "";
      list.append(el("label", { class: "run-item", title: r.error || r.ref }, box, " ", el("strong", {}, r.name), " ",
        el("span", { class: `run-status run-status-${r.status}`, "data-status": r.status }, r.status),
        el("span", { class: "meta" }, ` · ${r.kind}${steps} · ${new Date(r.updated * 1000).toLocaleString()}`)));
    }
  }

  function toggle(ref, on) {
    if (on && !state.selected.includes(ref)) {
      state.selected.push(ref);
      state.runs.set(ref, fresh(ref));
    } else if (!on) {
      state.selected = state.selected.filter((r) => r !== ref);
      state.runs.delete(ref);
    }
    writeUrl();
    redraw();
    poll();
  }

  // ---- the charts

  function redraw() {
    const runs = state.selected.map((ref) => state.runs.get(ref));
    $("empty").hidden = runs.length > 0;
    const config = { displaylogo: false, responsive: true };
    if (!runs.length) {
      Plotly.purge($("loss-chart"));
      Plotly.purge($("speed-chart"));
      state.drawn = false;
      renderTable();
      return;
    }
    const loss = [];
    const speed = [];
    runs.forEach((r, i) => {
      const color = PALETTE[i % PALETTE.length];
      const name = labelOf(r.ref);
      loss.push({ type: "scatter", mode: "lines", name: `${name} loss`, x: r.loss.x.slice(), y: r.loss.y.slice(),
                  line: { color } });
      loss.push({ type: "scatter", mode: "lines+markers", name: `${name} val loss`, x: r.val.x.slice(),
                  y: r.val.y.slice(), line: { color, dash: "dash" } });
      speed.push({ type: "scatter", mode: "lines", name: `${name} tokens/s`, x: r.speed.x.slice(),
                   y: r.speed.y.slice(), line: { color } });
    });
    Plotly.react($("loss-chart"), loss, { title: { text: "Loss" }, xaxis: { title: { text: "step" } },
      yaxis: { title: { text: "loss" } }, height: 380, margin: { t: 50 } }, config);
    Plotly.react($("speed-chart"), speed, { title: { text: "Trained tokens per second" },
      xaxis: { title: { text: "step" } }, yaxis: { title: { text: "tokens/s" }, rangemode: "tozero" }, height: 300,
      margin: { t: 50 } }, config);
    state.drawn = true;
    renderTable();
  }

  function append(r, points) {
    const add = { loss: { x: [], y: [] }, val: { x: [], y: [] }, speed: { x: [], y: [] } };
    for (const p of points) {
      if (p.loss !== undefined) { add.loss.x.push(p.step); add.loss.y.push(p.loss); }
      if (p.val_loss !== undefined) { add.val.x.push(p.step); add.val.y.push(p.val_loss); }
      if (p.tokens !== undefined && p.seconds > 0 && p.loss !== undefined) {
        add.speed.x.push(p.step);
        add.speed.y.push(p.tokens / p.seconds);
      }
    }
    for (const k of ["loss", "val", "speed"]) { r[k].x.push(...add[k].x); r[k].y.push(...add[k].y); }
    const i = state.selected.indexOf(r.ref);
    if (!state.drawn || i < 0) return;
    if (add.loss.x.length || add.val.x.length) {
      Plotly.extendTraces($("loss-chart"), { x: [add.loss.x, add.val.x], y: [add.loss.y, add.val.y] }, [2 * i, 2 * i + 1]);
    }
    if (add.speed.x.length) Plotly.extendTraces($("speed-chart"), { x: [add.speed.x], y: [add.speed.y] }, [i]);
  }

  function renderTable() {
    const runs = state.selected.map((ref) => state.runs.get(ref)).filter((r) => r.info);
    if (!runs.length) { $("run-table").replaceChildren(); return; }
    const head = el("tr", {}, ["run", "status", "kind", "last step", "last loss", "last val loss", "config"].map((h) => el("th", {}, h)));
    const body = runs.map((r) => {
      const last = (a) => (a.y.length ? a.y[a.y.length - 1].toFixed(4) : "");
      const step = r.loss.x.length ? String(r.loss.x[r.loss.x.length - 1]) : "";
      const cfg = Object.entries(r.info.config || {}).map(([k, v]) => `${k}=${v}`).join(" ");
      return el("tr", { "data-ref": r.ref }, el("td", {}, labelOf(r.ref)),
        el("td", {}, el("span", { class: `run-status run-status-${r.info.status}`, "data-status": r.info.status }, r.info.status)),
        el("td", {}, r.info.kind), el("td", { class: "last-step" }, step), el("td", {}, last(r.loss)),
        el("td", {}, last(r.val)), el("td", { class: "ui-muted" }, cfg));
    });
    $("run-table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  }

  // ---- polling

  async function readRun(r) {
    for (;;) {
      const q = new URLSearchParams({ ref: r.ref, offset: String(r.offset) });
      if (r.file) q.set("file", r.file);
      const got = await api(`/ui/api/runs/metrics?${q}`);
      if (!state.runs.has(r.ref) || state.runs.get(r.ref) !== r) return;  // deselected meanwhile
      r.info = got.run;
      const listed = state.index.runs.findIndex((x) => x.ref === r.ref);
      if (listed >= 0 && state.index.runs[listed].status !== got.run.status) {
        state.index.runs[listed] = got.run;
        renderList();
      }
      if (got.reset) {
        r.loss = { x: [], y: [] }; r.val = { x: [], y: [] }; r.speed = { x: [], y: [] };
        r.file = got.file; r.offset = got.offset;
        append(r, got.points);
        redraw();
      } else {
        r.file = got.file; r.offset = got.offset;
        if (got.points.length) append(r, got.points);
      }
      if (!got.more) break;
    }
    r.needsRead = r.info.live;
  }

  async function poll() {
    if (state.busy) return;
    state.busy = true;
    try {
      for (const ref of state.selected.slice()) {
        const r = state.runs.get(ref);
        if (r && r.needsRead) await readRun(r);
      }
      $("errors").replaceChildren();
    } catch (err) {
      $("errors").replaceChildren(el("li", {}, err.message));
    } finally {
      state.busy = false;
    }
    renderTable();
    const live = state.selected.filter((ref) => state.runs.get(ref).info && state.runs.get(ref).info.live).length;
    $("status").textContent = live ? `${live} live run${live > 1 ? "s" : ""}: updating every ${POLL_MS / 1000} s` : "";
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  }

  async function refreshIndex() {
    try {
      state.index = await api("/ui/api/runs/index");
    } catch (err) {
      $("errors").replaceChildren(el("li", {}, err.message));
      return;
    }
    for (const info of state.index.runs) {
      const r = state.runs.get(info.ref);
      if (r && info.live) r.needsRead = true;  // e.g. a run resumed after it had stopped
    }
    renderList();
  }

  async function start() {
    await refreshIndex();
    if (!state.index) return;
    const want = new URLSearchParams(location.search).get("runs");
    const known = new Set(state.index.runs.map((r) => r.ref));
    const refs = want !== null ? want.split(",").filter((r) => known.has(r))
      : state.index.runs.slice(0, 1).map((r) => r.ref);
    for (const ref of refs) { state.selected.push(ref); state.runs.set(ref, fresh(ref)); }
    renderList();
    writeUrl();
    redraw();
    await poll();
    redraw();
    document.body.dataset.ready = "1";
    setInterval(poll, POLL_MS);
    setInterval(refreshIndex, INDEX_MS);
  }

  window.addEventListener("DOMContentLoaded", start);
})();
