// The API client: JSON over fetch, problem+json errors, and the API key.
//
// The key lives in sessionStorage only (this tab, until it closes) and goes out as
// "Authorization: Bearer KEY", never in a URL. A 401 asks for a key and retries.

export const API = "/api/v1";
const KEY = "dats.apiKey";
const FORBIDDEN = "dats.forbidden";

export class ApiError extends Error {
  constructor(status, problem, path) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem || {};
    this.path = path;
  }

  get isNotFound() {
    return this.status === 404;
  }
}

export function getKey() {
  try {
    return window.sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

function setKey(value) {
  const store = window.sessionStorage;
  if (value) store.setItem(KEY, value);
  else store.removeItem(KEY);
  store.removeItem(FORBIDDEN); // a new key may be allowed what the last one was not
  keyListeners.forEach((fn) => fn(Boolean(value)));
}

export function forgetKey() {
  setKey(null);
}

const keyListeners = new Set();
export function onKeyChange(fn) {
  keyListeners.add(fn);
}

export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// -- asking for a key -----------------------------------------------------------------
let pendingAsk = null;

/** Show the key form; resolves once a key is entered, rejects if the person cancels. */
export function requestKey(message) {
  if (pendingAsk) return pendingAsk;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const cancel = document.getElementById("key-cancel");
  document.getElementById("key-message").textContent =
    message || "This service needs an API key for this page.";
  input.value = "";
  pendingAsk = new Promise((resolve, reject) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pendingAsk = null;
      if (ok) resolve();
      else reject(new ApiError(401, { detail: "an API key is needed to see this" }));
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      setKey(value);
      done(true);
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      done(false);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
  });
  dialog.showModal();
  input.focus();
  return pendingAsk;
}

// -- requests ----------------------------------------------------------------------------
async function readProblem(res) {
  try {
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) return await res.json();
    return { detail: (await res.text()).slice(0, 300) };
  } catch {
    return null;
  }
}

/**
 * api("/tasks", {query: {limit: 50}}) → parsed JSON.
 * `path` is under /api/v1 unless `root` is set (e.g. /metrics). A 401 asks for a key and retries.
 */
export async function api(path, { method = "GET", query, body, signal, root = false, text = false } = {}) {
  let url = (root ? "" : API) + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) qs.append(k, String(one));
    }
    const q = qs.toString();
    if (q) url += `?${q}`;
  }
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: text ? "text/plain" : "application/json", ...authHeaders() };
    const init = { method, headers, signal, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    if (res.status === 401 && attempt < 5) {
      const problem = await readProblem(res);
      const again = getKey() ? "That key was not accepted (unknown or revoked). " : "";
      await requestKey(`${again}${(problem && problem.detail) || "An API key is needed."}`);
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await readProblem(res), path);
    if (res.status === 204) return null;
    return text ? res.text() : res.json();
  }
}

// -- what this server offers --------------------------------------------------------------
let spec = null;
let specDoc = null;

/** The set of "METHOD /path/{param}" the server documents (from its public OpenAPI document). */
export function capabilities() {
  if (!spec) {
    spec = fetch(`${API}/openapi.json`, { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((doc) => {
        if (!doc || !doc.paths) return null;
        specDoc = doc;
        const out = new Set();
        for (const [p, ops] of Object.entries(doc.paths)) {
          for (const m of Object.keys(ops)) out.add(`${m.toUpperCase()} ${p}`);
        }
        return out;
      })
      .catch(() => null);
  }
  return spec;
}

function resolve(schema, depth = 0) {
  if (!schema || depth > 8) return schema;
  if (schema.$ref && specDoc) {
    const target = schema.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), specDoc);
    return resolve(target, depth + 1);
  }
  if (schema.anyOf) {
    const real = schema.anyOf.find((x) => x.type !== "null");
    return { ...resolve(real, depth + 1), nullable: true, description: schema.description, title: schema.title };
  }
  return schema;
}

/** The JSON request body schema of an operation, $refs resolved (null when undocumented). */
export async function requestSchema(method, template) {
  await capabilities();
  const norm = (x) => x.replace(/\{[^}]+\}/g, "{}");
  const key = specDoc && Object.keys(specDoc.paths).find((k) => norm(k) === norm(`${API}${template}`));
  const op = key && specDoc.paths[key][method.toLowerCase()];
  const content = op && op.requestBody && op.requestBody.content;
  const schema = content && (content["application/json"] || Object.values(content)[0]);
  if (!schema) return null;
  const top = resolve(schema.schema);
  if (!top || !top.properties) return top || null;
  const props = Object.fromEntries(Object.entries(top.properties).map(([k, v]) => [k, resolve(v)]));
  return { ...top, properties: props };
}

/** True when the server documents `METHOD /api/v1/…` (unknown → true: try and handle a 404). */
export async function offers(method, template) {
  const caps = await capabilities();
  if (caps === null) return true;
  const norm = (x) => x.replace(/\{[^}]+\}/g, "{}");
  const want = norm(`${method} ${API}${template}`);
  for (const c of caps) if (norm(c) === want) return true;
  return false;
}

// -- actions this key may not take ---------------------------------------------------------
function forbiddenSet() {
  try {
    return new Set(JSON.parse(window.sessionStorage.getItem(FORBIDDEN) || "[]"));
  } catch {
    return new Set();
  }
}

export function isForbidden(action) {
  return forbiddenSet().has(action);
}

/** Remember that this key got a 403 for `action`, so the action stays hidden. */
export function markForbidden(action) {
  const set = forbiddenSet();
  set.add(action);
  window.sessionStorage.setItem(FORBIDDEN, JSON.stringify([...set]));
}
