// imgpipe console: a one page app over imgpipe's JSON API. Plain ES2020 module, no build step.
// The API key lives in this tab's sessionStorage only and goes out as X-API-Key, never in a
// URL. Every list is paged by the API's cursors: nothing ever loads a whole store.

import { thumbHashAverage, thumbHashToDataURL, base64ToBytes } from "./thumbhash.js";

const KEY_NAME = "imgpipe.apiKey";
const POLL_BASE_MS = 2000; // after a change or a user action
const POLL_MAX_MS = 30000; // doubling up to this while nothing changes, or on errors
const POLL_BUSY_MAX_MS = 5000; // while something on screen is in progress
const IMAGES_PAGE = 48;
const JOBS_PAGE = 20;
const FAILURES_SHOWN = 100;
const STATES = ["queued", "processing", "done", "failed"];

// ---------------------------------------------------------------------------------------
// Small DOM helpers (no innerHTML: every value from the API goes in as text).

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "key") el.dataset.key = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function fmtNum(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en");
}

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "—";
  return dateFmt.format(new Date(epoch * 1000));
}

function fmtAgo(epoch) {
  if (epoch === null || epoch === undefined) return "";
  const s = Date.now() / 1000 - epoch;
  const future = s < 0;
  const a = Math.abs(s);
  const txt =
    a < 5
      ? "just now"
      : a < 90
        ? `${Math.round(a)} s`
        : a < 5400
          ? `${Math.round(a / 60)} min`
          : a < 172800
            ? `${Math.round(a / 3600)} h`
            : `${Math.round(a / 86400)} d`;
  if (txt === "just now") return txt;
  return future ? `in ${txt}` : `${txt} ago`;
}

function timeEl(epoch) {
  if (epoch === null || epoch === undefined) return h("span", { class: "empty" }, "—");
  const d = new Date(epoch * 1000);
  return h("time", { datetime: d.toISOString(), title: fmtTime(epoch) }, fmtAgo(epoch));
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return "< 1 s";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 12)}…` : id || "";
}

function badge(text, cls) {
  return h("span", { class: `badge ${cls || text}` }, text);
}

// ---------------------------------------------------------------------------------------
// The key and the API.

const keyStore = {
  get() {
    try {
      return sessionStorage.getItem(KEY_NAME);
    } catch {
      return null;
    }
  },
  set(k) {
    sessionStorage.setItem(KEY_NAME, k);
  },
  clear() {
    try {
      sessionStorage.removeItem(KEY_NAME);
    } catch {
      /* storage unavailable: nothing kept */
    }
  },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.auth = status === 401 || status === 403;
  }
}

let authOk = false;

async function api(method, path, body, { quiet = false } = {}) {
  const headers = { Accept: "application/json" };
  const key = keyStore.get();
  if (key) headers["X-API-Key"] = key;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    // Relative to the page, so a console served under a path prefix calls the API beside it.
    resp = await fetch(path.replace(/^\//, ""), init);
  } catch {
    throw new ApiError(0, "network", "imgpipe did not answer: is the server running?");
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(
      resp.status,
      err.code || `http_${resp.status}`,
      err.message || `HTTP ${resp.status} ${resp.statusText}`.trim()
    );
    if (e.auth) authFailed(e, quiet);
    throw e;
  }
  return data;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

// ---------------------------------------------------------------------------------------
// Key panel.

function showKeyPanel(message) {
  authOk = false;
  stopPolling();
  $("#view").hidden = true;
  $("#key-panel").hidden = false;
  $("#forget-key").hidden = true;
  $("#key-error").textContent = message || "";
  setLive("waiting for a key", "paused");
  const input = $("#key-input");
  input.value = "";
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.focus();
}

function authFailed(e, quiet) {
  keyStore.clear();
  let message;
  if (quiet) message = "";
  else if (e.status === 401)
    message = `This imgpipe needs an API key (unauthorized: ${e.message}). Enter the key to go on.`;
  else
    message =
      `That API key was refused (forbidden: ${e.message}). ` +
      "Check the key that imgpipe serve printed or IMGPIPE_API_TOKEN, and enter it again.";
  showKeyPanel(message);
}

async function submitKey(ev) {
  ev.preventDefault();
  const key = $("#key-input").value.trim();
  if (!key) {
    $("#key-error").textContent = "Enter a key.";
    return;
  }
  keyStore.set(key);
  $("#key-error").textContent = "Checking…";
  try {
    await api("GET", "/status");
  } catch (e) {
    if (!e.auth) $("#key-error").textContent = `Could not check the key: ${e.message}`;
    return;
  }
  start();
}

function start() {
  authOk = true;
  $("#key-panel").hidden = true;
  $("#view").hidden = false;
  $("#forget-key").hidden = !keyStore.get();
  onRoute();
}

// ---------------------------------------------------------------------------------------
// Notices and the live indicator.

let noticeTimer = null;
let noticeCarries = false; // the next route change keeps the notice (it is about that move)

function notice(content, kind = "info", ms = 8000) {
  const el = $("#notice");
  el.replaceChildren(...(Array.isArray(content) ? content : [content]));
  el.className = `notice ${kind}`;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (ms) noticeTimer = setTimeout(() => (el.hidden = true), ms);
}

function clearNotice() {
  $("#notice").hidden = true;
}

function setLive(text, kind = "", title = "") {
  const el = $("#live-state");
  el.textContent = text;
  el.className = `live-state ${kind}`;
  el.title = title;
}

// ---------------------------------------------------------------------------------------
// Routing and polling with back-off.

const poll = { delay: POLL_BASE_MS, timer: null, gen: 0, sig: null, data: null };
let route = { view: "overview", arg: null, params: new URLSearchParams() };
const ui = {
  confirmDelete: null, // image id whose delete awaits confirmation
  pendingFocus: {}, // image id -> [x, y] clicked, until the covers are rendered again
  pages: { images: [], jobs: [] }, // cursors of the pages before this one
  filter: "", // id prefix filtering the images page on screen
  failuresShown: FAILURES_SHOWN,
  busy: new Set(), // keys of buttons with a request in flight
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  const view = VIEWS[parts[0]] ? parts[0] : "overview";
  return {
    view,
    arg: parts[1] ? decodeURIComponent(parts[1]) : null,
    params: new URLSearchParams(query || ""),
  };
}

function go(hash) {
  if (location.hash === hash) refresh({ reset: true });
  else location.hash = hash;
}

function onRoute() {
  const next = parseHash();
  const sameView = next.view === route.view;
  route = next;
  if (!sameView || route.view !== "images") ui.filter = "";
  if (route.view === "images" && !route.params.get("cursor")) ui.pages.images = [];
  if (route.view === "jobs" && !route.params.get("cursor")) ui.pages.jobs = [];
  for (const a of document.querySelectorAll(".tabs a")) {
    const current = a.dataset.view === route.view || (a.dataset.view === "images" && route.view === "image");
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${VIEWS[route.view].title(route)} · imgpipe`;
  // Notices belong to the view they came from, unless they announce the move itself.
  if (noticeCarries) noticeCarries = false;
  else clearNotice();
  poll.sig = null;
  poll.data = null;
  if (!authOk) return;
  const view = $("#view");
  view.replaceChildren(h("p", { class: "empty" }, "Loading…"));
  if (!sameView) $("#main").focus({ preventScroll: true });
  refresh({ reset: true });
}

function stopPolling() {
  clearTimeout(poll.timer);
  poll.timer = null;
  poll.gen++;
}

function schedule() {
  clearTimeout(poll.timer);
  if (!authOk) return;
  if (document.hidden) {
    setLive("paused while the tab is hidden", "paused");
    return;
  }
  poll.timer = setTimeout(() => refresh(), poll.delay);
}

async function refresh({ reset = false } = {}) {
  if (!authOk) return;
  clearTimeout(poll.timer);
  if (reset) poll.delay = POLL_BASE_MS;
  const gen = ++poll.gen;
  const here = route;
  const view = VIEWS[here.view];
  try {
    const data = await view.load(here);
    if (gen !== poll.gen) return; // a newer refresh or route took over
    const sig = JSON.stringify(data);
    const changed = sig !== poll.sig;
    poll.sig = sig;
    poll.data = data;
    if (changed) render();
    poll.delay = changed || reset ? POLL_BASE_MS : Math.min(poll.delay * 2, POLL_MAX_MS);
    if (view.busy && view.busy(data)) poll.delay = Math.min(poll.delay, POLL_BUSY_MAX_MS);
    setLive(`live · next in ${Math.round(poll.delay / 1000)} s`, "", `updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (gen !== poll.gen || e.auth) return; // the key panel is up, polling stopped
    poll.delay = Math.min(poll.delay * 2, POLL_MAX_MS);
    setLive(`error · retrying in ${Math.round(poll.delay / 1000)} s`, "error");
    if (poll.data === null) {
      $("#view").replaceChildren(errorPanel(e));
    } else {
      notice(`Could not refresh: ${e.message}`, "bad", poll.delay);
    }
  }
  schedule();
}

/** Re-renders the current view from the data on hand, keeping focus and typed input. */
function render() {
  if (poll.data === null) return;
  const container = $("#view");
  const active = document.activeElement;
  const focusKey = active && container.contains(active) ? active.dataset.key : null;
  const selection =
    focusKey && "selectionStart" in active
      ? [active.selectionStart, active.selectionEnd]
      : null;
  const typed = {};
  // Only what the user typed (a value other than the one rendered) survives a refresh.
  for (const input of container.querySelectorAll("input[data-key]")) {
    if (input.value !== input.defaultValue) typed[input.dataset.key] = input.value;
  }
  const content = VIEWS[route.view].render(poll.data, route);
  container.replaceChildren(content);
  for (const input of container.querySelectorAll("input[data-key]")) {
    if (input.dataset.key in typed) input.value = typed[input.dataset.key];
  }
  if (focusKey) {
    const el = container.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (el) {
      el.focus({ preventScroll: true });
      if (selection && el.setSelectionRange) {
        try {
          el.setSelectionRange(selection[0], selection[1]);
        } catch {
          /* inputs without a text selection */
        }
      }
    }
  }
}

function errorPanel(e) {
  return h(
    "section",
    { class: "panel" },
    h("h1", {}, "Could not load this view"),
    h("p", { class: "error-text" }, `${e.code}: ${e.message}`),
    h("p", {}, "The console keeps trying, backing off up to 30 s."),
    h("button", { type: "button", onclick: () => refresh({ reset: true }) }, "Try again")
  );
}

/** Runs one user action: its button is disabled meanwhile, errors become a notice. */
async function act(key, fn) {
  if (ui.busy.has(key)) return;
  ui.busy.add(key);
  const btn = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (btn) btn.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (!e.auth) notice(`${e.code}: ${e.message}`, "bad", 12000);
  } finally {
    ui.busy.delete(key);
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.disabled = false;
  }
  if (authOk) refresh({ reset: true });
}

// ---------------------------------------------------------------------------------------
// Thumbnails, placeholders, palettes.

const placeholders = new Map(); // thumbhash + ratio -> data URL (bounded)
const loaded = new Set(); // rendition URLs this page has seen load

function placeholderURL(hash, ratio) {
  const k = `${hash}|${ratio ? ratio.toFixed(3) : ""}`;
  let url = placeholders.get(k);
  if (url === undefined) {
    try {
      url = thumbHashToDataURL(hash, ratio);
    } catch {
      url = null;
    }
    if (placeholders.size > 600) placeholders.delete(placeholders.keys().next().value);
    placeholders.set(k, url);
  }
  return url;
}

function smallest(renditions, format) {
  const pick = renditions.filter((r) => r.format === format);
  pick.sort((a, b) => a.width * a.height - b.width * b.height || a.bytes - b.bytes);
  return pick[0] || null;
}

function thumbRendition(image) {
  const rs = image.renditions || [];
  return smallest(rs, "webp") || smallest(rs, "jpeg") || smallest(rs, "avif");
}

/** A picture whose ThumbHash placeholder shows until the rendition itself has loaded. */
function pictureWithPlaceholder(rendition, palette, { cls = "thumb", alt = "", lazy = true } = {}) {
  const box = h("div", { class: cls });
  const hash = palette && palette.thumbhash;
  const ratio = rendition && rendition.height ? rendition.width / rendition.height : undefined;
  if (hash) {
    try {
      box.style.backgroundColor = thumbHashAverage(base64ToBytes(hash));
    } catch {
      /* a malformed hash: no placeholder */
    }
    const url = placeholderURL(hash, ratio);
    if (url) box.append(h("img", { class: "ph", src: url, alt: "", "aria-hidden": "true" }));
  }
  if (rendition) {
    const img = h("img", {
      class: "real",
      alt,
      width: rendition.width,
      height: rendition.height,
      decoding: "async",
      loading: lazy ? "lazy" : null,
    });
    const done = () => {
      img.classList.add("loaded");
      box.classList.add("loaded"); // the placeholder and its average colour step aside
      box.style.backgroundColor = "";
      loaded.add(rendition.url);
    };
    img.addEventListener("load", done);
    img.addEventListener("error", () => {
      img.remove();
      box.append(h("div", { class: "none" }, "thumbnail did not load"));
    });
    img.src = rendition.url;
    if (loaded.has(rendition.url) && img.complete) done();
    box.append(img);
  }
  return box;
}

function swatch(hex, label) {
  return h("span", {
    class: "swatch",
    title: label || hex,
    role: "img",
    "aria-label": label || hex,
    style: { backgroundColor: hex },
  });
}

function paletteRow(palette) {
  if (!palette) return null;
  const colors = palette.colors || [];
  return h(
    "div",
    { class: "row palette-row" },
    h(
      "span",
      { class: "swatches", "aria-label": "palette" },
      colors.map((c) => swatch(c.hex, `${c.hex}, ${Math.round(c.share * 100)}%`))
    ),
    palette.seed ? h("span", { class: "seed" }, swatch(palette.seed, `seed ${palette.seed}`), palette.seed) : null
  );
}

// ---------------------------------------------------------------------------------------
// Views.

const overview = {
  title: () => "Overview",
  load: () => api("GET", "/status"),
  busy: (s) =>
    (s.queues || []).some((q) => q.depth > 0 || q.in_flight > 0) ||
    (s.images && (s.images.queued > 0 || s.images.processing > 0)),
  render(s) {
    const images = s.images || {};
    const total = STATES.reduce((n, k) => n + (images[k] || 0), 0);
    const queues = s.queues || [];
    const tp = s.throughput;
    const fails = s.recent_failures || [];
    return h(
      "div",
      { class: "overview" },
      h("h1", {}, "Overview"),
      h(
        "section",
        { class: "panel", "aria-labelledby": "h-queues" },
        h("h2", { id: "h-queues" }, "Queues"),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "stack queues" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "Queue"),
                h("th", { scope: "col" }, "State"),
                h("th", { scope: "col", class: "num" }, "Depth"),
                h("th", { scope: "col", class: "num" }, "In flight"),
                h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action"))
              )
            ),
            h(
              "tbody",
              {},
              queues.map((q) => {
                const paused = q.state === "PAUSED";
                const key = `queue-${q.name}`;
                return h(
                  "tr",
                  { dataset: { queue: q.name } },
                  h("td", { "data-label": "Queue" }, h("b", {}, q.name)),
                  h("td", { "data-label": "State" }, badge(q.state || "unknown", q.state)),
                  h("td", { "data-label": "Depth", class: "num", dataset: { field: "depth" } }, fmtNum(q.depth)),
                  h(
                    "td",
                    { "data-label": "In flight", class: "num", dataset: { field: "in_flight" } },
                    fmtNum(q.in_flight)
                  ),
                  h(
                    "td",
                    { "data-label": "" },
                    h(
                      "button",
                      {
                        type: "button",
                        key,
                        class: paused ? "primary" : "",
                        "aria-label": `${paused ? "Resume" : "Pause"} queue ${q.name}`,
                        onclick: () =>
                          act(key, async () => {
                            const r = await api("POST", `/queues/${encodeURIComponent(q.name)}/${paused ? "resume" : "pause"}`, {});
                            notice(`Queue ${r.name || q.name} is now ${r.state || (paused ? "RUNNING" : "PAUSED")}.`, "ok");
                          }),
                      },
                      paused ? "Resume" : "Pause"
                    )
                  )
                );
              })
            )
          )
        ),
        queues.length ? null : h("p", { class: "empty" }, "No queues reported.")
      ),
      h(
        "section",
        { "aria-labelledby": "h-images" },
        h("h2", { id: "h-images" }, "Images"),
        h(
          "div",
          { class: "cards counts" },
          STATES.map((st) =>
            h(
              "a",
              { class: "card", href: `#/images?state=${st}`, dataset: { state: st } },
              h("div", { class: "label" }, badge(st)),
              h("div", { class: "value", dataset: { count: st } }, fmtNum(images[st] || 0))
            )
          ),
          h(
            "a",
            { class: "card", href: "#/images" },
            h("div", { class: "label" }, "all images"),
            h("div", { class: "value", dataset: { count: "total" } }, fmtNum(total))
          )
        )
      ),
      h(
        "section",
        { "aria-labelledby": "h-tp" },
        h("h2", { id: "h-tp" }, "Throughput"),
        tp
          ? h(
              "div",
              { class: "cards" },
              h(
                "div",
                { class: "card" },
                h("div", { class: "label" }, "done, last 5 min"),
                h("div", { class: "value", dataset: { throughput: "done_last_5_min" } }, fmtNum(tp.done_last_5_min))
              ),
              h(
                "div",
                { class: "card" },
                h("div", { class: "label" }, "per minute"),
                h(
                  "div",
                  { class: "value", dataset: { throughput: "per_minute" } },
                  tp.per_minute === null || tp.per_minute === undefined ? "—" : Number(tp.per_minute).toFixed(1)
                )
              )
            )
          : h("p", { class: "empty panel" }, "This server does not report throughput.")
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "h-recent" },
        h(
          "div",
          { class: "section-head" },
          h("h2", { id: "h-recent" }, "Recent failures"),
          h("span", { class: "spacer" }),
          h("a", { href: "#/failures" }, "All failures →")
        ),
        fails.length ? failuresTable(fails, { compact: true }) : h("p", { class: "empty" }, "No failures. ✓")
      )
    );
  },
};

function failuresTable(letters, { compact = false } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "stack failures" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Image"),
          h("th", { scope: "col" }, "Error"),
          h("th", { scope: "col", class: "num" }, "Attempts"),
          compact ? null : h("th", { scope: "col" }, "First attempt"),
          h("th", { scope: "col" }, "Last attempt"),
          compact ? null : h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action"))
        )
      ),
      h(
        "tbody",
        {},
        letters.map((d) => {
          const key = `retry-${d.image_id}`;
          const err = d.error || {};
          return h(
            "tr",
            { dataset: { imageId: d.image_id } },
            h(
              "td",
              { "data-label": "Image" },
              h("a", { class: "mono", href: `#/image/${encodeURIComponent(d.image_id)}`, title: d.image_id }, shortId(d.image_id)),
              d.source_object ? h("div", { class: "mono empty" }, d.source_object) : null,
              compact ? null : h("div", { class: "mono empty", title: "task" }, d.task_name)
            ),
            h(
              "td",
              { "data-label": "Error" },
              badge(err.code || "error", "failed"),
              " ",
              h("span", { class: "message" }, err.message || "")
            ),
            h("td", { "data-label": "Attempts", class: "num", dataset: { field: "attempts" } }, fmtNum(d.attempts)),
            compact ? null : h("td", { "data-label": "First attempt" }, timeEl(d.first_attempt_at)),
            h("td", { "data-label": "Last attempt" }, timeEl(d.last_attempt_at)),
            compact
              ? null
              : h(
                  "td",
                  { "data-label": "" },
                  h(
                    "button",
                    {
                      type: "button",
                      key,
                      class: "retry",
                      "aria-label": `Retry image ${d.image_id}`,
                      onclick: () =>
                        act(key, async () => {
                          const r = await api("POST", "/failed/retry", { image_ids: [d.image_id] });
                          retried(r, `image ${shortId(d.image_id)}`);
                        }),
                    },
                    "Retry"
                  )
                )
          );
        })
      )
    )
  );
}

function retried(r, what) {
  notice(
    [
      `Re-enqueued ${what}: ${fmtNum(r.total_tasks)} task(s), job `,
      h("a", { href: "#/jobs", class: "mono", dataset: { jobId: r.job_id } }, shortId(r.job_id)),
      ".",
    ],
    "ok"
  );
}

const failures = {
  title: () => "Failures",
  load: () => api("GET", "/failed"),
  render(data) {
    const letters = data.failed || [];
    const shown = letters.slice(0, ui.failuresShown);
    return h(
      "div",
      { class: "failures-view" },
      h(
        "div",
        { class: "section-head" },
        h("h1", {}, "Failures"),
        h("span", { class: "badge failed", dataset: { count: "failed" } }, `${letters.length} dead letter${letters.length === 1 ? "" : "s"}`),
        h("span", { class: "spacer" }),
        h(
          "button",
          {
            type: "button",
            key: "retry-all",
            class: "primary",
            disabled: letters.length === 0,
            onclick: () =>
              act("retry-all", async () => {
                const r = await api("POST", "/failed/retry", {});
                retried(r, "every failure");
              }),
          },
          "Retry all"
        )
      ),
      h(
        "p",
        { class: "empty" },
        "Images whose last attempt failed, or that met a permanent error (a corrupt or unsupported file). Retry puts them on the queue again."
      ),
      letters.length
        ? h("section", { class: "panel" }, failuresTable(shown))
        : h("p", { class: "panel empty" }, "No dead letters. ✓"),
      letters.length > shown.length
        ? h(
            "div",
            { class: "pager" },
            h("span", { class: "where" }, `${shown.length} of ${letters.length} shown`),
            h(
              "button",
              {
                type: "button",
                key: "more-failures",
                onclick: () => {
                  ui.failuresShown += FAILURES_SHOWN;
                  render();
                },
              },
              "Show more"
            )
          )
        : null
    );
  },
};

function pager(kind, nextCursor, build) {
  const stack = ui.pages[kind];
  const cursor = route.params.get("cursor") || "";
  const pageNo = stack.length + 1;
  return h(
    "nav",
    { class: "pager", "aria-label": `${kind} pages` },
    h(
      "button",
      {
        type: "button",
        key: `${kind}-first`,
        disabled: !cursor,
        onclick: () => {
          ui.pages[kind] = [];
          go(build(""));
        },
      },
      "⇤ Newest"
    ),
    h(
      "button",
      {
        type: "button",
        key: `${kind}-prev`,
        class: "prev",
        disabled: !cursor,
        onclick: () => {
          const prev = ui.pages[kind].pop() || "";
          go(build(prev));
        },
      },
      "← Newer"
    ),
    h("span", { class: "where" }, cursor && !stack.length ? "page …" : `page ${pageNo}`),
    h(
      "button",
      {
        type: "button",
        key: `${kind}-next`,
        class: "next",
        disabled: !nextCursor,
        onclick: () => {
          ui.pages[kind].push(cursor);
          go(build(nextCursor));
        },
      },
      "Older →"
    )
  );
}

function imagesHash(state, cursor, limit) {
  return `#/images${qs({ state, limit, cursor })}`;
}

function pageLimit(r, fallback) {
  const n = Number(r.params.get("limit"));
  return Number.isInteger(n) && n >= 1 && n <= 200 ? n : fallback;
}

const images = {
  title: (r) => (r.params.get("state") ? `Images: ${r.params.get("state")}` : "Images"),
  load: (r) =>
    api(
      "GET",
      `/images${qs({ state: r.params.get("state"), limit: pageLimit(r, IMAGES_PAGE), cursor: r.params.get("cursor") })}`
    ),
  busy: (d) => (d.images || []).some((i) => i.status === "queued" || i.status === "processing"),
  render(data, r) {
    const state = r.params.get("state") || "";
    const limit = r.params.get("limit") || "";
    const all = data.images || [];
    const prefix = ui.filter;
    const list = prefix ? all.filter((i) => i.image_id.startsWith(prefix)) : all;
    const search = h(
      "form",
      {
        role: "search",
        onsubmit: (ev) => {
          ev.preventDefault();
          const v = $("#image-search").value.trim().toLowerCase();
          if (/^[0-9a-f]{32}$/.test(v)) {
            ui.filter = "";
            go(`#/image/${v}`);
          } else if (/^[0-9a-f]{1,31}$/.test(v)) {
            ui.filter = v;
            render();
            notice(
              "Showing this page's images whose id starts with that; enter the full 32-character id to look it up in the whole store.",
              "info"
            );
          } else if (v === "") {
            ui.filter = "";
            render();
          } else {
            notice("An image id is 32 hexadecimal characters (0-9, a-f).", "bad");
          }
        },
      },
      h("label", { for: "image-search", class: "sr-only" }, "Image id"),
      h("input", {
        id: "image-search",
        key: "image-search",
        type: "search",
        placeholder: "image id (32 hex characters)",
        spellcheck: "false",
        autocomplete: "off",
      }),
      h("button", { type: "submit", key: "image-search-go" }, "Find")
    );
    return h(
      "div",
      { class: "images-view" },
      h("h1", {}, "Images"),
      h(
        "div",
        { class: "toolbar" },
        h(
          "nav",
          { class: "filters", "aria-label": "Filter by state" },
          [["", "all"], ...STATES.map((s) => [s, s])].map(([s, label]) =>
            h("a", { href: imagesHash(s, "", limit), "aria-current": s === state ? "true" : null, dataset: { filter: label } }, label)
          )
        ),
        search
      ),
      list.length
        ? h("ul", { class: "grid", "aria-label": "Images" }, list.map(imageTile))
        : h(
            "p",
            { class: "panel empty" },
            prefix ? "No image on this page starts with that id." : state ? `No ${state} images.` : "No images yet. Upload one with POST /upload."
          ),
      pager("images", data.next_cursor, (c) => imagesHash(state, c, limit))
    );
  },
};

function imageTile(image) {
  const r = thumbRendition(image);
  const src = image.source || {};
  return h(
    "li",
    { class: "tile", dataset: { imageId: image.image_id, status: image.status } },
    h(
      "a",
      { href: `#/image/${encodeURIComponent(image.image_id)}`, key: `tile-${image.image_id}` },
      r
        ? pictureWithPlaceholder(r, image.palette, { alt: `image ${image.image_id}` })
        : h(
            "div",
            { class: "thumb" },
            h(
              "div",
              { class: "none" },
              image.status === "failed" && image.error ? `failed: ${image.error.code}` : `${image.status}…`
            )
          ),
      h(
        "div",
        { class: "meta" },
        h("span", { class: "id mono", title: image.image_id }, shortId(image.image_id)),
        h(
          "span",
          { class: "row" },
          badge(image.status),
          src.width ? h("span", { class: "empty" }, `${src.width}×${src.height}`) : null,
          image.focus ? h("span", { class: "empty", title: "has a focal point" }, "◎") : null
        )
      )
    ),
    image.palette ? h("div", { class: "meta" }, paletteRow(image.palette)) : null
  );
}

// The one-image view.

function displayRendition(renditions) {
  const plain = renditions.filter((r) => !r.name.endsWith("-cover"));
  const pool = plain.length ? plain : renditions;
  for (const fmt of ["webp", "jpeg", "avif"]) {
    const fitting = pool.filter((r) => r.format === fmt && r.width <= 1280);
    if (fitting.length) return fitting.reduce((a, b) => (b.width > a.width ? b : a));
  }
  return smallest(pool, "webp") || smallest(pool, "jpeg") || pool[0] || null;
}

function sameFocus(a, b) {
  return a && b && Math.abs(a[0] - b[0]) < 1e-3 && Math.abs(a[1] - b[1]) < 1e-3;
}

async function setFocus(id, focus) {
  const r = await api("PATCH", `/images/${encodeURIComponent(id)}`, { focus });
  if (focus) ui.pendingFocus[id] = focus;
  else delete ui.pendingFocus[id];
  notice(
    focus
      ? `Focal point set to (${focus[0].toFixed(2)}, ${focus[1].toFixed(2)}): the cover renditions are being rendered again (${r.status || "queued"}).`
      : "Focal point cleared: the cover renditions are being rendered again.",
    "ok"
  );
}

const imageView = {
  title: (r) => `Image ${shortId(r.arg)}`,
  async load(r) {
    try {
      return await api("GET", `/images/${encodeURIComponent(r.arg || "")}`);
    } catch (e) {
      if (e.status === 404 || e.status === 400) return { missing: true, image_id: r.arg, message: e.message };
      throw e;
    }
  },
  busy: (d) => d.status === "queued" || d.status === "processing",
  render(img) {
    if (img.missing) {
      return h(
        "section",
        { class: "panel" },
        h("h1", {}, "No such image"),
        h("p", {}, h("span", { class: "mono" }, img.image_id || ""), `: ${img.message}`),
        h("p", {}, h("a", { href: "#/images" }, "← Images"))
      );
    }
    const id = img.image_id;
    const pending = ui.pendingFocus[id];
    if (pending && img.status === "done" && sameFocus(img.focus, pending)) {
      delete ui.pendingFocus[id];
      notice("The cover renditions were rendered again around the new focal point.", "ok");
    }
    const renditions = img.renditions || [];
    const shown = displayRendition(renditions);
    const src = img.source || {};
    return h(
      "div",
      { class: "image-view", dataset: { imageId: id, status: img.status } },
      h("p", {}, h("a", { href: "#/images" }, "← Images")),
      h(
        "div",
        { class: "section-head" },
        h("h1", {}, "Image ", h("span", { class: "mono" }, id)),
        badge(img.status),
        img.stale ? badge("stale", "queued") : null,
        h("span", { class: "spacer" }),
        actionsFor(img)
      ),
      ui.confirmDelete === id ? deleteConfirm(id) : null,
      img.error ? h("div", { class: "error-box", role: "note" }, h("b", {}, img.error.code), `: ${img.error.message}`) : null,
      h(
        "div",
        { class: "image-layout" },
        h("section", { class: "panel", "aria-labelledby": "h-picture" }, h("h2", { id: "h-picture" }, "Picture and focal point"), focusPicker(img, shown)),
        h(
          "div",
          {},
          h("section", { class: "panel", "aria-labelledby": "h-facts" }, h("h2", { id: "h-facts" }, "Details"), facts(img, src)),
          h("section", { class: "panel", "aria-labelledby": "h-palette" }, h("h2", { id: "h-palette" }, "Palette"), palettePanel(img.palette, shown)),
          h("section", { class: "panel", "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Timeline"), timeline(img))
        )
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "h-renditions" },
        h("h2", { id: "h-renditions" }, `Renditions (${renditions.length})`),
        renditions.length
          ? h("ul", { class: "renditions" }, renditions.map((r) => renditionCard(r)))
          : h("p", { class: "empty" }, img.status === "done" ? "None." : "None yet.")
      )
    );
  },
};

function actionsFor(img) {
  const id = img.image_id;
  return h(
    "div",
    { class: "actions" },
    h(
      "button",
      {
        type: "button",
        key: "reprocess",
        onclick: () =>
          act("reprocess", async () => {
            const r = await api("POST", "/enqueue", { image_ids: [id], reprocess: true });
            notice(["Reprocessing: job ", h("a", { href: "#/jobs", class: "mono", dataset: { jobId: r.job_id } }, shortId(r.job_id)), ` (${fmtNum(r.total_tasks)} task(s)).`], "ok");
          }),
      },
      "Reprocess"
    ),
    h(
      "button",
      {
        type: "button",
        key: "delete",
        class: "danger",
        "aria-expanded": ui.confirmDelete === id ? "true" : "false",
        onclick: () => {
          ui.confirmDelete = id;
          render();
          const yes = document.querySelector('[data-key="delete-yes"]');
          if (yes) yes.focus();
        },
      },
      "Delete…"
    )
  );
}

function deleteConfirm(id) {
  return h(
    "div",
    { class: "confirm", role: "alertdialog", "aria-labelledby": "confirm-text" },
    h("span", { id: "confirm-text" }, "Delete this image, its original and every rendition? This cannot be undone."),
    h(
      "button",
      {
        type: "button",
        key: "delete-yes",
        class: "danger",
        onclick: () =>
          act("delete-yes", async () => {
            await api("DELETE", `/images/${encodeURIComponent(id)}`);
            ui.confirmDelete = null;
            notice(["Deleted image ", h("span", { class: "mono" }, id), "."], "ok");
            noticeCarries = true;
            location.hash = "#/images";
          }),
      },
      "Delete permanently"
    ),
    h(
      "button",
      {
        type: "button",
        key: "delete-no",
        onclick: () => {
          ui.confirmDelete = null;
          render();
          const del = document.querySelector('[data-key="delete"]');
          if (del) del.focus();
        },
      },
      "Cancel"
    )
  );
}

function focusPicker(img, shown) {
  const id = img.image_id;
  if (!shown) return h("p", { class: "empty" }, "No rendition to show yet.");
  const current = img.focus;
  const pending = ui.pendingFocus[id];
  const picture = h("img", {
    class: "picture",
    src: shown.url,
    alt: `image ${id} (${shown.name}, ${shown.format}); click to set the focal point`,
    width: shown.width,
    height: shown.height,
    draggable: "false",
    dataset: { rendition: shown.file },
  });
  const box = h("div", { class: "picker" }, picture);
  // As wide as the panel, but never taller than 70% of the window.
  box.style.maxWidth = `min(100%, calc(70vh * ${(shown.width / shown.height).toFixed(4)}))`;
  const mark = (f, cls) => {
    const m = h("span", { class: `marker ${cls}`, "aria-hidden": "true" });
    m.style.left = `${f[0] * 100}%`;
    m.style.top = `${f[1] * 100}%`;
    box.append(m);
  };
  if (pending && !sameFocus(pending, current)) mark(pending, "pending");
  if (current) mark(current, "current");
  picture.addEventListener("click", (ev) => {
    const rect = picture.getBoundingClientRect();
    if (!rect.width || !rect.height) return;
    const clamp = (v) => Math.min(1, Math.max(0, v));
    const fx = Math.round(clamp((ev.clientX - rect.left) / rect.width) * 1e4) / 1e4;
    const fy = Math.round(clamp((ev.clientY - rect.top) / rect.height) * 1e4) / 1e4;
    act("focus-set", () => setFocus(id, [fx, fy]));
  });
  const xIn = h("input", { id: "focus-x", key: "focus-x", type: "number", min: "0", max: "1", step: "0.01", required: true, value: current ? current[0] : "0.5" });
  const yIn = h("input", { id: "focus-y", key: "focus-y", type: "number", min: "0", max: "1", step: "0.01", required: true, value: current ? current[1] : "0.5" });
  const form = h(
    "form",
    {
      class: "focus-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        const fx = Number(xIn.value);
        const fy = Number(yIn.value);
        if (!(fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1)) {
          notice("The focal point is two fractions from 0 to 1 (left to right, top to bottom).", "bad");
          return;
        }
        act("focus-set", () => setFocus(id, [fx, fy]));
      },
    },
    h("label", {}, "x (0 left – 1 right)", xIn),
    h("label", {}, "y (0 top – 1 bottom)", yIn),
    h("button", { type: "submit", key: "focus-set", class: "primary" }, "Set focal point"),
    h(
      "button",
      { type: "button", key: "focus-clear", disabled: !current, onclick: () => act("focus-clear", () => setFocus(id, null)) },
      "Clear"
    )
  );
  return h(
    "div",
    {},
    box,
    h(
      "p",
      { class: "picker-help", id: "focus-now" },
      current
        ? `Focal point: (${current[0].toFixed(2)}, ${current[1].toFixed(2)}). `
        : "No focal point: cover crops follow the image's interest. ",
      pending && !sameFocus(pending, current) ? "Rendering the covers around the new point… " : "",
      "Click the picture to set the point the cover crops keep, or type it:"
    ),
    form
  );
}

function facts(img, src) {
  const rows = [
    ["Status", badge(img.status)],
    ["Attempts", fmtNum(img.attempts)],
    img.next_attempt_at ? ["Next attempt", h("span", {}, fmtTime(img.next_attempt_at), " (", timeEl(img.next_attempt_at), ")")] : null,
    ["Error", img.error ? h("span", {}, h("b", {}, img.error.code), `: ${img.error.message}`) : "none"],
    ["Created", h("span", {}, fmtTime(img.created_at), " (", timeEl(img.created_at), ")")],
    ["Updated", h("span", {}, fmtTime(img.updated_at), " (", timeEl(img.updated_at), ")")],
    [
      "Source",
      [src.format, src.width ? `${src.width}×${src.height}` : null, src.bytes !== undefined ? fmtBytes(src.bytes) : null, src.orientation && src.orientation !== 1 ? `EXIF orientation ${src.orientation}` : null]
        .filter(Boolean)
        .join(" · ") || "—",
    ],
    src.upload ? ["Uploaded as", h("span", { class: "mono" }, src.upload)] : null,
    src.object ? ["Object", h("span", { class: "mono" }, src.object)] : null,
    src.path ? ["Path", h("span", { class: "mono" }, src.path)] : null,
    ["Focal point", img.focus ? `${img.focus[0].toFixed(3)}, ${img.focus[1].toFixed(3)}` : "not set"],
    ["Config", h("span", {}, h("span", { class: "mono" }, img.fingerprint || "—"), img.stale ? " (stale: reprocess to render with today's settings)" : "")],
  ].filter(Boolean);
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k.toLowerCase() } }, v)]));
}

function palettePanel(palette, shown) {
  if (!palette) return h("p", { class: "empty" }, "No palette yet.");
  const colors = palette.colors || [];
  const candidates = palette.seed_candidates || [];
  const seedIn = colors.some((c) => c.hex === palette.seed);
  return h(
    "div",
    { class: "palette" },
    h(
      "ul",
      { class: "palette-big", "aria-label": "dominant colours" },
      colors.map((c) =>
        h(
          "li",
          { class: c.hex === palette.seed ? "is-seed" : "", dataset: { hex: c.hex } },
          h("div", { class: "chip", style: { backgroundColor: c.hex } }),
          h("div", { class: "txt" }, h("span", { class: "mono" }, c.hex), h("span", {}, `${(c.share * 100).toFixed(1)}%`))
        )
      )
    ),
    h(
      "p",
      { class: "seed-line" },
      h("span", { class: "seed" }, swatch(palette.seed, `seed ${palette.seed}`)),
      " Seed colour (Material You): ",
      h("b", { class: "mono", dataset: { seed: palette.seed } }, palette.seed || "—"),
      seedIn ? "" : " (not among the dominant colours)"
    ),
    candidates.length
      ? h("p", { class: "row" }, "Seed candidates:", h("span", { class: "swatches" }, candidates.map((c) => swatch(c, c))), h("span", { class: "mono empty" }, candidates.join(" ")))
      : null,
    palette.thumbhash
      ? h(
          "div",
          { class: "row" },
          h("span", {}, "ThumbHash placeholder:"),
          h("img", {
            class: "thumbhash-preview",
            alt: "ThumbHash placeholder",
            src: placeholderURL(palette.thumbhash, shown && shown.height ? shown.width / shown.height : undefined),
            width: 64,
            height: shown && shown.width ? Math.round((64 * shown.height) / shown.width) : 64,
          }),
          h("code", {}, palette.thumbhash)
        )
      : null
  );
}

function timeline(img) {
  let events = Array.isArray(img.timeline) ? img.timeline : null;
  if (!events || !events.length) {
    events = [{ state: "created", at: img.created_at }];
    if (img.updated_at && img.updated_at !== img.created_at) events.push({ state: img.status, at: img.updated_at });
  }
  return h(
    "ol",
    { class: "timeline" },
    events.map((e) => h("li", { class: e.state }, h("b", {}, e.state), " ", fmtTime(e.at), " (", timeEl(e.at), ")"))
  );
}

function renditionCard(r) {
  const cover = r.name.endsWith("-cover");
  return h(
    "li",
    { class: `rendition${cover ? " cover" : ""}`, dataset: { name: r.name, format: r.format, file: r.file, bytes: r.bytes } },
    h(
      "div",
      { class: "rthumb checker" },
      h("img", { src: r.url, alt: `${r.name} ${r.format}`, loading: "lazy", decoding: "async", width: r.width, height: r.height })
    ),
    h(
      "div",
      { class: "rmeta" },
      h("span", {}, h("b", {}, r.name), " ", badge(r.format, "idle"), cover ? [" ", badge("cover", "processing")] : null),
      h("span", {}, `${r.width}×${r.height} · ${fmtBytes(r.bytes)}`),
      h("a", { href: r.url, target: "_blank", rel: "noopener", class: "mono" }, r.file)
    )
  );
}

// Jobs.

function jobsHash(cursor) {
  return `#/jobs${qs({ limit: route.params.get("limit"), cursor })}`;
}

const jobs = {
  title: () => "Jobs",
  load: (r) => api("GET", `/jobs${qs({ limit: pageLimit(r, JOBS_PAGE), cursor: r.params.get("cursor") })}`),
  busy: (d) => (d.jobs || []).some((j) => j.status === "running"),
  render(data) {
    const list = data.jobs || [];
    return h(
      "div",
      { class: "jobs-view" },
      h("h1", {}, "Jobs"),
      h(
        "p",
        { class: "empty" },
        h("span", { class: "key k-done" }),
        "done ",
        h("span", { class: "key k-failed" }),
        "failed ",
        h("span", { class: "key k-skipped" }),
        "skipped (already done)"
      ),
      list.length ? h("ul", { class: "jobs" }, list.map(jobItem)) : h("p", { class: "panel empty" }, "No jobs yet."),
      pager("jobs", data.next_cursor, jobsHash)
    );
  },
};

function jobItem(j) {
  const total = j.total_tasks || 0;
  const pct = (n) => (total ? `${Math.min(100, (100 * (n || 0)) / total)}%` : "0%");
  const progress = j.progress_percentage === null || j.progress_percentage === undefined ? 0 : j.progress_percentage;
  const bar = h(
    "div",
    {
      class: "bar",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(progress),
      "aria-label": `job ${j.name || j.id} progress`,
    },
    h("span", { class: "b-done", style: { width: pct(j.completed_tasks) } }),
    h("span", { class: "b-failed", style: { width: pct(j.failed_tasks) } }),
    h("span", { class: "b-skipped", style: { width: pct(j.skipped_tasks) } })
  );
  const eta =
    j.status === "running"
      ? j.eta_seconds === null || j.eta_seconds === undefined
        ? "ETA unknown yet"
        : `ETA ${fmtDuration(j.eta_seconds)}`
      : null;
  return h(
    "li",
    { class: "job panel", dataset: { jobId: j.id, status: j.status } },
    h(
      "div",
      { class: "section-head" },
      h("h2", {}, j.name ? j.name : h("span", { class: "mono" }, j.id)),
      badge(j.status),
      j.listing ? badge("listing…", "processing") : null,
      h("span", { class: "spacer" }),
      h("span", { class: "empty" }, "created ", timeEl(j.created_at))
    ),
    j.name ? h("div", { class: "mono empty" }, j.id) : null,
    bar,
    h(
      "div",
      { class: "counts" },
      h("span", {}, h("b", { dataset: { field: "completed" } }, fmtNum(j.completed_tasks)), " done"),
      h("span", {}, h("b", { dataset: { field: "failed" } }, fmtNum(j.failed_tasks)), " failed"),
      h("span", {}, h("b", { dataset: { field: "skipped" } }, fmtNum(j.skipped_tasks)), " skipped"),
      h("span", {}, "of ", h("b", { dataset: { field: "total" } }, j.total_tasks === null ? "?" : fmtNum(j.total_tasks)), j.listing ? " so far" : ""),
      h("span", {}, h("b", {}, `${Number(progress).toFixed(1)}%`)),
      eta ? h("span", { dataset: { field: "eta" } }, eta) : null
    )
  );
}

const VIEWS = { overview, images, image: imageView, failures, jobs };

// ---------------------------------------------------------------------------------------
// Start.

async function boot() {
  $("#key-form").addEventListener("submit", submitKey);
  // The skip link moves focus without touching the hash (the hash is the route).
  $(".skip").addEventListener("click", (ev) => {
    ev.preventDefault();
    $("#main").focus();
  });
  $("#refresh").addEventListener("click", () => {
    clearNotice();
    refresh({ reset: true });
  });
  $("#forget-key").addEventListener("click", () => {
    keyStore.clear();
    showKeyPanel("");
  });
  window.addEventListener("hashchange", onRoute);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(poll.timer);
      setLive("paused while the tab is hidden", "paused");
    } else if (authOk) {
      refresh({ reset: true });
    }
  });
  route = parseHash();
  if (keyStore.get()) {
    start();
    return;
  }
  // No key kept: a server started with --no-auth answers without one.
  try {
    await api("GET", "/status", undefined, { quiet: true });
    start();
  } catch (e) {
    if (!e.auth) {
      showKeyPanel(`imgpipe did not answer: ${e.message}`);
    }
  }
}

boot();
