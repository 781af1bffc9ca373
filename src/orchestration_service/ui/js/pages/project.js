// One project: status summary, settings and constitution, consistency report, checkpoints.
// Consistency and checkpoints are newer endpoints: when the server does not document them
// the page says so instead of failing.

import { api, ApiError, isForbidden, markForbidden, offers, requestSchema } from "../api.js";
import {
  ago,
  announce,
  clear,
  duration,
  empty,
  errorBox,
  fields,
  h,
  idLink,
  json,
  loading,
  num,
  section,
  STATES,
  statusBadge,
  time,
  unavailable,
} from "../dom.js";
import { projectSettings } from "./project-settings.js";

const ACTION_KEYS = ["recommended_action", "recommendation", "action", "recommended"];
const ISSUE_KEYS = ["issues", "problems", "findings", "inconsistencies", "checks"];

function bodyOf(sec, ...content) {
  while (sec.children.length > 1) sec.lastElementChild.remove();
  sec.append(...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function scalar(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return time(v);
  if (typeof v === "object") return json(v);
  return String(v);
}

const ACTION_TEXT = {
  continue: "Continue — no record is tainted or suspect.",
  pause: "Pause — some records are tainted or suspect: revalidate them (or taint what is bad) before going on.",
  rollback: "Roll back — tainted or suspect records are at least 30 % of the project: return to a checkpoint.",
};

function consistencyView(r) {
  const ok =
    r.consistent ??
    r.ok ??
    (typeof r.recommended_action === "string" ? r.recommended_action === "continue" : null) ??
    (r.status ? ["ok", "consistent", "healthy", "clean"].includes(String(r.status).toLowerCase()) : null);
  const actionKey = ACTION_KEYS.find((k) => r[k] !== undefined && r[k] !== null);
  const issueKey = ISSUE_KEYS.find((k) => Array.isArray(r[k]));
  const rest = Object.entries(r).filter(([k]) => k !== actionKey && k !== issueKey && !["consistent", "ok"].includes(k));
  const action = actionKey ? r[actionKey] : null;
  return h(
    "div",
    { id: "consistency" },
    ok === null
      ? null
      : h("p", { class: `verdict ${ok ? "good" : "bad"}` }, h("span", { "aria-hidden": "true" }, ok ? "✓ " : "⚠ "), ok ? "Consistent" : "Inconsistent"),
    action
      ? h(
          "div",
          { class: "recommend", role: "note" },
          h("strong", {}, "Recommended action: "),
          typeof action === "string" ? h("span", { dataset: { action } }, ACTION_TEXT[action] || action) : action.action || action.summary || action.description || json(action),
          typeof action === "object" && action.reason ? h("p", { class: "muted" }, action.reason) : null,
        )
      : null,
    issueKey && r[issueKey].length
      ? h(
          "ul",
          { class: "issues" },
          r[issueKey].map((i) => h("li", {}, typeof i === "string" ? i : [i.kind || i.type || i.check || "issue", ": ", i.detail || i.message || i.description || JSON.stringify(i)])),
        )
      : issueKey
        ? h("p", {}, "No issues found.")
        : null,
    fields(rest.filter(([k]) => k !== "project_id").map(([k, v]) => [k.replace(/_/g, " "), k === "affected_ratio" && typeof v === "number" ? `${Math.round(v * 100)} %` : scalar(v)])),
  );
}

function schemaForm(schema, onSubmit, submitText) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const inputs = [];
  const form = h("form", { class: "inline-form", id: "checkpoint-form" });
  for (const [name, p] of Object.entries(props)) {
    if (!["string", "integer", "number", "boolean"].includes(p.type)) continue;
    const id = `cp-${name}`;
    const label = (p.title || name).replace(/_/g, " ");
    let input;
    if (p.type === "boolean") input = h("input", { id, name, type: "checkbox" });
    else if (p.enum) input = h("select", { id, name }, required.has(name) ? null : h("option", { value: "" }, "—"), p.enum.map((v) => h("option", { value: v }, v)));
    else input = h("input", { id, name, type: p.type === "string" ? "text" : "number", required: required.has(name), maxlength: p.maxLength });
    inputs.push({ name, type: p.type, input });
    form.append(h("div", { class: "field" }, h("label", { for: id }, `${label}${required.has(name) ? "" : " (optional)"}`), input));
  }
  const note = h("p", { class: "note", role: "status" });
  form.append(h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, submitText)), note);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const payload = {};
    for (const { name, type, input } of inputs) {
      if (type === "boolean") payload[name] = input.checked;
      else if (input.value !== "") payload[name] = type === "string" ? input.value : Number(input.value);
    }
    note.textContent = "Working…";
    note.textContent = await onSubmit(payload);
  });
  return form;
}

export default async function projectPage(ctx) {
  const [projectId] = ctx.args;
  const enc = encodeURIComponent(projectId);
  ctx.setTitle(`Project ${projectId}`);
  const summary = section("Status");
  const consistency = section("Consistency");
  const checkpoints = section("Checkpoints");
  const own = projectSettings(ctx, projectId, section);
  for (const sec of own.sections) bodyOf(sec, loading());
  bodyOf(summary, loading());
  bodyOf(consistency, loading());
  bodyOf(checkpoints, loading());
  ctx.root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/projects" }, "← Projects")),
    h("div", { class: "page-head" }, h("h1", {}, "Project ", h("span", { class: "pid" }, projectId)), h("a", { href: `#/tasks?project=${enc}`, class: "button" }, "Tasks of this project")),
    h("div", { class: "grid wide" }, summary, ...own.sections, consistency, checkpoints),
  );

  async function loadStatus() {
    try {
      const st = await api(`/projects/${enc}/status`);
      if (!ctx.isCurrent()) return;
      const o = st.oldest_waiting_task;
      bodyOf(
        summary,
        fields([
          ["Tasks", num(st.total)],
          [
            "In flight / limit",
            h("span", {}, h("meter", { min: 0, max: st.max_concurrent, value: st.in_flight, "aria-label": `${st.in_flight} of ${st.max_concurrent} in flight` }), ` ${st.in_flight} / ${st.max_concurrent}`),
          ],
          ["Oldest waiting", o ? h("span", {}, idLink(`#/tasks/${o.task_id}`, o.task_id, "Task"), ` waiting ${ago(o.created_at)} (priority ${o.priority}, submitted `, time(o.created_at), ")") : "nothing waiting"],
          ["Median execution time", st.median_execution_time_ms !== null ? duration(st.median_execution_time_ms) : null],
        ]),
        h(
          "table",
          { class: "data compact", id: "project-counts" },
          h("caption", {}, "Tasks by state"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Tasks"))),
          h(
            "tbody",
            {},
            STATES.map((s) =>
              h(
                "tr",
                {},
                h("th", { scope: "row" }, statusBadge(s)),
                h("td", { "data-label": "Tasks" }, (st.counts || {})[s] ? h("a", { href: `#/tasks?project=${enc}&status=${s}` }, num(st.counts[s])) : "0"),
              ),
            ),
          ),
        ),
      );
      return true;
    } catch (err) {
      if (!ctx.isCurrent()) return false;
      bodyOf(summary, err instanceof ApiError && err.status === 404 ? empty(`There is no project ${projectId}.`) : errorBox(err, loadStatus));
      return false;
    }
  }

  async function loadConsistency() {
    if (!(await offers("GET", "/projects/{project_id}/consistency"))) {
      bodyOf(consistency, unavailable("Consistency report", "This server does not offer a consistency check yet."));
      return;
    }
    try {
      const r = await api(`/projects/${enc}/consistency`);
      if (ctx.isCurrent()) bodyOf(consistency, consistencyView(r));
    } catch (err) {
      if (!ctx.isCurrent()) return;
      bodyOf(consistency, err instanceof ApiError && err.status === 404 ? unavailable("Consistency report", err.message) : errorBox(err, loadConsistency));
    }
  }

  async function loadCheckpoints() {
    if (!(await offers("GET", "/projects/{project_id}/checkpoints"))) {
      bodyOf(checkpoints, unavailable("Checkpoints", "This server does not keep checkpoints yet."));
      return;
    }
    let list;
    try {
      const res = await api(`/projects/${enc}/checkpoints`);
      list = Array.isArray(res) ? res : res.items || res.checkpoints || [];
    } catch (err) {
      if (!ctx.isCurrent()) return;
      bodyOf(checkpoints, err instanceof ApiError && err.status === 404 ? unavailable("Checkpoints", err.message) : errorBox(err, loadCheckpoints));
      return;
    }
    if (!ctx.isCurrent()) return;
    const content = [];
    if (!list.length) content.push(empty("No checkpoints yet."));
    else {
      content.push(
        h(
          "table",
          { class: "data compact", id: "checkpoints" },
          h("caption", { class: "visually-hidden" }, "Checkpoints, as the server lists them"),
          h("thead", {}, h("tr", {}, ["Checkpoint", "Description", "Created", "Valid", "Details"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            list.map((c) => {
              const id = c.id || c.checkpoint_id;
              const rest = Object.fromEntries(Object.entries(c).filter(([k]) => !["id", "checkpoint_id", "name", "label", "created_at", "description", "project_id", "is_valid"].includes(k)));
              const valid = c.is_valid === undefined ? "—" : c.is_valid ? "✓ valid" : "✕ invalidated";
              return h(
                "tr",
                {},
                h("td", { "data-label": "Checkpoint" }, h("code", { title: id }, id ? `…${String(id).slice(-8)}` : "—")),
                h("td", { "data-label": "Description" }, c.name || c.label || c.description || (c.trigger ? `(${c.trigger})` : "—")),
                h("td", { "data-label": "Created" }, time(c.created_at)),
                h("td", { "data-label": "Valid" }, valid),
                h("td", { "data-label": "Details" }, Object.keys(rest).length ? h("details", {}, h("summary", {}, "Show"), json(rest)) : "—"),
              );
            }),
          ),
        ),
      );
    }
    if ((await offers("POST", "/projects/{project_id}/checkpoints")) && !isForbidden("checkpoint")) {
      const schema = await requestSchema("POST", "/projects/{project_id}/checkpoints");
      content.push(
        h("h3", {}, "New checkpoint"),
        schemaForm(
          schema,
          async (payload) => {
            try {
              await api(`/projects/${enc}/checkpoints`, { method: "POST", body: payload });
              announce("Checkpoint created");
              loadCheckpoints();
              return "Checkpoint created.";
            } catch (err) {
              if (err instanceof ApiError && err.status === 403) {
                markForbidden("checkpoint");
                loadCheckpoints();
                return "This API key may not create checkpoints.";
              }
              const errors = err.problem && err.problem.errors;
              return `Not created: ${err.message}${errors ? ` (${errors.map((e) => `${e.field}: ${e.message}`).join("; ")})` : ""}`;
            }
          },
          "Create checkpoint",
        ),
      );
    }
    bodyOf(checkpoints, content);
  }

  const exists = await loadStatus();
  if (exists) await Promise.all([own.load(), loadConsistency(), loadCheckpoints()]);
  else {
    for (const sec of own.sections) bodyOf(sec, empty("—"));
    bodyOf(consistency, empty("—"));
    bodyOf(checkpoints, empty("—"));
  }
  ctx.root.dataset.ready = "1";
  return null;
}
