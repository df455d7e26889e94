// Orrery's web app: live regions. Pages work without this script; with it
// they follow what happens without reloading.
"use strict";
(function () {
  const live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { "X-Orrery-Fragment": "1" }, credentials: "same-origin" });
      if (r.ok) {
        const main = document.getElementById("live");
        const open = new Set([...main.querySelectorAll("details[id][open]")].map(d => d.id));
        const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.testid;
        main.innerHTML = await r.text();
        for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
        if (focused) { const f = main.querySelector('[data-testid="' + focused + '"]'); if (f) f.focus(); }
        document.dispatchEvent(new CustomEvent("orrery:refreshed"));
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const es = new EventSource("/app/events?" + live);
  es.addEventListener("change", refresh);
  // What changed between the page's render and the stream's start (or
  // while it was reconnecting) sent no event: catch up once it is open.
  es.addEventListener("open", refresh);
})();

// The job page: each open step's output in a virtualised view (only the
// lines in sight are in the DOM), ANSI colours as spans, following the job
// live (`/app/jobs/{id}/live`: `marks` says where the stored output ends,
// then `step`, `output` and `end` events), timestamps on demand.
(function () {
  const root = document.getElementById("steps");
  if (!root || !root.dataset.jobId) return;
  const jobId = root.dataset.jobId, node = Number(root.dataset.node);
  const LINE = 18, MAX_BYTES = 256 * 1024 * 1024;
  const decoder = new TextDecoder("utf-8");
  const views = new Map(), pending = new Map();
  let live = root.dataset.live === "1" && !!window.EventSource;
  let marks = null, showTs = false, es = null;

  // ---- ANSI (as the server renders it) ----
  const PLAIN = { b: false, d: false, i: false, u: false, fg: 0, bg: 0 };
  function sgrApply(st, params) {
    st = Object.assign({}, st);
    const codes = params.split(/[;:]/).map(p => parseInt(p, 10) || 0);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) st = Object.assign({}, PLAIN);
      else if (c === 1) st.b = true;
      else if (c === 2) st.d = true;
      else if (c === 3) st.i = true;
      else if (c === 4) st.u = true;
      else if (c === 22) { st.b = false; st.d = false; }
      else if (c === 23) st.i = false;
      else if (c === 24) st.u = false;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) st.fg = c;
      else if (c === 39) st.fg = 0;
      else if (c >= 40 && c <= 47) st.bg = c;
      else if (c >= 100 && c <= 107) st.bg = c - 60;
      else if (c === 49) st.bg = 0;
      else if (c === 38 || c === 48) {
        let colour = -1;
        if (codes[i + 1] === 5) { const n = codes[i + 2] || 0; i += 2; if (n < 16) colour = n < 8 ? n : n - 8 + 60; }
        else if (codes[i + 1] === 2) i += 4;
        if (c === 38) st.fg = colour < 0 ? 0 : 30 + colour;
        else st.bg = colour < 0 ? 0 : (colour >= 60 ? 40 + colour - 60 : 40 + colour);
      }
    }
    return st;
  }
  function sgrClass(st) {
    const c = [];
    if (st.b) c.push("a-b"); if (st.d) c.push("a-d"); if (st.i) c.push("a-i"); if (st.u) c.push("a-u");
    if (st.fg) c.push("f" + st.fg); if (st.bg) c.push("b" + st.bg);
    return c.join(" ");
  }
  const ESC_HTML = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  // Applies the escapes of `s` to `st`; with `out`, pushes its HTML.
  function scanText(s, st, out) {
    let cls = "", open = false, text = "";
    const flush = () => { if (text) { out.push(text); text = ""; } };
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      if (ch === "\x1b") {
        const next = s[i + 1];
        if (next === "[") {
          let j = i + 2;
          while (j < s.length && !(s.charCodeAt(j) >= 0x40 && s.charCodeAt(j) <= 0x7e)) j++;
          if (s[j] === "m") st = sgrApply(st, s.slice(i + 2, j));
          i = j;
        } else if (next === "]") {
          let j = i + 2;
          while (j < s.length && s[j] !== "\x07" && s[j] !== "\x1b") j++;
          i = s[j] === "\x1b" ? j + 1 : j;
        } else i += 1;
        continue;
      }
      if (!out) continue;
      const code = ch.charCodeAt(0);
      if ((code < 32 && ch !== "\t") || code === 127) continue;
      const want = sgrClass(st);
      if (!open && want || open && want !== cls) {
        flush();
        if (open) out.push("</span>");
        open = !!want; cls = want;
        if (open) out.push('<span class="' + want + '">');
      }
      text += ESC_HTML[ch] || ch;
    }
    if (out) { flush(); if (open) out.push("</span>"); }
    return st;
  }
  function renderLine(s, st) {
    if (s.endsWith("\r")) s = s.slice(0, -1);
    const cr = s.lastIndexOf("\r");
    if (cr >= 0) { st = scanText(s.slice(0, cr), st, null); s = s.slice(cr + 1); }
    const out = [];
    scanText(s, st, out);
    return out.join("");
  }
  function now() { return new Date().toTimeString().slice(0, 8); }

  // ---- A step's output, virtualised ----
  function View(details, index) {
    this.details = details; this.index = index;
    this.reset();
    const el = this.el = document.createElement("div");
    el.className = "output"; el.tabIndex = 0;
    el.setAttribute("role", "log");
    el.setAttribute("aria-label", "Output of " + (details.dataset.name || "the step"));
    el.dataset.testid = "step-output";
    this.sizer = document.createElement("div");
    this.sizer.className = "sizer";
    this.lines = document.createElement("div");
    this.lines.className = "lines";
    el.append(this.sizer, this.lines);
    this.follow = true;
    el.addEventListener("scroll", () => {
      this.follow = el.scrollTop + el.clientHeight >= el.scrollHeight - LINE;
      this.schedule();
    });
  }
  View.prototype.reset = function () {
    this.buf = new Uint8Array(64 * 1024); this.len = 0;
    this.starts = new Float64Array(1024); this.nlines = 1;
    this.states = new Map(); this.times = new Map();
    this.chunks = null; this.loadingTimes = false;
    this.scanPos = 0; this.st = PLAIN;
    this.ready = false; this.truncated = false;
  };
  View.prototype.append = function (bytes, time) {
    if (this.truncated) return;
    if (this.len + bytes.length > MAX_BYTES) { this.truncated = true; this.note("This output is too long to show here: open the raw log."); return; }
    if (this.len + bytes.length > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.len + bytes.length) size *= 2;
      const b = new Uint8Array(size); b.set(this.buf.subarray(0, this.len)); this.buf = b;
    }
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    if (time && !this.times.has(this.nlines - 1)) this.times.set(this.nlines - 1, time);
    this.scan(time);
    this.schedule();
  };
  // Indexes new bytes: line starts, and the colours a line starts with.
  View.prototype.scan = function (time) {
    const b = this.buf, len = this.len;
    let p = this.scanPos, st = this.st;
    while (p < len) {
      const c = b[p];
      if (c === 10) {
        if (this.nlines === this.starts.length) { const s = new Float64Array(this.starts.length * 2); s.set(this.starts); this.starts = s; }
        this.starts[this.nlines] = p + 1;
        if (st !== PLAIN && sgrClass(st)) this.states.set(this.nlines, st);
        if (time) this.times.set(this.nlines, time);
        this.nlines++;
        p++;
      } else if (c === 27) {
        if (p + 1 >= len) break;
        if (b[p + 1] === 91) {
          let j = p + 2;
          while (j < len && !(b[j] >= 0x40 && b[j] <= 0x7e)) j++;
          if (j >= len) { if (j - p < 64) break; p = j; continue; }
          if (b[j] === 109) st = sgrApply(st, decoder.decode(b.subarray(p + 2, j)));
          p = j + 1;
        } else p += 2;
      } else p++;
    }
    this.scanPos = p; this.st = st;
  };
  View.prototype.count = function () {
    let n = this.nlines;
    if (n > 1 && this.starts[n - 1] >= this.len) n--;
    return this.len === 0 ? 0 : n;
  };
  View.prototype.line = function (i) {
    const start = this.starts[i];
    const end = i + 1 < this.nlines ? this.starts[i + 1] - 1 : this.len;
    return decoder.decode(this.buf.subarray(start, end));
  };
  View.prototype.schedule = function () {
    if (!this.raf) this.raf = requestAnimationFrame(() => this.render());
  };
  View.prototype.render = function () {
    this.raf = 0;
    const el = this.el, n = this.count(), total = n * LINE;
    this.sizer.style.height = total + "px";
    const height = Math.max(36, Math.min(total + 2, Math.round(window.innerHeight * 0.7)));
    if (el.style.height !== height + "px") el.style.height = height + "px";
    if (this.follow) el.scrollTop = el.scrollHeight;
    const top = el.scrollTop, seen = el.clientHeight || height;
    const first = Math.max(0, Math.floor(top / LINE) - 10);
    const last = Math.min(n, Math.ceil((top + seen) / LINE) + 10);
    const html = [];
    for (let i = first; i < last; i++) {
      const ts = showTs ? '<span class="ts">' + (this.times.get(i) || this.chunkTime(this.starts[i]) || "        ") + "</span>" : "";
      html.push('<div class="line">' + ts + renderLine(this.line(i), this.states.get(i) || PLAIN) + "</div>");
    }
    this.lines.style.top = first * LINE + "px";
    this.lines.innerHTML = html.join("");
  };
  // The arrival time of the stored chunk that holds byte `offset`.
  View.prototype.chunkTime = function (offset) {
    const c = this.chunks;
    if (!c || !c.length || offset < c[0][0]) return "";
    let lo = 0, hi = c.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (c[mid][0] <= offset) lo = mid; else hi = mid - 1; }
    return c[lo][1];
  };
  View.prototype.note = function (text) {
    let p = this.details.querySelector(".view-note");
    if (!p) { p = document.createElement("p"); p.className = "view-note dim"; this.el.after(p); }
    p.textContent = text;
  };
  View.prototype.flush = function () {
    this.ready = true;
    for (const c of pending.get(this.index) || []) this.append(c.bytes, c.time);
    pending.delete(this.index);
    this.schedule();
  };

  async function load(view) {
    const d = view.details;
    let url = "/app/jobs/" + jobId + "/output?node=" + node + "&step=" + view.index;
    let fetchIt = !!d.dataset.hasOutput;
    if (live) {
      const m = marks.get(view.index) || 0;
      fetchIt = m > 0;
      url += "&until=" + m;
    }
    const body = d.querySelector(".step-body");
    const show = () => {
      if (view.el.isConnected) return;
      body.querySelectorAll(".output-static, .cut, .no-output").forEach(e => e.remove());
      body.prepend(view.el);
    };
    if (!fetchIt) { show(); view.flush(); return; }
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (!r.ok) throw new Error(r.status);
      const reader = r.body.getReader();
      let shown = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        view.append(value, null);
        if (view.truncated) { reader.cancel(); break; }
        if (!shown) { show(); shown = true; }
      }
      show();
      view.flush();
      if (showTs) loadTimes(view);
    } catch (e) {
      // Keep what the server rendered.
      view.ready = false;
    }
  }
  // When the stored output arrived, chunk by chunk (once timestamps are
  // shown); live chunks carry their own times.
  async function loadTimes(view) {
    if (view.chunks !== null || view.loadingTimes) return;
    view.loadingTimes = true;
    let url = "/app/jobs/" + jobId + "/output/times?node=" + node + "&step=" + view.index;
    if (live) url += "&until=" + ((marks && marks.get(view.index)) || 0);
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      if (r.ok) {
        const j = await r.json();
        view.chunks = j.chunks.map(c => [c[0], c[1] === null ? "" : new Date(c[1]).toTimeString().slice(0, 8)]);
        view.schedule();
      }
    } catch (e) {
      // The timestamps stay blank.
    }
    view.loadingTimes = false;
  }
  function openStep(d) {
    const index = Number(d.dataset.index);
    if (views.has(index) || (live && !marks)) return;
    const v = new View(d, index);
    views.set(index, v);
    load(v);
  }
  root.addEventListener("toggle", e => {
    const d = e.target;
    if (d.matches && d.matches("details.step") && d.open) openStep(d);
  }, true);

  const tsButton = root.querySelector(".ts-toggle");
  if (tsButton) {
    tsButton.hidden = false;
    tsButton.addEventListener("click", () => {
      showTs = !showTs;
      tsButton.setAttribute("aria-pressed", String(showTs));
      root.classList.toggle("with-ts", showTs);
      for (const v of views.values()) { if (showTs) loadTimes(v); v.schedule(); }
    });
  }

  function badge(status) {
    const s = document.createElement("span");
    s.className = "status s-" + status; s.dataset.status = status;
    s.textContent = status.replace(/_/g, " ");
    return s;
  }
  function stepElement(ev) {
    const id = "step-" + node + "-" + ev.index;
    let d = document.getElementById(id);
    if (d) return d;
    const empty = root.querySelector('[data-testid="no-steps"]');
    if (empty) empty.remove();
    d = document.createElement("details");
    d.className = "step"; d.id = id;
    d.dataset.testid = "step"; d.dataset.name = ev.name; d.dataset.index = ev.index;
    const summary = document.createElement("summary");
    const st = document.createElement("span"); st.className = "step-status";
    const name = document.createElement("span"); name.className = "step-name"; name.textContent = ev.name;
    const dur = document.createElement("span"); dur.className = "dur dim";
    summary.append(st, name, dur);
    const body = document.createElement("div"); body.className = "step-body";
    const links = document.createElement("p"); links.className = "step-links";
    const raw = document.createElement("a");
    raw.href = "/app/jobs/" + jobId + "/output?node=" + node + "&step=" + ev.index;
    raw.dataset.testid = "raw-log"; raw.textContent = "Raw log";
    links.append(raw); body.append(links);
    d.append(summary, body);
    root.append(d);
    return d;
  }

  function connect() {
    es = new EventSource("/app/jobs/" + jobId + "/live");
    es.addEventListener("marks", e => {
      const again = marks !== null;
      marks = new Map();
      for (const m of JSON.parse(e.data).marks) if (m.node === node) marks.set(m.step, m.next);
      if (again) {
        // Reconnected: start over from what is stored now.
        pending.clear();
        for (const v of views.values()) { v.reset(); v.el.remove(); }
        views.clear();
      }
      root.querySelectorAll("details.step[open]").forEach(openStep);
    });
    es.addEventListener("step", e => {
      const ev = JSON.parse(e.data);
      if (ev.node !== node) return;
      if (root.dataset.attempt && Number(root.dataset.attempt) !== ev.attempt) { location.reload(); return; }
      root.dataset.attempt = ev.attempt;
      const d = stepElement(ev);
      const was = d.dataset.status;
      d.dataset.status = ev.status;
      d.querySelector(".step-status").replaceChildren(badge(ev.status));
      if (!was && ev.status === "running") d.open = true;
      if (ev.status !== "running" && ev.status !== "success" && !was) d.open = true;
    });
    es.addEventListener("output", e => {
      const ev = JSON.parse(e.data);
      if (ev.node !== node) return;
      const bin = atob(ev.data), bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const d = document.getElementById("step-" + node + "-" + ev.step);
      if (d) d.dataset.hasOutput = "1";
      const v = views.get(ev.step), time = now();
      if (v && v.ready) v.append(bytes, time);
      else {
        if (!pending.has(ev.step)) pending.set(ev.step, []);
        pending.get(ev.step).push({ bytes: bytes, time: time });
      }
    });
    es.addEventListener("end", e => {
      const st = JSON.parse(e.data).status;
      const b = document.getElementById("job-status");
      if (b) b.replaceChildren(badge(st));
      const cancel = document.querySelector('[data-testid="cancel-job"]');
      if (cancel) cancel.closest("form").remove();
      es.close();
    });
  }

  if (live) connect();
  else root.querySelectorAll("details.step[open]").forEach(openStep);
})();
