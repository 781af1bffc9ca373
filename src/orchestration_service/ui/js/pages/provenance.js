// A provenance record: its fields, its lineage (upstream) and impact (downstream) as one
// interactive graph, the root-cause path, and the Taint / Clear-suspect actions.

import { api, ApiError, isForbidden, markForbidden, offers } from "../api.js";
import { confirmAction } from "../confirm.js";
import {
  announce,
  clear,
  duration,
  empty,
  errorBox,
  fields,
  h,
  idLink,
  loading,
  num,
  section,
  table,
  time,
  unavailable,
} from "../dom.js";
import { graph, swatch } from "../graph.js";

const KINDS = {
  tainted: { shape: "octagon", mark: "!", fill: "hatch", text: "tainted", icon: "⚠" },
  suspect: { shape: "diamond", mark: "?", fill: "dots", text: "suspect", icon: "?" },
  clean: { shape: "circle", mark: "✓", fill: null, text: "clean", icon: "✓" },
};

export function kindOf(r) {
  if (r.is_tainted) return "tainted";
  if (r.is_suspect) return "suspect";
  return "clean";
}

/** Tainted / suspect / clean as icon and word (not colour alone). */
export function flagBadge(r) {
  const k = kindOf(r);
  return h("span", { class: `badge flag-${k}`, dataset: { flag: k } }, h("span", { class: "icon", "aria-hidden": "true" }, KINDS[k].icon), ` ${KINDS[k].text}`);
}

// -- graph data: tolerant of the shapes lineage / impact may answer with ----------------------
const LIST_KEYS = ["nodes", "items", "records", "lineage", "impact", "ancestors", "descendants", "dependents", "dependencies"];

function nodeList(resp) {
  if (!resp) return [];
  if (Array.isArray(resp)) return resp;
  for (const k of LIST_KEYS) if (Array.isArray(resp[k])) return resp[k];
  return [];
}

function flatten(n) {
  const inner = n.record && typeof n.record === "object" ? n.record : {};
  const merged = { ...inner, ...n };
  merged.id = String(merged.id ?? merged.record_id ?? merged.provenance_id ?? inner.id ?? merged.artifact_id ?? "");
  if (!merged.outputs && Array.isArray(merged.artifact_ids)) merged.outputs = merged.artifact_ids.map((a) => ({ artifact_id: a }));
  return merged;
}

function edgeList(resp) {
  if (!resp || Array.isArray(resp)) return [];
  const list = resp.edges || resp.links || [];
  return list
    .map((e) => ({
      from: String(e.from ?? e.source ?? e.depends_on ?? e.upstream ?? e.parent ?? ""),
      to: String(e.to ?? e.target ?? e.artifact_id ?? e.record_id ?? e.downstream ?? e.child ?? ""),
    }))
    .filter((e) => e.from && e.to);
}

/** Producer → consumer edges from records' outputs and inputs_consumed. */
function inferEdges(records) {
  const producer = new Map();
  for (const r of records) for (const o of r.outputs || []) if (o.artifact_id) producer.set(String(o.artifact_id), r.id);
  const edges = [];
  for (const r of records) {
    for (const a of r.inputs_consumed || (r.inputs || []).map((i) => i.artifact_id)) {
      const p = producer.get(String(a));
      if (p && p !== r.id) edges.push({ from: p, to: r.id });
    }
    for (const d of Array.isArray(r.depends_on) ? r.depends_on : []) edges.push({ from: String(d.id ?? d), to: r.id });
  }
  return edges;
}

/** The root-cause path as record ids (path_provenance_ids; else path, if it holds records). */
function pathIds(rc) {
  if (!rc) return [];
  const p = Array.isArray(rc.path_provenance_ids) ? rc.path_provenance_ids : Array.isArray(rc.path) ? rc.path : [];
  return p.map((x) => String(typeof x === "object" && x ? x.id ?? x.record_id ?? x.artifact_id : x));
}

function idOf(x) {
  if (x === null || x === undefined) return null;
  return String(typeof x === "object" ? x.id ?? x.record_id ?? x.artifact_id : x);
}

export default async function provenancePage(ctx) {
  const [recordId] = ctx.args;
  ctx.setTitle(`Provenance ${recordId.slice(-8)}`);
  const root = ctx.root;
  const headFlag = h("span", { class: "head-status", id: "record-flag" });
  const actions = h("div", { class: "actions", id: "record-actions" });
  const info = section("Record");
  const graphSec = section("Lineage and impact");
  const rcSec = section("Root cause");
  const io = section("Inputs and outputs");
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/provenance" }, "← Provenance")),
    h("div", { class: "page-head" }, h("h1", {}, "Provenance record ", h("code", { title: recordId }, `…${recordId.slice(-8)}`)), headFlag, actions),
    h("div", { class: "detail" }, loading("Loading the record…")),
  );
  const detail = root.querySelector(".detail");

  let record;
  try {
    record = await api(`/provenance/${recordId}`);
  } catch (err) {
    clear(detail).append(
      err instanceof ApiError && err.status === 404
        ? h("p", { class: "state empty", role: "alert" }, `There is no provenance record ${recordId} (or this key may not see it).`)
        : errorBox(err),
    );
    return null;
  }
  if (!ctx.isCurrent()) return null;
  clear(detail).append(info, graphSec, rcSec, io);
  const put = (sec, ...c) => {
    while (sec.children.length > 1) sec.lastElementChild.remove();
    sec.append(...c.flat().filter((x) => x !== null && x !== undefined && x !== false));
  };
  let rootCause = null;
  let graphData = null;

  function renderRecord() {
    const r = record;
    clear(headFlag).append(flagBadge(r));
    put(
      info,
      fields([
        ["Record id", h("code", {}, r.id)],
        ["Task", idLink(`#/tasks/${r.task_id}`, r.task_id, "Task")],
        ["Project", h("a", { href: `#/projects/${encodeURIComponent(r.project_id)}` }, r.project_id)],
        ["State", flagBadge(r)],
        ["Status", r.status],
        ["Verification", `${r.verification_status}${r.verification && r.verification.qa_profile ? ` (${r.verification.qa_profile})` : ""}`],
        ["Confidence", r.confidence],
        ["Model", r.model_used],
        ["Worker", r.worker_id],
        ["Tier / domain", [r.tier, r.domain].filter(Boolean).join(" / ") || null],
        ["Tokens in / out", r.tokens_input !== null || r.tokens_output !== null ? `${num(r.tokens_input)} / ${num(r.tokens_output)}` : null],
        ["Execution time", r.execution_time_ms !== null ? duration(r.execution_time_ms) : null],
        ["Created", time(r.created_at)],
        ["Completed", time(r.completed_at)],
        r.is_tainted ? ["Tainted", h("span", {}, time(r.tainted_at), ` by ${r.tainted_by || "?"}: ${r.tainted_reason || "no reason given"}`)] : null,
        r.is_suspect ? ["Suspect since", h("span", {}, time(r.suspect_since), r.suspect_source ? [" because of ", idLink(`#/provenance/${r.suspect_source}`, r.suspect_source, "Record")] : null)] : null,
      ], { columns: 2 }),
    );
    put(
      io,
      h("h3", {}, "Outputs"),
      r.outputs.length
        ? table({ caption: "Artifacts this record produced", columns: ["Artifact", "Type", "Location"], rows: r.outputs.map((o) => [h("code", {}, o.artifact_id), o.type || "—", o.location || "—"]) })
        : empty("No outputs recorded."),
      h("h3", {}, "Inputs"),
      r.inputs.length
        ? table({ caption: "Artifacts this record consumed", columns: ["Artifact", "Relationship", "Version"], rows: r.inputs.map((i) => [h("code", {}, i.artifact_id), i.relationship || "—", i.version_at_consumption || "—"]) })
        : empty("No inputs: this record depends on nothing."),
    );
    renderActions();
  }

  async function renderActions() {
    clear(actions);
    const [canTaint, canClear] = await Promise.all([
      offers("POST", "/provenance/{record_id}/taint"),
      offers("POST", "/provenance/{record_id}/clear-suspect"),
    ]);
    if (!ctx.isCurrent()) return;
    clear(actions);
    const note = (text) => actions.append(h("p", { class: "note", role: "alert" }, text));
    if (canTaint && !record.is_tainted && !isForbidden("taint")) {
      const btn = h("button", { type: "button", class: "danger", id: "taint-button" }, "Taint…");
      btn.addEventListener("click", async () => {
        const answer = await confirmAction({
          title: "Taint this record?",
          message: `Record …${record.id.slice(-8)} will be marked tainted and everything that depends on it suspect.`,
          confirm: "Taint",
          fields: [
            { name: "reason", label: "Reason", type: "textarea", required: true },
            { name: "tainted_by", label: "Tainted by", type: "text", required: true, value: "dashboard" },
          ],
        });
        if (!answer) return;
        await act(`/provenance/${record.id}/taint`, { reason: answer.reason, tainted_by: answer.tainted_by }, "taint", "Record tainted", note);
      });
      actions.append(btn);
    }
    if (canClear && record.is_suspect && !isForbidden("clear")) {
      const btn = h("button", { type: "button", id: "clear-button" }, "Clear suspect…");
      btn.addEventListener("click", async () => {
        const ok = await confirmAction({
          title: "Clear the suspect mark?",
          message: `Record …${record.id.slice(-8)} was revalidated and will be marked clean again.`,
          confirm: "Clear suspect",
          danger: false,
          fields: [{ name: "reason", label: "Reason (optional)", type: "text" }],
        });
        if (ok) await act(`/provenance/${record.id}/clear-suspect`, ok.reason ? { reason: ok.reason } : {}, "clear", "Suspect mark cleared", note);
      });
      actions.append(btn);
    }
  }

  async function act(path, body, action, done, note) {
    try {
      await api(path, { method: "POST", body });
      announce(done);
      record = await api(`/provenance/${recordId}`);
      renderRecord();
      loadGraph();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        markForbidden(action);
        await renderActions();
        note("This API key may not do that.");
      } else note(`Failed: ${err.message}`);
    }
  }

  // -- the graph ---------------------------------------------------------------------
  async function fetchGraph() {
    const [hasLineage, hasImpact] = await Promise.all([
      offers("GET", "/provenance/{record_id}/lineage"),
      offers("GET", "/provenance/{record_id}/impact"),
    ]);
    if (!hasLineage && !hasImpact) return localGraph();
    const get = (what, has) => (has ? api(`/provenance/${recordId}/${what}`).catch((err) => ({ error: err })) : Promise.resolve(null));
    const [lineage, impact] = await Promise.all([get("lineage", hasLineage), get("impact", hasImpact)]);
    const problems = [lineage, impact].filter((x) => x && x.error).map((x) => x.error);
    const nodes = new Map();
    const self = { ...record, id: String(record.id), column: 0, relation: "this record" };
    nodes.set(self.id, self);
    const add = (resp, sign, relation) => {
      if (!resp || resp.error) return;
      for (const raw of nodeList(resp)) {
        const n = flatten(raw);
        if (!n.id || nodes.has(n.id)) continue;
        const depth = Number(n.depth ?? n.distance ?? n.level ?? 1) || 1;
        nodes.set(n.id, { ...n, column: sign * depth, relation: `${relation}, depth ${depth}` });
      }
    };
    add(lineage, -1, "upstream");
    add(impact, 1, "downstream");
    let edges = [...edgeList(lineage), ...edgeList(impact)];
    if (!edges.length && nodes.size > 1) {
      // No edges in the answers: fetch records lacking their inputs/outputs (bounded) and infer.
      const missing = [...nodes.values()].filter((n) => !n.outputs || !(n.inputs_consumed || n.inputs)).slice(0, 150);
      const docs = await Promise.all(missing.map((n) => api(`/provenance/${n.id}`).catch(() => null)));
      for (const d of docs) if (d) Object.assign(nodes.get(String(d.id)), { ...d, id: String(d.id), column: nodes.get(String(d.id)).column, relation: nodes.get(String(d.id)).relation, depth: nodes.get(String(d.id)).depth });
      edges = inferEdges([...nodes.values()]);
    }
    const seen = new Set();
    edges = edges.filter((e) => nodes.has(e.from) && nodes.has(e.to) && !seen.has(`${e.from}>${e.to}`) && seen.add(`${e.from}>${e.to}`));
    const inFlight = impact && !impact.error && Array.isArray(impact.tasks_in_flight) ? impact.tasks_in_flight : [];
    const truncated = [lineage, impact].some((x) => x && !x.error && x.truncated);
    return { nodes: [...nodes.values()], edges, problems, hasLineage, hasImpact, inFlight, truncated };
  }

  /** Without /lineage and /impact: walk the project's newest records in the browser. */
  async function localGraph() {
    const page = await api("/provenance", { query: { project_id: record.project_id, limit: 500 } });
    const all = new Map(page.items.map((r) => [String(r.id), { ...r, id: String(r.id) }]));
    all.set(String(record.id), { ...record, id: String(record.id) });
    const producer = new Map();
    for (const r of all.values()) for (const o of r.outputs || []) if (o.artifact_id && !producer.has(o.artifact_id)) producer.set(o.artifact_id, r.id);
    const consumers = new Map();
    for (const r of all.values()) {
      for (const a of r.inputs_consumed || []) {
        const p = producer.get(a);
        if (!p || p === r.id) continue;
        if (!consumers.has(p)) consumers.set(p, new Set());
        consumers.get(p).add(r.id);
      }
    }
    const self = String(record.id);
    const nodes = new Map([[self, { ...all.get(self), column: 0, relation: "this record" }]]);
    const walk = (next, sign, relation) => {
      let frontier = [self];
      for (let depth = 1; frontier.length && depth <= 10; depth++) {
        const after = [];
        for (const id of frontier) {
          for (const n of next(id)) {
            if (nodes.has(n) || !all.has(n)) continue;
            nodes.set(n, { ...all.get(n), column: sign * depth, relation: `${relation}, depth ${depth}` });
            after.push(n);
          }
        }
        frontier = after;
      }
    };
    walk((id) => (all.get(id).inputs_consumed || []).map((a) => producer.get(a)).filter(Boolean), -1, "upstream");
    walk((id) => [...(consumers.get(id) || [])], 1, "downstream");
    return {
      nodes: [...nodes.values()],
      edges: inferEdges([...nodes.values()]),
      problems: [],
      hasLineage: true,
      hasImpact: true,
      local: page.total > page.items.length ? `the newest ${page.items.length} of ${page.total}` : `all ${page.total}`,
    };
  }

  function drawGraph() {
    if (!graphData) return;
    const { nodes, edges, problems, hasLineage, hasImpact } = graphData;
    const path = pathIds(rootCause);
    const onPath = new Set(path);
    const rcId = rootCause ? idOf(rootCause.root_cause_provenance_id ?? rootCause.root_cause) : null;
    const pathEdges = new Set();
    for (let i = 0; i + 1 < path.length; i++) {
      pathEdges.add(`${path[i]}>${path[i + 1]}`);
      pathEdges.add(`${path[i + 1]}>${path[i]}`);
    }
    const gNodes = nodes.map((n) => {
      const k = kindOf(n);
      const K = KINDS[k];
      const tags = [];
      if (n.id === String(record.id)) tags.push("this record");
      if (n.id === rcId) tags.push("root cause");
      else if (onPath.has(n.id)) tags.push("on the root-cause path");
      return {
        id: n.id,
        column: n.column,
        shape: K.shape,
        fill: K.fill,
        mark: K.mark,
        cls: [`flag-${k}`, n.id === String(record.id) ? "current" : "", onPath.has(n.id) ? "rc" : ""].filter(Boolean).join(" "),
        ring: n.id === String(record.id) || onPath.has(n.id),
        label: `…${n.id.slice(-8)}${n.id === rcId ? " ★" : ""}`,
        sublabel: `${K.text}${n.id === rcId ? " · root cause" : ""}`,
        href: `#/provenance/${n.id}`,
        name: `Record ${n.id}, task ${n.task_id || "unknown"}, ${K.text}; ${n.relation}${tags.length ? `; ${tags.join(", ")}` : ""}`,
        data: { flag: k, taskId: n.task_id || "" },
      };
    });
    const gEdges = edges.map((e) => ({ ...e, cls: pathEdges.has(`${e.from}>${e.to}`) ? "rc" : "" }));
    const legend = h(
      "ul",
      { class: "legend" },
      ["clean", "suspect", "tainted"].map((k) => h("li", {}, swatch(KINDS[k].shape, `flag-${k}`, KINDS[k].mark), `${KINDS[k].text}: ${KINDS[k].shape}, “${KINDS[k].mark}”${KINDS[k].fill ? `, ${KINDS[k].fill === "hatch" ? "hatched" : "dotted"}` : ""}`)),
      h("li", {}, h("span", { class: "rc-key", "aria-hidden": "true" }), "root-cause path: thick dashed line, ringed nodes, ★ on the root cause"),
      h("li", {}, "Upstream (lineage) to the left, downstream (impact) to the right; arrows point from producer to consumer. Select a node to open its record."),
    );
    const notes = [];
    if (graphData.local) {
      notes.push(
        h("p", { class: "note", role: "note", id: "graph-local" }, `Computed in the browser from ${graphData.local} records of project ${record.project_id}: this server does not offer /lineage and /impact yet.`),
      );
    }
    if (!hasLineage) notes.push(unavailable("Lineage", "This server does not offer /lineage yet; only the impact is shown."));
    if (!hasImpact) notes.push(unavailable("Impact", "This server does not offer /impact yet; only the lineage is shown."));
    for (const p of problems) notes.push(errorBox(p));
    if (graphData.truncated) notes.push(h("p", { class: "note" }, "The graph is cut at the server's depth limit: records exist further away."));
    const inFlight = graphData.inFlight || [];
    const rows = [...gNodes].sort((a, b) => a.column - b.column).map((n) => {
      const src = nodes.find((x) => x.id === n.id);
      return [
        idLink(`#/provenance/${n.id}`, n.id, "Record"),
        src.task_id ? idLink(`#/tasks/${src.task_id}`, src.task_id, "Task") : "—",
        src.relation,
        flagBadge(src),
        n.cls.includes("rc") ? (n.id === rcId ? "root cause" : "on path") : "—",
      ];
    });
    put(
      graphSec,
      notes,
      nodes.length > 1
        ? graph({ nodes: gNodes, edges: gEdges, title: `Lineage and impact of record ${record.id}`, legend, focus: String(record.id) })
        : empty("This record has no recorded inputs and nothing depends on it yet."),
      h("details", { class: "node-table" }, h("summary", {}, `The ${nodes.length} records as a table`), table({ caption: "Records in the graph", columns: ["Record", "Task", "Relation", "State", "Root cause"], rows })),
      inFlight.length
        ? [
            h("h3", {}, `Tasks in flight that will consume affected artifacts (${inFlight.length})`),
            h("ul", { id: "in-flight" }, inFlight.map((t) => h("li", {}, idLink(`#/tasks/${t.task_id}`, t.task_id, "Task"), ` ${t.project_id} · ${t.status}`))),
          ]
        : null,
    );
    root.dataset.graph = "1";
  }

  async function loadGraph() {
    put(graphSec, loading("Loading lineage and impact…"));
    try {
      graphData = await fetchGraph();
    } catch (err) {
      put(graphSec, errorBox(err, loadGraph));
      return;
    }
    if (!ctx.isCurrent()) return;
    drawGraph();
  }

  // -- root cause ----------------------------------------------------------------------
  async function loadRootCause() {
    put(rcSec, loading("Tracing the root cause…"));
    try {
      rootCause = await api(`/provenance/${recordId}/root-cause`);
    } catch (err) {
      rootCause = null;
      put(rcSec, err instanceof ApiError && [404, 409, 422].includes(err.status) ? h("p", { class: "state empty" }, `No root cause: ${err.message}`) : errorBox(err, loadRootCause));
      return;
    }
    if (!ctx.isCurrent()) return;
    const path = pathIds(rootCause);
    const artifacts = Array.isArray(rootCause.path) ? rootCause.path.map(idOf) : [];
    const rc = idOf(rootCause.root_cause_provenance_id ?? rootCause.root_cause);
    const imm = idOf(rootCause.immediate_cause_provenance_id ?? rootCause.immediate_cause);
    put(
      rcSec,
      fields([
        ["Root cause", rc ? h("span", {}, idLink(`#/provenance/${rc}`, rc, "Record"), rootCause.root_cause && rootCause.root_cause !== rc ? [" artifact ", h("code", {}, rootCause.root_cause)] : null) : "none found: nothing upstream is tainted"],
        ["Immediate cause", imm ? h("span", {}, idLink(`#/provenance/${imm}`, imm, "Record"), rootCause.immediate_cause && rootCause.immediate_cause !== imm ? [" artifact ", h("code", {}, rootCause.immediate_cause)] : null) : null],
        ["Depth", rootCause.depth],
        rootCause.failed_artifact_id ? ["Failed artifact", h("code", {}, String(rootCause.failed_artifact_id))] : null,
      ]),
      path.length
        ? h("ol", { class: "rc-path", id: "rc-path", "aria-label": "Root-cause path, from the root cause down" }, path.map((p, i) => h("li", {}, idLink(`#/provenance/${p}`, p, "Record"), artifacts[i] && artifacts[i] !== p ? [" artifact ", h("code", {}, artifacts[i])] : null, p === rc ? " (root cause)" : "", p === String(record.id) ? " (this record)" : "")))
        : null,
    );
    drawGraph();
  }

  async function setupRootCause() {
    if (!(await offers("GET", "/provenance/{record_id}/root-cause"))) {
      put(rcSec, unavailable("Root-cause analysis", "This server does not offer /root-cause yet."));
      return;
    }
    const auto = record.is_tainted || record.is_suspect || (record.verification_status && record.verification_status !== "passed");
    if (auto) {
      await loadRootCause();
    } else {
      put(
        rcSec,
        h("p", {}, "This record is clean. ", h("button", { type: "button", id: "trace-button", onclick: loadRootCause }, "Trace the root cause anyway")),
      );
    }
  }

  renderRecord();
  await Promise.all([loadGraph(), setupRootCause()]);
  root.dataset.ready = "1";
  return null;
}
