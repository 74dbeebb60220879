// Reading /admin/metrics.json?tree=1 and turning successive polls into rates.
//
// The tree nests one object per path element; a metric node holds its value under
// "counter", "gauge" or "stat.<p50|p99|...>". Rates are deltas between polls divided by the
// time between them (never assumed to be exactly one second).

/** The node at `path` ("a/b" or ["a", "b"]) under `node`, or undefined. */
export function child(node, path) {
  const parts = Array.isArray(path) ? path : path.split("/");
  let cur = node;
  for (const part of parts) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = cur[part];
  }
  return cur;
}

/** The counter at `path`, or null. */
export function counter(node, path) {
  const n = child(node, path);
  return n && typeof n.counter === "number" ? n.counter : null;
}

/** The gauge at `path`, or null. */
export function gauge(node, path) {
  const n = child(node, path);
  return n && typeof n.gauge === "number" ? n.gauge : null;
}

/** The statistic `which` ("p99", "max", "count"...) of the histogram at `path`, or null. */
export function stat(node, path, which) {
  const n = child(node, path);
  const v = n ? n[`stat.${which}`] : undefined;
  return typeof v === "number" ? v : null;
}

/** Whether a tree node is a metric (has a value) rather than a scope. */
function isMetric(node) {
  return "counter" in node || "gauge" in node || "stat.count" in node;
}

/**
 * The scopes under `node` that carry request metrics, by their '/'-joined path: the first
 * node on each branch having a `requests` counter (or a `loadbalancer` scope, for a client
 * that has not served yet). Their own sub-scopes (`endpoint/...`, `service/...`) are not
 * searched. Used for services and clients, whose names have any number of elements.
 */
export function findScopes(node, prefix = [], out = new Map()) {
  if (!node || typeof node !== "object") return out;
  const hasRequests = typeof node.requests?.counter === "number";
  const hasBalancer = node.loadbalancer && typeof node.loadbalancer === "object";
  if (prefix.length && (hasRequests || hasBalancer)) {
    out.set(prefix.join("/"), node);
    return out;
  }
  for (const [key, sub] of Object.entries(node)) {
    if (sub && typeof sub === "object" && !isMetric(sub)) findScopes(sub, [...prefix, key], out);
  }
  return out;
}

/**
 * The parts of one router's subtree (`rt/<label>`): servers by "ip:port", services by
 * logical name and clients by bound id (both with their leading "/").
 */
export function parseRouter(rt) {
  const servers = new Map();
  for (const [ip, ports] of Object.entries(rt?.server || {})) {
    for (const [port, node] of Object.entries(ports || {})) {
      const host = ip.includes(":") ? `[${ip}]` : ip;
      servers.set(`${host}:${port}`, node);
    }
  }
  const services = new Map();
  for (const [name, node] of findScopes(rt?.service || {})) services.set(`/${name}`, node);
  const clients = new Map();
  for (const [name, node] of findScopes(rt?.client || {})) clients.set(`/${name}`, node);
  return { servers, services, clients };
}

/** The counters and gauges kept per poll for any server, service or client scope. */
export function scopeSample(node) {
  return {
    requests: counter(node, "requests"),
    success: counter(node, "success"),
    failures: counter(node, "failures"),
    pending: gauge(node, "pending"),
    connections: gauge(node, "connections"),
    p50: stat(node, "request_latency_ms", "p50"),
    p95: stat(node, "request_latency_ms", "p95"),
    p99: stat(node, "request_latency_ms", "p99"),
    max: stat(node, "request_latency_ms", "max"),
    avg: stat(node, "request_latency_ms", "avg"),
  };
}

/** Counters below `node` other than its own value: {"status_5XX": 3, "no_route": 99}. */
export function subCounters(node) {
  const out = {};
  if (!node || typeof node !== "object") return out;
  const walk = (n, prefix) => {
    for (const [key, sub] of Object.entries(n)) {
      if (!sub || typeof sub !== "object") continue;
      const name = prefix ? `${prefix}/${key}` : key;
      if (typeof sub.counter === "number") out[name] = sub.counter;
      walk(sub, name);
    }
  };
  walk(node, "");
  return out;
}

/** Sums the non-null values of `key` over samples (null when all are null). */
export function sum(samples, key) {
  let total = null;
  for (const s of samples) if (s[key] !== null && s[key] !== undefined) total = (total ?? 0) + s[key];
  return total;
}

/** The largest non-null value of `key` over samples (null when all are null). */
export function max(samples, key) {
  let best = null;
  for (const s of samples) if (s[key] !== null && s[key] !== undefined) best = Math.max(best ?? -Infinity, s[key]);
  return best;
}

// ------------------------------------------------------------------------- history

/** The history kept: a bit more than a minute of polls. */
export const HISTORY_MS = 61_000;

/**
 * A minute of samples of one scope. Counters become rates (deltas over elapsed time);
 * gauges and latency percentiles are kept as they are. A counter going backwards (turnout
 * restarted, or the scope was pruned and recreated) starts the history afresh.
 */
export class Track {
  constructor() {
    this.samples = [];
  }

  get latest() {
    return this.samples.at(-1) ?? null;
  }

  push(t, values) {
    const last = this.latest;
    if (last && values.requests !== null && last.requests !== null && values.requests < last.requests) {
      this.samples = [];
    }
    this.samples.push({ t, ...values });
    while (this.samples.length > 2 && t - this.samples[0].t > HISTORY_MS) this.samples.shift();
  }

  /** The sample about `windowMs` before the latest (the previous one at least). */
  base(windowMs) {
    const n = this.samples.length;
    if (n < 2) return null;
    const latest = this.samples[n - 1];
    for (let i = 0; i < n - 1; i++) {
      if (latest.t - this.samples[i].t <= windowMs + 250) return this.samples[i];
    }
    return this.samples[n - 2];
  }

  /** Δkey per second over about the last `windowMs`; null without two samples. */
  rate(key, windowMs) {
    const base = this.base(windowMs);
    const latest = this.latest;
    if (!base || base[key] === null || latest[key] === null) return null;
    const dt = (latest.t - base.t) / 1000;
    return dt > 0 ? Math.max(0, latest[key] - base[key]) / dt : null;
  }

  /** Δkey over about the last `windowMs`. */
  delta(key, windowMs) {
    const base = this.base(windowMs);
    const latest = this.latest;
    if (!base || base[key] === null || latest[key] === null) return null;
    return Math.max(0, latest[key] - base[key]);
  }

  /** success / (success + failures) over about the last `windowMs`; null without traffic. */
  successRate(windowMs) {
    const ok = this.delta("success", windowMs);
    const bad = this.delta("failures", windowMs);
    if (ok === null || bad === null || ok + bad === 0) return null;
    return ok / (ok + bad);
  }

  /** [[t, Δkey per second]] between successive polls; null where polls were missed. */
  rateSeries(key, gapMs = 3500) {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      const dt = b.t - a.t;
      const ok = dt > 0 && dt < gapMs && a[key] !== null && b[key] !== null;
      out.push([b.t, ok ? (Math.max(0, b[key] - a[key]) * 1000) / dt : null]);
    }
    return out;
  }

  /** [[t, value of key]] for each poll. */
  gaugeSeries(key) {
    return this.samples.map((s) => [s.t, s[key] ?? null]);
  }

  /** [[t, success rate between successive polls]] (null without traffic). */
  successSeries(gapMs = 3500) {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      let v = null;
      if (b.t - a.t < gapMs && a.success !== null && b.success !== null && b.failures !== null) {
        const ok = b.success - a.success;
        const bad = b.failures - a.failures;
        if (ok >= 0 && bad >= 0 && ok + bad > 0) v = ok / (ok + bad);
      }
      out.push([b.t, v]);
    }
    return out;
  }
}
