// The dtab playground: evaluates a path against a router's (edited) dtab with
// POST /delegator.json and draws the delegation tree Linkerd-style.

import { HttpError, dtabLines, el, fetchJSON, routerLabel } from "./common.js";

const $ = (id) => document.getElementById(id);
const form = $("form");
const routerSelect = $("router");
const dtabInput = $("dtab");
const pathInput = $("path");
const result = $("result");
const jsonBox = $("json");
const jsonButton = $("show-json");
const took = $("took");

let routers = new Map(); // label → router config
let services = new Map(); // label → logical names seen in the metrics

// ------------------------------------------------------------------------- the tree

/** Node types whose subtree resolves to nothing (an alt falls through them). */
const NOTHING = new Set(["neg", "empty"]);

/** Whether a delegate node resolves to something (not neg/empty), Finagle's eval. */
function resolves(node) {
  switch (node.type) {
    case "leaf":
    case "fail":
    case "exception":
      return true;
    case "delegate":
      return resolves(node.delegate);
    case "transformation":
      return resolves(node.tree);
    case "alt":
      return node.alt.some(resolves);
    case "union":
      return node.union.some((w) => resolves(w.tree));
    default:
      return !NOTHING.has(node.type);
  }
}

/**
 * Mark the nodes that decide the result: in an alt, the first branch that resolves; in a
 * union, every branch that does. Returns the bound leaves reached {id, addr, weight}.
 */
function markChosen(node, weight = 1, out = []) {
  node._chosen = true;
  switch (node.type) {
    case "delegate":
      markChosen(node.delegate, weight, out);
      break;
    case "transformation":
      markChosen(node.tree, weight, out);
      break;
    case "alt": {
      const first = node.alt.find(resolves);
      if (first) markChosen(first, weight, out);
      break;
    }
    case "union": {
      const live = node.union.filter((w) => resolves(w.tree));
      const total = live.reduce((a, w) => a + w.weight, 0) || 1;
      for (const w of live) markChosen(w.tree, (weight * w.weight) / total, out);
      break;
    }
    case "leaf":
      out.push({ id: node.bound?.id ?? node.path, addr: node.bound?.addr, weight });
      break;
    case "fail":
    case "exception":
      out.push({ failed: node.message || "fail" });
      break;
    default:
      break;
  }
  return out;
}

function addrList(addr) {
  if (!addr) return el("span", { class: "muted" }, "no address information");
  if (addr.type === "bound") {
    if (!addr.addrs?.length) return el("span", { class: "pill warn" }, "bound, no endpoints");
    return el(
      "span",
      { class: "addrs" },
      addr.addrs.map((a) => {
        const host = String(a.ip).includes(":") ? `[${a.ip}]` : a.ip;
        const meta = a.meta && Object.keys(a.meta).length ? JSON.stringify(a.meta) : null;
        return el("span", { class: "addr", title: meta }, `${host}:${a.port}`);
      }),
    );
  }
  if (addr.type === "failed") return el("span", { class: "pill bad" }, `failed: ${addr.cause ?? "unknown"}`);
  return el("span", { class: `pill ${addr.type === "neg" ? "bad" : "warn"}` }, addr.type);
}

const DESCRIPTIONS = {
  delegate: "rewritten by a dentry",
  leaf: "bound by a namer",
  alt: "alternatives: the first that resolves is used",
  union: "union: traffic is split by weight",
  neg: "no such name (falls through to the next alternative)",
  fail: "fails the request (stops the alternatives)",
  empty: "empty: resolves to no endpoints",
  exception: "error while delegating",
  transformation: "addresses transformed",
};

/** One node (a box) and its children (a nested list). */
function renderNode(node, label = null) {
  const kind = el("span", { class: `kind k-${node.type}`, title: DESCRIPTIONS[node.type] || null }, node.type);
  const line = el("div", { class: "line" }, label, kind, el("span", { class: "dpath" }, node.path ?? ""));
  const box = el("div", { class: `dnode t-${node.type}${node._chosen ? " chosen" : ""}` }, line);
  if (node.dentry) {
    box.append(el("div", { class: "dentry" }, `${node.dentry.prefix} => ${node.dentry.dst}`));
  }
  if (node.type === "leaf" || node.type === "transformation") {
    const b = node.bound || {};
    const facts = el("div", { class: "line" });
    if (node.type === "transformation") facts.append(el("span", { class: "muted" }, `by ${node.name ?? "?"}`));
    if (b.id && b.id !== node.path) facts.append(el("span", { class: "muted" }, "id"), el("code", {}, b.id));
    if (b.path && b.path !== "/") facts.append(el("span", { class: "muted" }, "residual"), el("code", {}, b.path));
    if (facts.childNodes.length) box.append(facts);
    box.append(el("div", { class: "line" }, addrList(b.addr)));
  }
  if (node.type === "exception") box.append(el("div", { class: "dentry-msg" }, node.message ?? ""));
  if (node.type === "neg" || node.type === "empty" || node.type === "fail") {
    box.title = DESCRIPTIONS[node.type];
  }

  const item = el("li", {}, box);
  const kids = childrenOf(node);
  if (kids.length) {
    item.append(el("ul", {}, kids.map(([child, childLabel]) => renderNode(child, childLabel))));
  }
  return item;
}

function childrenOf(node) {
  switch (node.type) {
    case "delegate":
      return [[node.delegate, null]];
    case "transformation":
      return node.tree ? [[node.tree, null]] : [];
    case "alt":
      return node.alt.map((c, i) => [c, el("span", { class: "weight", title: "priority" }, `#${i + 1}`)]);
    case "union":
      return node.union.map((w) => [w.tree, el("span", { class: "weight", title: "weight" }, `${w.weight}×`)]);
    default:
      return [];
  }
}

/** The one-line answer above the tree: where the path goes. */
function outcome(tree) {
  const leaves = markChosen(tree);
  if (!leaves.length) {
    return el("div", { class: "outcome bad" }, "No route: the path resolves to nothing (", el("code", {}, "neg"), ").");
  }
  if (leaves.some((l) => l.failed)) {
    return el("div", { class: "outcome bad" }, "Requests to this path fail: ", leaves.find((l) => l.failed).failed);
  }
  const box = el("div", { class: "outcome ok" });
  box.append(leaves.length > 1 ? "Resolves to a union of:" : "Resolves to ");
  const list = el("ul", { class: "dtree-outcome" });
  for (const leaf of leaves) {
    const share = leaves.length > 1 ? el("span", { class: "weight" }, `${Math.round(leaf.weight * 100)}% `) : null;
    const entry = [share, el("code", {}, leaf.id), " → ", addrList(leaf.addr)];
    if (leaves.length > 1) list.append(el("li", {}, entry));
    else box.append(...entry);
  }
  if (leaves.length > 1) box.append(list);
  return box;
}

// ------------------------------------------------------------------------- the form

function showError(error) {
  const status = error instanceof HttpError ? `${error.status} ${error.statusText}` : "Request failed";
  const body = error instanceof HttpError ? error.body || "(no message)" : String(error.message || error);
  const hint =
    error instanceof HttpError && error.status === 501
      ? "This router's interpreter cannot explain delegations."
      : error instanceof HttpError && error.status === 502
        ? "The router binds names in namerd, which could not answer."
        : error instanceof HttpError && error.status === 503
          ? "A namer did not answer within 2 s."
          : null;
  result.replaceChildren(
    el("div", { class: "error-box", role: "alert" }, el("div", { class: "status" }, status), el("pre", {}, body), hint && el("p", { class: "muted" }, hint)),
  );
  jsonButton.disabled = true;
  jsonBox.hidden = true;
}

async function delegate() {
  const label = routerSelect.value;
  const path = pathInput.value.trim();
  const dtab = dtabInput.value.trim();
  const goButton = $("go");
  goButton.disabled = true;
  const started = performance.now();
  try {
    const tree = await fetchJSON("/delegator.json", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ namespace: label, dtab, path }),
    });
    took.textContent = `${Math.round(performance.now() - started)} ms`;
    jsonBox.textContent = JSON.stringify(tree, null, 2);
    jsonButton.disabled = false;
    // a tree too large to explain whole comes back truncated, with a note at its root
    const note = tree.note ? el("p", { class: "pill warn" }, tree.note) : "";
    result.replaceChildren(note, outcome(tree), el("ul", { class: "dtree" }, renderNode(tree)));
  } catch (error) {
    took.textContent = "";
    showError(error);
  } finally {
    goButton.disabled = false;
  }
  const url = new URL(location.href);
  url.searchParams.set("router", label);
  url.searchParams.set("path", path);
  history.replaceState(null, "", url);
}

function chooseRouter(label) {
  const router = routers.get(label);
  dtabInput.value = dtabLines(router?.dtab || "");
  const kind = router?.interpreter?.kind;
  const namerd = kind === "io.l5d.namerd.http" || kind === "io.l5d.mesh";
  $("interpreter-hint").textContent = namerd
    ? `Interpreter ${kind}: namerd delegates (at ${router.interpreter.dst}), its stored dtab first; lines here are added after it.`
    : kind && kind !== "default"
      ? `Interpreter ${kind}: its own dtab is evaluated first; lines here are added after it.`
      : "";
  const names = services.get(label) || [];
  $("paths").replaceChildren(...names.map((n) => el("option", { value: n })));
  if (!pathInput.value || pathInput.dataset.auto === "1") {
    const prefix = router?.dstPrefix || "/svc";
    pathInput.value = names[0] || `${prefix}/${firstBoundName() || "hello"}`;
    pathInput.dataset.auto = "1";
  }
}

let boundNames = [];

function firstBoundName() {
  const name = boundNames[0];
  return name ? name.split("/").filter(Boolean).at(-1) : null;
}

async function load() {
  const params = new URLSearchParams(location.search);
  let config = { routers: [] };
  try {
    config = await fetchJSON("/config.json");
  } catch (error) {
    showError(error);
  }
  routers = new Map((config.routers || []).map((r) => [routerLabel(r), r]));
  // logical names seen so far (from the metrics) make good example paths
  try {
    const tree = await fetchJSON("/admin/metrics.json?tree=1&q=rt");
    for (const label of routers.keys()) {
      const names = [];
      const walk = (node, prefix) => {
        if (!node || typeof node !== "object") return;
        if (node.requests && typeof node.requests.counter === "number") {
          names.push([prefix, node.requests.counter]);
          return;
        }
        for (const [k, v] of Object.entries(node)) if (v && typeof v === "object" && !("counter" in v)) walk(v, `${prefix}/${k}`);
      };
      walk(tree?.[label]?.service, "");
      services.set(
        label,
        names.sort((a, b) => b[1] - a[1]).map(([n]) => n),
      );
    }
  } catch {
    services = new Map(); // metrics blocked: no suggestions
  }
  try {
    boundNames = await fetchJSON("/bound-names.json");
  } catch {
    boundNames = [];
  }
  routerSelect.replaceChildren(
    ...[...routers.entries()].map(([label, r]) => el("option", { value: label }, r.protocol && r.protocol !== label ? `${label} (${r.protocol})` : label)),
  );
  const wanted = params.get("router");
  if (wanted && routers.has(wanted)) routerSelect.value = wanted;
  if (params.get("path")) {
    pathInput.value = params.get("path");
    pathInput.dataset.auto = "0";
  }
  chooseRouter(routerSelect.value);
  if (params.get("path") && routers.size) delegate();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  delegate();
});
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    delegate();
  }
});
routerSelect.addEventListener("change", () => chooseRouter(routerSelect.value));
pathInput.addEventListener("input", () => (pathInput.dataset.auto = "0"));
$("reset").addEventListener("click", () => {
  dtabInput.value = dtabLines(routers.get(routerSelect.value)?.dtab || "");
  dtabInput.focus();
});
jsonButton.addEventListener("click", () => {
  jsonBox.hidden = !jsonBox.hidden;
  jsonButton.setAttribute("aria-pressed", String(!jsonBox.hidden));
  jsonButton.textContent = jsonBox.hidden ? "Show JSON" : "Hide JSON";
});

load();
