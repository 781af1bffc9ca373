// DOM helpers, formatting and the shared empty / loading / error states.

const SVG_NS = "http://www.w3.org/2000/svg";

function put(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h("a", {href: "#/x", class: "y"}, "text", child…) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  put(el, attrs);
  return append(el, children);
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  put(el, attrs);
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// -- states ----------------------------------------------------------------------------
export function loading(text = "Loading…") {
  return h("p", { class: "state loading", role: "status" }, text);
}

export function empty(text) {
  return h("p", { class: "state empty" }, text);
}

export function unavailable(what, why) {
  return h(
    "div",
    { class: "state unavailable", role: "note" },
    h("strong", {}, `${what}: not available. `),
    why || "This server does not offer it yet.",
  );
}

export function errorBox(err, retry) {
  const status = err && err.status ? ` (HTTP ${err.status})` : "";
  const text = err && err.message ? err.message : String(err);
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("strong", {}, `Could not load${status}. `),
    text,
    retry ? [" ", h("button", { type: "button", onclick: retry }, "Try again")] : null,
  );
}

const announcer = () => document.getElementById("announcer");
export function announce(message) {
  const el = announcer();
  if (!el) return;
  el.textContent = "";
  window.setTimeout(() => {
    el.textContent = message;
  }, 30);
}

// -- formatting --------------------------------------------------------------------------
const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function parseTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function utcText(d) {
  return d.toISOString().replace("T", " ").replace("Z", " UTC");
}

/** A <time> in the browser's zone, the exact UTC instant on hover (title). */
export function time(iso, { short = false } = {}) {
  const d = parseTime(iso);
  if (!d) return h("span", { class: "muted" }, "—");
  const today = new Date().toDateString() === d.toDateString();
  return h(
    "time",
    { datetime: d.toISOString(), title: utcText(d) },
    short && today ? timeOnly.format(d) : dateTime.format(d),
  );
}

export function ago(iso, now = Date.now()) {
  const d = parseTime(iso);
  if (!d) return "";
  return duration(Math.max(0, now - d.getTime()));
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  const min = sec / 60;
  if (min < 60) return `${Math.floor(min)} min ${Math.round(sec % 60)} s`;
  const hr = min / 60;
  if (hr < 48) return `${Math.floor(hr)} h ${Math.round(min % 60)} min`;
  return `${Math.floor(hr / 24)} d ${Math.round(hr % 24)} h`;
}

export const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString());

export function shortId(id) {
  return id ? String(id).slice(-8) : "";
}

/** A link whose visible text is a short id and whose accessible name holds the whole id. */
export function idLink(href, id, label = "") {
  return h(
    "a",
    { href, class: "id", title: String(id), "aria-label": `${label}${label ? " " : ""}${id}` },
    h("code", {}, `…${shortId(id)}`),
  );
}

export const FINAL = new Set(["completed", "failed", "cancelled"]);
export const STATES = ["pending", "decomposing", "running", "validating", "awaiting_review", "completed", "failed", "cancelled"];
const STATE_ICONS = {
  pending: "○",
  decomposing: "⊞",
  running: "▶",
  validating: "◎",
  awaiting_review: "◐",
  completed: "✓",
  failed: "✕",
  cancelled: "⊘",
};

/** A state told by icon and word, not only by colour. */
export function statusBadge(status) {
  return h(
    "span",
    { class: `badge st-${status}`, dataset: { status } },
    h("span", { class: "icon", "aria-hidden": "true" }, STATE_ICONS[status] || "•"),
    ` ${status}`,
  );
}

export function stateIcon(status) {
  return STATE_ICONS[status] || "•";
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A <dl> from [label, value] pairs; values may be nodes or text. */
export function fields(pairs, { columns = 1 } = {}) {
  return h(
    "dl",
    { class: columns === 2 ? "fields two" : "fields" },
    pairs
      .filter((p) => p)
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "—" : v)]),
  );
}

/** A table with real header cells; each row is a list of cells (node or text). */
export function table({ caption, columns, rows, className = "" }) {
  return h(
    "table",
    { class: ["data", className] },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      rows.map((r) => h("tr", {}, r.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))),
    ),
  );
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    window.clearTimeout(t);
    t = window.setTimeout(() => fn(...args), ms);
  };
}
