// Provenance records, newest first (an entry point to the record pages).

import { api } from "../api.js";
import { setParams } from "../app.js";
import { clear, empty, errorBox, h, idLink, loading, num, time } from "../dom.js";
import { flagBadge } from "./provenance.js";

const LIMIT = 50;

export default async function provenanceListPage(ctx) {
  ctx.setTitle("Provenance");
  let offset = Math.max(0, Number(ctx.params.get("offset")) || 0);
  const project = ctx.params.get("project") || "";
  const box = h("div", { class: "table-wrap" }, loading("Loading provenance records…"));
  const summary = h("p", { class: "summary", role: "status" });
  const prev = h("button", { type: "button" }, "← Previous");
  const next = h("button", { type: "button" }, "Next →");
  prev.addEventListener("click", () => go(Math.max(0, offset - LIMIT)));
  next.addEventListener("click", () => go(offset + LIMIT));
  ctx.root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Provenance records")),
    h("p", { class: "muted" }, "A record is written when QA accepts a task's output. Open one to see its lineage and impact."),
    summary,
    box,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, next),
  );

  function go(o) {
    offset = o;
    const p = new URLSearchParams();
    if (project) p.set("project", project);
    if (offset) p.set("offset", String(offset));
    setParams(p);
    load();
  }

  async function load() {
    try {
      const page = await api("/provenance", { query: { project_id: project, limit: LIMIT, offset } });
      if (!ctx.isCurrent()) return;
      clear(box);
      summary.textContent = page.total ? `Showing ${num(offset + 1)}–${num(offset + page.items.length)} of ${num(page.total)}${page.total_capped ? "+" : ""} records` : "";
      prev.disabled = offset === 0;
      next.disabled = offset + LIMIT >= page.total;
      if (!page.items.length) {
        box.append(empty("No provenance records yet: one is written each time QA accepts a task's output."));
      } else {
        const cols = ["Record", "Task", "Project", "State", "Model", "Created"];
        box.append(
          h(
            "table",
            { class: "data", id: "provenance-table" },
            h("caption", { class: "visually-hidden" }, "Provenance records, newest first"),
            h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              page.items.map((r) =>
                h(
                  "tr",
                  {},
                  [
                    idLink(`#/provenance/${r.id}`, r.id, "Record"),
                    idLink(`#/tasks/${r.task_id}`, r.task_id, "Task"),
                    r.project_id,
                    flagBadge(r),
                    r.model_used || "—",
                    time(r.created_at, { short: true }),
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
