// A modal confirmation (a <dialog>: focus is trapped, Escape cancels) with optional fields.

import { clear, h } from "./dom.js";

/**
 * confirmAction({title, message, confirm, cancel, fields: [{name, label, type, required, value}]})
 * → Promise of {field values} when confirmed, null when not.
 */
export function confirmAction({ title, message, confirm = "Confirm", cancel = "Cancel", fields = [], danger = true }) {
  const dialog = document.getElementById("confirm-dialog");
  const form = document.getElementById("confirm-form");
  const ok = document.getElementById("confirm-ok");
  const no = document.getElementById("confirm-cancel");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-message").textContent = message || "";
  ok.textContent = confirm;
  ok.className = danger ? "danger" : "primary";
  no.textContent = cancel;
  const box = clear(document.getElementById("confirm-fields"));
  const inputs = fields.map((f, i) => {
    const id = `confirm-f${i}`;
    const input =
      f.type === "textarea"
        ? h("textarea", { id, name: f.name, rows: 3, required: Boolean(f.required) })
        : h("input", { id, name: f.name, type: f.type || "text", required: Boolean(f.required), autocomplete: "off" });
    if (f.value !== undefined) input.value = f.value;
    box.append(h("div", { class: "field" }, h("label", { for: id }, f.label), input));
    return input;
  });
  return new Promise((resolve) => {
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      no.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      finish(Object.fromEntries(inputs.map((i) => [i.name, i.value.trim()])));
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      finish(null);
    };
    form.addEventListener("submit", onSubmit);
    no.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    (inputs[0] || no).focus();
  });
}
