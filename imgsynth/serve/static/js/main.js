// The page's entry point: token, model list, the two modes, tabs, keyboard, paste and help.

import * as api from "./api.js";
import { InpaintMode } from "./inpaint.js";
import { SceneMode } from "./scene.js";

const $ = (id) => document.getElementById(id);
const modes = {};
let active = "inpaint";

function setMode(name) {
  active = name;
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === name));
  }
  $("inpaint").hidden = name !== "inpaint";
  $("scene").hidden = name !== "scene";
  document.body.dataset.mode = name;
  const m = modes[name];
  if (m) requestAnimationFrame(() => m.view.fit());
  history.replaceState(null, "", name === "scene" ? "#scene" : location.pathname);
}

function typing(target) {
  const tag = target && target.tagName;
  return tag === "INPUT" && !["range", "checkbox", "file", "button"].includes(target.type) || tag === "SELECT" || tag === "TEXTAREA";
}

function wireGlobal() {
  for (const tab of document.querySelectorAll("nav [role=tab]")) tab.addEventListener("click", () => setMode(tab.dataset.mode));
  const help = $("help");
  $("help-button").addEventListener("click", () => help.showModal());
  $("help-close").addEventListener("click", () => help.close());
  document.addEventListener("keydown", (e) => {
    if (help.open) return;
    if (e.key === " " && !typing(e.target) && e.target.tagName !== "BUTTON") {
      modes[active]?.view.setSpace(true);
      if (e.target === document.body || e.target.classList?.contains("stage")) e.preventDefault();
      return;
    }
    if (typing(e.target) && e.key !== "Escape") return;
    if (e.key === "?") { help.showModal(); e.preventDefault(); return; }
    if ((e.key === "m" || e.key === "M") && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const other = active === "inpaint" ? "scene" : "inpaint";
      if (!$(`tab-${other}`).disabled) setMode(other);
      e.preventDefault();
      return;
    }
    if (e.key === "Escape") { api.clearError(); return; }
    const m = modes[active];
    if (m && m.key(e)) e.preventDefault();
  });
  document.addEventListener("keyup", (e) => {
    if (e.key === " ") modes[active]?.view.setSpace(false);
  });
  document.addEventListener("paste", (e) => {
    if (typing(e.target)) return;
    if ($("tab-inpaint").disabled) return;
    if (active !== "inpaint") setMode("inpaint");
    if (modes.inpaint.paste(e)) e.preventDefault();
  });
  // a file dropped outside the stage should not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

async function boot() {
  wireGlobal();
  if (!api.init()) {
    api.showError("this page needs the URL that `imgsynth serve` printed: its #token part is the access key");
    return;
  }
  let info;
  try {
    info = await api.getJSON("/api/info");
  } catch (err) {
    api.showError(err.message);
    return;
  }
  modes.inpaint = new InpaintMode(info);
  modes.scene = new SceneMode(info);
  // a mode without models (serve --models chose none of its kind) cannot be opened
  const has = (task) => info.models.some((m) => m.task === task);
  for (const [mode, task] of [["inpaint", "inpaint"], ["scene", "translate"]]) {
    const tab = $(`tab-${mode}`);
    tab.disabled = !has(task);
    if (tab.disabled) tab.title = "this server offers no model for this demo (imgsynth serve --models)";
  }
  if (!has("inpaint") && !has("translate")) api.showError("this server offers no model (see imgsynth serve --models)");
  setMode(has("inpaint") && (location.hash !== "#scene" || !has("translate")) ? "inpaint" : "scene");
  document.body.dataset.ready = "1"; // a hook for tests and scripts
}

boot();
