"use strict";
// Minimal client: login, quick capture, list, search. Talks only to this server's /api/v1.
const $ = (id) => document.getElementById(id);
let csrf = null;

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) throw Object.assign(new Error(data.error.message), { status: res.status });
  return data;
}

function parseCapture(text) {
  let type = "note";
  let rest = text.trim();
  if (/^\[ ?\]\s*/.test(rest)) { type = "task"; rest = rest.replace(/^\[ ?\]\s*/, ""); }
  const tags = [...rest.matchAll(/(^|\s)#([\p{L}\p{N}][\p{L}\p{N}_\-./]*)/gu)].map((m) => m[2]);
  const [first, ...more] = rest.split("\n");
  return { type, title: first.slice(0, 500), body: more.join("\n"), tags };
}

function render(items) {
  const list = $("items");
  list.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = (item.type === "task" ? (item.status === "done" ? "☑ " : "☐ ") : "") +
      (item.title || "(untitled)");
    li.append(title);
    if (item.snippet) {
      const snip = document.createElement("div");
      snip.className = "muted";
      snip.innerHTML = item.snippet; // server-escaped, only <mark> tags added
      li.append(snip);
    }
    for (const tag of item.tags) {
      const span = document.createElement("span");
      span.className = "tag";
      span.textContent = "#" + tag;
      li.append(span);
    }
    list.append(li);
  }
  $("status").textContent = items.length ? "" : "Nothing here yet.";
}

async function refresh() {
  const q = $("search").value.trim();
  const data = q ? await api("GET", "/api/v1/search?q=" + encodeURIComponent(q))
                 : await api("GET", "/api/v1/items?limit=50");
  render(data.items);
}

function showApp(on) {
  $("login").hidden = on;
  $("app").hidden = !on;
  $("search").hidden = !on;
  $("logout").hidden = !on;
  if (on) refresh();
}

async function start() {
  try {
    csrf = (await api("GET", "/api/v1/session")).csrf_token;
    showApp(true);
  } catch {
    showApp(false);
  }
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    csrf = (await api("POST", "/api/v1/session", { password: $("password").value })).csrf_token;
    $("login-error").textContent = "";
    showApp(true);
  } catch (err) {
    $("login-error").textContent = err.status === 429 ? err.message : "Wrong password.";
  }
});
$("logout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/session");
  csrf = null;
  showApp(false);
});
$("capture-text").addEventListener("keydown", async (ev) => {
  if (ev.key !== "Enter" || ev.shiftKey) return;
  ev.preventDefault();
  const text = ev.target.value;
  if (!text.trim()) return;
  try {
    await api("POST", "/api/v1/items", parseCapture(text));
    ev.target.value = "";
    refresh();
  } catch (err) {
    $("status").textContent = err.message;
  }
});
let timer = null;
$("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 150); });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "/" && !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) {
    ev.preventDefault();
    $("search").focus();
  }
});
start();
