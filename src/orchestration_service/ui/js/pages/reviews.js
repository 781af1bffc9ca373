// Human reviews: the open queue (oldest request first), or the decided and closed ones.

import { api } from "../api.js";
import { clear, empty, errorBox, h, idLink, loading, num, time } from "../dom.js";

const LIMIT = 50;
const VIEWS = [
  ["open", "Open (the queue)"],
  ["decided", "Decided"],
  ["closed", "Closed without a decision"],
  ["", "All"],
];

/** A review's status or decision, told by word (and colour). */
export function reviewBadge(r) {
  const word = r.status === "decided" ? r.decision.replace("_", " ") : r.status;
  const cls = { approved: "st-completed", rejected: "st-failed", changes_requested: "st-running" }[r.decision];
  return h("span", { class: `badge ${cls || (r.status === "open" ? "st-awaiting_review" : "st-cancelled")}`, dataset: { status: r.status } }, word);
}

export default async function reviewsPage(ctx) {
  ctx.setTitle("Reviews");
  const status = ctx.params.has("status") ? ctx.params.get("status") : "open";
  const project = ctx.params.get("project") || "";
  let cursor = null;
  const trail = [];
  const select = h(
    "select",
    { id: "review-status", name: "status" },
    VIEWS.map(([value, label]) => h("option", { value, selected: value === status }, label)),
  );
  select.addEventListener("change", () => {
    const p = new URLSearchParams();
    p.set("status", select.value);
    if (project) p.set("project", project);
    window.location.hash = `#/reviews?${p}`;
  });
  const box = h("div", { class: "table-wrap" }, loading("Loading reviews…"));
  const summary = h("p", { class: "summary", role: "status" });
  const prev = h("button", { type: "button" }, "← Previous");
  const next = h("button", { type: "button" }, "Next →");
  prev.addEventListener("click", () => {
    cursor = trail.pop() ?? null;
    load();
  });
  next.addEventListener("click", () => {
    trail.push(cursor);
    cursor = next.dataset.cursor;
    load();
  });
  ctx.root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Reviews")),
    h(
      "p",
      { class: "muted" },
      "QA asks a person to decide when it cannot: approve the output, reject it, or ask for changes. A task waits in awaiting_review meanwhile, without a timeout and without holding its project's slot.",
    ),
    h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "review-status" }, "Show"), select)),
    summary,
    box,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, next),
  );

  async function load() {
    try {
      const page = await api("/reviews", { query: { status: status || undefined, project_id: project || undefined, limit: LIMIT, cursor: cursor || undefined } });
      if (!ctx.isCurrent()) return;
      clear(box);
      summary.textContent = page.total ? `${num(page.total)}${page.total_capped ? "+" : ""} ${status || "all"} review${page.total === 1 ? "" : "s"}` : "";
      prev.disabled = trail.length === 0;
      next.disabled = !page.next_cursor;
      next.dataset.cursor = page.next_cursor || "";
      if (!page.items.length) {
        box.append(empty(status === "open" ? "No task is waiting for a person: the queue is empty." : "No reviews here."));
      } else {
        const cols = ["Review", "Task", "Project", "State", "Requested", "QA's reason", "Reviewer"];
        box.append(
          h(
            "table",
            { class: "data", id: "reviews-table" },
            h("caption", { class: "visually-hidden" }, "Reviews, oldest request first"),
            h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              page.items.map((r) =>
                h(
                  "tr",
                  { dataset: { review: r.review_id } },
                  [
                    idLink(`#/reviews/${r.review_id}`, r.review_id, "Review"),
                    h("span", {}, idLink(`#/tasks/${r.task_id}`, r.task_id, "Task"), " ", h("span", { class: "muted" }, (r.task_description || "").slice(0, 80))),
                    r.project_id,
                    reviewBadge(r),
                    time(r.requested_at, { short: true }),
                    r.reason || "—",
                    r.reviewer || "—",
                  ].map((c, i) => h("td", { "data-label": cols[i] }, c)),
                ),
              ),
            ),
          ),
        );
      }
      ctx.root.dataset.ready = "1";
    } catch (err) {
      if (ctx.isCurrent()) clear(box).append(errorBox(err, load));
    }
  }
  await load();
  return null;
}
