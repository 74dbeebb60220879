// The dashboard: polls /admin/metrics.json?tree=1 every second and shows, per router, the
// request rate, success rate, retries and latency, the servers, services and clients, and
// the process. Rates and success rates are over the last 5 s; latency percentiles are the
// server's 1-minute histogram window; charts show the last minute.

import { LineChart, Sparkline } from "./charts.js";
import {
  el,
  fetchJSON,
  fmtBytes,
  fmtCount,
  fmtDuration,
  fmtMs,
  fmtNum,
  fmtPct,
  fmtRate,
  routerLabel,
  setClass,
  setText,
  srClass,
} from "./common.js";
import { ClientDetail, ServerDetail, ServiceDetail } from "./details.js";
import { counter, gauge, max, parseRouter, scopeSample, sum, Track } from "./metrics.js";
import { COLUMNS, EntityTable, trafficCharts, updateTrafficCharts } from "./tables.js";

const POLL_MS = 1000;
/** Rates and success rates shown as numbers are over this window (charts: per poll). */
const WINDOW_MS = 5000;
/** Linkerd's default retry budget (`percentCanRetry`) when the router sets none. */
const DEFAULT_PERCENT_CAN_RETRY = 0.2;
/** Client rows start expanded when a router has at most this many clients. */
const AUTO_OPEN_CLIENTS = 4;

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------- summaries

/** The numbers a row shows, from a scope's Track. */
function summarize(track) {
  const l = track.latest || {};
  return {
    rps: track.rate("requests", WINDOW_MS),
    frps: track.rate("failures", WINDOW_MS),
    sr: track.successRate(WINDOW_MS),
    retries: track.rate("retries", WINDOW_MS),
    requeues: track.rate("requeues", WINDOW_MS),
    exhausted: track.delta("exhausted", WINDOW_MS),
    total: l.requests ?? null,
    pending: l.pending ?? null,
    connections: l.connections ?? null,
    p50: l.p50 ?? null,
    p95: l.p95 ?? null,
    p99: l.p99 ?? null,
    max: l.max ?? null,
    avg: l.avg ?? null,
    lbSize: l.lbSize ?? null,
    lbAvail: l.lbAvail ?? null,
  };
}

/** A share as a short percentage: "0%", "2.5%", "20%". */
function shortPct(ratio) {
  return `${Number((ratio * 100).toFixed(1))}%`;
}

/** The retry budget of a router in /config.json (its global service policy). */
function retryBudget(router) {
  const pct = router?.service?.retries?.budget?.percentCanRetry;
  return typeof pct === "number" ? { pct, configured: true } : { pct: DEFAULT_PERCENT_CAN_RETRY, configured: false };
}

// ------------------------------------------------------------------------- process strip

class ProcessStrip {
  constructor(root) {
    this.root = root;
    this.cells = {};
    const spec = [
      ["uptime", "Uptime"],
      ["cpu", "CPU", "c-p50"],
      ["rss", "Memory (RSS)", "c-p95"],
      ["lag", "Event-loop lag", "c-p99"],
      ["fds", "Open fds"],
      ["threads", "Threads"],
      ["gc", "GC / s"],
    ];
    for (const [key, label, cls] of spec) {
      const value = el("span", { class: "value" }, "—");
      const spark = cls ? new Sparkline({ cls, area: true }) : null;
      const row = el("div", { class: "row" }, value, spark ? el("div", { class: "pspark" }, spark.root) : null);
      root.append(el("div", { class: "pstat" }, el("div", { class: "label" }, label), row));
      this.cells[key] = { value, spark };
    }
  }

  update(track, now) {
    const l = track.latest || {};
    const c = this.cells;
    setText(c.uptime.value, fmtDuration(l.uptime));
    const cpu = track.rate("cpu", WINDOW_MS);
    setText(c.cpu.value, cpu === null ? "—" : `${(cpu / 10).toFixed(1)}%`);
    c.cpu.spark.update(
      track.rateSeries("cpu").map(([t, v]) => [t, v === null ? null : v / 10]),
      now,
    );
    setText(c.rss.value, fmtBytes(l.rss));
    c.rss.spark.update(track.gaugeSeries("rss"), now);
    setText(c.lag.value, fmtMs(l.lag));
    c.lag.spark.update(track.gaugeSeries("lag"), now);
    setText(c.fds.value, fmtCount(l.fds));
    setText(c.threads.value, fmtCount(l.threads));
    setText(c.gc.value, fmtRate(track.rate("gc", WINDOW_MS)));
  }
}

// ------------------------------------------------------------------------- router view

/** A summary card: label, big value, small line below. */
function card(key, label, title) {
  const value = el("div", { class: "value" }, "—");
  const sub = el("div", { class: "sub" }, " ");
  const root = el(
    "div",
    { class: "card", title: title || null, dataset: { card: key } },
    el("div", { class: "label" }, label),
    value,
    sub,
  );
  return { root, value, sub };
}

/** Where a router's names bind (issue 14: "dashboards show where a router's dtab comes
 * from"): its own dtab, and the dtab its interpreter keeps (namerd, a file). */
function dtabSource(config) {
  if (!config) return "";
  const i = config.interpreter || { kind: "default" };
  const n = String(config.dtab || "")
    .split(";")
    .filter((d) => d.trim()).length;
  const own = `${n} dentr${n === 1 ? "y" : "ies"} in the router's dtab`;
  switch (i.kind) {
    case "default":
      return `Names bind with the ${own}, through this turnout's namers.`;
    case "io.l5d.namerd.http":
      return `Names bind in namerd (io.l5d.namerd.http at ${i.dst}): namespace ${i.namespace}'s dtab, followed by the ${own}.`;
    case "io.l5d.mesh":
      return `Names bind in namerd (io.l5d.mesh, gRPC, at ${i.dst}): namespace ${String(i.root).replace(/^\//, "")}'s dtab, followed by the ${own}.`;
    case "io.l5d.fs":
      return `Names bind with the dtab file ${i.dtabFile}, followed by the ${own}.`;
    default:
      return `Names bind through the interpreter ${i.kind} (its own dtab first), followed by the ${own}.`;
  }
}

/** Everything shown for the selected router. */
class RouterView {
  constructor(label, config) {
    this.label = label;
    this.budget = retryBudget(config);
    const budgetNote = this.budget.configured
      ? `retry budget: percentCanRetry ${shortPct(this.budget.pct)} (service.retries.budget)`
      : `retry budget: percentCanRetry ${shortPct(this.budget.pct)} (the default; not configured)`;
    const storage = (kind) => `turnout.open.${kind}.${label}`;

    this.cards = {
      rps: card("rps", "Requests / s", "all servers, last 5 s"),
      sr: card("sr", "Success rate", "success / (success + failures), last 5 s"),
      pending: card("pending", "In flight", "requests being served now"),
      retries: card("retries", "Retries / s", `service retries + client requeues, last 5 s; ${budgetNote}`),
      p50: card("p50", "p50", "median latency (servers, last minute)"),
      p95: card("p95", "p95", "95th percentile latency (servers, last minute)"),
      p99: card("p99", "p99", "99th percentile latency (servers, last minute)"),
      max: card("max", "max", "highest latency (servers, last minute)"),
    };
    this.budgetBar = el(
      "div",
      { class: "budget-bar", role: "meter", "aria-label": "retry budget used", "aria-valuemin": 0, "aria-valuemax": 1 },
      el("span"),
    );
    this.cards.retries.root.append(this.budgetBar);

    this.charts = trafficCharts();
    this.srChart = new LineChart({
      title: "Success rate",
      format: fmtPct,
      axisFormat: (v) => `${Math.round(v * 100)}%`,
      yMax: 1,
      yMin: 0,
      series: [{ key: "sr", label: "success", cls: "c-success", area: true }],
    });

    this.servers = new EntityTable({
      title: "Servers",
      noun: "server",
      storageKey: storage("servers"),
      columns: [COLUMNS.rps, COLUMNS.sr, COLUMNS.pending, COLUMNS.connections, COLUMNS.p50, COLUMNS.p95, COLUMNS.p99, COLUMNS.max],
      sort: { key: "name", dir: 1 },
      makeDetail: () => new ServerDetail(),
      empty: "No server metrics yet.",
    });
    this.services = new EntityTable({
      title: "Services",
      noun: "service (logical name)",
      storageKey: storage("services"),
      filter: true,
      columns: [
        COLUMNS.rps,
        COLUMNS.sr,
        COLUMNS.frps,
        { key: "retries", label: "retries/s", title: "retries per second, last 5 s", fmt: fmtRate },
        COLUMNS.p50,
        COLUMNS.p95,
        COLUMNS.p99,
        COLUMNS.max,
      ],
      sort: { key: "rps", dir: -1 },
      makeDetail: (id) => new ServiceDetail(id, label),
      empty: "No services yet: they appear with the first request routed by this router.",
    });
    this.clients = new EntityTable({
      title: "Clients",
      noun: "client (bound name)",
      storageKey: storage("clients"),
      filter: true,
      autoOpen: (n) => n <= AUTO_OPEN_CLIENTS,
      columns: [
        COLUMNS.rps,
        COLUMNS.sr,
        COLUMNS.frps,
        COLUMNS.pending,
        {
          key: "lbAvail",
          label: "endpoints",
          title: "load balancer: available / size",
          width: "5.6rem",
          fmt: (v, s) => `${fmtNum(v)} / ${fmtNum(s.lbSize)}`,
          cls: (v, s) => (s.lbSize > 0 && v === 0 ? "sr-bad" : s.lbSize > v ? "sr-warn" : ""),
        },
        COLUMNS.connections,
        COLUMNS.p50,
        COLUMNS.p99,
        COLUMNS.max,
      ],
      sort: { key: "rps", dir: -1 },
      makeDetail: () => new ClientDetail(),
      empty: "No clients yet: a client is made when the router first binds a name.",
    });

    this.root = el(
      "div",
      {},
      el(
        "p",
        { class: "dtab-source muted" },
        dtabSource(config),
        " ",
        el("a", { href: `/delegator?router=${encodeURIComponent(label)}` }, "Explain a name →"),
      ),
      el("div", { class: "summary panel" }, ...Object.values(this.cards).map((c) => c.root)),
      el(
        "div",
        { class: "charts" },
        el("div", { class: "panel" }, this.charts.requests.root),
        el("div", { class: "panel" }, this.srChart.root),
        el("div", { class: "panel" }, this.charts.latency.root),
      ),
      this.servers.root,
      this.services.root,
      this.clients.root,
    );
  }

  /** Whether the page needs /client_state.json (an expanded client shows endpoint states). */
  wantsClientState() {
    for (const row of this.clients.rows.values()) if (row.open && row.shown) return true;
    return false;
  }

  update(router, now, clientState) {
    const track = router.track;
    const s = summarize(track);
    const c = this.cards;
    setText(c.rps.value, fmtRate(s.rps));
    setText(c.rps.sub, `${fmtCount(s.total)} since start`);
    c.rps.root.dataset.total = String(s.total ?? "");
    setText(c.sr.value, fmtPct(s.sr));
    setClass(c.sr.value, `value ${srClass(s.sr)}`);
    setText(c.sr.sub, `${fmtRate(s.frps)} failures / s`);
    setText(c.pending.value, fmtNum(s.pending));
    setText(c.pending.sub, `${fmtNum(s.connections)} connections`);
    const retries = (s.retries ?? 0) + (s.requeues ?? 0);
    setText(c.retries.value, s.rps === null ? "—" : fmtRate(retries));
    const used = s.rps ? retries / s.rps : 0;
    const budget = this.budget;
    setText(c.retries.sub, `${shortPct(used)} of ${shortPct(budget.pct)} budget`);
    const fill = budget.pct > 0 ? Math.min(1, used / budget.pct) : 0;
    const width = `${(fill * 100).toFixed(1)}%`;
    if (this.budgetBar.firstChild.style.width !== width) this.budgetBar.firstChild.style.width = width;
    this.budgetBar.setAttribute("aria-valuenow", fill.toFixed(2));
    setClass(this.budgetBar, `budget-bar${s.exhausted > 0 || fill >= 1 ? " bad" : fill > 0.5 ? " warn" : ""}`);
    for (const key of ["p50", "p95", "p99", "max"]) {
      setText(c[key].value, fmtMs(s[key]));
      setText(c[key].sub, router.servers.size > 1 ? `highest of ${router.servers.size} servers` : " ");
    }

    updateTrafficCharts(this.charts, track, now);
    this.srChart.update({ sr: track.successSeries() }, now);

    this.servers.update(router.servers, now);
    this.services.update(router.services, now);
    for (const [id, entity] of router.clients) entity.state = clientState?.[id];
    this.clients.update(router.clients, now);
  }

  destroy() {
    for (const chart of [this.charts.requests, this.charts.latency, this.srChart]) chart.destroy();
    this.servers.destroy();
    this.services.destroy();
    this.clients.destroy();
  }
}

// ------------------------------------------------------------------------- the app

class Dashboard {
  constructor() {
    this.tracks = new Map();
    this.config = null;
    this.labels = [];
    this.routers = new Map();
    this.selected = new URLSearchParams(location.search).get("router");
    this.view = null;
    this.paused = false;
    this.timer = null;
    this.clientStateAvailable = true;
    this.lastConfig = 0;
    this.process = new ProcessStrip($("process"));
    this.tabs = $("tabs");
    this.tabButtons = new Map();
    this.panel = $("router");
    this.banner = $("banner");
    this.initStatus();
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.paused) this.schedule(0);
    });
    document.addEventListener("keydown", (e) => this.shortcut(e));
  }

  initStatus() {
    const status = $("status");
    this.dot = el("span", { class: "dot" });
    this.statusText = el("span", {}, "connecting…");
    this.pauseButton = el(
      "button",
      { type: "button", "aria-pressed": "false", onclick: () => this.togglePause() },
      "Pause",
    );
    status.append(el("span", {}, this.dot, this.statusText), this.pauseButton);
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    this.pauseButton.setAttribute("aria-pressed", String(this.paused));
    if (this.paused) {
      clearTimeout(this.timer);
      setClass(this.dot, "dot");
      setText(this.statusText, "paused");
    } else {
      this.schedule(0);
    }
  }

  /** "/" focuses the client filter (unless typing somewhere). */
  shortcut(event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = document.activeElement?.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    if (this.view?.clients.search) {
      event.preventDefault();
      this.view.clients.search.focus();
    }
  }

  track(key) {
    let track = this.tracks.get(key);
    if (!track) {
      track = new Track();
      this.tracks.set(key, track);
    }
    return track;
  }

  schedule(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delay);
  }

  async tick() {
    const started = performance.now();
    try {
      if (!this.config || started - this.lastConfig > 15_000) await this.loadConfig();
      const wantState = this.clientStateAvailable && this.view?.wantsClientState();
      const [tree, clientState] = await Promise.all([
        fetchJSON("/admin/metrics.json?tree=1"),
        wantState ? this.fetchClientState() : Promise.resolve(null),
      ]);
      const now = performance.now();
      this.ingest(tree || {}, now);
      this.render(now, clientState);
      this.online(now - started, performance.now() - now);
    } catch (error) {
      this.offline(error);
    } finally {
      if (!this.paused && !document.hidden) {
        this.schedule(Math.max(50, POLL_MS - (performance.now() - started)));
      }
    }
  }

  async loadConfig() {
    this.lastConfig = performance.now();
    try {
      this.config = await fetchJSON("/config.json");
    } catch {
      this.config = this.config || { routers: [] }; // blocked or failing: routers from metrics
    }
  }

  async fetchClientState() {
    try {
      return await fetchJSON("/client_state.json");
    } catch (error) {
      if (error.status === 404) this.clientStateAvailable = false; // disabled by admin.security
      return null;
    }
  }

  /** Turn one poll into samples on the tracks of every router, server, service, client. */
  ingest(tree, now) {
    const rt = tree.rt || {};
    const configured = new Map((this.config?.routers || []).map((r) => [routerLabel(r), r]));
    const labels = [...configured.keys()];
    for (const label of Object.keys(rt)) if (!configured.has(label)) labels.push(label);
    const seen = new Set();
    const entity = (key, values) => {
      const track = this.track(key);
      track.push(now, values);
      seen.add(key);
      return { track, summary: summarize(track) };
    };

    this.routers = new Map();
    for (const label of labels) {
      const parts = parseRouter(rt[label]);
      const servers = new Map();
      const services = new Map();
      const clients = new Map();
      const serverSamples = [];
      for (const [id, node] of parts.servers) {
        const sample = scopeSample(node);
        serverSamples.push(sample);
        servers.set(id, { node, ...entity(`s\u0000${label}\u0000${id}`, sample) });
      }
      let retries = null;
      let exhausted = null;
      for (const [id, node] of parts.services) {
        const sample = {
          ...scopeSample(node),
          retries: counter(node, "retries/total"),
          exhausted: counter(node, "retries/budget_exhausted"),
        };
        if (sample.retries !== null) retries = (retries ?? 0) + sample.retries;
        if (sample.exhausted !== null) exhausted = (exhausted ?? 0) + sample.exhausted;
        services.set(id, { node, ...entity(`v\u0000${label}\u0000${id}`, sample) });
      }
      let requeues = null;
      for (const [id, node] of parts.clients) {
        const sample = {
          ...scopeSample(node),
          requeues: counter(node, "retries/requeues"),
          exhausted: counter(node, "retries/budget_exhausted"),
          lbSize: gauge(node, "loadbalancer/size"),
          lbAvail: gauge(node, "loadbalancer/available"),
        };
        if (sample.requeues !== null) requeues = (requeues ?? 0) + sample.requeues;
        if (sample.exhausted !== null) exhausted = (exhausted ?? 0) + sample.exhausted;
        clients.set(id, { node, ...entity(`c\u0000${label}\u0000${id}`, sample) });
      }
      // The router's numbers: servers summed, latency of the slowest server.
      const routerSample = {
        requests: sum(serverSamples, "requests"),
        success: sum(serverSamples, "success"),
        failures: sum(serverSamples, "failures"),
        pending: sum(serverSamples, "pending"),
        connections: sum(serverSamples, "connections"),
        p50: max(serverSamples, "p50"),
        p95: max(serverSamples, "p95"),
        p99: max(serverSamples, "p99"),
        max: max(serverSamples, "max"),
        avg: max(serverSamples, "avg"),
        retries,
        requeues,
        exhausted,
      };
      const { track } = entity(`r\u0000${label}`, routerSample);
      this.routers.set(label, { label, config: configured.get(label), track, servers, services, clients });
    }

    const p = tree.process || {};
    this.track("process").push(now, {
      requests: null,
      uptime: gauge(p, "uptime_ms"),
      cpu: gauge(p, "cpu_ms") ?? counter(p, "cpu_ms"),
      rss: gauge(p, "rss_bytes"),
      lag: gauge(p, "loop_lag_ms"),
      fds: gauge(p, "open_fds"),
      threads: gauge(p, "threads"),
      gc: gauge(p, "gc/collections") ?? counter(p, "gc/collections"),
    });
    seen.add("process");
    // scopes that are gone (idle clients are pruned) lose their history
    for (const key of this.tracks.keys()) if (!seen.has(key)) this.tracks.delete(key);
    this.labels = labels;
  }

  render(now, clientState) {
    this.process.update(this.track("process"), now);
    if (!this.labels.length) {
      this.panel.replaceChildren(el("div", { class: "panel empty-note" }, "This turnout has no routers."));
      return;
    }
    if (!this.selected || !this.routers.has(this.selected)) this.selected = this.labels[0];
    this.renderTabs();
    if (!this.view || this.view.label !== this.selected) {
      this.view?.destroy();
      this.view = new RouterView(this.selected, this.routers.get(this.selected).config);
      this.panel.replaceChildren(this.view.root);
      this.panel.setAttribute("aria-labelledby", `tab-${this.labels.indexOf(this.selected)}`);
      document.title = `turnout · ${this.selected}`;
    }
    this.view.update(this.routers.get(this.selected), now, clientState);
  }

  /** One tab per router with its live rate and success rate (ARIA tabs pattern). */
  renderTabs() {
    const key = this.labels.join("\u0000");
    if (this.tabsKey !== key) {
      this.tabsKey = key;
      this.tabButtons = new Map();
      this.tabs.replaceChildren();
      this.labels.forEach((label, i) => {
        const proto = this.routers.get(label).config?.protocol;
        const badge = el("span", { class: "badge" });
        const button = el(
          "button",
          {
            type: "button",
            role: "tab",
            class: "tab",
            id: `tab-${i}`,
            "aria-controls": "router",
            onclick: () => this.select(label),
            onkeydown: (e) => this.tabKey(e, i),
          },
          el("span", { class: "name" }, label),
          proto && proto !== label ? el("span", { class: "proto" }, proto) : null,
          badge,
        );
        this.tabButtons.set(label, { button, badge });
        this.tabs.append(button);
      });
    }
    for (const [label, { button, badge }] of this.tabButtons) {
      const selected = label === this.selected;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      const s = summarize(this.routers.get(label).track);
      setText(badge, `${fmtRate(s.rps)} rps · ${fmtPct(s.sr)}`);
      setClass(badge, `badge ${srClass(s.sr) === "sr-ok" ? "" : srClass(s.sr)}`);
    }
  }

  tabKey(event, index) {
    const n = this.labels.length;
    const moves = { ArrowRight: index + 1, ArrowLeft: index - 1 + n, Home: 0, End: n - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const label = this.labels[moves[event.key] % n];
    this.select(label);
    this.tabButtons.get(label)?.button.focus();
  }

  select(label) {
    if (label === this.selected) return;
    this.selected = label;
    const url = new URL(location.href);
    url.searchParams.set("router", label);
    history.replaceState(null, "", url);
    this.render(performance.now(), null);
  }

  /** Connected: `fetchMs` to read the metrics, `renderMs` to show them (in the tooltip). */
  online(fetchMs, renderMs) {
    this.banner.hidden = true;
    setClass(this.dot, "dot live");
    setText(this.statusText, `live · ${new Date().toLocaleTimeString()}`);
    this.statusText.title = `every ${POLL_MS / 1000} s · last poll: fetch ${Math.round(fetchMs)} ms, render ${Math.round(renderMs)} ms`;
    document.body.dataset.renderMs = renderMs.toFixed(1);
  }

  offline(error) {
    setClass(this.dot, "dot down");
    setText(this.statusText, "admin unreachable");
    this.banner.hidden = false;
    setText(this.banner, `Cannot read metrics (${error.message || error}); retrying every second.`);
  }
}

new Dashboard().schedule(0);
