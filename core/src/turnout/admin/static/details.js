// The expanded part of a server, service or client row: more numbers, status codes or
// failure causes, the endpoints of a client, and the request and latency charts.

import { el, fmtCount, fmtMs, fmtNum, fmtPct, fmtRate, setClass, setText } from "./common.js";
import { counter, gauge, stat, subCounters } from "./metrics.js";
import { KeyValues, trafficCharts, updateTrafficCharts } from "./tables.js";

/** A row of "name · count" pills updated in place (status codes, failure causes). */
class Pills {
  constructor(title, emptyText) {
    this.items = new Map();
    this.list = el("div", { class: "codes" });
    this.emptyNote = el("span", { class: "dim" }, emptyText);
    this.root = el("div", {}, el("div", { class: "subhead" }, title), this.list, this.emptyNote);
  }

  /** counts: {name: count}; cls(name) → "ok" | "warn" | "bad" | "". */
  set(counts, cls) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    for (const [name, pill] of this.items) {
      if (!(name in counts)) {
        pill.remove();
        this.items.delete(name);
      }
    }
    for (const name of Object.keys(counts).sort()) {
      let pill = this.items.get(name);
      if (!pill) {
        pill = el("span", { class: "pill" });
        this.items.set(name, pill);
        this.list.append(pill);
      }
      const share = total ? ` (${fmtPct(counts[name] / total)})` : "";
      setText(pill, `${name} · ${fmtCount(counts[name])}${share}`);
      setClass(pill, `pill ${cls(name)}`);
    }
    this.emptyNote.hidden = this.items.size > 0;
  }
}

/** Base of the three details: key/values, extra parts, then the two charts. */
class Detail {
  constructor(labels, ...extra) {
    this.kv = new KeyValues(labels);
    this.charts = trafficCharts();
    this.root = el(
      "div",
      {},
      this.kv.root,
      ...extra,
      el("div", { class: "charts" }, this.charts.requests.root, this.charts.latency.root),
    );
  }

  setVisible(visible) {
    this.charts.requests.setVisible(visible);
    this.charts.latency.setVisible(visible);
  }

  update(entity, now) {
    updateTrafficCharts(this.charts, entity.track, now);
    this.fill(entity);
  }

  destroy() {
    this.charts.requests.destroy();
    this.charts.latency.destroy();
  }
}

const failureClass = () => "bad";

function statusClass(code) {
  if (/^5/.test(code) || code === "error") return "bad";
  if (/^4/.test(code)) return "warn";
  if (/^2/.test(code)) return "ok";
  return "";
}

/** Counters under `node.failures` (by cause) and `node.status` (specific codes only). */
function failureCauses(node) {
  return subCounters(node?.failures);
}

function statusCodes(node) {
  const out = {};
  for (const [code, count] of Object.entries(subCounters(node?.status))) {
    if (!/XX$/.test(code)) out[code] = count;
  }
  return out;
}

export class ServerDetail extends Detail {
  constructor() {
    const codes = new Pills("Status codes (since start)", "no responses yet");
    const causes = new Pills("Failures by cause (since start)", "no failures");
    super(
      [
        ["total", "requests"],
        ["frps", "failures / s"],
        ["pending", "in flight"],
        ["connections", "connections"],
        ["connects", "connects"],
        ["rejected", "rejected", "requests refused by maxConcurrentRequests"],
        ["avg", "mean latency"],
      ],
      codes.root,
      causes.root,
    );
    this.codes = codes;
    this.causes = causes;
  }

  fill({ node, summary: s }) {
    this.kv.set("total", fmtCount(s.total));
    this.kv.set("frps", fmtRate(s.frps));
    this.kv.set("pending", fmtNum(s.pending));
    this.kv.set("connections", fmtNum(s.connections));
    this.kv.set("connects", fmtCount(counter(node, "connects")));
    this.kv.set("rejected", fmtCount(counter(node, "rejected")));
    this.kv.set("avg", fmtMs(s.avg));
    this.codes.set(statusCodes(node), statusClass);
    this.causes.set(failureCauses(node), failureClass);
  }
}

export class ServiceDetail extends Detail {
  constructor(id, router) {
    const causes = new Pills("Failures by cause (since start)", "no failures");
    const link = el(
      "a",
      { href: `/delegator?router=${encodeURIComponent(router)}&path=${encodeURIComponent(id)}` },
      `Explain ${id} in the dtab playground →`,
    );
    super(
      [
        ["total", "requests"],
        ["frps", "failures / s"],
        ["retries", "retries / s"],
        ["retryPct", "retried", "retries as a share of requests, last 5 s"],
        ["exhausted", "budget exhausted", "retries refused by the retry budget (since start)"],
        ["balance", "budget balance", "retries the budget allows right now"],
        ["avg", "mean latency"],
      ],
      causes.root,
      el("div", { class: "subhead" }, link),
    );
    this.causes = causes;
  }

  fill({ node, summary: s }) {
    this.kv.set("total", fmtCount(s.total));
    this.kv.set("frps", fmtRate(s.frps));
    this.kv.set("retries", fmtRate(s.retries));
    this.kv.set("retryPct", s.rps ? fmtPct((s.retries ?? 0) / s.rps) : "—");
    this.kv.set("exhausted", fmtCount(counter(node, "retries/budget_exhausted")));
    this.kv.set("balance", fmtNum(gauge(node, "retries/budget")));
    this.kv.set("avg", fmtMs(s.avg));
    this.causes.set(failureCauses(node), failureClass);
  }
}

/** The endpoints of a client: metrics (`endpoint/<addr>/...`) joined with /client_state.json. */
class Endpoints {
  constructor() {
    this.rows = new Map();
    this.order = "";
    this.tbody = el("tbody");
    this.note = el("div", { class: "dim" });
    const th = (text, num, title) => el("th", { class: num ? "num" : null, title: title || null }, text);
    this.root = el(
      "div",
      {},
      el("div", { class: "subhead" }, "Endpoints"),
      el(
        "table",
        { class: "plain endpoints" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            th("address"),
            th("state"),
            th("in flight", true, "requests outstanding on this endpoint"),
            th("balancer load", true),
            th("weight", true),
            th("ejections", true, "times failure accrual removed it"),
            th("ejected for", true),
          ),
        ),
        this.tbody,
      ),
      this.note,
    );
  }

  set(node, state) {
    const byAddr = new Map();
    for (const [addr, m] of Object.entries(node?.endpoint || {})) {
      byAddr.set(addr, {
        address: addr,
        state: gauge(m, "available") === 0 ? "unavailable" : "available",
        load: gauge(m, "load"),
        ejections: gauge(m, "ejections"),
      });
    }
    for (const e of state?.endpoints || []) {
      byAddr.set(e.address, { ...byAddr.get(e.address), ...e });
    }
    for (const addr of state?.addresses || []) {
      if (!byAddr.has(addr)) byAddr.set(addr, { address: addr, state: "resolved" });
    }
    for (const [addr, tr] of this.rows) {
      if (!byAddr.has(addr)) {
        tr.remove();
        this.rows.delete(addr);
      }
    }
    const order = [...byAddr.keys()].sort();
    for (const addr of order) {
      const e = byAddr.get(addr);
      let tr = this.rows.get(addr);
      if (!tr) {
        const cells = Array.from({ length: 6 }, (_, i) => el("td", { class: i ? "num" : null }));
        tr = el("tr", {}, el("td", { class: "mono" }, addr), ...cells);
        this.rows.set(addr, tr);
      }
      const cells = tr.children;
      const st = String(e.state ?? "—");
      const cls = /open|available|busy/.test(st) ? "ok" : /closed|unavailable|eject/i.test(st) ? "bad" : "";
      if (!cells[1].firstChild) cells[1].append(el("span", { class: "pill" }));
      setText(cells[1].firstChild, st);
      setClass(cells[1].firstChild, `pill ${cls}`);
      setText(cells[2], fmtNum(e.load));
      setText(cells[3], e.balancerLoad === undefined ? "—" : fmtNum(e.balancerLoad));
      setText(cells[4], e.weight === undefined ? "—" : fmtNum(e.weight));
      setText(cells[5], fmtNum(e.ejections));
      setText(cells[6], e.ejectedForMs ? fmtMs(e.ejectedForMs) : "—");
    }
    if (order.join(" ") !== this.order) {
      this.order = order.join(" ");
      this.tbody.append(...order.map((addr) => this.rows.get(addr))); // address order
    }
    setText(this.note, byAddr.size ? "" : state ? `no endpoints (${state.state})` : "no endpoints");
  }
}

export class ClientDetail extends Detail {
  constructor() {
    const endpoints = new Endpoints();
    const causes = new Pills("Failures by cause (since start)", "no failures");
    super(
      [
        ["state", "binding"],
        ["balancer", "balancer"],
        ["lb", "endpoints available", "load balancer: available / size"],
        ["load", "balancer load"],
        ["pending", "in flight"],
        ["connections", "connections"],
        ["pool", "connection pool", "connections: open / idle / requests waiting"],
        ["requeues", "requeues / s", "requests re-sent after a connection failure, last 5 s"],
        ["exhausted", "budget exhausted", "requeues refused by the retry budget (since start)"],
        ["removals", "ejections", "failure accrual removals / revivals (since start)"],
        ["total", "requests"],
        ["avg", "mean latency"],
      ],
      endpoints.root,
      causes.root,
    );
    this.endpoints = endpoints;
    this.causes = causes;
  }

  fill({ node, summary: s, state }) {
    this.kv.set("state", state ? String(state.state) : "—");
    this.kv.set("balancer", state?.balancer ? String(state.balancer) : "—");
    this.kv.set("lb", `${fmtNum(s.lbAvail)} / ${fmtNum(s.lbSize)}`);
    this.kv.set("load", fmtNum(gauge(node, "loadbalancer/load")));
    this.kv.set("pending", fmtNum(s.pending));
    this.kv.set("connections", fmtNum(s.connections));
    this.kv.set(
      "pool",
      `${fmtNum(gauge(node, "pool_size"))} / ${fmtNum(gauge(node, "pool_cached"))} / ${fmtNum(gauge(node, "pool_waiters"))}`,
    );
    this.kv.set("requeues", fmtRate(s.requeues));
    this.kv.set("exhausted", fmtCount(counter(node, "retries/budget_exhausted")));
    this.kv.set(
      "removals",
      `${fmtCount(counter(node, "failure_accrual/removals"))} / ${fmtCount(counter(node, "failure_accrual/revivals"))}`,
    );
    this.kv.set("total", fmtCount(s.total));
    this.kv.set("avg", fmtMs(stat(node, "request_latency_ms", "avg")));
    this.endpoints.set(node, state);
    this.causes.set(failureCauses(node), failureClass);
  }
}
