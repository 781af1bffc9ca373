// The fleet: workers seen on task events, queues per tier (and the broker's figures),
// recent failures, and dead letters with replay and discard (each confirmed first).

import { api, ApiError, isForbidden, markForbidden } from "../api.js";
import { confirmAction } from "../confirm.js";
import { ago, announce, clear, empty, errorBox, h, idLink, loading, num, section, table, time } from "../dom.js";

/** "4.2 s ago" and the time itself (its UTC instant on hover). */
function when(iso) {
  return h("span", {}, `${ago(iso)} ago · `, time(iso, { short: true }));
}

function workersTable(doc) {
  if (!doc.items.length) return empty("No worker seen yet: a worker appears with its first task event.");
  return table({
    caption: `${num(doc.total)} workers (stale after ${doc.stale_after_seconds} s unseen)`,
    className: "fleet-workers",
    columns: ["Worker", "Last seen", "State", "Tiers", "Models", "In flight", "Completed", "Failed", "Rejected"],
    rows: doc.items.map((w) => [
      h("span", { class: "mono", dataset: { worker: w.worker_id } }, w.worker_id),
      when(w.last_seen),
      w.stale ? h("span", { class: "badge st-failed" }, "stale") : h("span", { class: "badge st-completed" }, "active"),
      w.tiers.join(", ") || "—",
      w.models.join(", ") || "—",
      num(w.in_flight),
      num(w.completed),
      num(w.failed),
      num(w.rejected),
    ]),
  });
}

function queuesTable(doc) {
  const source = doc.broker.source;
  const note =
    source === "not-applicable"
      ? "Broker figures: not applicable (in-process bus)."
      : `Broker figures from ${source === "management-api" ? "the management API" : "a passive declare"}${doc.broker.error ? `: ${doc.broker.error}` : "."}`;
  return [
    table({
      caption: "Tasks per tier",
      className: "fleet-queues",
      columns: ["Tier", "Pending", "Running", "Validating", "Oldest waiting", "Broker messages", "Consumers"],
      rows: doc.items.map((q) => [
        q.tier || "unrouted",
        num(q.pending),
        num(q.running),
        num(q.validating),
        q.oldest_waiting_seconds === null ? "—" : `${Math.round(q.oldest_waiting_seconds)} s`,
        q.broker ? num(q.broker.messages) : "—",
        q.broker ? num(q.broker.consumers) : "—",
      ]),
    }),
    h("p", { class: "note", id: "broker-source" }, note),
  ];
}

function failuresTable(doc) {
  if (!doc.items.length) return empty("No failed task.");
  return table({
    caption: `Recently failed tasks (${num(doc.total)}${doc.total_capped ? "+" : ""})`,
    className: "fleet-failures",
    columns: ["Task", "Project", "Tier", "Failed", "Reason"],
    rows: doc.items.map((f) => [
      idLink(`#/tasks/${f.task_id}`, f.task_id),
      f.project_id,
      f.tier || "—",
      when(f.failed_at),
      f.reason || "—",
    ]),
  });
}

export default async function fleetPage(ctx) {
  ctx.setTitle("Fleet");
  const workersBox = h("div", { class: "table-wrap", id: "fleet-workers" }, loading("Loading workers…"));
  const queuesBox = h("div", { class: "table-wrap", id: "fleet-queues" }, loading("Loading queues…"));
  const failuresBox = h("div", { class: "table-wrap", id: "fleet-failures" }, loading("Loading failures…"));
  const lettersBox = h("div", { class: "table-wrap", id: "fleet-dead-letters" }, loading("Loading dead letters…"));
  ctx.root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Fleet")),
    section("Workers", workersBox),
    section("Queues", queuesBox),
    section("Failures", failuresBox),
    section("Dead letters", lettersBox),
  );

  async function fill(box, path, render, query) {
    try {
      const doc = await api(path, { query });
      if (!ctx.isCurrent()) return;
      clear(box).append(...[render(doc)].flat());
    } catch (err) {
      if (ctx.isCurrent()) clear(box).append(errorBox(err, () => fill(box, path, render, query)));
    }
  }

  function letterActions(d) {
    const cell = h("div", { class: "actions" });
    if (isForbidden("dead-letters")) return cell;
    const replay = h("button", { type: "button", class: "primary", dataset: { replay: d.id } }, "Replay…");
    const discard = h("button", { type: "button", class: "danger", dataset: { discard: d.id } }, "Discard…");
    const refused = (err) => {
      if (err instanceof ApiError && err.status === 403) {
        markForbidden("dead-letters");
        cell.replaceChildren(h("span", { class: "note", role: "alert" }, "This API key may not replay or discard."));
        return;
      }
      cell.append(h("span", { class: "note", role: "alert" }, err.message));
    };
    replay.addEventListener("click", async () => {
      const ok = await confirmAction({
        title: "Replay this dead letter?",
        message: `The event ${d.event_type || ""} ${d.event_id || ""} goes through the handlers again, once.`,
        confirm: "Replay",
        danger: false,
      });
      if (!ok) return;
      replay.disabled = true;
      try {
        const result = await api(`/dead-letters/${d.id}/replay`, { method: "POST" });
        announce(result.outcome === "dead_lettered" ? `Still refused: ${result.reason}` : `Replayed: ${result.detail}`);
        await loadLetters();
      } catch (err) {
        replay.disabled = false;
        refused(err);
      }
    });
    discard.addEventListener("click", async () => {
      const ok = await confirmAction({
        title: "Discard this dead letter?",
        message: "Its event is deleted for good. This cannot be undone.",
        confirm: "Discard",
      });
      if (!ok) return;
      discard.disabled = true;
      try {
        await api(`/dead-letters/${d.id}`, { method: "DELETE" });
        announce("Dead letter discarded");
        await loadLetters();
      } catch (err) {
        discard.disabled = false;
        refused(err);
      }
    });
    cell.append(replay, " ", discard);
    return cell;
  }

  function lettersTable(doc) {
    if (!doc.items.length) return empty("No dead letter.");
    return table({
      caption: `Dead letters (${num(doc.total)}${doc.total_capped ? "+" : ""})`,
      className: "fleet-letters",
      columns: ["When", "Source", "Type", "Project", "Why", "Replays", "Payload", ""],
      rows: doc.items.map((d) => [
        h("span", { dataset: { letter: d.id } }, when(d.created_at)),
        d.source,
        d.event_type || "—",
        d.project_id || "—",
        h("span", {}, h("strong", {}, d.kind), `: ${d.reason}`),
        num(d.replays),
        h("details", {}, h("summary", {}, d.payload_truncated ? "payload (cut)" : "payload"), h("pre", { class: "mono" }, d.payload)),
        letterActions(d),
      ]),
    });
  }

  const loadLetters = () => fill(lettersBox, "/dead-letters", lettersTable, { limit: 50 });
  async function load() {
    await Promise.all([
      fill(workersBox, "/workers", workersTable, { limit: 100 }),
      fill(queuesBox, "/queues", queuesTable),
      fill(failuresBox, "/failures", failuresTable, { limit: 20 }),
      loadLetters(),
    ]);
    if (ctx.isCurrent()) ctx.root.dataset.ready = "1";
  }
  await load();
  const tick = window.setInterval(load, 15_000);
  return () => window.clearInterval(tick);
}
