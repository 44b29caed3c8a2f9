// tinygpt UI: what every page shares, as window.tinygptUI. It builds the top navigation from <body data-page>,
// and gives small helpers: el() builds DOM nodes, api() fetches JSON and turns an error answer ({"error": ...})
// into an Error with the server's message, lines() follows an NDJSON stream, showError()/clearError() show a
// message in an element. No framework, no build step; nothing is fetched from outside this server.
"use strict";

(function () {
  const PAGES = [["chat", "Chat", "/ui/chat"], ["trajectories", "Trajectories", "/ui/trajectories"],
                 ["evals", "Evals", "/ui/evals"], ["runs", "Runs", "/ui/runs"]];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }

  function errorMessage(body, text, status) {
    if (body && typeof body.error === "string") return body.error;
    if (body && body.error && body.error.message) return body.error.message;
    return text || `the server answered ${status}`;
  }

  // fetch JSON; `json` in options is sent as the body (POST unless a method is given)
  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new Error(`the server did not answer (${e.message}); is tinygpt serve still running?`);
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!res.ok) {
      const err = new Error(errorMessage(body, text, res.status));
      err.status = res.status;
      throw err;
    }
    return body;
  }

  // follow an NDJSON stream: onItem(object) for each line, until the server ends it (or `signal` aborts)
  async function lines(path, onItem, signal) {
    let res;
    try {
      res = await fetch(path, { headers: { Accept: "application/x-ndjson" }, signal });
    } catch (e) {
      if (e.name === "AbortError") return;
      throw new Error(`the server did not answer (${e.message}); is tinygpt serve still running?`);
    }
    if (!res.ok) {
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch (e) { body = null; }
      const err = new Error(errorMessage(body, text, res.status));
      err.status = res.status;
      throw err;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (e.name === "AbortError") return;
        throw new Error(`the stream broke off (${e.message}); reload the page to re-attach`);
      }
      if (chunk.done) break;
      buffered += decoder.decode(chunk.value, { stream: true });
      let at;
      while ((at = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, at).trim();
        buffered = buffered.slice(at + 1);
        if (line) onItem(JSON.parse(line));
      }
    }
    if (buffered.trim()) onItem(JSON.parse(buffered));
  }

  function showError(target, err) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    node.textContent = (err && err.message) || String(err);
    node.hidden = false;
  }

  function clearError(target) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    node.textContent = "";
    node.hidden = true;
  }

  function nav() {
    const active = document.body.dataset.page;
    const bar = el("nav", { class: "ui-top", "aria-label": "tinygpt pages" },
      el("a", { class: "brand", href: "/ui" }, "tinygpt"),
      PAGES.map(([key, label, href]) =>
        el("a", { class: "page" + (key === active ? " active" : ""), href, "aria-current": key === active ? "page" : null }, label)));
    document.body.prepend(bar);
  }

  function when(ts) {
    if (ts === null || ts === undefined) return "";
    const d = new Date(ts * 1000);
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  window.tinygptUI = { el, api, lines, showError, clearError, when, apiKey: () => null };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", nav);
  else nav();
})();
