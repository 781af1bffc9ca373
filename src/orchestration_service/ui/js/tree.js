// The task tree: a task and its subtasks, all levels (GET /tasks/{id}/tree), as nested
// lists. Each subtask links to its own page; "after …" names the siblings it waits for.

import { api } from "./api.js";
import { empty, h, idLink, statusBadge } from "./dom.js";

function item(node, names, isTop) {
  const after = (node.depends_on || []).filter((d) => names.has(String(d)));
  return h(
    "li",
    { dataset: { taskId: String(node.task_id), status: node.status } },
    h(
      "span",
      { class: "tree-node" },
      statusBadge(node.status),
      " ",
      isTop ? h("strong", {}, node.description) : node.description,
      " ",
      isTop ? null : idLink(`#/tasks/${node.task_id}`, node.task_id, "Subtask"),
      after.length ? h("span", { class: "muted" }, ` after ${after.map((d) => names.get(String(d))).join(", ")}`) : null,
    ),
    node.children && node.children.length
      ? h("ul", {}, node.children.map((c) => item(c, names, false)))
      : null,
  );
}

function shortNames(node, into = new Map()) {
  into.set(String(node.task_id), node.description.split(/\s+/).slice(0, 4).join(" "));
  for (const c of node.children || []) shortNames(c, into);
  return into;
}

/** The tree under ``taskId``, as an element; an empty note when it has no subtasks. */
export async function taskTree(taskId) {
  const tree = await api(`/tasks/${taskId}/tree`);
  if (!tree.children.length) return empty("This task has no subtasks.");
  return h(
    "div",
    { class: "task-tree", id: "task-tree" },
    h("ul", { "aria-label": "Task tree" }, item(tree, shortNames(tree), true)),
    h(
      "p",
      { class: "muted" },
      `${tree.subtask_count} subtasks, all levels${tree.truncated ? " (more exist; the first 1,000 are shown)" : ""}.`,
    ),
  );
}
