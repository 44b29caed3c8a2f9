// The chat playground (/ui/chat): settings, a conversation with the server's agent loop, each tool call and its
// result as it happens, the router's decision. The turn runs on the server; this page only follows its events
// (/ui/api/chat/<id>/events, NDJSON from a sequence number), so a reload re-attaches: the session id is in the URL
// (?session=) and in localStorage, and the page replays the events from the start, then follows the rest live.
"use strict";

(function () {
  const ui = window.tinygptUI;
  const $ = (id) => document.getElementById(id);
  const STORE_KEY = "tinygpt.chat.session";
  const state = { options: null, session: null, lastSeq: -1, following: false, turn: null, text: null };

  // ---- settings ---------------------------------------------------------------------------------------------
  function fillSelect(select, items, value) {
    select.replaceChildren(...items.map(([v, label]) => ui.el("option", { value: v }, label)));
    if (value !== undefined && value !== null) select.value = value;
  }

  function applySettings(s) {
    $("model").value = s.model; $("tools").value = s.tools; $("tool-choice").value = s.tool_choice;
    $("temperature").value = s.temperature; $("max-tokens").value = s.max_tokens; $("max-steps").value = s.max_steps;
    $("system").value = s.system || "";
  }

  function settings() {
    const num = (id) => Number($(id).value);
    return { model: $("model").value, tools: $("tools").value, tool_choice: $("tool-choice").value,
             temperature: num("temperature"), max_tokens: Math.trunc(num("max-tokens")),
             max_steps: Math.trunc(num("max-steps")), system: $("system").value || null };
  }

  function lockSettings(locked) {
    for (const id of ["model", "tools", "tool-choice", "temperature", "max-tokens", "max-steps", "system"]) $(id).disabled = locked;
    $("settings-note").textContent = locked ? "This chat's settings; New chat to change them." : "Settings apply to a new chat.";
  }

  async function loadOptions() {
    const o = state.options = await ui.api("/ui/api/chat/options");
    fillSelect($("model"), o.models.map((m) => [m.name, m.name === "auto" ? "auto (the router picks)" : `${m.name} (${m.kind})`]), o.default);
    fillSelect($("tools"), o.tools.map((t) => [t.name, `${t.name}: ${t.description}`]), o.defaults.tools);
    fillSelect($("tool-choice"), o.tool_choices.map((c) => [c, c]), o.defaults.tool_choice);
    applySettings(Object.assign({}, o.defaults, { model: o.default }));
    $("max-tokens").max = o.limits.max_tokens; $("max-steps").max = o.limits.max_steps;
  }

  // ---- the session ------------------------------------------------------------------------------------------
  function remember(id) {
    const url = new URL(window.location.href);
    if (id) { url.searchParams.set("session", id); localStorage.setItem(STORE_KEY, id); }
    else { url.searchParams.delete("session"); localStorage.removeItem(STORE_KEY); }
    window.history.replaceState(null, "", url);
  }

  function showInfo(s) {
    $("info-session").textContent = s ? s.id.slice(0, 12) : "none yet";
    $("info-model").textContent = s && s.model ? s.model : (s && s.settings.model === "auto" ? "the router decides at the first message" : "-");
    const ep = $("info-episode");
    ep.replaceChildren(s && s.episode ? ui.el("a", { href: s.episode, id: "episode-link" }, s.ended ? "finished episode" : "open episode (recording)") : "-");
  }

  async function refreshInfo() {
    if (!state.session) return;
    state.session = await ui.api(`/ui/api/chat/${state.session.id}`);
    showInfo(state.session);
  }

  async function attach(id) {
    let s;
    try {
      s = await ui.api(`/ui/api/chat/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404) { remember(null); $("status").textContent = "That chat is gone (the server restarted or it was ended); start a new one."; return; }
      throw e;
    }
    state.session = s;
    remember(s.id);
    applySettings(s.settings);
    lockSettings(s.last_seq >= 0 || s.ended);
    showInfo(s);
    await follow();
  }

  async function follow() {
    if (state.following || !state.session) return;
    state.following = true;
    setBusy(true);
    try {
      await ui.lines(`/ui/api/chat/${state.session.id}/events?after=${state.lastSeq}`, onEvent);
    } catch (e) {
      ui.showError("error", e);
    } finally {
      state.following = false;
      setBusy(false);
    }
    await refreshInfo();
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("new-chat").disabled = busy;
    $("status").textContent = busy ? "answering…" : "";
  }

  // ---- rendering events -------------------------------------------------------------------------------------
  function assistantTurn() {
    if (!state.turn) {
      const who = state.session && state.session.model ? state.session.model : "assistant";
      state.turn = ui.el("div", { class: "turn-assistant" }, ui.el("div", { class: "who" }, who));
      $("log").append(state.turn);
    }
    return state.turn;
  }

  function stepText() {
    if (!state.text) {
      state.text = ui.el("div", { class: "step-text" });
      assistantTurn().append(state.text);
    }
    return state.text;
  }

  function onEvent(e) {
    if (e.seq <= state.lastSeq) return;
    state.lastSeq = e.seq;
    const log = $("log");
    switch (e.type) {
      case "user":
        log.append(ui.el("div", { class: "turn-user" }, e.text));
        state.turn = null; state.text = null;
        break;
      case "route": {
        const box = $("route");
        const score = e.score === null || e.score === undefined ? "" : `, score ${Number(e.score).toFixed(3)}`;
        const threshold = e.threshold === null || e.threshold === undefined ? "" : ` vs threshold ${Number(e.threshold).toFixed(3)}`;
        box.replaceChildren(ui.el("strong", {}, "Route: "), ui.el("span", { id: "route-target" }, e.route),
          ` (${e.kind}; domain ${e.domain}${score}${threshold}) — ${e.reason}`);
        box.hidden = false;
        if (state.session) state.session.model = e.route;
        break;
      }
      case "message":
        if (e.role === "system") log.append(ui.el("div", { class: "ui-muted" }, `system: ${e.content}`));
        break;
      case "text":
        stepText().textContent += e.text;
        break;
      case "call":  // the step is over: its text is the parsed content (a call's markup never shows)
        if (state.text) {
          state.text.textContent = e.content || "";
          if (!e.content) state.text.remove();
        } else if (e.content) {
          stepText().textContent = e.content;
        }
        state.text = null;
        break;
      case "tool_call":
        assistantTurn().append(ui.el("div", { class: "tool-call", "data-tool": e.name, "data-call-id": e.id },
          "→ ", ui.el("span", { class: "name" }, e.name), ui.el("code", {}, `(${JSON.stringify(e.arguments)})`)));
        state.text = null;
        break;
      case "tool_result":
        assistantTurn().append(ui.el("div", { class: "tool-result" + (e.is_error ? " error" : ""), "data-tool": e.name },
          ui.el("span", { class: "ui-muted" }, `${e.is_error ? "✗" : "←"} ${e.name}${e.truncated ? " (cut)" : ""}: `),
          ui.el("pre", {}, e.content)));
        state.text = null;
        break;
      case "error":
        assistantTurn().append(ui.el("div", { class: "chat-error" }, `! ${e.message}`));
        state.text = null;
        break;
      case "turn_end":
        assistantTurn().append(ui.el("div", { class: "turn-end" }, `[${e.reason}, ${e.steps} step${e.steps === 1 ? "" : "s"}]`));
        state.turn = null; state.text = null;
        break;
      case "idle":
        state.turn = null; state.text = null;
        break;
      default:
        break;
    }
    log.lastElementChild && log.lastElementChild.scrollIntoView({ block: "end" });
  }

  // ---- actions ----------------------------------------------------------------------------------------------
  async function send(ev) {
    ev.preventDefault();
    ui.clearError("error");
    const text = $("prompt").value;
    if (!text.trim()) { ui.showError("error", new Error("Type a message first.")); return; }
    $("send").disabled = true;
    try {
      if (!state.session || state.session.ended) {
        state.session = await ui.api("/ui/api/chat", { json: settings() });
        state.lastSeq = -1;
        remember(state.session.id);
        showInfo(state.session);
      }
      await ui.api(`/ui/api/chat/${state.session.id}/messages`, { json: { text } });
      $("prompt").value = "";
      lockSettings(true);
    } catch (e) {
      ui.showError("error", e);
      $("send").disabled = false;
      return;
    }
    await follow();
  }

  async function newChat() {
    ui.clearError("error");
    if (state.session && !state.session.ended) {
      try {
        const done = await ui.api(`/ui/api/chat/${state.session.id}/end`, { method: "POST" });
        if (done.episode) $("status").replaceChildren("Saved: ", ui.el("a", { href: done.episode }, "the last chat's episode"));
      } catch (e) {
        ui.showError("error", e);
        return;
      }
    }
    state.session = null; state.lastSeq = -1; state.turn = null; state.text = null;
    $("log").replaceChildren();
    $("route").hidden = true;
    remember(null);
    lockSettings(false);
    showInfo(null);
  }

  async function start() {
    $("composer").addEventListener("submit", send);
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
    });
    $("new-chat").addEventListener("click", newChat);
    try {
      await loadOptions();
      const id = new URL(window.location.href).searchParams.get("session") || localStorage.getItem(STORE_KEY);
      if (id) await attach(id);
    } catch (e) {
      ui.showError("error", e);
    }
    document.body.dataset.ready = "1";
  }

  start();
})();
