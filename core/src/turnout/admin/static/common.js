// Shared helpers of the admin pages: DOM building, JSON requests, number formatting.
// Data from the server is only ever put into the page with textContent/attributes, never as
// HTML, so router labels, client ids or dtabs cannot inject markup.

/** An HTTP error with the response body (the admin endpoints answer errors as text). */
export class HttpError extends Error {
  constructor(status, statusText, body) {
    super(`${status} ${statusText}${body ? `: ${body}` : ""}`);
    this.status = status;
    this.statusText = statusText;
    this.body = body;
  }
}

/** fetch() a JSON endpoint; throws HttpError on a non-2xx answer. */
export async function fetchJSON(url, options = {}) {
  const response = await fetch(url, {
    cache: "no-store",
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  const text = await response.text();
  if (!response.ok) throw new HttpError(response.status, response.statusText, text.trim());
  return text ? JSON.parse(text) : null;
}

/**
 * Create an element: el("div", {class: "x", onclick: fn, dataset: {id: 1}}, child, "text").
 * Attributes named on* become event listeners; `null`/`false` attributes are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Like el(), in the SVG namespace. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Set a node's text only when it changed (no layout work for unchanged numbers). */
export function setText(node, text) {
  if (node._text !== text) {
    node._text = text;
    node.textContent = text;
  }
}

/** Set a node's class list only when it changed. */
export function setClass(node, className) {
  if (node._class !== className) {
    node._class = className;
    node.className = className;
  }
}

// ------------------------------------------------------------------------- formatting

const DASH = "—";

/** A number with 3 significant digits and k/M suffixes: 0.25, 12.3, 1.23k. */
export function fmtNum(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${(value / 1e9).toPrecision(3)}G`;
  if (abs >= 1e6) return `${(value / 1e6).toPrecision(3)}M`;
  if (abs >= 1e4) return `${(value / 1e3).toPrecision(3)}k`;
  if (abs >= 100 || Number.isInteger(value)) return String(Math.round(value));
  if (abs >= 10) return value.toFixed(1);
  if (abs === 0) return "0";
  return value.toFixed(2);
}

/** A rate per second. */
export function fmtRate(value) {
  return fmtNum(value);
}

/** An integer count with thousands separators. */
export function fmtCount(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  return Math.round(value).toLocaleString("en-US");
}

/** A success rate (0..1) as a percentage: 99.95% keeps two decimals, 100% none. */
export function fmtPct(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return DASH;
  const pct = ratio * 100;
  if (pct >= 100) return "100%";
  if (pct >= 99) return `${pct.toFixed(2)}%`;
  return `${pct.toFixed(1)}%`;
}

/** Milliseconds: 0.42 ms, 12.3 ms, 1.25 s. */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** Bytes in binary units: 48.2 MiB. */
export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** A duration in milliseconds as "3d 4h", "2h 05m", "4m 09s", "12s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/**
 * The health class of a success rate: "sr-ok", "sr-warn" (below 99%), "sr-bad" (below
 * 95%), or "" when there was no traffic to judge.
 */
export function srClass(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "";
  if (ratio < 0.95) return "sr-bad";
  if (ratio < 0.99) return "sr-warn";
  return "sr-ok";
}

/** The label of a router in /config.json (Linkerd defaults it to the protocol name). */
export function routerLabel(router) {
  return router.label || router.protocol;
}

/** A dtab in Dtab.show form ("/a=>/b;/c=>/d") as one dentry per line: "/a => /b;". */
export function dtabLines(text) {
  if (!text) return "";
  return text
    .split(";")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => line.replace(/\s*=>\s*/, " => ") + ";")
    .join("\n");
}

// ------------------------------------------------------------------------- navigation bar

// The "JSON" menu of the navigation bar is a <details>: close it on Escape and on a click
// elsewhere, as menus do. (Every page imports this module.)
document.addEventListener("click", (event) => {
  for (const menu of document.querySelectorAll("details.navmenu[open]")) {
    if (!menu.contains(event.target)) menu.open = false;
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  for (const menu of document.querySelectorAll("details.navmenu[open]")) {
    menu.open = false;
    menu.querySelector("summary")?.focus();
  }
});
