// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read with a ReadableStream and parsed here. A lost connection is retried with
// back-off and resumed with Last-Event-ID; a silent one (no heartbeat) is dropped and retried.

import { API, ApiError, authHeaders, getKey, requestKey } from "./api.js";

const HEARTBEAT_GRACE_MS = 45_000; // the server sends a comment every 15 s

/** Parses SSE text incrementally; calls onMessage({id, event, data}) per dispatched event. */
export class SSEParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.reset();
    this.lastId = null;
    this.retry = null;
  }

  reset() {
    this.data = [];
    this.event = "";
    this.id = null;
  }

  push(chunk) {
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const nl = this.buffer.slice(start).search(/\r\n|\r|\n/);
      if (nl < 0) break;
      const end = start + nl;
      const line = this.buffer.slice(start, end);
      const sepLen = this.buffer.startsWith("\r\n", end) ? 2 : 1;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (this.buffer[end] === "\r" && sepLen === 1 && end + 1 === this.buffer.length) break;
      start = end + sepLen;
      this.line(line);
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.id !== null) this.lastId = this.id;
      if (this.data.length) {
        this.onMessage({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (heartbeat)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

// The connection indicator in the header follows the page's main stream.
const indicator = {
  el: () => document.getElementById("conn"),
  owner: null,
  set(stream, state, text) {
    if (this.owner !== stream) return;
    const el = this.el();
    if (!el) return;
    el.dataset.state = state;
    el.querySelector(".conn-text").textContent = text;
  },
};

const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Connection lost — reconnecting…",
  auth: "Waiting for an API key",
  ended: "Stream ended (final)",
  closed: "Not streaming",
  error: "Stream unavailable",
};

/**
 * new EventStream("/events", {query, onEvent, onState}).start()
 * onEvent({id, event, data}) with data parsed as JSON when it is JSON.
 * reconnect(): return false to stop after the server closes the stream (e.g. a final task).
 */
export class EventStream {
  constructor(path, { query = {}, onEvent, onState, onError, reconnect, lastEventId = null, main = true } = {}) {
    this.path = path;
    this.query = query;
    this.onEvent = onEvent || (() => {});
    this.onState = onState || (() => {});
    this.onError = onError || (() => {});
    this.shouldReconnect = reconnect || (() => true);
    this.lastEventId = lastEventId;
    this.closed = false;
    this.state = "closed";
    this.controller = null;
    this.backoff = 500;
    this.main = main;
    this.retryTimer = 0;
    this.connects = 0;
  }

  url() {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(this.query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) qs.append(k, String(one));
    }
    const q = qs.toString();
    return `${API}${this.path}${q ? `?${q}` : ""}`;
  }

  setState(state, detail) {
    this.state = state;
    indicator.set(this, state, detail || STATE_TEXT[state] || state);
    this.onState(state, detail);
  }

  start() {
    if (this.main) indicator.owner = this;
    this.run();
    return this;
  }

  close() {
    this.closed = true;
    window.clearTimeout(this.retryTimer);
    if (this.controller) this.controller.abort();
    this.setState("closed");
    if (indicator.owner === this) indicator.owner = null;
  }

  /** Drop the current connection and connect again now (e.g. after the key changed). */
  restart() {
    this.backoff = 500;
    if (this.controller) this.controller.abort();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      this.retryTimer = window.setTimeout(resolve, ms);
    });
  }

  async run() {
    while (!this.closed) {
      const outcome = await this.connectOnce();
      if (this.closed) return;
      if (outcome === "stop") return;
      if (outcome === "ended") {
        if (!this.shouldReconnect()) {
          this.setState("ended");
          return;
        }
      }
      if (outcome !== "restart") {
        this.setState("reconnecting");
        await this.sleep(this.backoff + Math.random() * 250);
        this.backoff = Math.min(this.backoff * 2, 15_000);
      }
    }
  }

  async connectOnce() {
    this.controller = new AbortController();
    const signal = this.controller.signal;
    this.setState(this.connects ? "reconnecting" : "connecting");
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    let res;
    try {
      res = await fetch(this.url(), { headers, signal, cache: "no-store", credentials: "same-origin" });
    } catch {
      return this.closed ? "stop" : signal.aborted ? "restart" : "lost";
    }
    if (res.status === 401) {
      this.setState("auth");
      try {
        await requestKey(getKey() ? "That key was not accepted; enter another." : "An API key is needed.");
        return "restart";
      } catch (err) {
        this.setState("error", "No API key: not streaming");
        this.onError(err);
        return "stop";
      }
    }
    if (!res.ok || !res.body) {
      let problem = null;
      try {
        problem = await res.json();
      } catch {
        problem = null;
      }
      const err = new ApiError(res.status, problem, this.path);
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        this.setState("error", `Stream unavailable: ${err.message}`);
        this.onError(err);
        return "stop";
      }
      return "lost";
    }
    this.connects += 1;
    this.backoff = 500;
    this.setState("live");
    const parser = new SSEParser((msg) => this.dispatch(msg));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = 0;
    const arm = () => {
      window.clearTimeout(watchdog);
      watchdog = window.setTimeout(() => this.controller.abort(), HEARTBEAT_GRACE_MS);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        arm();
        parser.push(value);
      }
    } catch {
      return this.closed ? "stop" : "lost";
    } finally {
      window.clearTimeout(watchdog);
    }
  }

  dispatch(msg) {
    if (msg.id !== null && msg.id !== undefined) this.lastEventId = msg.id;
    let data = msg.data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      // not JSON: pass the text on
    }
    try {
      this.onEvent({ id: msg.id, event: msg.event, data });
    } catch (err) {
      window.reportError ? window.reportError(err) : console.warn(err);
    }
  }
}
