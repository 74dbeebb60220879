// The expandable, sortable, filterable lists of servers, services and clients.
//
// Each list is a header row plus one element per entity; a row is a CSS grid with the
// columns of the header. Rows are created once and then only have their text updated, so
// the page does not reflow every second. Expensive parts (sparklines, the charts of an
// expanded row) draw only while the row is on screen (IntersectionObserver).

import { LineChart, Sparkline } from "./charts.js";
import { el, fmtMs, fmtPct, fmtRate, setClass, setText, srClass } from "./common.js";

/** How often rows are re-ordered by a live value (not every poll: rows would jump). */
const RESORT_MS = 5000;

let nextId = 0;

/** The charts every expanded row shows: requests (success/failures) and latency. */
export function trafficCharts(prefix = "") {
  const requests = new LineChart({
    title: `${prefix}Requests / s`,
    format: fmtRate,
    series: [
      { key: "success", label: "success", cls: "c-success", area: true },
      { key: "failures", label: "failures", cls: "c-failure", area: true, stack: true },
    ],
  });
  const latency = new LineChart({
    title: `${prefix}Latency`,
    format: fmtMs,
    axisFormat: axisMs,
    series: [
      { key: "p50", label: "p50", cls: "c-p50" },
      { key: "p95", label: "p95", cls: "c-p95" },
      { key: "p99", label: "p99", cls: "c-p99" },
      { key: "max", label: "max", cls: "c-max", scale: false },
    ],
  });
  return { requests, latency };
}

/** Milliseconds for an axis label: "0", "2.5 ms", "25 ms" (no trailing zeros). */
function axisMs(ms) {
  if (ms === 0) return "0";
  return fmtMs(ms).replace(/(\.\d*?)0+ /, "$1 ").replace(/\. /, " ");
}

/** Feed a Track's history to the charts made by trafficCharts(). */
export function updateTrafficCharts(charts, track, now) {
  charts.requests.update({ success: track.rateSeries("success"), failures: track.rateSeries("failures") }, now);
  charts.latency.update(
    {
      p50: track.gaugeSeries("p50"),
      p95: track.gaugeSeries("p95"),
      p99: track.gaugeSeries("p99"),
      max: track.gaugeSeries("max"),
    },
    now,
  );
}

/** A definition list of label → value cells whose values update in place. */
export class KeyValues {
  constructor(labels) {
    this.cells = {};
    this.root = el("dl", { class: "kv" });
    for (const [key, label, title] of labels) {
      this.cells[key] = el("dd", { class: "num" }, "—");
      this.root.append(el("div", { title: title || null }, el("dt", {}, label), this.cells[key]));
    }
  }

  set(key, text) {
    setText(this.cells[key], text);
  }
}

/**
 * A list of entities. `spec`:
 *   title, noun          heading and the word for one entity ("client")
 *   columns              [{key, label, title, fmt, cls(summary)}] numeric columns
 *   sort                 {key, dir} the initial order (dir -1: descending)
 *   autoOpen(n)          whether rows start expanded when there are n of them
 *   filter               show the filter box and the "failing only" switch
 *   makeDetail(id, row)  an object {root, update(entity, now), setVisible(v)} for the
 *                        expanded part of a row
 *   empty                the text shown when there are no entities
 *   storageKey           where the expanded rows are remembered (localStorage)
 */
export class EntityTable {
  constructor(spec) {
    this.spec = spec;
    this.rows = new Map();
    this.sort = { ...spec.sort };
    this.order = [];
    this.lastSort = 0;
    this.needSort = true;
    this.frozen = false;
    this.query = "";
    this.failingOnly = false;
    this.opened = loadOpened(spec.storageKey);
    this.limit = spec.limit ?? 25;
    this.showAll = false;
    // rows a little outside the viewport count as visible, so they are fresh when scrolled to
    this.observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) entry.target._row?.setVisible(entry.isIntersecting);
      },
      { rootMargin: "300px 0px" },
    );

    this.countLabel = el("span", { class: "count" });
    const tools = el("div", { class: "tools" });
    if (spec.filter) {
      this.search = el("input", {
        type: "search",
        placeholder: `Filter ${spec.title.toLowerCase()}…`,
        "aria-label": `Filter ${spec.title.toLowerCase()} by name`,
        oninput: () => {
          this.query = this.search.value.trim().toLowerCase();
          this.needSort = true;
          this.refresh();
        },
      });
      const failing = el("input", {
        type: "checkbox",
        onchange: () => {
          this.failingOnly = failing.checked;
          this.needSort = true;
          this.refresh();
        },
      });
      tools.append(
        this.search,
        el("label", { class: "check", title: "success rate below 99% over the last 5 s" }, failing, "failing only"),
      );
    }
    this.bulk = [
      el("button", { type: "button", onclick: () => this.setAllOpen(true) }, "Expand all"),
      el("button", { type: "button", onclick: () => this.setAllOpen(false) }, "Collapse all"),
    ];
    tools.append(...this.bulk);

    const cols = [`minmax(14rem, 1fr)`, "90px", ...spec.columns.map((c) => c.width || "5.4rem")];
    this.head = el("div", { class: "ehead" });
    this.head.append(this.sortHeader({ key: "name", label: spec.noun }, false), el("div", { class: "dim" }, "last 60 s"));
    for (const col of spec.columns) this.head.append(this.sortHeader(col, true));
    this.body = el("div", { class: "ebody" });
    this.empty = el("div", { class: "empty-note" }, spec.empty);
    this.moreButton = el("button", { type: "button", onclick: () => this.toggleShowAll() });
    this.more = el("div", { class: "more", hidden: true }, this.moreButton);
    this.table = el("div", { class: "etable panel" }, this.head, this.body, this.more, this.empty);
    this.table.style.setProperty("--cols", cols.join(" "));
    // Re-ordering under the pointer or the keyboard focus would move what is being read
    // or clicked: live re-sorting waits while either is inside the list.
    this.table.addEventListener("pointerenter", () => (this.frozen = true));
    this.table.addEventListener("pointerleave", () => (this.frozen = false));

    // the heading collapses the whole list (remembered)
    this.collapseKey = `${spec.storageKey}.collapsed`;
    this.sectionToggle = el(
      "button",
      { type: "button", class: "section-toggle", "aria-expanded": "true", onclick: () => this.setCollapsed(!this.collapsed) },
      el("span", { class: "chev", "aria-hidden": "true" }, "▸"),
      el("h2", {}, spec.title),
    );
    this.tools = tools;
    this.root = el(
      "section",
      { class: "section", "aria-label": spec.title },
      el("div", { class: "section-head" }, this.sectionToggle, this.countLabel, tools),
      this.table,
    );
    this.setCollapsed(readStorage(this.collapseKey) === "1", false);
  }

  setCollapsed(collapsed, save = true) {
    this.collapsed = collapsed;
    this.sectionToggle.setAttribute("aria-expanded", String(!collapsed));
    this.root.classList.toggle("collapsed", collapsed);
    this.table.hidden = collapsed;
    this.tools.hidden = collapsed;
    if (save) writeStorage(this.collapseKey, collapsed ? "1" : "0");
    if (!collapsed) this.refresh();
  }

  toggleShowAll() {
    this.showAll = !this.showAll;
    this.refresh();
  }

  sortHeader(col, numeric) {
    const cell = el("div", { class: numeric ? "num" : "", "aria-sort": "none" });
    cell.append(
      el(
        "button",
        {
          type: "button",
          title: col.title || null,
          onclick: () => {
            const same = this.sort.key === col.key;
            this.sort = { key: col.key, dir: same ? -this.sort.dir : numeric ? -1 : 1 };
            this.needSort = true;
            this.refresh();
          },
        },
        col.label,
      ),
    );
    cell.dataset.key = col.key;
    return cell;
  }

  /**
   * New data: `entities` maps id → {track, node, summary, ...}. Rows are added and removed
   * to match, then updated.
   */
  update(entities, now) {
    this.now = now;
    for (const [id, row] of this.rows) {
      if (!entities.has(id)) {
        this.observer.unobserve(row.root);
        row.destroy();
        row.root.remove();
        this.rows.delete(id);
        this.needSort = true;
      }
    }
    // Rows start expanded while there are few of them; once there are more, the ones that
    // were expanded that way (not by the user) fold again.
    const autoOpen = this.spec.autoOpen ? this.spec.autoOpen(entities.size) : false;
    if (!autoOpen) {
      for (const [id, row] of this.rows) if (row.open && !this.opened.has(id)) row.setOpen(false, false);
    }
    for (const [id, entity] of entities) {
      let row = this.rows.get(id);
      if (!row) {
        const open = this.opened.has(id) ? this.opened.get(id) : autoOpen;
        row = new EntityRow(this, id, open);
        this.rows.set(id, row);
        this.body.append(row.root);
        this.observer.observe(row.root);
        this.needSort = true;
      }
      row.entity = entity;
    }
    this.refresh();
  }

  /** Maybe re-sort, then filter and limit, and update the rows shown. */
  refresh() {
    if (this.collapsed || this.now === undefined) {
      setText(this.countLabel, `${this.rows.size}`);
      return;
    }
    const focusInside = this.table.contains(document.activeElement);
    const due = performance.now() - this.lastSort > RESORT_MS && !this.frozen && !focusInside;
    if (this.needSort || due) this.applySort();
    let matched = 0;
    let shown = 0;
    for (const id of this.order) {
      const row = this.rows.get(id);
      const match = this.matches(row);
      const show = match && (this.showAll || matched < this.limit);
      if (match) matched += 1;
      row.setShown(show);
      if (show) {
        shown += 1;
        row.update(row.entity, this.now);
      }
    }
    const total = this.rows.size;
    setText(this.countLabel, shown === total ? `${total}` : `${shown} of ${total} shown`);
    this.empty.hidden = total > 0;
    this.head.hidden = total === 0;
    for (const button of this.bulk) button.hidden = total < 2;
    this.more.hidden = matched <= this.limit;
    setText(
      this.moreButton,
      this.showAll ? `Show the first ${this.limit} only` : `Show all ${matched} (${matched - shown} more)`,
    );
  }

  matches(row) {
    if (this.query && !this.query.split(/\s+/).every((term) => row.idLower.includes(term))) return false;
    if (this.failingOnly) {
      const sr = row.entity?.summary?.sr;
      if (sr === null || sr === undefined || sr >= 0.99) return false;
    }
    return true;
  }

  applySort() {
    this.needSort = false;
    this.lastSort = performance.now();
    const { key, dir } = this.sort;
    const value = (row) => (key === "name" ? null : row.entity?.summary?.[key]);
    const rows = [...this.rows.values()].sort((a, b) => {
      if (key !== "name") {
        const va = value(a);
        const vb = value(b);
        const na = va === null || va === undefined || Number.isNaN(va);
        const nb = vb === null || vb === undefined || Number.isNaN(vb);
        if (na !== nb) return na ? 1 : -1; // no value: last
        if (!na && va !== vb) return dir * (va - vb);
      }
      return (key === "name" ? dir : 1) * a.id.localeCompare(b.id);
    });
    const ids = rows.map((r) => r.id);
    if (ids.join("\n") !== this.order.join("\n")) {
      this.order = ids;
      this.body.append(...rows.map((r) => r.root)); // append() moves existing nodes
    }
    for (const cell of this.head.children) {
      if (!cell.dataset.key) continue;
      const active = cell.dataset.key === key;
      cell.setAttribute("aria-sort", active ? (dir < 0 ? "descending" : "ascending") : "none");
    }
  }

  setAllOpen(open) {
    for (const row of this.rows.values()) if (row.shown) row.setOpen(open, true);
  }

  remember(id, open) {
    this.opened.set(id, open);
    saveOpened(this.spec.storageKey, this.opened);
  }

  destroy() {
    this.observer.disconnect();
    for (const row of this.rows.values()) row.destroy();
  }
}

/** One entity: its summary row and, when expanded, its detail. */
class EntityRow {
  constructor(table, id, open) {
    this.table = table;
    this.id = id;
    this.idLower = id.toLowerCase();
    this.visible = false;
    this.shown = true;
    this.entity = null;
    this.detail = null;
    const detailId = `detail-${nextId++}`;

    this.toggle = el(
      "button",
      { type: "button", class: "toggle", "aria-expanded": "false", "aria-controls": detailId },
      el("span", { class: "chev", "aria-hidden": "true" }, "▸"),
      el("span", { class: "ename", title: id }, id),
    );
    this.spark = new Sparkline({ cls: "c-success" });
    this.cells = {};
    const row = el("div", { class: "erow" }, this.toggle, el("div", { class: "trend" }, this.spark.root));
    for (const col of table.spec.columns) {
      this.cells[col.key] = el("div", { class: "cell", title: col.title || col.label }, "—");
      row.append(this.cells[col.key]);
    }
    row.addEventListener("click", (event) => {
      // a mouse drag that selected the name (to copy it) is not a click on the row
      if (event.detail !== 0 && String(window.getSelection?.() ?? "")) return;
      this.setOpen(!this.open, true);
    });
    this.detailBox = el("div", { class: "edetail", id: detailId, hidden: true });
    this.root = el("div", { class: "entity", dataset: { id } }, row, this.detailBox);
    this.root._row = this;
    this.open = false;
    if (open) this.setOpen(true, false);
  }

  setOpen(open, byUser) {
    if (open === this.open) return;
    this.open = open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.detailBox.hidden = !open;
    this.root.classList.toggle("open", open);
    if (open && !this.detail) {
      this.detail = this.table.spec.makeDetail(this.id);
      this.detailBox.append(this.detail.root);
    }
    if (open && this.entity && this.visible) this.detail.update(this.entity, this.table.now);
    this.detail?.setVisible(open && this.visible);
    if (byUser) this.table.remember(this.id, open);
  }

  setVisible(visible) {
    this.visible = visible;
    this.spark.setVisible(visible);
    this.detail?.setVisible(this.open && visible);
    if (visible && this.dirty) this.update(this.entity, this.now);
  }

  setShown(shown) {
    if (shown !== this.shown) {
      this.shown = shown;
      this.root.hidden = !shown;
    }
  }

  /** Show new numbers; a row off screen only remembers them until it scrolls into view. */
  update(entity, now) {
    this.entity = entity;
    this.now = now;
    if (!this.visible || !entity) {
      this.dirty = true;
      return;
    }
    this.dirty = false;
    const s = entity.summary;
    for (const col of this.table.spec.columns) {
      const cell = this.cells[col.key];
      const value = s[col.key];
      setText(cell, col.fmt(value, s));
      setClass(cell, `cell ${col.cls ? col.cls(value, s) : ""}${value === null || value === undefined ? " dim" : ""}`);
    }
    const health = { "sr-warn": " h-warn", "sr-bad": " h-bad" }[srClass(s.sr)] ?? "";
    setClass(this.root, `entity${this.open ? " open" : ""}${health}`);
    this.spark.update(entity.track.rateSeries("requests"), now);
    if (this.open && this.detail) this.detail.update(entity, now);
  }

  destroy() {
    this.detail?.destroy?.();
  }
}

/** Column helpers shared by the three lists. */
export const COLUMNS = {
  rps: { key: "rps", label: "req/s", title: "requests per second, last 5 s", fmt: fmtRate },
  sr: { key: "sr", label: "success", title: "success rate, last 5 s", fmt: fmtPct, cls: (v) => srClass(v) },
  frps: {
    key: "frps",
    label: "fail/s",
    title: "failures per second, last 5 s",
    fmt: fmtRate,
    width: "4.6rem",
    cls: (v) => (v > 0 ? "sr-bad" : ""),
  },
  p50: { key: "p50", label: "p50", title: "median latency, last minute", fmt: fmtMs, width: "5.8rem" },
  p95: { key: "p95", label: "p95", title: "95th percentile latency, last minute", fmt: fmtMs, width: "5.8rem" },
  p99: { key: "p99", label: "p99", title: "99th percentile latency, last minute", fmt: fmtMs, width: "5.8rem" },
  max: { key: "max", label: "max", title: "highest latency, last minute", fmt: fmtMs, width: "5.8rem" },
  pending: { key: "pending", label: "in flight", title: "requests in flight now", fmt: fmtRate, width: "4.6rem" },
  connections: { key: "connections", label: "conns", title: "open connections", fmt: fmtRate, width: "4.2rem" },
};

function readStorage(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeStorage(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // storage disabled: the choice is simply not remembered
  }
}

function loadOpened(key) {
  try {
    return new Map(JSON.parse(localStorage.getItem(key) || "[]"));
  } catch {
    return new Map();
  }
}

function saveOpened(key, opened) {
  try {
    // keep the most recent choices only
    localStorage.setItem(key, JSON.stringify([...opened].slice(-500)));
  } catch {
    // storage full or disabled: expansion is simply not remembered
  }
}
