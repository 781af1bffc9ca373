// Overview: tasks by state, in flight per project, oldest waiting, recent failures, event
// throughput, outbox lag and the health of each dependency.

import { api, ApiError } from "../api.js";
import { ago, clear, debounce, empty, errorBox, h, idLink, loading, num, section, STATES, statusBadge, time } from "../dom.js";
import { EventStream } from "../sse.js";

const REFRESH_MS = 10_000;
const DEP_ICON = { connected: "✓", degraded: "!", unconfigured: "–", disconnected: "✕" };
const DEP_LABEL = { database: "Database", broker: "Event broker", agent_service: "Agent Service", rag_service: "RAG Service" };

function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^(orch_outbox_pending|orch_outbox_oldest_age_seconds)(?:\{[^}]*\})?\s+([0-9.eE+-]+|NaN)/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function body(sec, ...content) {
  while (sec.children.length > 1) sec.lastElementChild.remove();
  sec.append(...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export default async function overviewPage(ctx) {
  ctx.setTitle("Overview");
  const root = ctx.root;
  const states = section("Tasks by state");
  const flight = section("In flight per project");
  const oldest = section("Oldest waiting task");
  const failures = section("Recent failures");
  const throughput = section("Event throughput");
  const outbox = section("Outbox lag");
  const health = section("Dependencies");
  outbox.hidden = true;
  for (const sec of [states, flight, oldest, failures, health]) body(sec, loading());
  const updated = h("p", { class: "muted small", role: "status" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), updated),
    h("div", { class: "grid" }, states, flight, oldest, failures, throughput, outbox, health),
  );

  // -- event throughput (what this page sees on the feed) --------------------------------
  const opened = Date.now();
  const seen = [];
  let totalSeen = 0;
  const rate = h("p", { class: "big", id: "event-rate" }, "0");
  const rateNote = h("p", { class: "muted small" });
  const bars = h("div", { class: "bars", "aria-hidden": "true" });
  body(throughput, rate, rateNote, bars);
  function drawRate() {
    const now = Date.now();
    while (seen.length && seen[0] < now - 10 * 60_000) seen.shift();
    const lastMinute = seen.filter((t) => t >= now - 60_000).length;
    rate.textContent = `${num(lastMinute)} events / min`;
    const since = Math.round((now - opened) / 1000);
    rateNote.textContent = `Counted on the live feed: ${num(totalSeen)} since this page opened ${since < 60 ? `${since} s` : `${Math.floor(since / 60)} min`} ago${since < 60 ? " (less than a minute: the rate is still filling)" : ""}.`;
    clear(bars);
    const buckets = Array.from({ length: 10 }, (_, i) => seen.filter((t) => t < now - i * 60_000 && t >= now - (i + 1) * 60_000).length).reverse();
    const peak = Math.max(1, ...buckets);
    for (const n of buckets) {
      const bar = h("span", { class: "bar", title: `${n} events` });
      bar.style.height = `${Math.max(2, Math.round((n / peak) * 40))}px`;
      bars.append(bar);
    }
  }
  drawRate();

  // -- the rest, refreshed --------------------------------------------------------------
  async function loadProjects() {
    const { items } = await api("/projects");
    const totals = Object.fromEntries(STATES.map((st) => [st, 0]));
    for (const p of items) for (const [st, n] of Object.entries(p.counts || {})) totals[st] = (totals[st] || 0) + n;
    const all = Object.values(totals).reduce((a, b) => a + b, 0);
    if (!items.length) {
      body(states, empty("No tasks yet. Submit one with POST /api/v1/tasks or the CLI."));
      body(flight, empty("No projects yet."));
      body(oldest, empty("Nothing is waiting."));
      return;
    }
    body(
      states,
      h(
        "table",
        { class: "data compact", id: "state-table" },
        h("caption", { class: "visually-hidden" }, "Tasks by state across all projects"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Tasks"), h("th", { scope: "col" }, "Share"))),
        h(
          "tbody",
          {},
          STATES.map((st) => {
            const share = all ? totals[st] / all : 0;
            const bar = h("span", { class: `share st-${st}` });
            bar.style.width = `${Math.round(share * 100)}%`;
            return h(
              "tr",
              { dataset: { state: st } },
              h("th", { scope: "row" }, h("a", { href: `#/tasks?status=${st}` }, statusBadge(st))),
              h("td", { "data-label": "Tasks" }, num(totals[st])),
              h("td", { "data-label": "Share", class: "share-cell" }, h("span", { class: "share-track" }, bar), ` ${Math.round(share * 100)}%`),
            );
          }),
        ),
        h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "All"), h("td", {}, num(all)), h("td", {}, ""))),
      ),
    );
    body(
      flight,
      h(
        "table",
        { class: "data compact", id: "flight-table" },
        h("caption", { class: "visually-hidden" }, "Tasks in flight (running and validating) against each project's limit"),
        h("thead", {}, h("tr", {}, ["Project", "In flight / limit", "Waiting"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items.map((p) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, h("a", { href: `#/projects/${encodeURIComponent(p.project_id)}` }, p.project_id)),
              h(
                "td",
                { "data-label": "In flight / limit" },
                h("meter", { min: 0, max: p.max_concurrent, value: p.in_flight, high: p.max_concurrent * 0.8, optimum: 0, "aria-label": `${p.project_id}: ${p.in_flight} of ${p.max_concurrent} in flight` }),
                ` ${p.in_flight} / ${p.max_concurrent}`,
                p.in_flight >= p.max_concurrent ? h("span", { class: "tag warn" }, " at limit") : null,
              ),
              h("td", { "data-label": "Waiting" }, num((p.counts || {}).pending || 0)),
            ),
          ),
        ),
      ),
    );
    // Oldest waiting task: ask the projects that have waiting tasks (at most 20).
    const waiting = items.filter((p) => (p.counts || {}).pending).slice(0, 20);
    if (!waiting.length) {
      body(oldest, empty("Nothing is waiting."));
      return;
    }
    const statuses = await Promise.all(waiting.map((p) => api(`/projects/${encodeURIComponent(p.project_id)}/status`).catch(() => null)));
    const candidates = statuses.filter((st) => st && st.oldest_waiting_task).map((st) => ({ project: st.project_id, ...st.oldest_waiting_task }));
    candidates.sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
    const o = candidates[0];
    body(
      oldest,
      o
        ? h(
            "div",
            { id: "oldest-waiting" },
            h("p", { class: "big" }, `waiting ${ago(o.created_at)}`),
            h("p", {}, idLink(`#/tasks/${o.task_id}`, o.task_id, "Task"), ` in `, h("a", { href: `#/projects/${encodeURIComponent(o.project)}` }, o.project), `, priority ${o.priority}, submitted `, time(o.created_at)),
          )
        : empty("Nothing is waiting."),
    );
  }

  async function loadFailures() {
    const page = await api("/tasks", { query: { status: "failed", limit: 8 } });
    if (!page.items.length) {
      body(failures, empty("No failed tasks."));
      return;
    }
    body(
      failures,
      h(
        "ul",
        { class: "failures", id: "failures" },
        page.items.map((t) => {
          const e = t.error || {};
          const reason = e.reason || (typeof e.detail === "string" ? e.detail : null) || "no reason recorded";
          const detail = typeof e.detail === "string" && e.detail !== reason ? e.detail : null;
          return h(
            "li",
            {},
            h("p", {}, idLink(`#/tasks/${t.task_id}`, t.task_id, "Failed task"), " ", h("span", { class: "muted" }, t.project_id), " · ", time(t.completed_at || t.updated_at, { short: true })),
            h("p", { class: "reason" }, h("strong", {}, "Reason: "), reason, detail ? h("span", { class: "muted" }, ` — ${detail}`) : null),
          );
        }),
      ),
      page.total > page.items.length ? h("p", {}, h("a", { href: "#/tasks?status=failed" }, `All ${num(page.total)} failed tasks`)) : null,
    );
  }

  async function loadHealth() {
    let doc;
    try {
      doc = await api("/health/detailed");
    } catch (err) {
      if (err instanceof ApiError && err.problem && err.problem.dependencies) doc = err.problem;
      else throw err;
    }
    const deps = doc.dependencies || {};
    body(
      health,
      h("p", {}, h("span", { class: `badge health-${doc.status}` }, doc.status === "healthy" ? "✓ healthy" : "✕ unhealthy"), ` version ${doc.version}`),
      h(
        "ul",
        { class: "deps", id: "deps" },
        Object.entries(deps).map(([name, state]) =>
          h(
            "li",
            { class: `dep dep-${state}`, dataset: { dep: name, state } },
            h("span", { class: "icon", "aria-hidden": "true" }, DEP_ICON[state] || "•"),
            h("span", { class: "dep-name" }, DEP_LABEL[name] || name),
            h("span", { class: "dep-state" }, state),
            doc.details && typeof doc.details[name] === "string" ? h("span", { class: "muted small dep-detail" }, doc.details[name]) : null,
          ),
        ),
      ),
    );
  }

  async function loadOutbox() {
    try {
      const res = await fetch("/metrics", { headers: { Accept: "text/plain" }, cache: "no-store" });
      if (!res.ok) throw new Error("no metrics");
      const m = parseMetrics(await res.text());
      if (m.orch_outbox_pending === undefined) throw new Error("no outbox metrics");
      outbox.hidden = false;
      const age = m.orch_outbox_oldest_age_seconds;
      body(
        outbox,
        h("p", { class: "big", id: "outbox-pending" }, `${num(m.orch_outbox_pending)} unpublished`),
        h("p", {}, m.orch_outbox_pending && age !== undefined && !Number.isNaN(age) ? `Oldest waiting ${age.toFixed(1)} s` : "Nothing waiting to be published."),
      );
    } catch {
      outbox.hidden = true;
    }
  }

  const guard = (sec, fn) =>
    fn().catch((err) => {
      if (ctx.isCurrent()) body(sec, errorBox(err, () => guard(sec, fn)));
    });

  async function refresh() {
    await Promise.all([
      guard(states, async () => {
        try {
          await loadProjects();
        } catch (err) {
          for (const sec of [flight, oldest]) body(sec, errorBox(err));
          throw err;
        }
      }),
      guard(failures, loadFailures),
      guard(health, loadHealth),
      loadOutbox(),
    ]);
    if (ctx.isCurrent()) {
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      root.dataset.ready = "1";
    }
  }

  const soon = debounce(() => ctx.isCurrent() && refresh(), 1500);
  const stream = new EventStream("/events", {
    onEvent: (ev) => {
      seen.push(Date.now());
      totalSeen += 1;
      drawRate();
      if (ev.event && ev.event.startsWith("task.status.")) soon();
    },
  }).start();
  const tick = window.setInterval(() => {
    drawRate();
    refresh();
  }, REFRESH_MS);
  await refresh();
  return () => {
    window.clearInterval(tick);
    stream.close();
  };
}
