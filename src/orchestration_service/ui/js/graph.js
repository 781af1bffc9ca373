// A small layered graph in SVG with pan (drag, arrow keys) and zoom (wheel, +/- keys, buttons).
//
// Nodes sit in columns (`column`, any integer, left to right) and link to a page; each is an
// SVG <a> with a <title> and an aria-label, so it is reachable and named by keyboard and
// screen reader. Shapes and marks, not only colours, tell the kinds apart.

import { h, s } from "./dom.js";

const COL_W = 210;
const ROW_H = 86;
const PAD = 60;
let uid = 0;

/** Shapes drawn at (0,0), about 36 px across. */
const SHAPES = {
  circle: () => s("circle", { r: 17 }),
  diamond: () => s("polygon", { points: "0,-21 21,0 0,21 -21,0" }),
  octagon: () => s("polygon", { points: "-8,-19 8,-19 19,-8 19,8 8,19 -8,19 -19,8 -19,-8" }),
  square: () => s("rect", { x: -17, y: -17, width: 34, height: 34, rx: 5 }),
  triangle: () => s("polygon", { points: "0,-21 20,16 -20,16" }),
};

export function shape(kind) {
  return (SHAPES[kind] || SHAPES.circle)();
}

/** A tiny inline SVG of a node shape, for legends. */
export function swatch(kind, cls, mark, defsFill) {
  const g = s("g", { class: ["node", cls], transform: "translate(14,14) scale(0.55)" }, shape(kind));
  if (defsFill) g.firstChild.setAttribute("fill", defsFill);
  if (mark) g.append(s("text", { class: "mark", "text-anchor": "middle", dy: "0.35em" }, mark));
  return s("svg", { width: 28, height: 28, viewBox: "0 0 28 28", "aria-hidden": "true", focusable: "false" }, g);
}

/** Order nodes inside each column to keep edges short (two barycentre sweeps). */
function layout(nodes, edges) {
  const cols = new Map();
  for (const n of nodes) {
    if (!cols.has(n.column)) cols.set(n.column, []);
    cols.get(n.column).push(n);
  }
  const keys = [...cols.keys()].sort((a, b) => a - b);
  const pos = new Map();
  const place = () => {
    for (const k of keys) cols.get(k).forEach((n, i) => pos.set(n.id, i - (cols.get(k).length - 1) / 2));
  };
  place();
  const neighbours = (id) => edges.filter((e) => e.from === id || e.to === id).map((e) => (e.from === id ? e.to : e.from));
  for (let sweep = 0; sweep < 2; sweep++) {
    for (const k of keys) {
      const col = cols.get(k);
      const bary = new Map(
        col.map((n) => {
          const ns = neighbours(n.id).filter((m) => pos.has(m));
          return [n.id, ns.length ? ns.reduce((a, m) => a + pos.get(m), 0) / ns.length : pos.get(n.id)];
        }),
      );
      col.sort((a, b) => bary.get(a.id) - bary.get(b.id) || String(a.id).localeCompare(String(b.id)));
      place();
    }
  }
  const minCol = keys.length ? keys[0] : 0;
  const tallest = Math.max(1, ...keys.map((k) => cols.get(k).length));
  const xy = new Map();
  for (const k of keys) {
    const col = cols.get(k);
    col.forEach((n, i) => {
      const y = (i + (tallest - col.length) / 2) * ROW_H;
      xy.set(n.id, { x: (k - minCol) * COL_W, y });
    });
  }
  return { xy, width: (keys.length - 1) * COL_W, height: (tallest - 1) * ROW_H };
}

/**
 * graph({nodes: [{id, column, shape, cls, mark, label, sublabel, href, name}], edges: [{from, to, cls}],
 *        title, legend}) → element
 */
export function graph({ nodes, edges, title, legend, height = 420, focus = null }) {
  const id = `g${++uid}`;
  const { xy, width, height: h0 } = layout(nodes, edges);
  const vbW = Math.max(width + PAD * 2 + 120, 360);
  const vbH = Math.max(h0 + PAD * 2, 160);
  const view = { x: -PAD, y: -PAD, w: vbW, h: vbH };
  // On a narrow screen start around the focus node at a readable scale (pan / zoom for more).
  const narrow = window.innerWidth < 700 && vbW > 520;
  if (narrow) {
    const f = (focus && xy.get(focus)) || { x: width / 2, y: h0 / 2 };
    view.w = 400;
    view.h = Math.max(vbH, 360);
    view.x = f.x - view.w / 2;
    view.y = Math.min(-PAD, f.y - view.h / 2);
  }
  const initial = { ...view };

  const defs = s(
    "defs",
    {},
    s(
      "marker",
      { id: `${id}-arrow`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
    ),
    s(
      "marker",
      { id: `${id}-arrow-rc`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead rc" }),
    ),
    s(
      "pattern",
      { id: `${id}-hatch`, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      s("rect", { width: 6, height: 6, class: "hatch-bg" }),
      s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }),
    ),
    s(
      "pattern",
      { id: `${id}-dots`, width: 5, height: 5, patternUnits: "userSpaceOnUse" },
      s("rect", { width: 5, height: 5, class: "dots-bg" }),
      s("circle", { cx: 2.5, cy: 2.5, r: 1.1, class: "dots-dot" }),
    ),
  );

  const edgeLayer = s("g", { class: "edges", "aria-hidden": "true" });
  for (const e of edges) {
    const a = xy.get(e.from);
    const b = xy.get(e.to);
    if (!a || !b) continue;
    const dx = b.x - a.x;
    const x1 = a.x + (dx >= 0 ? 22 : -22);
    const x2 = b.x + (dx >= 0 ? -24 : 24);
    const mid = (x1 + x2) / 2;
    const d = dx === 0 ? `M${a.x},${a.y + 22} C${a.x + 60},${a.y + 40} ${b.x + 60},${b.y - 40} ${b.x},${b.y - 24}` : `M${x1},${a.y} C${mid},${a.y} ${mid},${b.y} ${x2},${b.y}`;
    edgeLayer.append(
      s("path", {
        d,
        class: ["edge", e.cls],
        "marker-end": `url(#${id}-arrow${e.cls && e.cls.includes("rc") ? "-rc" : ""})`,
        dataset: { from: e.from, to: e.to },
      }),
    );
  }

  const nodeLayer = s("g", { class: "nodes" });
  for (const n of nodes) {
    const p = xy.get(n.id);
    const body = shape(n.shape);
    // (a style property, so it wins over the stylesheet's plain fill)
    if (n.fill === "hatch") body.style.fill = `url(#${id}-hatch)`;
    if (n.fill === "dots") body.style.fill = `url(#${id}-dots)`;
    const a = s(
      "a",
      {
        href: n.href,
        class: ["node", n.cls],
        transform: `translate(${p.x},${p.y})`,
        "aria-label": n.name,
        dataset: { id: n.id, ...(n.data || {}) },
      },
      s("title", {}, n.name),
      s("rect", { class: "hit", x: -70, y: -30, width: 140, height: 92 }),
      n.ring ? s("circle", { r: 27, class: "ring" }) : null,
      body,
      n.mark ? s("text", { class: "mark", "text-anchor": "middle", dy: "0.35em", "aria-hidden": "true" }, n.mark) : null,
      s("text", { class: "label", x: 0, y: 40, "text-anchor": "middle", "aria-hidden": "true" }, n.label),
      n.sublabel
        ? s("text", { class: "sublabel", x: 0, y: 55, "text-anchor": "middle", "aria-hidden": "true" }, n.sublabel)
        : null,
    );
    nodeLayer.append(a);
  }

  const stage = s("g", { class: "stage" }, edgeLayer, nodeLayer);
  const svg = s(
    "svg",
    {
      class: "graph-canvas",
      role: "group",
      tabindex: 0,
      "aria-label": `${title}. ${nodes.length} nodes. Drag or use arrow keys to pan, + and - to zoom, 0 to reset; Tab moves between nodes.`,
      preserveAspectRatio: "xMidYMid meet",
    },
    defs,
    stage,
  );
  svg.style.height = `${Math.min(height, Math.max(narrow ? 300 : 220, vbH))}px`;

  const apply = () => svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  apply();
  const zoom = (factor, cx = view.x + view.w / 2, cy = view.y + view.h / 2) => {
    const w = Math.min(Math.max(view.w * factor, 120), initial.w * 6);
    const f = w / view.w;
    view.x = cx - (cx - view.x) * f;
    view.y = cy - (cy - view.y) * f;
    view.w *= f;
    view.h *= f;
    apply();
  };
  const pan = (dx, dy) => {
    view.x += dx;
    view.y += dy;
    apply();
  };
  const reset = () => {
    Object.assign(view, initial);
    apply();
  };
  const toUnits = () => {
    const r = svg.getBoundingClientRect();
    return r.width ? Math.max(view.w / r.width, view.h / r.height) : 1;
  };

  svg.addEventListener(
    "wheel",
    (ev) => {
      ev.preventDefault();
      const r = svg.getBoundingClientRect();
      const u = toUnits();
      const cx = view.x + (ev.clientX - r.left) * u - (r.width * u - view.w) / 2;
      const cy = view.y + (ev.clientY - r.top) * u - (r.height * u - view.h) / 2;
      zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
    },
    { passive: false },
  );
  let drag = null;
  svg.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, moved: false, u: toUnits(), id: ev.pointerId };
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    if (!drag.moved) {
      drag.moved = true;
      svg.setPointerCapture(drag.id);
      svg.classList.add("dragging");
    }
    pan(-dx * drag.u, -dy * drag.u);
    drag.x = ev.clientX;
    drag.y = ev.clientY;
  });
  const end = () => {
    if (drag && drag.moved) {
      svg.classList.remove("dragging");
      // swallow the click that ends a drag on a node
      svg.addEventListener("click", (e) => e.preventDefault(), { capture: true, once: true });
    }
    drag = null;
  };
  svg.addEventListener("pointerup", end);
  svg.addEventListener("pointercancel", end);
  svg.addEventListener("keydown", (ev) => {
    const step = view.w / 8;
    const keys = {
      ArrowLeft: () => pan(-step, 0),
      ArrowRight: () => pan(step, 0),
      ArrowUp: () => pan(0, -step),
      ArrowDown: () => pan(0, step),
      "+": () => zoom(1 / 1.25),
      "=": () => zoom(1 / 1.25),
      "-": () => zoom(1.25),
      0: reset,
    };
    const fn = keys[ev.key];
    if (fn && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      fn();
    }
  });
  // Bring a node reached with Tab into view.
  svg.addEventListener("focusin", (ev) => {
    const a = ev.target.closest && ev.target.closest("a.node");
    if (!a) return;
    const p = xy.get(a.dataset.id);
    if (!p) return;
    if (p.x < view.x + 30 || p.x > view.x + view.w - 30 || p.y < view.y + 30 || p.y > view.y + view.h - 30) {
      view.x = p.x - view.w / 2;
      view.y = p.y - view.h / 2;
      apply();
    }
  });

  const tools = h(
    "div",
    { class: "graph-tools", role: "toolbar", "aria-label": `${title}: view` },
    h("button", { type: "button", onclick: () => zoom(1 / 1.25), "aria-label": "Zoom in" }, "+"),
    h("button", { type: "button", onclick: () => zoom(1.25), "aria-label": "Zoom out" }, "−"),
    h("button", { type: "button", onclick: reset }, "Reset view"),
  );
  return h(
    "figure",
    { class: "graph" },
    tools,
    svg,
    legend ? h("figcaption", {}, legend) : null,
  );
}
