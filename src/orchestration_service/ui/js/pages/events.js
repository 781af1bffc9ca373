// Events: a live tail of the feed, with type / project filters and a pause button.

import { setParams } from "../app.js";
import { clear, empty, h, json, num, time } from "../dom.js";
import { EventStream } from "../sse.js";

const MAX_ROWS = 300;
const COLUMNS = ["Seq", "Time", "Type", "Subject", "Project", "Summary"];

function summaryOf(name, d) {
  if (!d || typeof d !== "object") return "";
  if (name.startsWith("task.status.")) return `${d.from || "new"} → ${d.to}${d.reason ? `: ${d.reason}` : ""}`;
  if (name === "task.created") return d.description ? `“${String(d.description).slice(0, 80)}” (${d.priority || "normal"})` : "";
  if (name.startsWith("task.ready.")) return `attempt ${d.attempt ?? "?"} for tier ${d.tier ?? "?"}`;
  if (name === "task.failed") return String(d.reason || (typeof d.error === "string" ? d.error : "") || "");
  if (name === "task.completed") return d.provenance_id ? `provenance …${String(d.provenance_id).slice(-8)}` : "";
  return d.reason ? String(d.reason) : "";
}

export default async function eventsPage(ctx) {
  ctx.setTitle("Events");
  const params = ctx.params;
  let types = params.get("type") || "";
  let project = params.get("project") || "";
  let paused = false;
  let held = [];
  let count = 0;

  const typeIn = h("input", { id: "ev-type", name: "type", type: "text", value: types, placeholder: "e.g. task.status.* task.created", spellcheck: "false", "aria-describedby": "ev-type-hint" });
  const projIn = h("input", { id: "ev-project", name: "project", type: "text", value: project, spellcheck: "false" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter events" },
    h(
      "div",
      { class: "field grow" },
      h("label", { for: "ev-type" }, "Event types"),
      typeIn,
      h("span", { class: "hint", id: "ev-type-hint" }, "Topic patterns separated by spaces: * one word, # any number of words. Empty: every event."),
    ),
    h("div", { class: "field" }, h("label", { for: "ev-project" }, "Project"), projIn),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Apply")),
  );
  const pauseBtn = h("button", { type: "button", id: "pause", "aria-pressed": "false" }, "Pause");
  const clearBtn = h("button", { type: "button" }, "Clear");
  const status = h("p", { class: "summary", role: "status", id: "events-status" }, "Waiting for events…");
  const tbody = h("tbody", { id: "events-body" });
  const tableEl = h(
    "table",
    { class: "data events", id: "events-table" },
    h("caption", { class: "visually-hidden" }, "Events, newest first"),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const emptyNote = empty("No events yet. The feed starts at the newest event; new ones appear here as they happen.");
  const box = h("div", { class: "table-wrap" }, emptyNote);
  ctx.root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Events"), h("div", { class: "actions" }, pauseBtn, clearBtn)),
    form,
    status,
    box,
  );

  function row(ev) {
    const ce = ev.data || {};
    const d = ce.data;
    const name = ev.event || String(ce.type || "").replace(/^dats\./, "");
    const subject = ce.subject || (d && d.task_id) || "";
    const isTask = name.startsWith("task.") && subject;
    const cells = [
      h("code", {}, ev.id ?? ""),
      time(ce.time, { short: true }),
      h("code", { class: "etype" }, name),
      isTask ? h("a", { href: `#/tasks/${subject}`, "aria-label": `Task ${subject}`, title: subject }, h("code", {}, `…${String(subject).slice(-8)}`)) : subject || "—",
      (d && d.project_id) || "—",
      h("details", {}, h("summary", {}, summaryOf(name, d) || "data"), json(ce)),
    ];
    return h("tr", { dataset: { seq: ev.id ?? "", type: name } }, cells.map((c, i) => h("td", { "data-label": COLUMNS[i] }, c)));
  }

  function show(list) {
    if (!list.length) return;
    if (!tableEl.isConnected) clear(box).append(tableEl);
    const frag = document.createDocumentFragment();
    for (const ev of list.reverse()) frag.append(row(ev));
    tbody.prepend(frag);
    while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
  }

  function updateStatus() {
    status.textContent = paused
      ? `Paused: ${num(held.length)} new event${held.length === 1 ? "" : "s"} held (still receiving).`
      : `${num(count)} event${count === 1 ? "" : "s"} received${count > MAX_ROWS ? `; showing the newest ${MAX_ROWS}` : ""}.`;
  }

  let stream = null;
  function connect() {
    if (stream) stream.close();
    const patterns = types.split(/[\s,]+/).filter(Boolean);
    stream = new EventStream("/events", {
      query: { type: patterns, project_id: project },
      onEvent: (ev) => {
        count += 1;
        if (paused) held.push(ev);
        else show([ev]);
        updateStatus();
      },
    }).start();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    types = typeIn.value.trim();
    project = projIn.value.trim();
    const p = new URLSearchParams();
    if (types) p.set("type", types);
    if (project) p.set("project", project);
    setParams(p);
    connect();
    status.textContent = "Filters applied; waiting for events…";
  });
  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      show(held);
      held = [];
    }
    updateStatus();
  });
  clearBtn.addEventListener("click", () => {
    clear(tbody);
    held = [];
    count = 0;
    clear(box).append(emptyNote);
    updateStatus();
  });

  connect();
  ctx.root.dataset.ready = "1";
  return () => stream && stream.close();
}
