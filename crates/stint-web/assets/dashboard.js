// The stint dashboard's page script: keeps a page live and posts its
// buttons without a reload. Plain JavaScript, no build step.
//
// A page's <main> says what to poll and how to match the answer:
//   data-poll        an /api/... path (relative to the dashboard) to GET every second
//   data-list        path in the answer to the list of rows ("" = the answer)
//   data-key         path in each item to its key; its row is <tr data-key=KEY>
//   data-scope       path in the answer to what the page's own fields show
//   data-item-scope  path in each item to what its row's fields show
//   data-item-sig    paths in each item; a change redraws the page (row data-sig)
//   data-sig-paths   paths in the answer; a change redraws the page (main data-sig)
// Elements with data-bind="path" data-fmt="fmt" get the value at that path,
// formatted; text is always set with textContent, never as markup.
// Elements with data-rate / data-spark on the overview show the per-minute
// rates of the counters in `totals`.
(function () {
  "use strict";
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || "";
  const base = meta("stint-base");
  const csrf = meta("csrf-token");
  const POLL_MS = 1000;

  // ---- formatting (as the server's fmt.rs) ----
  function duration(ms) {
    ms = Math.max(0, Math.round(ms));
    if (ms < 1000) return ms + "ms";
    const secs = Math.floor(ms / 1000);
    if (secs < 10) return (ms / 1000).toFixed(1) + "s";
    if (secs < 60) return secs + "s";
    const m = Math.floor(secs / 60), s = secs % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (m < 60) return m + "m " + pad(s) + "s";
    const h = Math.floor(m / 60);
    if (h < 24) return h + "h " + pad(m % 60) + "m";
    return Math.floor(h / 24) + "d " + pad(h % 24) + "h";
  }
  const int = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  function rate(r) {
    if (r == null) return "–";
    if (r >= 1e6) return (r / 1e6).toFixed(2) + "M/s";
    if (r >= 1e4) return (r / 1e3).toFixed(1) + "k/s";
    if (r >= 100) return r.toFixed(0) + "/s";
    return r.toFixed(1) + "/s";
  }
  function age(at) {
    if (at == null) return "–";
    const d = Date.now() - at;
    if (Math.abs(d) < 1000) return "now";
    return d > 0 ? duration(d) + " ago" : "in " + duration(-d);
  }
  function progressText(p) {
    if (!p) return "";
    if (p.total != null && p.fraction != null)
      return `${int(p.done)} / ${int(p.total)} (${(p.fraction * 100).toFixed(1)}%)`;
    if (p.total != null) return `${int(p.done)} / ${int(p.total)}`;
    return int(p.done);
  }
  const formats = {
    text: (v) => (v == null ? "–" : String(v)),
    int: int,
    rate: rate,
    ms: (v) => (v == null ? "–" : duration(v)),
    secs: (v) => (v == null ? "–" : duration(v * 1000)),
    age: age,
    progress: progressText,
    pending: (v) => (v ? v + " requested" : ""),
  };

  function get(obj, path) {
    if (!path) return obj;
    let v = obj;
    for (const part of path.split(".")) {
      if (v == null) return undefined;
      v = v[part];
    }
    return v;
  }
  const sigOf = (obj, paths) =>
    paths ? paths.split(",").map((p) => { const v = get(obj, p); return v == null ? "" : String(v); }).join("|") : "";

  // Fills the data-bind elements under `el` (not those of nested rows).
  function bind(el, data, rowLevel) {
    for (const node of el.querySelectorAll("[data-bind]")) {
      if (!rowLevel && node.closest("[data-key]")) continue;
      const v = get(data, node.dataset.bind);
      const fmt = node.dataset.fmt || "text";
      if (fmt === "bar") {
        if (v && v.total != null) {
          node.max = Math.max(1, v.total);
          node.value = Math.min(v.done, v.total);
        } else {
          node.removeAttribute("value");
        }
        continue;
      }
      const text = (formats[fmt] || formats.text)(v);
      if (node.textContent !== text) node.textContent = text;
    }
  }

  // ---- per-minute rates (overview) ----
  const samples = [];
  function rates(answer) {
    const totals = answer && answer.totals;
    if (!totals) return;
    samples.push({ t: Date.now(), processed: totals.processed, failed: totals.failed });
    while (samples.length > 120) samples.shift();
    for (const name of ["processed", "failed"]) {
      const recent = samples.filter((s) => s.t >= Date.now() - 60000);
      const first = recent[0], last = recent[recent.length - 1];
      const el = document.querySelector(`[data-rate="${name}"]`);
      if (el && first && last && last.t > first.t) {
        const perMin = ((last[name] - first[name]) * 60000) / (last.t - first.t);
        el.textContent = perMin.toFixed(perMin < 10 ? 1 : 0);
      }
      const canvas = document.querySelector(`canvas[data-spark="${name}"]`);
      if (canvas) spark(canvas, samples.slice(1).map((s, i) => s[name] - samples[i][name]));
    }
  }
  function spark(canvas, values) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    if (values.length < 2) return;
    const max = Math.max(1, ...values);
    ctx.strokeStyle = getComputedStyle(canvas).color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = (i / (values.length - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 4);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }

  // ---- polling ----
  let busy = false;
  let refreshing = false;
  const live = document.getElementById("live");
  function setLive(ok, text) {
    if (!live) return;
    live.classList.toggle("off", !ok);
    live.textContent = text;
  }

  async function poll() {
    const main = document.querySelector("main");
    if (!main || !main.dataset.poll || busy || document.hidden) return;
    busy = true;
    try {
      const res = await fetch(base + "/" + main.dataset.poll, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const answer = await res.json();
      setLive(true, "live");
      rates(answer);
      if (needsRedraw(main, answer)) {
        await redraw();
        return;
      }
      bind(main, get(answer, main.dataset.scope), false);
      const list = main.dataset.list === undefined ? null : get(answer, main.dataset.list);
      if (Array.isArray(list)) {
        for (const item of list) {
          const row = rowOf(main, get(item, main.dataset.key));
          if (row) bind(row, get(item, main.dataset.itemScope), true);
        }
      }
    } catch (e) {
      setLive(false, "offline");
    } finally {
      busy = false;
    }
  }

  function rowOf(main, key) {
    for (const row of main.querySelectorAll("[data-key]")) if (row.dataset.key === String(key)) return row;
    return null;
  }

  // The page must be redrawn when rows come or go, or their state or the
  // page's own state changed.
  function needsRedraw(main, answer) {
    if (main.dataset.sigPaths && sigOf(answer, main.dataset.sigPaths) !== (main.dataset.sig || "")) return true;
    if (main.dataset.list === undefined) return false;
    const list = get(answer, main.dataset.list);
    if (!Array.isArray(list)) return false;
    const rows = main.querySelectorAll("[data-key]");
    if (rows.length !== list.length) return true;
    for (const item of list) {
      const row = rowOf(main, get(item, main.dataset.key));
      if (!row) return true;
      if (main.dataset.itemSig && sigOf(item, main.dataset.itemSig) !== (row.dataset.sig || "")) return true;
    }
    return false;
  }

  // Fetches the page again and swaps in its <main>, keeping what was ticked.
  async function redraw() {
    if (refreshing) return;
    refreshing = true;
    try {
      const url = new URL(location.href);
      url.searchParams.delete("notice");
      const res = await fetch(url, { credentials: "same-origin" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.querySelector("main");
      const main = document.querySelector("main");
      if (!fresh || !main) return;
      const ticked = new Set([...main.querySelectorAll('input[type="checkbox"][name="jid"]:checked')].map((c) => c.value));
      for (const a of [...main.attributes]) main.removeAttribute(a.name);
      for (const a of [...fresh.attributes]) main.setAttribute(a.name, a.value);
      main.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));
      for (const c of main.querySelectorAll('input[type="checkbox"][name="jid"]')) c.checked = ticked.has(c.value);
      setLive(true, "live");
    } catch (e) {
      setLive(false, "offline");
    } finally {
      refreshing = false;
    }
  }

  // ---- buttons: POST with the CSRF token, show the answer, poll again ----
  const toast = document.getElementById("toast");
  function say(text, bad) {
    if (!toast) return;
    toast.textContent = text;
    toast.className = bad ? "show bad" : "show";
    clearTimeout(say.timer);
    say.timer = setTimeout(() => (toast.className = ""), 6000);
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
    ev.preventDefault();
    const submitter = ev.submitter;
    const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (question && !confirm(question)) return;
    const body = new URLSearchParams(new FormData(form, submitter));
    if (form.id === "bulk" && !body.getAll("jid").length) {
      say("Select some jobs first.", true);
      return;
    }
    const action = (submitter && submitter.getAttribute("formaction")) || form.action;
    if (submitter) submitter.disabled = true;
    try {
      const res = await fetch(action, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
      });
      const answer = await res.json().catch(() => ({ error: "HTTP " + res.status }));
      say(answer.message || answer.error || "done", !res.ok || answer.ok === false);
    } catch (e) {
      say("The dashboard did not answer: " + e.message, true);
    } finally {
      if (submitter) submitter.disabled = false;
    }
    await redraw();
  });

  document.addEventListener("change", (ev) => {
    const box = ev.target;
    if (box instanceof HTMLInputElement && box.hasAttribute("data-select-all")) {
      for (const c of document.querySelectorAll('input[type="checkbox"][name="jid"]')) c.checked = box.checked;
    }
  });

  setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", poll);
  poll();
})();
