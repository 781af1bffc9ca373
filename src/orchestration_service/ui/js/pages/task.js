// Task detail: the document, the worker's progress, history timeline, QA feedback, artifacts,
// subtasks graph, cancel and retry — all kept current from the task's own stream.

import { api, ApiError, isForbidden, markForbidden } from "../api.js";
import { confirmAction } from "../confirm.js";
import {
  announce,
  clear,
  duration,
  empty,
  errorBox,
  FINAL,
  fields,
  h,
  idLink,
  json,
  loading,
  section,
  stateIcon,
  statusBadge,
  table,
  time,
} from "../dom.js";
import { graph, swatch } from "../graph.js";
import { EventStream } from "../sse.js";
import { taskTree } from "../tree.js";

window.dashboard = window.dashboard || { latencies: [] };

function describeCause(cause) {
  if (!cause) return null;
  const m = /^event:([^:]+):(.+)$/.exec(cause);
  if (m) return h("span", {}, "event ", h("code", {}, m[1]), " ", h("code", { class: "muted" }, m[2]));
  return h("code", {}, cause);
}

function timeline(items) {
  if (!items.length) return empty("No history yet.");
  return h(
    "ol",
    { class: "timeline", id: "history" },
    items.map((e) =>
      h(
        "li",
        { class: `tl st-${e.to}`, dataset: { to: e.to } },
        h("span", { class: "tl-dot", "aria-hidden": "true" }, stateIcon(e.to)),
        h(
          "div",
          { class: "tl-body" },
          h(
            "p",
            { class: "tl-head" },
            time(e.time),
            " — ",
            e.from ? [statusBadge(e.from), " → "] : "created ",
            statusBadge(e.to),
            e.attempt ? h("span", { class: "muted" }, ` attempt ${e.attempt}`) : null,
          ),
          e.reason ? h("p", { class: "tl-reason" }, h("span", { class: "visually-hidden" }, "Reason: "), e.reason) : null,
          e.cause ? h("p", { class: "tl-cause muted" }, "Cause: ", describeCause(e.cause)) : null,
          e.details && Object.keys(e.details).length
            ? h("details", {}, h("summary", {}, "Details"), json(e.details))
            : null,
        ),
      ),
    ),
  );
}

/** QA verdicts grouped by attempt: rejections (with feedback) and validations. */
function qaFeedback(items) {
  const byAttempt = new Map();
  for (const e of items) {
    const reason = e.reason || "";
    const d = e.details || {};
    const isQa = /reject|validated|\bQA\b/.test(reason) || d.feedback !== undefined || d.confidence !== undefined;
    if (!isQa || e.to === "validating" || e.to === "pending") continue;
    const attempt = e.to === "running" && e.attempt ? e.attempt - 1 : e.attempt || 1;
    const verdict = e.to === "completed" ? "accepted" : /reject/i.test(reason) ? "rejected" : e.to;
    const feedback = d.feedback ?? d.error ?? null;
    if (!byAttempt.has(attempt)) byAttempt.set(attempt, []);
    byAttempt.get(attempt).push({ e, verdict, feedback, confidence: d.confidence });
  }
  if (!byAttempt.size) return empty("No QA feedback yet.");
  return h(
    "ol",
    { class: "qa", id: "qa-feedback" },
    [...byAttempt.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([attempt, list]) =>
        h(
          "li",
          {},
          h("h3", {}, `Attempt ${attempt}`),
          list.map(({ e, verdict, feedback, confidence }) =>
            h(
              "div",
              { class: `qa-item qa-${verdict}` },
              h("p", {}, h("strong", {}, verdict === "accepted" ? "✓ Accepted" : verdict === "rejected" ? "✕ Rejected" : verdict), " — ", e.reason || "", " ", time(e.time)),
              confidence !== undefined && confidence !== null ? h("p", {}, `Confidence ${confidence}`) : null,
              feedback !== null && feedback !== undefined
                ? typeof feedback === "string"
                  ? h("blockquote", {}, feedback)
                  : json(feedback)
                : null,
            ),
          ),
        ),
      ),
  );
}

/** Subtasks as a dependency graph: columns by dependency depth, edges dependency → dependent. */
function subtaskGraph(subtasks) {
  const byId = new Map(subtasks.map((t) => [String(t.task_id), t]));
  const depth = new Map();
  const level = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (byId.get(id).depends_on || []).map(String).filter((d) => byId.has(d));
    const v = deps.length ? 1 + Math.max(...deps.map((d) => level(d, seen))) : 0;
    depth.set(id, v);
    return v;
  };
  const SHAPE = { completed: "circle", failed: "octagon", cancelled: "octagon", running: "diamond", validating: "diamond" };
  const nodes = subtasks.map((t) => {
    const id = String(t.task_id);
    return {
      id,
      column: level(id),
      shape: SHAPE[t.status] || "square",
      cls: `st-${t.status}`,
      fill: t.status === "failed" ? "hatch" : t.status === "cancelled" ? "dots" : null,
      mark: stateIcon(t.status),
      label: `…${id.slice(-8)}`,
      sublabel: t.status,
      href: `#/tasks/${id}`,
      name: `Subtask ${id}, ${t.status}: ${t.description}`,
      data: { status: t.status },
    };
  });
  const edges = [];
  for (const t of subtasks) {
    for (const d of t.depends_on || []) {
      if (byId.has(String(d))) edges.push({ from: String(d), to: String(t.task_id) });
    }
  }
  const legend = h(
    "ul",
    { class: "legend" },
    [
      ["square", "st-pending", stateIcon("pending"), "pending"],
      ["diamond", "st-running", stateIcon("running"), "running / validating"],
      ["circle", "st-completed", stateIcon("completed"), "completed"],
      ["octagon", "st-failed", stateIcon("failed"), "failed (hatched) / cancelled (dotted)"],
    ].map(([sh, cls, mark, text]) => h("li", {}, swatch(sh, cls, mark), text)),
    h("li", {}, "Arrows point from a subtask to the ones that depend on it."),
  );
  return graph({ nodes, edges, title: "Subtask dependency graph", legend, height: 360 });
}

const RETRYABLE = new Set(["failed", "cancelled"]);

/** The worker's latest task.progress: a bar (when it gave a fraction), its message, who, when. */
function progressView(p) {
  const pct = p.value !== null && p.value !== undefined ? Math.round(p.value * 100) : null;
  return h(
    "span",
    { class: "progress", id: "task-progress" },
    pct !== null ? [h("progress", { max: 100, value: pct, "aria-label": "Progress" }), ` ${pct}% `] : null,
    p.message ? h("span", { class: "pre" }, p.message) : null,
    p.worker_id ? h("span", { class: "muted" }, ` (${p.worker_id})`) : null,
    " ",
    time(p.at),
  );
}

export default async function taskPage(ctx) {
  const [taskId] = ctx.args;
  ctx.setTitle(`Task ${taskId.slice(-8)}`);
  const root = ctx.root;
  const head = h("div", { class: "page-head" }, h("h1", {}, "Task ", h("code", { title: taskId }, `…${taskId.slice(-8)}`)));
  const statusSlot = h("span", { class: "head-status", id: "task-status", role: "status", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  const liveNote = h("span", { class: "live-note" }, "");
  head.append(statusSlot, liveNote, actions);
  const main = h("div", { class: "detail" }, loading("Loading the task…"));
  root.append(h("p", { class: "crumbs" }, h("a", { href: "#/tasks" }, "← Tasks")), head, main);

  let doc = null;
  let history = [];
  const sections = {};

  function renderActions() {
    clear(actions);
    if (doc && RETRYABLE.has(doc.status) && !isForbidden("retry")) actions.append(retryButton());
    if (!doc || FINAL.has(doc.status) || isForbidden("cancel")) return;
    const btn = h("button", { type: "button", class: "danger", id: "cancel-task" }, "Cancel task…");
    btn.addEventListener("click", async () => {
      const answer = await confirmAction({
        title: "Cancel this task?",
        message: `Task …${doc.task_id.slice(-8)} (${doc.status}) and its unfinished subtasks will be cancelled. This cannot be undone.`,
        confirm: "Cancel task",
        cancel: "Keep it",
        fields: [{ name: "reason", label: "Reason (optional)", type: "text" }],
      });
      if (!answer) return;
      btn.disabled = true;
      try {
        const after = await api(`/tasks/${doc.task_id}/cancel`, {
          method: "POST",
          body: answer.reason ? { reason: answer.reason } : {},
        });
        update(after);
        announce("Task cancelled");
      } catch (err) {
        btn.disabled = false;
        if (err instanceof ApiError && err.status === 403) {
          markForbidden("cancel");
          renderActions();
          actions.append(h("p", { class: "note", role: "alert" }, "This API key may not cancel tasks."));
        } else if (err instanceof ApiError && err.status === 409) {
          actions.append(h("p", { class: "note", role: "alert" }, `Not cancelled: ${err.message}`));
          refresh();
        } else {
          actions.append(h("p", { class: "note", role: "alert" }, `Not cancelled: ${err.message}`));
        }
      }
    });
    actions.append(btn);
  }

  function retryButton() {
    const btn = h("button", { type: "button", class: "primary", id: "retry-task" }, "Retry task…");
    btn.addEventListener("click", async () => {
      const which = doc.subtasks.length ? " Only its failed and cancelled subtasks run again." : "";
      const answer = await confirmAction({
        title: "Retry this task?",
        message: `Task …${doc.task_id.slice(-8)} (${doc.status}) will run again as a new attempt, even past its ${doc.max_attempts} attempts.${which}`,
        confirm: "Retry task",
        cancel: "Leave it",
        danger: false,
      });
      if (!answer) return;
      btn.disabled = true;
      try {
        const after = await api(`/tasks/${doc.task_id}/retry`, { method: "POST", body: {} });
        await update(after);
        announce("Task retried");
        follow(); // the stream ended with the final state: follow the new attempt
      } catch (err) {
        btn.disabled = false;
        if (err instanceof ApiError && err.status === 403) {
          markForbidden("retry");
          renderActions();
          actions.append(h("p", { class: "note", role: "alert" }, "This API key may not retry tasks."));
        } else {
          actions.append(h("p", { class: "note", role: "alert" }, `Not retried: ${err.message}`));
          if (err instanceof ApiError && err.status === 409) refresh();
        }
      }
    });
    return btn;
  }

  function render() {
    clear(statusSlot).append(statusBadge(doc.status));
    statusSlot.dataset.status = doc.status;
    renderActions();
    const t = doc;
    const routing = t.routing || {};
    const info = fields([
      ["Description", h("span", { class: "pre" }, t.description)],
      ["Task id", h("code", {}, t.task_id)],
      ["Project", h("a", { href: `#/projects/${encodeURIComponent(t.project_id)}` }, t.project_id)],
      ["Status", statusBadge(t.status)],
      ["Priority", t.priority],
      ["Attempt", `${t.attempt} of ${t.max_attempts}`],
      t.progress ? ["Progress", progressView(t.progress)] : null,
      ["Mode", t.mode],
      ["Domain", t.domain],
      ["Tier", t.tier],
      ["QA profile", t.qa_profile],
      ["Timeout", `${t.timeout_seconds} s`],
      ["Created", time(t.created_at)],
      ["Updated", time(t.updated_at)],
      ["Started", time(t.started_at)],
      ["Completed", time(t.completed_at)],
      ["Deadline", time(t.deadline_at)],
      ["Execution time", t.execution_time_ms !== null ? duration(t.execution_time_ms) : null],
      t.parent_id ? ["Parent", idLink(`#/tasks/${t.parent_id}`, t.parent_id, "Parent task")] : null,
      t.depends_on && t.depends_on.length
        ? ["Depends on", h("span", { class: "ids" }, t.depends_on.map((d) => [idLink(`#/tasks/${d}`, d, "Task"), " "]))]
        : null,
      [
        "Provenance",
        t.provenance_id
          ? h("a", { href: `#/provenance/${t.provenance_id}`, id: "provenance-link" }, "Provenance record ", h("code", {}, `…${String(t.provenance_id).slice(-8)}`))
          : h("span", { class: "muted" }, "none yet (written when QA accepts the output)"),
      ],
      routing.analyzer || routing.reason ? ["Routing", `${routing.analyzer || ""}${routing.reason ? ` — ${routing.reason}` : ""}`] : null,
      t.error ? ["Error", t.error.reason ? `${t.error.reason}${t.error.detail && typeof t.error.detail === "string" ? `: ${t.error.detail}` : ""}` : json(t.error)] : null,
    ], { columns: 2 });
    const artifacts = t.artifacts.length
      ? table({
          caption: "Artifacts",
          columns: ["Id", "Type", "Path or location"],
          rows: t.artifacts.map((a) => [h("code", {}, a.id), a.type || "—", a.path || a.location || "—"]),
        })
      : empty("No artifacts yet.");
    const subtasks = t.subtasks.length
      ? [
          subtaskGraph(t.subtasks),
          table({
            caption: "Subtasks",
            columns: ["Subtask", "Status", "Description", "Depends on"],
            rows: t.subtasks.map((st) => [
              idLink(`#/tasks/${st.task_id}`, st.task_id, "Subtask"),
              statusBadge(st.status),
              st.description,
              (st.depends_on || []).length ? (st.depends_on || []).map((d) => `…${String(d).slice(-8)} `) : "—",
            ]),
          }),
        ]
      : empty("This task has no subtasks.");
    if (!sections.info) {
      clear(main);
      sections.info = section("Details");
      sections.artifacts = section("Artifacts");
      sections.subtasks = section("Subtasks");
      sections.qa = section("QA feedback");
      sections.history = section("History");
      if (doc.subtasks.length) main.append(sections.info, sections.subtasks, sections.qa, sections.history, sections.artifacts);
      else main.append(sections.info, sections.qa, sections.history, sections.artifacts, sections.subtasks);
    }
    replaceBody(sections.info, info);
    replaceBody(sections.artifacts, artifacts);
    replaceBody(sections.subtasks, subtasks);
    if (t.subtasks.length) showTree();
    replaceBody(sections.history, timeline(history));
    replaceBody(sections.qa, qaFeedback(history));
    root.dataset.ready = "1";
  }

  // The whole tree (all levels) under the direct subtasks' graph; a failed read keeps
  // what was shown.
  async function showTree() {
    try {
      const tree = await taskTree(taskId);
      if (!ctx.isCurrent()) return;
      if (!sections.tree) {
        sections.tree = section("Task tree");
        sections.subtasks.after(sections.tree);
      }
      replaceBody(sections.tree, tree);
    } catch {
      // the rest of the page still shows
    }
  }

  function replaceBody(sec, content) {
    while (sec.children.length > 1) sec.lastElementChild.remove();
    sec.append(...[content].flat());
  }

  async function loadHistory() {
    try {
      const res = await api(`/tasks/${taskId}/history`);
      history = res.items;
    } catch {
      // keep what we had; the document still shows
    }
  }

  async function refresh() {
    const [d] = await Promise.all([api(`/tasks/${taskId}`), loadHistory()]);
    if (!ctx.isCurrent()) return;
    doc = d;
    render();
  }

  async function update(newDoc) {
    const before = doc && doc.status;
    doc = newDoc;
    await loadHistory();
    if (!ctx.isCurrent()) return;
    render();
    if (before && before !== doc.status) announce(`Task is now ${doc.status}`);
  }

  try {
    await refresh();
  } catch (err) {
    clear(main).append(
      err instanceof ApiError && err.status === 404
        ? h("p", { class: "state empty", role: "alert" }, `There is no task ${taskId} (or this key may not see it).`)
        : errorBox(err, () => refresh().catch(() => {})),
    );
    return null;
  }

  let stream = null;
  function follow() {
    if (stream) stream.close();
    stream = new EventStream(`/tasks/${taskId}/stream`, {
      onEvent: (ev) => {
        if (ev.event === "snapshot" && ev.data && ev.data.task_id) {
          update(ev.data);
        } else if (ev.event === "progress" && ev.data && doc) {
          doc = { ...doc, progress: ev.data.progress };
          render();
        } else if (ev.event === "status" && ev.data) {
          const d = ev.data;
          if (d.time) window.dashboard.latencies.push(Date.now() - Date.parse(d.time));
          if (String(d.task_id) === String(taskId) && d.task) update(d.task);
          else refresh().catch(() => {}); // a subtask moved: its parent's document lists it
        }
      },
      onState: (state) => {
        liveNote.textContent = state === "live" ? "Updates live" : state === "ended" ? "Final — no more updates" : "";
      },
      reconnect: () => !(doc && FINAL.has(doc.status)),
    }).start();
  }
  follow();
  return () => stream.close();
}
