// Talking to the server: the access token, JSON and PNG requests, progress while a job runs,
// and the one-sentence error line.

const TOKEN_KEY = "imgsynth-token";
const TOKEN_HEADER = "X-Imgsynth-Token";

/** The per-start token: from the URL fragment (#token=...), kept for reloads of this tab. */
export function token() {
  const m = /(?:^#|&)token=([A-Za-z0-9_\-]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    // keep the key off the address bar (screenshots, screen sharing); the tab remembers it
    history.replaceState(null, "", location.pathname + location.search);
    return m[1];
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

let TOKEN = "";
export function init() {
  TOKEN = token();
  return TOKEN !== "";
}

/** One sentence: the first line, at most ~240 characters. */
export function sentence(message) {
  let s = String(message || "something went wrong").split("\n")[0].trim();
  if (s.length > 240) s = s.slice(0, 237) + "…";
  return s;
}

const errorLine = () => document.getElementById("error");
export function showError(message) {
  const el = errorLine();
  el.textContent = sentence(message);
  el.hidden = false;
}
export function clearError() {
  errorLine().hidden = true;
}

async function errorOf(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `the server answered ${resp.status} ${resp.statusText}`;
}

export async function getJSON(path) {
  const resp = await fetch(path, { headers: { [TOKEN_HEADER]: TOKEN }, cache: "no-store" });
  if (!resp.ok) throw new Error(await errorOf(resp));
  return resp.json();
}

export async function postJSON(path, form) {
  const resp = await fetch(path, { method: "POST", body: form, headers: { [TOKEN_HEADER]: TOKEN } });
  if (!resp.ok) throw new Error(await errorOf(resp));
  return resp.json();
}

// --- progress -------------------------------------------------------------------------------
const bar = () => document.getElementById("progress");
let jobRunning = false;
export const busy = () => jobRunning;

function showProgress(text, fraction) {
  const el = bar();
  el.hidden = false;
  el.classList.toggle("indeterminate", fraction === null || fraction === undefined);
  el.querySelector(".fill").style.width = fraction == null ? "" : `${Math.round(fraction * 100)}%`;
  el.querySelector(".label").textContent = text;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * POST a job (multipart ``form``) and resolve to {blob, saved, seconds}. While it runs the
 * status endpoint is polled for the progress bar; a busy server (429) is retried after its
 * Retry-After. Rejects with an Error carrying the server's one sentence.
 */
export async function runJob(path, makeForm, label) {
  if (jobRunning) throw new Error("a job is already running; wait for it to finish");
  jobRunning = true;
  document.body.classList.add("working");
  let polling = true;
  const started = performance.now();
  const poll = (async () => {
    while (polling) {
      try {
        const s = await getJSON("/api/status");
        if (!polling) break;
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        if (s.busy) showProgress(`${s.stage}… ${secs} s`, s.fraction);
      } catch (_) { /* the job's own answer reports problems */ }
      await sleep(250);
    }
  })();
  showProgress(`${label}…`, null);
  try {
    for (let attempt = 0; ; attempt++) {
      const resp = await fetch(path, { method: "POST", body: makeForm(), headers: { [TOKEN_HEADER]: TOKEN } });
      if (resp.status === 429 && attempt < 30) {
        const wait = Number(resp.headers.get("Retry-After") || "1");
        showProgress("the server is busy; waiting…", null);
        await sleep(Math.max(0.2, wait) * 1000);
        continue;
      }
      if (!resp.ok) throw new Error(await errorOf(resp));
      const blob = await resp.blob();
      return { blob, saved: resp.headers.get("X-Imgsynth-Saved"), seconds: resp.headers.get("X-Imgsynth-Seconds") };
    }
  } finally {
    polling = false;
    await poll;
    jobRunning = false;
    document.body.classList.remove("working");
    bar().hidden = true;
  }
}

/** Note a result saved under --output-dir in the header. */
export function noteSaved(name) {
  const el = document.getElementById("saved");
  if (!name) { el.hidden = true; return; }
  el.textContent = `saved as ${name}`;
  el.hidden = false;
}

/** Offer ``blob`` as a download named ``name`` (the PNG bytes the server sent, untouched). */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
