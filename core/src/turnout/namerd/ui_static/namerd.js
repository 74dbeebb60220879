// namerd's admin page: the namespaces, a dtab editor per namespace (checked as you type,
// saved with the version it was loaded at, conflicts shown), the delegator of the namespace
// and namerd's metrics. Server data reaches the page only through textContent/attributes.

import { HttpError, el, fetchJSON } from "/files/common.js";

const $ = (id) => document.getElementById(id);
const dtabInput = $("dtab");
const statusLine = $("dtab-status");
const saveResult = $("save-result");

/** The namespace this page edits: /dtab/<ns>, or /namerd?namespace=<ns>; null for the list. */
function currentNamespace() {
  const m = location.pathname.match(/^\/dtab\/([^/]+)$/);
  if (m) return decodeURIComponent(m[1]);
  return new URLSearchParams(location.search).get("namespace");
}

const ns = currentNamespace();
let version = null; // the version the editor was loaded at (null: a new namespace)
let loaded = ""; // the text it was loaded with

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    cache: "no-store",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text.trim() || `${response.status} ${response.statusText}` };
  }
  return { status: response.status, data };
}

// ------------------------------------------------------------------------- namespaces

async function loadNamespaces() {
  const list = $("namespaces");
  try {
    const all = await fetchJSON("/namerd/dtabs.json");
    list.replaceChildren(
      ...all.map((d) =>
        el(
          "li",
          { dataset: { namespace: d.namespace } },
          el("a", { href: `/dtab/${encodeURIComponent(d.namespace)}`, "aria-current": d.namespace === ns ? "page" : null }, d.namespace),
          " ",
          el("span", { class: "muted" }, `${d.dtab ? d.dtab.split(";").length : 0} dentries`),
        ),
      ),
    );
    if (!all.length) list.replaceChildren(el("li", { class: "muted" }, "no namespaces yet"));
  } catch (error) {
    list.replaceChildren(el("li", { class: "error-box" }, String(error.message || error)));
  }
}

$("new-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("new-ns").value.trim();
  if (/^[A-Za-z0-9_.-]+$/.test(name) && name !== "." && name !== "..") {
    location.href = `/dtab/${encodeURIComponent(name)}`;
  }
});

// ------------------------------------------------------------------------- the editor

function showVersion() {
  $("version").textContent = version ? `version ${version}` : "new namespace (not saved yet)";
}

async function loadDtab() {
  $("detail").hidden = false;
  $("title").textContent = `namerd · ${ns}`;
  $("ns-name").textContent = ns;
  document.title = `turnout · namerd · ${ns}`;
  try {
    const d = await fetchJSON(`/namerd/dtab.json?namespace=${encodeURIComponent(ns)}`);
    version = d.version;
    loaded = d.lines.join("\n");
  } catch (error) {
    if (!(error instanceof HttpError && error.status === 404)) throw error;
    version = null;
    loaded = "";
  }
  dtabInput.value = loaded;
  $("delete").disabled = version === null;
  showVersion();
  validate();
}

let validateTimer = null;
let validating = 0;

/** Ask namerd whether the text parses; shows the position of the first error. */
async function validate() {
  const seq = ++validating;
  const { status, data } = await postJSON("/namerd/validate.json", { dtab: dtabInput.value });
  if (seq !== validating) return null; // (a later edit)
  if (status !== 200) {
    statusLine.textContent = data?.error || `cannot check: ${status}`;
    return null;
  }
  if (data.valid) {
    statusLine.textContent = `valid: ${data.lines.length} dentr${data.lines.length === 1 ? "y" : "ies"}`;
    statusLine.className = "hint ok";
    dtabInput.removeAttribute("aria-invalid");
  } else {
    statusLine.textContent = `line ${data.line}, column ${data.column}: ${data.error}`;
    statusLine.className = "hint bad";
    dtabInput.setAttribute("aria-invalid", "true");
  }
  return data;
}

dtabInput.addEventListener("input", () => {
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 250);
});

function result(kind, ...children) {
  saveResult.className = `save-result ${kind}`;
  saveResult.replaceChildren(...children);
}

$("editor").addEventListener("submit", async (event) => {
  event.preventDefault();
  const check = await validate();
  if (check && !check.valid) {
    dtabInput.focus();
    dtabInput.setSelectionRange(check.offset, check.offset + 1);
    result("bad", `Not saved: line ${check.line}, column ${check.column}: ${check.error}`);
    return;
  }
  const { status, data } = await postJSON("/namerd/save.json", { namespace: ns, dtab: dtabInput.value, version });
  if (status === 200) {
    version = data.version;
    loaded = dtabInput.value;
    showVersion();
    $("delete").disabled = false;
    result("ok", `Saved (version ${version}).`);
    loadNamespaces();
  } else if (status === 412) {
    const load = el("button", { type: "button", id: "load-current" }, "Load the current dtab (discards your edit)");
    load.addEventListener("click", () => loadDtab().then(() => result("", "")));
    result(
      "bad",
      el("div", {}, `Conflict: ${data.error}`),
      el("div", { class: "muted" }, `current version ${data.version ?? "(deleted)"}:`),
      el("pre", { class: "json-box", id: "current-dtab" }, (data.lines || []).join("\n")),
      load,
    );
  } else if (status === 404 && !(data && data.error && data.error.includes("namespace"))) {
    result("bad", "Not saved: editing is disabled on this namerd (admin.security controlEnabled).");
  } else {
    result("bad", `Not saved (${status}): ${data?.error ?? ""}`);
  }
});

$("revert").addEventListener("click", () => {
  dtabInput.value = loaded;
  validate();
  result("", "");
});

let armed = false;
$("delete").addEventListener("click", async () => {
  if (!armed) {
    armed = true;
    $("delete").textContent = "Click again to delete";
    setTimeout(() => {
      armed = false;
      $("delete").textContent = "Delete namespace";
    }, 5000);
    return;
  }
  const { status, data } = await postJSON("/namerd/delete.json", { namespace: ns, version });
  if (status === 200) {
    location.href = "/namerd";
  } else {
    result("bad", `Not deleted (${status}): ${data?.error ?? ""}`);
  }
});

// ------------------------------------------------------------------------- the delegator

function renderNode(node, label = null) {
  const line = el(
    "div",
    { class: `dnode t-${node.type}` },
    label,
    el("span", { class: `kind k-${node.type}` }, node.type),
    el("span", { class: "dpath" }, node.path ?? ""),
    node.dentry ? el("span", { class: "muted" }, `  (${node.dentry.prefix} => ${node.dentry.dst})`) : null,
  );
  if (node.type === "leaf" && node.bound) {
    const addr = node.bound.addr || {};
    const addrs = (addr.addrs || []).map((a) => `${a.ip}:${a.port}`).join(", ");
    line.append(el("span", { class: "addr" }, `  → ${node.bound.id} [${addr.type}${addrs ? ": " + addrs : ""}]`));
  }
  if (node.type === "exception") line.append(el("span", { class: "dentry-msg" }, ` ${node.message ?? ""}`));
  const item = el("li", {}, line);
  let kids = [];
  if (node.type === "delegate") kids = [[node.delegate, null]];
  else if (node.type === "transformation" && node.tree) kids = [[node.tree, null]];
  else if (node.type === "alt") kids = node.alt.map((c, i) => [c, el("span", { class: "weight" }, `#${i + 1} `)]);
  else if (node.type === "union") kids = node.union.map((w) => [w.tree, el("span", { class: "weight" }, `${w.weight}× `)]);
  if (kids.length) item.append(el("ul", {}, kids.map(([c, l]) => renderNode(c, l))));
  return item;
}

$("delegator").addEventListener("submit", async (event) => {
  event.preventDefault();
  const tree = $("tree");
  const query = new URLSearchParams({ namespace: ns, path: $("path").value.trim(), dtab: $("extra").value.trim() });
  try {
    const json = await fetchJSON(`/namerd/delegate.json?${query}`);
    tree.replaceChildren(el("ul", { id: "tree-root" }, renderNode(json)));
  } catch (error) {
    let message = String(error.message || error);
    if (error instanceof HttpError) {
      try {
        message = JSON.parse(error.body).error;
      } catch {
        /* not JSON */
      }
    }
    tree.replaceChildren(el("div", { class: "error-box", role: "alert" }, message));
  }
});

// ------------------------------------------------------------------------- metrics

async function loadMetrics() {
  try {
    const metrics = await fetchJSON("/namerd/metrics.json");
    const rows = Object.entries(metrics).map(([name, value]) =>
      el("tr", { dataset: { metric: name } }, el("td", { class: "mono" }, name), el("td", { class: "num" }, String(value))),
    );
    $("metrics").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, "no namerd metrics yet"))]));
  } catch {
    /* the next poll tries again */
  }
}

loadNamespaces();
if (ns) loadDtab();
loadMetrics();
setInterval(loadMetrics, 2000);
