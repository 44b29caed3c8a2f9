// The trajectory viewer: /ui/trajectories lists the server's episodes with filters (kept in the URL's query);
// /ui/trajectories/<ref> shows one: its header, turns (messages, model calls, tool calls and results), reward and
// verdict, and the token view (each id coloured by its loss mask, as traces→data builds training rows, with its
// logprob on hover or click). /ui/trajectories/<episode id> opens the episode with that id, or lists them all.
"use strict";

(function () {
  const ui = window.tinygptUI;
  const $ = (id) => document.getElementById(id);
  const FILTERS = ["task", "split", "model", "route", "status", "passed"];
  const PASSED = { true: "passed", false: "failed", none: "no verdict" };

  function refFromPath() {
    const prefix = "/ui/trajectories/";
    const path = window.location.pathname;
    return path.startsWith(prefix) && path.length > prefix.length ? decodeURIComponent(path.slice(prefix.length)) : "";
  }

  // ---- the list ---------------------------------------------------------------------------------------------
  function query() {
    const q = new URLSearchParams();
    for (const f of FILTERS) { const v = $(`f-${f}`).value; if (v) q.set(f, v); }
    if ($("f-q").value) q.set("q", $("f-q").value);
    const id = new URL(window.location.href).searchParams.get("id");
    if (id) q.set("id", id);
    return q;
  }

  function fillFacets(facets, current) {
    for (const f of FILTERS) {
      const select = $(`f-${f}`);
      const values = facets[f] || [];
      const label = (v) => (f === "passed" ? PASSED[v] : (f === "route" && v === "none" ? "(not routed)" : v || "(empty)"));
      select.replaceChildren(ui.el("option", { value: "" }, "any"),
        ...values.map((x) => ui.el("option", { value: x.value }, `${label(x.value)} (${x.count})`)));
      select.value = current.get(f) || "";
    }
  }

  function verdictBadge(passed) {
    if (passed === null || passed === undefined) return ui.el("span", { class: "ui-muted" }, "–");
    return ui.el("span", { class: "ui-badge " + (passed ? "pass" : "fail") }, passed ? "passed" : "failed");
  }

  function row(e) {
    return ui.el("tr", { "data-ref": e.ref },
      ui.el("td", {}, ui.when(e.created_at)),
      ui.el("td", {}, ui.el("a", { href: e.url, class: "episode-link" }, e.episode_id)),
      ui.el("td", {}, e.task_id), ui.el("td", {}, e.split), ui.el("td", {}, e.model),
      ui.el("td", {}, e.route || ui.el("span", { class: "ui-muted" }, "–")),
      ui.el("td", {}, e.complete ? e.status : ui.el("span", { class: "ui-badge open" }, "open")),
      ui.el("td", {}, verdictBadge(e.passed)),
      ui.el("td", {}, e.reward === null ? "–" : String(e.reward)),
      ui.el("td", {}, String(e.calls)), ui.el("td", {}, String(e.tool_calls)),
      ui.el("td", {}, `${e.prompt_tokens + e.output_tokens}`));
  }

  async function loadList(initial) {
    const q = initial || query();
    const url = new URL(window.location.href);
    url.search = q.toString();
    window.history.replaceState(null, "", url);
    const data = await ui.api(`/ui/api/trajectories?${q}`);
    fillFacets(data.facets, q);
    $("f-q").value = q.get("q") || "";
    $("count").textContent = `${data.matched} of ${data.total} episodes` + (data.matched > data.episodes.length ? ` (first ${data.episodes.length} shown)` : "");
    $("episodes").tBodies[0].replaceChildren(...data.episodes.map(row));
    $("roots").replaceChildren(...data.roots.map((r) => ui.el("li", {}, `${r.name}: ${r.dir}${r.exists ? "" : " (does not exist)"}`)));
    $("problems").replaceChildren(...data.problems.map((p) => ui.el("li", {}, p)));
    return data;
  }

  async function showList(initial) {
    $("list-view").hidden = false;
    const reload = () => loadList().catch((e) => ui.showError("error", e));
    for (const f of FILTERS) $(`f-${f}`).addEventListener("change", reload);
    $("f-q").addEventListener("change", reload);
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); reload(); });
    $("clear-filters").addEventListener("click", () => {
      for (const f of FILTERS) $(`f-${f}`).value = "";
      $("f-q").value = "";
      const url = new URL(window.location.href); url.search = ""; window.history.replaceState(null, "", url);
      reload();
    });
    await loadList(initial);
  }

  // ---- one episode ------------------------------------------------------------------------------------------
  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(ui.el("dt", {}, name), ui.el("dd", {}, value));
  }

  function callsList(calls) {
    return calls.map((c) => ui.el("div", { class: "tool-call", "data-tool": c.name },
      "→ ", ui.el("span", { class: "name" }, c.name), ui.el("code", {}, `(${JSON.stringify(c.arguments)})`)));
  }

  function eventNode(e, index) {
    if (e.kind === "message") {
      return ui.el("div", { class: `event message ${e.role}` }, ui.el("div", { class: "kind" }, e.role),
        ui.el("pre", {}, e.content), callsList(e.tool_calls || []));
    }
    if (e.kind === "model_call") {
      const facts = [`${e.finish_reason}`, e.output_tokens !== null ? `${e.output_tokens} tokens out` : "no ids (remote)",
                     e.cached_tokens ? `${e.cached_tokens} cached` : "", `${Number(e.latency_s).toFixed(2)} s`].filter(Boolean);
      const text = e.content !== null && e.content !== undefined ? e.content : e.text;
      return ui.el("div", { class: "event model_call", "data-call": index },
        ui.el("div", { class: "kind" }, `model call · ${facts.join(" · ")}`),
        text ? ui.el("pre", {}, text) : null, callsList(e.tool_calls || []));
    }
    return ui.el("div", { class: "event tool_result" + (e.is_error ? " error" : "") },
      ui.el("div", { class: "kind" }, `${e.is_error ? "✗" : "←"} result of ${e.name || "(no call)"}${e.truncated ? " (cut)" : ""}`),
      ui.el("pre", {}, e.content));
  }

  function showEpisode(ep) {
    $("episode-view").hidden = false;
    const h = ep.header;
    document.title = `${h.episode_id} · tinygpt`;
    $("ep-title").textContent = `Episode ${h.episode_id}`;
    const dl = $("ep-facts");
    dl.replaceChildren();
    fact(dl, "task", h.task_id); fact(dl, "split", h.split); fact(dl, "model", h.model);
    fact(dl, "fingerprint", h.model_fingerprint); fact(dl, "recorded", ui.when(h.created_at));
    if (h.route) fact(dl, "route", `${h.route.target} (${h.route.kind || "?"}${h.route.domain ? ", domain " + h.route.domain : ""}) — ${h.route.reason}`);
    const end = ep.end;
    fact(dl, "status", end ? end.status : "open (still recording, or stopped)");
    if (end) {
      dl.append(ui.el("dt", {}, "reward"), ui.el("dd", { id: "ep-reward" }, `${end.reward.value} (${end.reward.source}${end.reward.reason ? ": " + end.reward.reason : ""})`));
      if (end.verdict) dl.append(ui.el("dt", {}, "verdict"), ui.el("dd", {}, verdictBadge(end.verdict.passed), ` ${end.verdict.checker}${end.verdict.details ? ": " + end.verdict.details : ""}`));
    }
    const s = h.sampling;
    fact(dl, "sampling", `temperature ${s.temperature}, top_p ${s.top_p}${s.max_tokens ? ", max_tokens " + s.max_tokens : ""}${s.seed !== null ? ", seed " + s.seed : ""}`);
    for (const [k, v] of Object.entries(h.labels || {})) fact(dl, k, v);
    fact(dl, "file", ep.path);
    $("ep-tools").replaceChildren(...h.tools.map((t) => ui.el("li", {}, ui.el("code", {}, t.name), t.description ? ` ${t.description}` : "")));
    let call = -1;
    $("ep-events").replaceChildren(...ep.events.map((e) => eventNode(e, e.kind === "model_call" ? ++call : null)));
  }

  function tokenInfo(t, i) {
    const lp = t.logprob === null ? "–" : t.logprob.toFixed(4);
    const p = t.logprob === null ? "" : ` (p ${Math.exp(t.logprob).toFixed(3)})`;
    return [ui.el("strong", {}, `#${i}`), ` id ${t.id}`, t.text !== undefined ? [" ", ui.el("code", {}, JSON.stringify(t.text))] : "",
            ` · mask ${t.mask} (${t.mask ? "trained on" : "context"}) · call ${t.call} · logprob `,
            ui.el("span", { id: "tok-logprob" }, lp), p];
  }

  async function loadTokens(ref) {
    const data = await ui.api(`/ui/api/trajectory/tokens?ref=${encodeURIComponent(ref)}&mask_error_turns=${$("mask-errors").checked}`);
    $("token-note").textContent = data.note || "";
    const box = $("tokens");
    const spans = data.tokens.map((t, i) => ui.el("span", {
      class: `tok m${t.mask}`, "data-i": i, "data-id": t.id, "data-mask": t.mask,
      "data-logprob": t.logprob === null ? "" : t.logprob }, t.text !== undefined ? t.text : `⟨${t.id}⟩`));
    box.replaceChildren(...spans);
    let selected = null;
    const show = (target) => {
      const i = Number(target.dataset.i);
      $("token-info").replaceChildren(...tokenInfo(data.tokens[i], i).flat());
    };
    box.onmouseover = (e) => { if (e.target.classList.contains("tok")) show(e.target); };
    box.onclick = (e) => {
      if (!e.target.classList.contains("tok")) return;
      if (selected) selected.classList.remove("selected");
      selected = e.target; selected.classList.add("selected");
      show(e.target);
    };
    box.onmouseleave = () => { if (selected) show(selected); };
  }

  async function openRef(ref) {
    const ep = await ui.api(`/ui/api/trajectory?ref=${encodeURIComponent(ref)}`);
    showEpisode(ep);
    $("mask-errors").addEventListener("change", () => loadTokens(ref).catch((e) => ui.showError("error", e)));
    await loadTokens(ref);
  }

  async function start() {
    try {
      const ref = refFromPath();
      if (!ref) {
        await showList(new URL(window.location.href).searchParams);
      } else if (ref.includes("/")) {
        await openRef(ref);
      } else {  // an episode id alone: open it if it is the only one, else list those that have it
        const q = new URLSearchParams({ id: ref });
        const data = await ui.api(`/ui/api/trajectories?${q}`);
        if (data.matched === 1) {
          window.history.replaceState(null, "", data.episodes[0].url);
          await openRef(data.episodes[0].ref);
        } else {
          window.history.replaceState(null, "", `/ui/trajectories?${q}`);
          await showList(q);
          if (data.matched === 0) ui.showError("error", new Error(`No episode has the id ${ref}.`));
        }
      }
    } catch (e) {
      ui.showError("error", e);
    }
    document.body.dataset.ready = "1";
  }

  start();
})();
