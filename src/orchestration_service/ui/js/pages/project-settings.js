// A project's settings (its own, and the values in effect with where each comes from) and its
// constitution, each editable when the API key may (a 403 hides the form for the session).

import { api, ApiError, isForbidden, markForbidden } from "../api.js";
import { announce, empty, errorBox, fields, h, time } from "../dom.js";

const PRIORITIES = ["low", "normal", "high", "critical"];
const QA_PROFILES = ["consensus", "adversarial", "security", "testing", "documentation", "human"];
const NUMBERS = { max_concurrent: [1, 10000], timeout_default_seconds: [1, 604800], max_attempts_default: [1, 100] };
const CHOICES = { default_priority: PRIORITIES, default_qa_profile: QA_PROFILES };
const SOURCE = { project: "this project", configuration: "the configuration", routing: "the routing rules, per task" };

function replaceBody(sec, ...content) {
  while (sec.children.length > 1) sec.lastElementChild.remove();
  sec.append(...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function problemText(err) {
  const errors = err.problem && err.problem.errors;
  return `${err.message}${errors ? ` (${errors.map((e) => `${e.field}: ${e.message}`).join("; ")})` : ""}`;
}

async function patch(enc, body, action, reload) {
  try {
    await api(`/projects/${enc}`, { method: "PATCH", body });
    announce("Saved");
    reload();
    return "Saved.";
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      markForbidden(action);
      reload();
      return "This API key may not change this project.";
    }
    return `Not saved: ${problemText(err)}`;
  }
}

function settingsForm(doc, enc, reload) {
  const form = h("form", { class: "inline-form", id: "project-settings-form" });
  const inputs = {};
  for (const [name, own] of Object.entries(doc.settings)) {
    const id = `ps-${name}`;
    let input;
    if (CHOICES[name]) {
      input = h("select", { id, name }, h("option", { value: "" }, "— configuration —"), CHOICES[name].map((v) => h("option", { value: v, selected: own === v }, v)));
    } else {
      const [min, max] = NUMBERS[name] || [1, 1e9];
      input = h("input", { id, name, type: "number", min, max, value: own ?? "", placeholder: String(doc.effective_settings[name].value ?? "") });
    }
    inputs[name] = input;
    form.append(h("div", { class: "field" }, h("label", { for: id }, name.replace(/_/g, " ")), input));
  }
  const note = h("p", { class: "note", role: "status" });
  form.append(h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Save settings")), note);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const settings = {};
    for (const [name, input] of Object.entries(inputs)) {
      const v = input.value;
      settings[name] = v === "" ? null : NUMBERS[name] ? Number(v) : v;
    }
    note.textContent = "Saving…";
    note.textContent = await patch(enc, { settings }, "project-settings", reload);
  });
  return form;
}

function constitutionForm(current, enc, reload) {
  const area = h("textarea", { id: "constitution-text", rows: 10, maxlength: 65536, "aria-label": "Constitution (Markdown)" }, current ? current.text : "");
  const note = h("p", { class: "note", role: "status" });
  const form = h("form", { id: "constitution-form" }, area, h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Save as a new version")), note);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    note.textContent = "Saving…";
    note.textContent = await patch(enc, { constitution: area.value }, "project-constitution", reload);
  });
  return form;
}

/** The Settings and Constitution sections of a project's page, and a function that loads them. */
export function projectSettings(ctx, projectId, section) {
  const enc = encodeURIComponent(projectId);
  const settings = section("Settings");
  const constitution = section("Constitution");

  async function load() {
    let doc;
    try {
      doc = await api(`/projects/${enc}`);
    } catch (err) {
      if (!ctx.isCurrent()) return;
      const missing = err instanceof ApiError && err.status === 404;
      replaceBody(settings, missing ? empty("—") : errorBox(err, load));
      replaceBody(constitution, missing ? empty("—") : errorBox(err, load));
      return;
    }
    if (!ctx.isCurrent()) return;
    replaceBody(
      settings,
      doc.archived_at ? h("p", { class: "verdict bad", id: "project-archived" }, "Archived ", time(doc.archived_at), ": it takes no new tasks.") : null,
      fields(
        Object.entries(doc.effective_settings).map(([name, eff]) => [
          name.replace(/_/g, " "),
          h("span", { dataset: { setting: name } }, eff.value === null ? "—" : String(eff.value), h("span", { class: "muted" }, ` from ${SOURCE[eff.source] || eff.source}`)),
        ]),
      ),
      isForbidden("project-settings") ? null : [h("h3", {}, "Change"), h("p", { class: "muted" }, "Empty: the configuration's value. Effective at once."), settingsForm(doc, enc, load)],
    );
    let current = null;
    if (doc.constitution) {
      try {
        current = await api(`/projects/${enc}/constitution`);
      } catch (err) {
        if (ctx.isCurrent()) replaceBody(constitution, errorBox(err, load));
        return;
      }
    }
    if (!ctx.isCurrent()) return;
    replaceBody(
      constitution,
      current
        ? [
            fields([
              ["Version", String(current.version)],
              ["SHA-256", h("code", {}, current.sha256)],
              ["Saved", h("span", {}, time(current.created_at), current.created_by ? ` by ${current.created_by}` : "")],
            ]),
            h("pre", { class: "constitution", id: "constitution-current" }, current.text),
          ]
        : empty("No constitution: workers get none."),
      isForbidden("project-constitution") ? null : [h("h3", {}, current ? "Edit" : "Write one"), constitutionForm(current, enc, load)],
    );
  }

  return { sections: [settings, constitution], load };
}
