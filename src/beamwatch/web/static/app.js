// beamwatch dashboard: renders each page from the JSON API and keeps it live with
// server-sent events. Plain browser JavaScript, no build step, no CDN.
"use strict";

const PAGE = document.body.dataset.page;
const TZ = document.body.dataset.tz || "UTC";
const SEVERITIES = ["INVALID", "MAJOR", "MINOR", "OK"];
const $ = (sel) => document.querySelector(sel);

// --- talking to the API -----------------------------------------------------------------

function headers(extra) {
  // a change needs an identity: a token typed into this page (kept for the tab), or the
  // reverse proxy's login; X-Requested-With tells the server it comes from our own page
  const h = Object.assign({"X-Requested-With": "beamwatch"}, extra || {});
  const token = sessionStorage.getItem("beamwatch-token");
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, method, body) {
  const init = {method: method || "GET", headers: headers()};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function showError(e) {
  const box = $("#error");
  box.textContent = e ? String(e.message || e) : "";
  box.hidden = !e;
}

async function change(path, method, body, done) {
  try {
    const result = await api(path, method, body);
    showError(null);
    if (done) done(result);
    refresh();
  } catch (e) {
    showError(e);
  }
}

// --- small helpers ------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") node.addEventListener("click", v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const timeFmt = new Intl.DateTimeFormat("en-GB", {
  timeZone: TZ, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
// epoch seconds, or an ISO 8601 text (the on-call answers)
const when = (t) => (t ? timeFmt.format(new Date(typeof t === "number" ? t * 1000 : t)) : "—");

function ackButton(check) {
  return el("button", {class: "ack", onclick: () => change("/api/acks", "POST", {check})},
            "Acknowledge");
}

// --- the header: who am I, live or not, the mode --------------------------------------------

function renderWho() {
  const who = $("#who");
  who.replaceChildren();
  if (sessionStorage.getItem("beamwatch-token")) {
    who.append(el("button", {class: "link", onclick: () => {
      sessionStorage.removeItem("beamwatch-token"); renderWho();
    }}, "forget token"));
  } else {
    const input = el("input", {type: "password", placeholder: "API token to make changes",
                               "aria-label": "API token", size: 18});
    who.append(input, el("button", {class: "link", onclick: () => {
      if (input.value) sessionStorage.setItem("beamwatch-token", input.value);
      renderWho();
    }}, "use"));
  }
}

function renderMode(mode, engineRunning) {
  const banner = $("#mode-banner");
  banner.className = "mode mode-" + mode.mode;
  const override = mode.override
    ? ` — forced by ${mode.override.author} until ${when(mode.override.until)}: ` +
      mode.override.reason : "";
  banner.textContent = `Mode: ${mode.mode}${override}` +
    (engineRunning ? "" : " — beamwatch run is NOT running: this is the last stored state");
  banner.classList.toggle("stopped", !engineRunning);
}

// --- the board ----------------------------------------------------------------------------------

function checkState(c) {
  if (c.connected === false) return "disconnected";
  if (c.severity !== "OK" && c.muted) return "muted";
  return c.severity.toLowerCase();
}

function tile(c) {
  const state = checkState(c);
  const why = c.muted ? `muted (${c.muted}): ${c.mute_detail || ""}` : c.message;
  return el("div", {class: `tile ${state}${c.acked ? " acked" : ""}`, "data-check": c.id,
                    title: why || ""},
    el("div", {class: "name"}, c.name),
    el("div", {class: "value"}, c.value_text, c.severity !== "OK" && c.since
       ? el("span", {class: "since"}, " · since " + when(c.since).split(", ").pop()) : null),
    c.severity !== "OK" ? el("div", {class: "why"}, why || "") : null,
    c.acked ? el("div", {class: "why"}, `acknowledged by ${c.acked_by}`) : null,
    c.severity !== "OK" && !c.acked && !c.muted ? ackButton(c.id) : null);
}

async function board() {
  const status = await api("/api/status");
  renderMode(status.mode, status.engine_running);
  const groups = new Map();
  for (const c of status.checks) {
    if (!groups.has(c.group)) groups.set(c.group, []);
    groups.get(c.group).push(c);
  }
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const c of status.checks) counts[c.severity] += 1;
  const summary = el("p", {class: "summary"},
    SEVERITIES.map((s) => el("span", {class: "count " + s.toLowerCase()}, `${counts[s]} ${s}`)));
  const sections = [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([group, checks]) => el("section", {class: "group"},
      el("h2", {}, group), el("div", {class: "tiles"}, checks.map(tile))));
  keepUnchanged($("#main"), sections);
  $("#main").replaceChildren(summary, ...sections);
}

function keepUnchanged(old, fresh) {
  // a tile that did not change keeps its node: during a fault storm the board re-renders
  // every second, and a button being pressed must not be swapped out under the pointer
  const before = new Map([...old.querySelectorAll(".tile[data-check]")]
    .map((n) => [n.dataset.check, n]));
  for (const section of fresh) {
    for (const n of section.querySelectorAll(".tile[data-check]")) {
      const o = before.get(n.dataset.check);
      if (o && o.outerHTML === n.outerHTML) n.replaceWith(o);
    }
  }
}

// --- incidents ----------------------------------------------------------------------------------

async function incidents() {
  const [list, status] = await Promise.all([api("/api/incidents"), api("/api/status")]);
  renderMode(status.mode, status.engine_running);
  if (!list.length) {
    $("#main").replaceChildren(el("p", {class: "ok-note"}, "No open incidents."));
    return;
  }
  $("#main").replaceChildren(...list.map((i) => el("article", {
    class: "incident " + i.severity.toLowerCase(), "data-incident": i.id},
    el("h2", {}, i.title, el("span", {class: "sev"}, i.severity)),
    el("p", {}, `root cause ${i.root}, since ${when(i.opened)}; `,
       i.acked_by ? `acknowledged by ${i.acked_by}` : el("strong", {}, "not acknowledged"),
       i.acked_by ? null : ackButton(i.root)),
    i.consequences.length
      ? el("p", {}, `caused: ${i.consequences.join(", ")}`) : null,
    el("table", {class: "trail"},
       el("tr", {}, ["when", "what", "to", "how", "outcome"].map((h) => el("th", {}, h))),
       i.notifications.map((n) => el("tr", {},
         el("td", {}, when(n.sent_at || n.created_at)), el("td", {}, n.kind),
         el("td", {}, n.receiver), el("td", {}, n.destination),
         el("td", {}, n.status + (n.last_error ? ` (${n.last_error})` : ""))))))));
}

// --- the beamline log: one band per check ------------------------------------------------------

const COLOURS = {OK: "#3b8f4a", MINOR: "#e0b020", MAJOR: "#c62828", INVALID: "#7b3fa0"};
let plotted = null;

async function log() {
  const hours = Number(new URLSearchParams(location.search).get("hours") || 24);
  const data = await api(`/api/timeline?since=${hours}h`);
  const status = await api("/api/status");
  renderMode(status.mode, status.engine_running);
  const width = 1000, row = 14, left = 170, top = 24;
  const scale = (t) => left + (t - data.since) / (data.until - data.since) * (width - left);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const height = top + data.checks.length * row + 10;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "timeline");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text) n.textContent = text;
    svg.append(n);
    return n;
  };
  for (let h = 0; h <= hours; h += Math.max(1, Math.round(hours / 12))) {
    const t = data.until - h * 3600;
    add("line", {x1: scale(t), x2: scale(t), y1: top - 6, y2: height, class: "hour"});
    add("text", {x: scale(t), y: 12, class: "axis"}, when(t).split(", ").pop());
  }
  for (const s of data.silences) {
    add("rect", {x: scale(Math.max(s.start, data.since)), y: top - 4,
                 width: Math.max(1, scale(Math.min(s.end, data.until)) -
                                    scale(Math.max(s.start, data.since))),
                 height: 3, class: "silence"}).append(tooltip(
      `silence #${s.id} by ${s.author}: ${s.reason} (${s.matchers.join(", ")})`));
  }
  for (const m of data.modes) {
    add("line", {x1: scale(m.time), x2: scale(m.time), y1: top - 6, y2: height, class: "mode"})
      .append(tooltip(`mode ${m.old} → ${m.new} (${m.source}) ${m.reason || ""}`));
  }
  data.checks.forEach((c, i) => {
    const y = top + i * row;
    add("text", {x: left - 6, y: y + row - 4, class: "label"}, c.id);
    for (const [start, end, severity, muted] of c.segments) {
      // an alarm of a few seconds still shows, inside the drawing
      const w = Math.max(severity === "OK" ? 1 : 3, scale(end) - scale(start));
      const band = add("rect", {x: Math.min(scale(start), width - w), y: y + 1,
                                height: row - 3, width: w,
                                fill: COLOURS[severity] || "#999",
                                class: "band" + (muted ? " muted" : ""),
                                "data-check": c.id});
      band.append(tooltip(`${c.id}: ${severity}${muted ? " (muted " + muted + ")" : ""} ` +
                          `${when(start)} – ${when(end)}`));
      band.addEventListener("click", () => plot(c.id, data.since));
    }
  });
  for (const n of data.notifications) {
    const i = data.checks.findIndex((c) => c.id === n.check);
    if (i < 0) continue;
    add("circle", {cx: scale(n.time), cy: top + i * row + row / 2 - 1, r: 3, class: "told"})
      .append(tooltip(`${n.kind} to ${n.receiver} at ${when(n.time)}`));
  }
  const choose = el("p", {}, "Last ", [24, 48, 72].map((h) => el("a", {
    href: `/log?hours=${h}`, class: h === hours ? "here" : null}, `${h} h `)));
  const chart = el("div", {id: "plot"});
  $("#main").replaceChildren(choose, el("div", {class: "scroll"}, svg), chart);
  if (plotted) plot(plotted, data.since);
}

function tooltip(text) {
  const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
  t.textContent = text;
  return t;
}

async function plot(check, since) {
  plotted = check;
  const hours = Math.ceil((Date.now() / 1000 - since) / 3600);
  const data = await api(`/api/checks/${encodeURIComponent(check)}/values?since=${hours}h`);
  const xs = [], lows = [], highs = [], lasts = [];
  for (const m of data.minutes) {
    xs.push(m.time + (m.span || 60) / 2);
    lows.push(m.vmin);
    highs.push(m.vmax);
    lasts.push(typeof m.vlast === "number" ? m.vlast : null);
  }
  const box = $("#plot");
  box.replaceChildren(el("h2", {}, `${check}: values, last ${hours} h`));
  // what the archiver added before beamwatch's first minute, or why it could not
  if (data.archive) box.append(el("p", {class: "muted"}, data.archive));
  if (!xs.length) {
    box.append(el("p", {class: "muted"}, "no numeric values stored in that time"));
    return;
  }
  const opts = {
    width: Math.min(1000, box.clientWidth || 1000), height: 260, tzDate: (ts) =>
      uPlot.tzDate(new Date(ts * 1e3), TZ),
    series: [{}, {label: "min", stroke: "#90caf9"}, {label: "max", stroke: "#1565c0"},
             {label: "last", stroke: "#333", width: 1}],
  };
  new uPlot(opts, [xs, lows, highs, lasts], box);
}

// --- silences, mode, on-call ------------------------------------------------------------------

async function noise() {
  const [silences, mode, oncall, status] = await Promise.all([
    api("/api/silences"), api("/api/mode"), api("/api/oncall"), api("/api/status")]);
  renderMode(mode, status.engine_running);
  const matchers = el("input", {name: "matchers", placeholder: "fe-vacuum or group=vacuum",
                                required: true});
  const duration = el("input", {name: "duration", placeholder: "2h", size: 6, required: true});
  const reason = el("input", {name: "reason", placeholder: "why", required: true});
  const silenceForm = el("form", {class: "inline", id: "silence-form"}, matchers, duration,
                         reason, el("button", {type: "submit"}, "Silence"));
  silenceForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    change("/api/silences", "POST", {matchers: matchers.value.split(/\s+/).filter(Boolean),
                                     duration: duration.value, reason: reason.value});
  });
  const modeName = el("select", {name: "mode"}, mode.modes.map((m) => el("option", {}, m)));
  const modeFor = el("input", {name: "duration", placeholder: "4h", size: 6, required: true});
  const modeWhy = el("input", {name: "reason", placeholder: "why", required: true});
  const modeForm = el("form", {class: "inline", id: "mode-form"}, modeName, modeFor, modeWhy,
                      el("button", {type: "submit"}, "Force mode"));
  modeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    change("/api/mode", "PUT", {mode: modeName.value, duration: modeFor.value,
                                reason: modeWhy.value});
  });
  $("#main").replaceChildren(
    el("h2", {}, "Silences"),
    silences.length ? el("table", {}, silences.map((s) => el("tr", {},
      el("td", {}, `#${s.id}`), el("td", {}, s.matchers.join(", ")),
      el("td", {}, `until ${when(s.end)}`), el("td", {}, `${s.author}: ${s.reason}`),
      el("td", {}, el("button", {onclick: () => change(`/api/silences/${s.id}`, "DELETE")},
                      "End now"))))) : el("p", {class: "muted"}, "No silences in force."),
    silenceForm,
    el("h2", {}, "Mode"),
    el("p", {}, `${mode.mode} (${mode.source}) — ${mode.note}`,
       mode.override ? el("button", {onclick: () => change("/api/mode", "DELETE")},
                          "End override") : null),
    modeForm,
    el("h2", {}, "On call"),
    oncall.length ? el("table", {}, oncall.map((o) => el("tr", {},
      el("td", {}, o.team), el("td", {}, o.person || "NOBODY"),
      el("td", {}, o.until ? `until ${when(o.until)}` : ""), el("td", {}, o.reason))))
      : el("p", {class: "muted"}, "No team has a rota."));
}

// --- live updates -------------------------------------------------------------------------------

const RENDER = {board, incidents, log, noise};
let pending = null;

function refresh() {
  // many events at once (an IOC lost: 40 transitions) make one re-render; the log, a
  // drawing of hours, is redrawn at most every 30 s
  if (PAGE === "log") {
    if (!pending) pending = setTimeout(() => { pending = null; log().catch(showError); }, 30000);
    return;
  }
  clearTimeout(pending);
  pending = setTimeout(() => RENDER[PAGE]().catch(showError), 250);
}

function live() {
  const events = new EventSource("/api/events");
  const dot = $("#live");
  events.onopen = () => dot.classList.add("on");
  events.onerror = () => dot.classList.remove("on");  // EventSource reconnects by itself
  events.addEventListener("transition", refresh);
  events.addEventListener("audit", refresh);
}

renderWho();
showError(null);
RENDER[PAGE]().catch(showError);
live();
