// Projects: each project's status summary.

import { api } from "../api.js";
import { clear, empty, errorBox, h, loading, num, STATES, statusBadge } from "../dom.js";

export default async function projectsPage(ctx) {
  ctx.setTitle("Projects");
  const box = h("div", { class: "table-wrap" }, loading("Loading projects…"));
  ctx.root.append(h("div", { class: "page-head" }, h("h1", {}, "Projects")), box);

  async function load() {
    try {
      const { items } = await api("/projects");
      if (!ctx.isCurrent()) return;
      clear(box);
      if (!items.length) {
        box.append(empty("No projects yet: a project appears with its first task."));
        return;
      }
      const cols = ["Project", "Tasks", "In flight / limit", ...STATES];
      box.append(
        h(
          "table",
          { class: "data projects", id: "projects-table" },
          h("caption", { class: "visually-hidden" }, "Projects with task counts by state"),
          h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col" }, i > 2 ? statusBadge(c) : c)))),
          h(
            "tbody",
            {},
            items.map((p) =>
              h(
                "tr",
                { dataset: { project: p.project_id } },
                h("th", { scope: "row" }, h("a", { href: `#/projects/${encodeURIComponent(p.project_id)}` }, p.project_id)),
                h("td", { "data-label": "Tasks" }, num(p.total)),
                h(
                  "td",
                  { "data-label": "In flight / limit" },
                  h("meter", { min: 0, max: p.max_concurrent, value: p.in_flight, "aria-label": `${p.in_flight} of ${p.max_concurrent} in flight` }),
                  ` ${p.in_flight} / ${p.max_concurrent}`,
                ),
                STATES.map((st) => {
                  const n = (p.counts || {})[st] || 0;
                  return h(
                    "td",
                    { "data-label": st, class: n ? "" : "zero" },
                    n ? h("a", { href: `#/tasks?project=${encodeURIComponent(p.project_id)}&status=${st}`, "aria-label": `${n} ${st} tasks in ${p.project_id}` }, num(n)) : "0",
                  );
                }),
              ),
            ),
          ),
        ),
      );
      ctx.root.dataset.ready = "1";
    } catch (err) {
      if (ctx.isCurrent()) clear(box).append(errorBox(err, load));
    }
  }
  await load();
  const tick = window.setInterval(load, 15_000);
  return () => window.clearInterval(tick);
}
