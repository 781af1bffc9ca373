// Tasks: filters, server-side pages, and live rows from the event feed.

import { api } from "../api.js";
import { setParams } from "../app.js";
import { announce, clear, empty, errorBox, h, idLink, loading, num, STATES, statusBadge, time } from "../dom.js";
import { EventStream } from "../sse.js";

const PRIORITIES = ["critical", "high", "normal", "low"];
const SIZES = [25, 50, 100, 200];
const COLUMNS = ["Task", "Description", "Project", "Status", "Priority", "Attempt", "Created", "Updated"];

// Numbers the browser tests read (render time, live latency); nothing is sent anywhere.
window.dashboard = window.dashboard || { latencies: [] };

/** datetime-local value (local time) ↔ ISO UTC */
function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}
function toLocal(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || Number.isNaN(d.getTime())) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function readFilters(params) {
  const limit = Number(params.get("limit")) || 50;
  return {
    project: params.get("project") || "",
    statuses: params.getAll("status").filter((x) => STATES.includes(x)),
    priority: PRIORITIES.includes(params.get("priority")) ? params.get("priority") : "",
    after: params.get("created_after") || "",
    before: params.get("created_before") || "",
    limit: SIZES.includes(limit) ? limit : 50,
    offset: Math.max(0, Number(params.get("offset")) || 0),
  };
}

function writeFilters(f) {
  const p = new URLSearchParams();
  if (f.project) p.set("project", f.project);
  f.statuses.forEach((x) => p.append("status", x));
  if (f.priority) p.set("priority", f.priority);
  if (f.after) p.set("created_after", f.after);
  if (f.before) p.set("created_before", f.before);
  if (f.limit !== 50) p.set("limit", String(f.limit));
  if (f.offset) p.set("offset", String(f.offset));
  setParams(p);
}

function row(t) {
  const desc = t.description.length > 120 ? `${t.description.slice(0, 117)}…` : t.description;
  const cells = [
    idLink(`#/tasks/${t.task_id}`, t.task_id, "Task"),
    h("span", { class: "desc", title: t.description }, desc),
    h("a", { href: `#/projects/${encodeURIComponent(t.project_id)}` }, t.project_id),
    statusBadge(t.status),
    h("span", { class: `prio prio-${t.priority}` }, t.priority),
    `${t.attempt}/${t.max_attempts}`,
    time(t.created_at, { short: true }),
    time(t.updated_at, { short: true }),
  ];
  return h(
    "tr",
    { dataset: { taskId: t.task_id, status: t.status } },
    cells.map((c, i) => h("td", { "data-label": COLUMNS[i], class: `c-${COLUMNS[i].toLowerCase()}` }, c)),
  );
}

export default async function tasksPage(ctx) {
  ctx.setTitle("Tasks");
  const f = readFilters(ctx.params);
  const root = ctx.root;
  let total = 0;
  let capped = false; // the service stops counting at 10,000: "10,000+"
  let shown = [];
  let loaded = false;
  const queued = [];
  let pendingMatches = 0;

  // -- filters ------------------------------------------------------------------------
  const projectSel = h("select", { id: "f-project", name: "project" }, h("option", { value: "" }, "All projects"));
  if (f.project) projectSel.append(h("option", { value: f.project, selected: true }, f.project));
  const statusBoxes = STATES.map((st) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "status", value: st, checked: f.statuses.includes(st) }),
      ` ${st}`,
    ),
  );
  const prioSel = h(
    "select",
    { id: "f-priority", name: "priority" },
    h("option", { value: "" }, "Any priority"),
    PRIORITIES.map((p) => h("option", { value: p, selected: f.priority === p }, p)),
  );
  const afterIn = h("input", { id: "f-after", type: "datetime-local", name: "after", value: toLocal(f.after) });
  const beforeIn = h("input", { id: "f-before", type: "datetime-local", name: "before", value: toLocal(f.before) });
  const sizeSel = h(
    "select",
    { id: "f-size", name: "limit" },
    SIZES.map((n) => h("option", { value: n, selected: f.limit === n }, `${n} per page`)),
  );
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter tasks" },
    h("div", { class: "field" }, h("label", { for: "f-project" }, "Project"), projectSel),
    h("div", { class: "field" }, h("label", { for: "f-priority" }, "Priority"), prioSel),
    h("div", { class: "field" }, h("label", { for: "f-after" }, "Created from"), afterIn),
    h("div", { class: "field" }, h("label", { for: "f-before" }, "Created until"), beforeIn),
    h("div", { class: "field" }, h("label", { for: "f-size" }, "Page size"), sizeSel),
    h("fieldset", { class: "statuses" }, h("legend", {}, "Status"), statusBoxes),
    h("div", { class: "field buttons" }, h("button", { type: "reset" }, "Clear filters")),
  );
  const apply = () => {
    f.project = projectSel.value;
    f.priority = prioSel.value;
    f.statuses = statusBoxes.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    f.after = toIso(afterIn.value);
    f.before = toIso(beforeIn.value);
    f.limit = Number(sizeSel.value);
    f.offset = 0;
    writeFilters(f);
    restartStream();
    load();
  };
  form.addEventListener("change", apply);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    apply();
  });
  form.addEventListener("reset", () => window.setTimeout(apply, 0));

  const summary = h("p", { class: "summary", role: "status", id: "tasks-summary" }, "");
  const notice = h("div", { class: "notice", hidden: true });
  const body = h("div", { class: "table-wrap" }, loading("Loading tasks…"));
  const prev = h("button", { type: "button", disabled: true }, "← Previous");
  const next = h("button", { type: "button", disabled: true }, "Next →");
  const pageInfo = h("span", { class: "page-info" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageInfo, next);
  prev.addEventListener("click", () => go(Math.max(0, f.offset - f.limit)));
  next.addEventListener("click", () => go(f.offset + f.limit));

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Tasks"), h("span", { class: "live-note" }, "Updates live")),
    h("details", { class: "filter-box", open: window.innerWidth > 700 }, h("summary", {}, "Filters"), form),
    summary,
    notice,
    body,
    pager,
  );

  function go(offset) {
    f.offset = offset;
    writeFilters(f);
    load();
  }

  function updateSummary() {
    const from = total ? f.offset + 1 : 0;
    const to = Math.min(f.offset + shown.length, Math.max(total, f.offset + shown.length));
    summary.textContent = total
      ? `Showing ${num(from)}–${num(to)} of ${num(total)}${capped ? "+" : ""} tasks`
      : "No tasks match these filters.";
    prev.disabled = f.offset === 0;
    next.disabled = f.offset + f.limit >= total;
    const pages = Math.max(1, Math.ceil(total / f.limit));
    pageInfo.textContent = `Page ${num(Math.floor(f.offset / f.limit) + 1)} of ${num(pages)}${capped ? "+" : ""}`;
  }

  let loadSeq = 0;
  async function load() {
    const mine = ++loadSeq;
    loaded = false;
    pendingMatches = 0;
    notice.hidden = true;
    body.setAttribute("aria-busy", "true");
    try {
      const page = await api("/tasks", {
        query: {
          project_id: f.project,
          status: f.statuses,
          priority: f.priority,
          created_after: f.after,
          created_before: f.before,
          limit: f.limit,
          offset: f.offset,
        },
      });
      if (mine !== loadSeq || !ctx.isCurrent()) return;
      total = page.total;
      capped = Boolean(page.total_capped);
      shown = page.items;
      clear(body);
      if (!shown.length) {
        body.append(empty(total ? "No tasks on this page." : "No tasks match these filters. New ones appear here as they are submitted."));
      } else {
        body.append(
          h(
            "table",
            { class: "data tasks", id: "tasks-table" },
            h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
            h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, shown.map(row)),
          ),
        );
      }
      updateSummary();
      loaded = true;
      body.removeAttribute("aria-busy");
      root.dataset.ready = "1";
      if (!window.dashboard.tasksRenderedAt) {
        performance.mark("tasks-rendered");
        window.dashboard.tasksRenderedAt = performance.now();
      }
      queued.splice(0).forEach(enqueue);
    } catch (err) {
      if (mine !== loadSeq || !ctx.isCurrent()) return;
      clear(body).append(errorBox(err, load));
      body.removeAttribute("aria-busy");
    }
  }

  // -- live updates ---------------------------------------------------------------------
  function tbody() {
    const t = body.querySelector("#tasks-table tbody");
    if (t) return t;
    clear(body);
    const table = h(
      "table",
      { class: "data tasks", id: "tasks-table" },
      h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
      h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}),
    );
    body.append(table);
    return table.tBodies[0];
  }

  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth;
    tr.classList.add("flash");
  }

  function matchesNew(d) {
    if (f.offset !== 0) return false;
    if (f.project && d.project_id !== f.project) return false;
    if (f.priority && d.priority !== f.priority) return false;
    if (f.statuses.length && !f.statuses.includes("pending")) return false;
    if (f.before && Date.now() > Date.parse(f.before)) return false;
    return true;
  }

  function showNotice() {
    clear(notice).append(
      `${pendingMatches} more task${pendingMatches === 1 ? "" : "s"} now match these filters. `,
      h("button", { type: "button", onclick: load }, "Refresh the list"),
    );
    notice.hidden = false;
  }

  async function applyEvent(ev) {
    if (!loaded) {
      queued.push(ev);
      return;
    }
    const ce = ev.data || {};
    const d = ce.data || {};
    if (ev.event === "task.created") {
      if (!matchesNew(d) || body.querySelector(`tr[data-task-id="${d.task_id}"]`)) return;
      let doc;
      try {
        doc = await api(`/tasks/${d.task_id}`);
      } catch {
        return;
      }
      if (!ctx.isCurrent() || body.querySelector(`tr[data-task-id="${d.task_id}"]`)) return;
      const tb = tbody();
      const tr = row(doc);
      tb.prepend(tr);
      while (tb.rows.length > f.limit) tb.lastElementChild.remove();
      shown = [doc, ...shown].slice(0, f.limit);
      total += 1;
      updateSummary();
      flash(tr);
      announce(`New task ${doc.task_id.slice(-8)} (${doc.status})`);
      return;
    }
    if (!ev.event || !ev.event.startsWith("task.status.")) return;
    const tr = body.querySelector(`tr[data-task-id="${d.task_id}"]`);
    if (!tr) {
      if (f.statuses.includes(d.to) && d.from) {
        pendingMatches += 1;
        showNotice();
      }
      return;
    }
    if (tr.dataset.status === d.to && d.from !== null) return;
    tr.dataset.status = d.to;
    clear(tr.querySelector(".c-status")).append(statusBadge(d.to));
    if (d.time) clear(tr.querySelector(".c-updated")).append(time(d.time, { short: true }));
    const att = tr.querySelector(".c-attempt");
    if (att && d.attempt !== undefined) att.textContent = att.textContent.replace(/^\d+/, String(d.attempt));
    const out = f.statuses.length && !f.statuses.includes(d.to);
    tr.classList.toggle("left-filter", Boolean(out));
    tr.title = out ? `Now ${d.to}: no longer matches the status filter` : "";
    flash(tr);
    if (d.time) window.dashboard.latencies.push(Date.now() - Date.parse(d.time));
  }

  // One event at a time, in feed order (a created row is in place before its next status).
  let chain = Promise.resolve();
  function enqueue(ev) {
    chain = chain.then(() => applyEvent(ev)).catch((err) => console.warn(err));
  }

  let stream = null;
  function restartStream() {
    if (stream) stream.close();
    stream = new EventStream("/events", {
      query: { type: ["task.status.*", "task.created"], project_id: f.project },
      onEvent: enqueue,
    }).start();
  }

  restartStream();
  await load();
  // Projects for the filter: after the first paint, which does not need them.
  api("/projects")
    .then((res) => {
      if (!ctx.isCurrent()) return;
      for (const p of res.items) {
        if (p.project_id === f.project) continue;
        projectSel.append(h("option", { value: p.project_id }, p.project_id));
      }
    })
    .catch(() => {});
  return () => stream && stream.close();
}
