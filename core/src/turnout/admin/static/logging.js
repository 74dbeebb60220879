// The logging page: lists /logging.json and changes levels with
// POST /logging.json?logger=<name>&level=<LEVEL>.

import { HttpError, el, fetchJSON } from "./common.js";

const LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"];
const $ = (id) => document.getElementById(id);
const tbody = $("loggers");
const banner = $("banner");

function levelSelect(current, label) {
  const select = el("select", { "aria-label": label });
  for (const level of LEVELS) select.append(el("option", { value: level, selected: level === current }, level));
  if (!LEVELS.includes(current)) select.prepend(el("option", { value: current, selected: true }, current));
  return select;
}

function message(error) {
  return error instanceof HttpError ? `${error.status}: ${error.body || error.statusText}` : String(error.message || error);
}

/** POST the level of one logger; returns the new list of loggers. */
function setLevel(logger, level) {
  const query = new URLSearchParams({ logger, level });
  return fetchJSON(`/logging.json?${query}`, { method: "POST" });
}

function render(loggers, flash = null) {
  tbody.replaceChildren(
    ...loggers.map(({ logger, level }) => {
      const result = el("span", { class: "toast", role: "status" });
      const select = levelSelect(level, `Level of ${logger}`);
      select.addEventListener("change", async () => {
        select.disabled = true;
        try {
          const list = await setLevel(logger, select.value);
          render(list, logger);
        } catch (error) {
          select.disabled = false;
          select.value = level;
          result.className = "toast bad";
          result.textContent = message(error);
        }
      });
      if (flash === logger) {
        result.textContent = `set to ${level}`;
        setTimeout(() => (result.textContent = ""), 4000);
      }
      return el(
        "tr",
        { dataset: { logger } },
        el("td", { class: "mono" }, logger),
        el("td", {}, select),
        el("td", {}, result),
      );
    }),
  );
  if (flash) {
    // keep the keyboard focus on the select that was changed
    tbody.querySelector(`tr[data-logger="${CSS.escape(flash)}"] select`)?.focus();
  }
}

async function load() {
  try {
    render(await fetchJSON("/logging.json"));
    banner.hidden = true;
  } catch (error) {
    banner.hidden = false;
    banner.textContent =
      error instanceof HttpError && error.status === 404
        ? "/logging.json is disabled on this admin server (admin.security.controlEnabled)."
        : `Cannot read /logging.json: ${message(error)}`;
  }
}

const newLevel = $("new-level");
for (const level of LEVELS) newLevel.append(el("option", { value: level, selected: level === "DEBUG" }, level));

$("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("new-logger").value.trim();
  const out = $("add-result");
  if (!name) return;
  try {
    render(await setLevel(name, newLevel.value));
    out.className = "toast";
    out.textContent = `${name} set to ${newLevel.value}`;
    setTimeout(() => (out.textContent = ""), 4000);
    $("new-logger").value = "";
  } catch (error) {
    out.className = "toast bad";
    out.textContent = message(error);
  }
});

load();
