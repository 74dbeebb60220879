// Small live charts drawn as inline SVG: a time-series chart with axes, legend and a hover
// cursor, and a sparkline. Both only redraw when visible (the owner sets `visible`), so a
// page with hundreds of rows pays only for what is on screen.

import { el, setText, svg } from "./common.js";

/** The span of time a chart shows, ending at the latest poll. */
export const CHART_WINDOW_MS = 60_000;

/** The smallest 1, 2 or 5 × 10^n not below `value` (1 for zero). */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= value * 1.0001) return m * exp;
  return 10 * exp;
}

/** SVG path data through [x, y] points; null y values break the line. */
function linePath(points) {
  let d = "";
  let pen = false;
  for (const [x, y] of points) {
    if (y === null) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** SVG path data of the band between `upper` and `lower` (same x), one polygon per run. */
function bandPath(upper, lower) {
  let d = "";
  let run = [];
  const flush = () => {
    if (run.length > 1) {
      d += `M${run.map((i) => `${upper[i][0].toFixed(1)},${upper[i][1].toFixed(1)}`).join("L")}`;
      d += `L${run
        .slice()
        .reverse()
        .map((i) => `${lower[i][0].toFixed(1)},${lower[i][1].toFixed(1)}`)
        .join("L")}Z`;
    }
    run = [];
  };
  upper.forEach((p, i) => {
    if (p[1] === null || lower[i][1] === null) flush();
    else run.push(i);
  });
  flush();
  return d;
}

/**
 * A time-series chart.
 *
 *   new LineChart({title, format, series: [{key, label, cls, area, stack, scale}], yMax, yMin})
 *
 * `update(data, now)` takes {key: [[t, value|null], ...]} (t in performance.now() ms) and
 * the time of the latest poll. Series with `stack` are drawn on top of the previous series
 * (their points must line up with it); `area` fills below the line; `scale: false` leaves a
 * series out of the y range (an outlier such as the maximum latency is clipped at the top
 * instead of flattening everything else).
 */
export class LineChart {
  constructor({ title, series, format, axisFormat = format, height = 120, yMax = null, yMin = 0, label = title }) {
    this.series = series;
    this.format = format;
    this.axisFormat = axisFormat;
    this.height = height;
    this.fixedMax = yMax;
    this.yMin = yMin;
    this.width = 0;
    this.visible = true;
    this.data = {};
    this.now = 0;
    this.hoverT = null;
    this.dirty = false;

    this.values = {};
    const legend = el("div", { class: "legend" });
    for (const s of series) {
      this.values[s.key] = el("span", { class: "v" }, "—");
      legend.append(
        el("span", { class: "item" }, el("span", { class: `swatch ${s.cls}` }), s.label, this.values[s.key]),
      );
    }
    this.when = el("span", { class: "when" });
    legend.append(this.when);

    this.svg = svg("svg", { height, role: "img", "aria-label": label });
    this.gridGroup = svg("g", { class: "grid" });
    this.axisGroup = svg("g", { class: "axis" });
    this.paths = {};
    const drawing = svg("g");
    // a stacked series is a band on the one below it, without a line of its own (its line
    // would lie on the lower series' line wherever its value is zero)
    for (const s of series) {
      if (s.area) this.paths[`${s.key}:area`] = svg("path", { class: `series-area ${s.stack ? "band " : ""}${s.cls}` });
    }
    for (const s of series) if (!s.stack) this.paths[s.key] = svg("path", { class: `series-line ${s.cls}` });
    drawing.append(...Object.values(this.paths));
    this.cursor = svg("line", { class: "cursor", y1: 0, y2: height, visibility: "hidden" });
    this.svg.append(this.gridGroup, this.axisGroup, drawing, this.cursor);

    this.root = el(
      "div",
      { class: "chart" },
      el("div", { class: "chart-head" }, el("span", { class: "chart-title" }, title), legend),
      this.svg,
    );

    this.svg.addEventListener("pointermove", (e) => this.hover(e));
    this.svg.addEventListener("pointerleave", () => {
      this.hoverT = null;
      this.draw();
    });
    // The drawing is in pixels (crisp lines and text), so it follows the element's width.
    this.resizer = new ResizeObserver((entries) => {
      const width = Math.round(entries[0].contentRect.width);
      if (width !== this.width) {
        this.width = width;
        this.draw();
      }
    });
    this.resizer.observe(this.svg);
  }

  update(data, now) {
    this.data = data;
    this.now = now;
    this.dirty = true;
    if (this.visible) this.draw();
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible && this.dirty) this.draw();
  }

  destroy() {
    this.resizer.disconnect();
  }

  /** Geometry of the plot area inside the SVG. */
  layout() {
    const left = 44;
    const right = 6;
    const top = 6;
    const bottom = 18;
    return { left, top, w: Math.max(10, this.width - left - right), h: this.height - top - bottom };
  }

  /** Values per series, with stacked series added onto the series before them. */
  stacked() {
    const out = {};
    let below = null;
    for (const s of this.series) {
      const pts = this.data[s.key] || [];
      if (s.stack && below) {
        out[s.key] = pts.map(([t, v], i) => [t, v === null ? null : v + (below[i]?.[1] ?? 0)]);
      } else {
        out[s.key] = pts;
      }
      below = out[s.key];
    }
    return out;
  }

  draw() {
    if (!this.width) return;
    this.dirty = false;
    const { left, top, w, h } = this.layout();
    const stacked = this.stacked();
    const t0 = this.now - CHART_WINDOW_MS;
    let top_ = 0;
    for (const s of this.series) {
      if (s.scale === false) continue; // drawn, clipped at the top, but not scaled to
      for (const [t, v] of stacked[s.key] || []) if (t >= t0 && v !== null && v > top_) top_ = v;
    }
    const yMax = this.fixedMax ?? niceMax(top_);
    const yMin = this.yMin;
    const x = (t) => left + ((t - t0) / CHART_WINDOW_MS) * w;
    const y = (v) => top + h - ((Math.max(yMin, Math.min(v, yMax)) - yMin) / (yMax - yMin)) * h;

    // horizontal grid lines and y labels at 0, ½ and the top; x labels every 15 s
    this.gridGroup.replaceChildren();
    this.axisGroup.replaceChildren();
    for (const f of [0, 0.5, 1]) {
      const v = yMin + (yMax - yMin) * f;
      const yy = Math.round(y(v)) + 0.5;
      this.gridGroup.append(svg("line", { x1: left, x2: left + w, y1: yy, y2: yy }));
      this.axisGroup.append(
        svg("text", { x: left - 6, y: yy + 3.5, "text-anchor": "end" }, document.createTextNode(this.axisFormat(v))),
      );
    }
    for (const ago of [60, 45, 30, 15, 0]) {
      const xx = x(this.now - ago * 1000);
      const text = ago === 0 ? "now" : `-${ago}s`;
      const anchor = ago === 60 ? "start" : ago === 0 ? "end" : "middle";
      this.axisGroup.append(
        svg("text", { x: xx, y: this.height - 4, "text-anchor": anchor }, document.createTextNode(text)),
      );
    }

    let lower = null;
    for (const s of this.series) {
      const pts = (stacked[s.key] || []).filter(([t]) => t >= t0 - 1000).map(([t, v]) => [x(t), v === null ? null : y(v)]);
      this.paths[s.key]?.setAttribute("d", linePath(pts));
      if (s.area) {
        const base = s.stack && lower ? lower : pts.map(([xx, v]) => [xx, v === null ? null : y(yMin)]);
        this.paths[`${s.key}:area`].setAttribute("d", bandPath(pts, base));
      }
      lower = pts;
    }
    this.drawLegend(x);
  }

  /** Legend values at the hovered time, or the latest ones. */
  drawLegend(x) {
    let index = null;
    const first = this.data[this.series[0].key] || [];
    if (this.hoverT !== null && first.length) {
      let best = Infinity;
      first.forEach(([t], i) => {
        const d = Math.abs(t - this.hoverT);
        if (d < best) {
          best = d;
          index = i;
        }
      });
    }
    for (const s of this.series) {
      const pts = this.data[s.key] || [];
      const point = index === null ? pts.at(-1) : pts[index];
      setText(this.values[s.key], point && point[1] !== null ? this.format(point[1]) : "—");
    }
    if (index !== null && first[index]) {
      const t = first[index][0];
      const xx = Math.round(x(t)) + 0.5;
      this.cursor.setAttribute("x1", xx);
      this.cursor.setAttribute("x2", xx);
      this.cursor.setAttribute("visibility", "visible");
      setText(this.when, `${Math.round((this.now - t) / 1000)} s ago`);
    } else {
      this.cursor.setAttribute("visibility", "hidden");
      setText(this.when, "");
    }
  }

  hover(event) {
    const rect = this.svg.getBoundingClientRect();
    const { left, w } = this.layout();
    const f = (event.clientX - rect.left - left) / w;
    this.hoverT = f < 0 || f > 1 ? null : this.now - CHART_WINDOW_MS + f * CHART_WINDOW_MS;
    this.draw();
  }
}

/**
 * A sparkline: one series over the chart window, scaled to its own maximum, in a viewBox
 * stretched to the element (the stroke does not scale).
 */
export class Sparkline {
  constructor({ cls = "c-success", area = true, label = "" } = {}) {
    this.line = svg("path", { class: cls });
    this.area = area ? svg("path", { class: `area ${cls}` }) : null;
    this.root = svg(
      "svg",
      { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none", "aria-hidden": "true" },
      this.area,
      this.line,
    );
    if (label) this.root.setAttribute("aria-label", label);
    this.visible = true;
    this.pending = null;
  }

  update(points, now, fixedMax = null) {
    this.pending = [points, now, fixedMax];
    if (this.visible) this.draw();
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible && this.pending) this.draw();
  }

  draw() {
    const [points, now, fixedMax] = this.pending;
    this.pending = null;
    const t0 = now - CHART_WINDOW_MS;
    const visible = points.filter(([t]) => t >= t0);
    let top = 0;
    for (const [, v] of visible) if (v !== null && v > top) top = v;
    const yMax = fixedMax ?? (top > 0 ? top * 1.1 : 1);
    const pts = visible.map(([t, v]) => [((t - t0) / CHART_WINDOW_MS) * 100, v === null ? null : 19.5 - (v / yMax) * 18.5]);
    this.line.setAttribute("d", linePath(pts));
    if (this.area) {
      this.area.setAttribute("d", bandPath(pts, pts.map(([xx, v]) => [xx, v === null ? null : 20])));
    }
  }
}
