// One review: the task, the worker's output and artifacts, QA's reason and checklist, and the
// three decisions (each confirmed, with its text).

import { api, ApiError, isForbidden, markForbidden } from "../api.js";
import { confirmAction } from "../confirm.js";
import { announce, clear, empty, errorBox, fields, h, idLink, json, loading, section, statusBadge, table, time } from "../dom.js";
import { reviewBadge } from "./reviews.js";

const DECISIONS = [
  {
    action: "approve",
    label: "Approve…",
    cls: "primary",
    title: "Approve this output?",
    message: "The task completes and its provenance record names you as the reviewer.",
    field: { name: "comment", label: "Comment (optional)", type: "textarea" },
  },
  {
    action: "request-changes",
    label: "Request changes…",
    cls: "",
    title: "Ask for changes?",
    message: "A new attempt starts and the worker receives your feedback (past the task's attempts, it fails).",
    field: { name: "feedback", label: "Feedback for the worker", type: "textarea", required: true },
  },
  {
    action: "reject",
    label: "Reject…",
    cls: "danger",
    title: "Reject this output?",
    message: "The task fails. This cannot be undone.",
    field: { name: "reason", label: "Reason", type: "textarea", required: true },
  },
];

function output(value) {
  if (value === null || value === undefined) return empty("The worker sent no output body (see the artifacts).");
  if (typeof value === "object" && typeof value.content === "string") return h("pre", { class: "json", id: "review-output" }, value.content);
  return h("div", { id: "review-output" }, json(value));
}

export default async function reviewPage(ctx) {
  const [reviewId] = ctx.args;
  ctx.setTitle(`Review …${reviewId.slice(-8)}`);
  const body = h("div", {}, loading("Loading the review…"));
  const actions = h("div", { class: "actions", id: "review-actions" });
  ctx.root.append(
    h("p", {}, h("a", { href: "#/reviews" }, "← The review queue")),
    h("div", { class: "page-head" }, h("h1", {}, "Review"), actions),
    body,
  );
  let doc = null;

  function renderActions() {
    clear(actions);
    if (!doc || doc.status !== "open" || isForbidden("review")) return;
    for (const d of DECISIONS) {
      const btn = h("button", { type: "button", class: d.cls, id: `review-${d.action}` }, d.label);
      btn.addEventListener("click", async () => {
        const answer = await confirmAction({
          title: d.title,
          message: d.message,
          confirm: d.label.replace("…", ""),
          cancel: "Back",
          danger: d.cls === "danger",
          fields: [d.field],
        });
        if (!answer) return;
        for (const b of actions.querySelectorAll("button")) b.disabled = true;
        const text = answer[d.field.name];
        try {
          doc = await api(`/reviews/${doc.review_id}/${d.action}`, {
            method: "POST",
            body: text ? { [d.field.name]: text } : {},
          });
          render();
          announce(`Review ${doc.decision.replace("_", " ")}; the task is ${doc.task.status}`);
        } catch (err) {
          if (err instanceof ApiError && err.status === 403) {
            markForbidden("review");
            renderActions();
            actions.append(h("p", { class: "note", role: "alert" }, "This API key may not decide reviews."));
          } else {
            renderActions();
            actions.append(h("p", { class: "note", role: "alert" }, `Not decided: ${err.message}`));
            if (err instanceof ApiError && err.status === 409) load();
          }
        }
      });
      actions.append(btn);
    }
  }

  function render() {
    renderActions();
    const r = doc;
    const t = r.task;
    const arts = r.artifacts || [];
    clear(body).append(
      section(
        "Review",
        fields([
          ["State", h("span", { id: "review-state", dataset: { status: r.status } }, reviewBadge(r))],
          ["Review id", h("code", {}, r.review_id)],
          ["QA's reason", h("span", { class: "pre", id: "review-reason" }, r.reason || "—")],
          ["Requested", time(r.requested_at)],
          ["QA result", r.qa_result_id ? h("code", {}, r.qa_result_id) : null],
          r.decision ? ["Decision", h("span", { id: "review-decision" }, `${r.decision.replace("_", " ")} by ${r.reviewer}`)] : null,
          r.decision_text ? ["Text", h("span", { class: "pre" }, r.decision_text)] : null,
          r.decided_at ? ["Decided", time(r.decided_at)] : null,
          r.closed_reason ? ["Closed", r.closed_reason] : null,
        ]),
      ),
      section(
        "Task",
        fields([
          ["Task", idLink(`#/tasks/${t.task_id}`, t.task_id, "Task")],
          ["Status", h("span", { id: "review-task-status", dataset: { status: t.status } }, statusBadge(t.status))],
          ["Description", h("span", { class: "pre" }, t.description)],
          ["Project", t.project_id],
          ["Attempt", `${r.attempt} of ${t.max_attempts}`],
        ]),
      ),
      section("Worker output", output(r.output)),
      section(
        "Artifacts",
        arts.length
          ? table({
              caption: "The worker's artifacts",
              columns: ["Id", "Type", "Path or location"],
              rows: arts.map((a) => [h("code", {}, a.id), a.type || "—", a.path || a.location || "—"]),
            })
          : empty("No artifacts."),
      ),
      r.checklist ? section("QA's checklist", Array.isArray(r.checklist) ? h("ul", { id: "review-checklist" }, r.checklist.map((c) => h("li", {}, typeof c === "string" ? c : JSON.stringify(c)))) : json(r.checklist)) : "",
      r.details ? section("QA's details", json(r.details)) : "",
    );
    ctx.root.dataset.ready = "1";
  }

  async function load() {
    try {
      doc = await api(`/reviews/${encodeURIComponent(reviewId)}`);
      if (!ctx.isCurrent()) return;
      render();
    } catch (err) {
      if (ctx.isCurrent()) clear(body).append(errorBox(err, load));
    }
  }
  await load();
  return null;
}
