// The app shell: hash routes → page modules, focus and title handling, the key button.

import { forgetKey, getKey, onKeyChange } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

const ROUTES = [
  { re: /^\/?$/, nav: "overview", load: () => import("./pages/overview.js") },
  { re: /^\/overview$/, nav: "overview", load: () => import("./pages/overview.js") },
  { re: /^\/tasks$/, nav: "tasks", load: () => import("./pages/tasks.js") },
  { re: /^\/tasks\/([^/]+)$/, nav: "tasks", load: () => import("./pages/task.js") },
  { re: /^\/reviews$/, nav: "reviews", load: () => import("./pages/reviews.js") },
  { re: /^\/reviews\/([^/]+)$/, nav: "reviews", load: () => import("./pages/review.js") },
  { re: /^\/projects$/, nav: "projects", load: () => import("./pages/projects.js") },
  { re: /^\/projects\/([^/]+)$/, nav: "projects", load: () => import("./pages/project.js") },
  { re: /^\/provenance$/, nav: "provenance", load: () => import("./pages/provenance-list.js") },
  { re: /^\/provenance\/([^/]+)$/, nav: "provenance", load: () => import("./pages/provenance.js") },
  { re: /^\/events$/, nav: "events", load: () => import("./pages/events.js") },
  { re: /^\/fleet$/, nav: "fleet", load: () => import("./pages/fleet.js") },
];

const main = document.getElementById("main");
let cleanup = null;
let generation = 0;

/** "#/tasks?status=running" → {path: "/tasks", params: URLSearchParams} */
export function currentRoute() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

/** Replace the hash query without reloading the page (filters, paging). */
export function setParams(params) {
  const { path } = currentRoute();
  const q = params.toString();
  const next = `#${path}${q ? `?${q}` : ""}`;
  if (next !== window.location.hash) window.history.replaceState(null, "", next);
}

function highlight(nav) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function render(focus) {
  const my = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.warn("page cleanup failed", err);
    }
    cleanup = null;
  }
  const { path, params } = currentRoute();
  const route = ROUTES.find((r) => r.re.test(path));
  clear(main);
  if (!route) {
    highlight(null);
    document.title = "Not found · DATS Orchestration";
    main.append(
      h("h1", {}, "Page not found"),
      h("p", { class: "state empty" }, "There is no page at this address. ", h("a", { href: "#/" }, "Go to the overview")),
    );
    return;
  }
  highlight(route.nav);
  const match = path.match(route.re);
  const args = match.slice(1).map(decodeURIComponent);
  try {
    const page = await route.load();
    if (my !== generation) return;
    const root = h("div", { class: "page" });
    main.append(root);
    const ctx = {
      root,
      params,
      args,
      setTitle: (t) => {
        document.title = `${t} · DATS Orchestration`;
      },
      isCurrent: () => my === generation,
    };
    cleanup = (await page.default(ctx)) || null;
    if (my !== generation && cleanup) {
      cleanup();
      cleanup = null;
    }
    if (focus && my === generation) {
      const heading = main.querySelector("h1");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus({ preventScroll: false });
      }
    }
  } catch (err) {
    if (my !== generation) return;
    console.warn(err);
    main.append(errorBox(err, () => render(true)));
  }
}

function keyButton() {
  const btn = document.getElementById("key-button");
  const sync = (has) => {
    btn.hidden = !has;
  };
  sync(Boolean(getKey()));
  onKeyChange(sync);
  btn.addEventListener("click", () => {
    forgetKey();
    render(true);
  });
}

window.addEventListener("hashchange", () => render(true));
document.getElementById("skip-link").addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});
keyButton();
render(false);
