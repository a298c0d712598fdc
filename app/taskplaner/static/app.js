"use strict";
// TaskPlaner's page script. The server renders every list, card and search result (HTML
// fragments under /ui/); this file sends the user's actions to /api/v1 and swaps fragments in.
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const csrf = () => $('meta[name="csrf-token"]')?.content || "";

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && !path.endsWith("/session")) { location.assign("/"); throw new ApiError(401, "Logged out"); }
  const type = res.headers.get("Content-Type") || "";
  const data = res.status === 204 ? null : type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const message = data && data.error ? data.error.message : `Request failed (${res.status})`;
    throw new ApiError(res.status, message);
  }
  return data;
}
const api = {
  get: (p) => request("GET", p), post: (p, b) => request("POST", p, b),
  patch: (p, b) => request("PATCH", p, b), del: (p) => request("DELETE", p),
};

// --- toasts -----------------------------------------------------------------------------
function toast(message, { action, onAction, timeout = 5000, kind = "" } = {}) {
  const box = document.createElement("div");
  box.className = `toast ${kind}`;
  const text = document.createElement("span");
  text.textContent = message;
  box.append(text);
  let done = false;
  const close = () => { if (!done) { done = true; box.remove(); } };
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action;
    button.addEventListener("click", () => { onAction(); close(); });
    box.append(button);
  }
  $("#toasts").append(box);
  setTimeout(close, timeout);
  return close;
}

// --- theme --------------------------------------------------------------------------------
const THEMES = ["system", "dark", "light"];
function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = $("#theme-toggle");
  if (button) { button.setAttribute("aria-label", `Theme: ${theme}`); button.title = `Theme: ${theme} (click to change)`; }
}
function setupTheme() {
  let theme = localStorage.getItem("tp-theme") || "system";
  applyTheme(theme);
  $("#theme-toggle")?.addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    if (theme === "system") localStorage.removeItem("tp-theme"); else localStorage.setItem("tp-theme", theme);
    applyTheme(theme);
  });
}

// --- login / logout -------------------------------------------------------------------------
function setupLogin() {
  const form = $("#login");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("#login-error");
    error.textContent = "";
    const button = $("button", form);
    button.disabled = true;
    try {
      await api.post("/api/v1/session", { password: $("#password").value });
      location.reload();
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong password." :
        err.status === 429 ? `Too many attempts. ${err.message.replace(/^too many failed logins; /, "").replace(/^t/, "T")}.` :
        err.message;
      $("#password").select();
    } finally { button.disabled = false; }
  });
}
function setupLogout() {
  $("#logout")?.addEventListener("click", async () => {
    try { await api.del("/api/v1/session"); } finally {
      navigator.serviceWorker?.controller?.postMessage("logout");
      location.assign("/");
    }
  });
}

// --- the list ------------------------------------------------------------------------------
const list = () => $("#items");
let listState = { view: "all", tag: "", query: "" };

function listUrl(cursor) {
  const params = new URLSearchParams();
  if (listState.query) { params.set("q", listState.query); if (cursor) params.set("cursor", cursor); return `/ui/search?${params}`; }
  params.set("view", listState.view);
  if (listState.tag) params.set("tag", listState.tag);
  if (cursor) params.set("cursor", cursor);
  return `/ui/items?${params}`;
}
function pageUrl() {
  const params = new URLSearchParams();
  if (listState.query) params.set("q", listState.query);
  else { if (listState.view !== "all") params.set("view", listState.view); if (listState.tag) params.set("tag", listState.tag); }
  const qs = params.toString();
  return qs ? `/?${qs}` : "/";
}
function statusText() {
  return listState.query ? `Results for “${listState.query}”` : listState.tag ? `Tagged #${listState.tag}` : "";
}

let loadSeq = 0;
async function reloadList({ push = false } = {}) {
  const seq = ++loadSeq;
  const html = await api.get(listUrl());
  if (seq !== loadSeq) return; // a newer search or filter won
  list().innerHTML = html;
  $("#status").textContent = statusText();
  $("#view-title").textContent = listState.query ? `Search: ${listState.query}` : listState.tag ? `#${listState.tag}`
    : $(`#views a[data-view="${listState.view}"]:not([data-section])`)?.textContent || "TaskPlaner";
  const url = pageUrl();
  if (push) history.pushState({ ...listState }, "", url); else history.replaceState({ ...listState }, "", url);
  document.title = (listState.query ? `${listState.query} · ` : "") + "TaskPlaner";
  markCurrentFilters();
  observeMore();
}
function markCurrentFilters() {
  for (const a of $$("#views a")) {
    if (!listState.query && !listState.tag && a.dataset.view === listState.view && !a.dataset.section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const a of $$("#tags a")) {
    if (a.dataset.tag === listState.tag && !listState.query) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}
// The sidebar: tags with their counts, and the agenda's counts (both change with any edit)
async function refreshTags() {
  const [tags, views] = await Promise.all([api.get("/ui/tags"), api.get("/ui/views")]);
  $("#tags").innerHTML = tags;
  $("#views").innerHTML = views;
  markCurrentFilters();
}

async function loadMore(li) {
  if (li.dataset.loading) return;
  li.dataset.loading = "1";
  try {
    const html = await api.get(listUrl(li.dataset.cursor));
    li.insertAdjacentHTML("beforebegin", html);
    li.remove();
    observeMore();
  } catch (err) { delete li.dataset.loading; toast(err.message, { kind: "error" }); }
}
const moreObserver = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
  for (const e of entries) if (e.isIntersecting) loadMore(e.target);
}, { rootMargin: "400px" }) : null;
function observeMore() { const more = $("li.more", list()); if (more && moreObserver) moreObserver.observe(more); }

// A task's due day in the words its card shows ("tomorrow 09:00", "Tue 8 Dec"; the server
// words them in the user's time zone), else as stored
function dueWords(item) {
  const shown = $(`#item-${item.id} .due`)?.textContent.replace(/^overdue · /, "");
  return shown || `${item.due}${item.due_time ? ` ${item.due_time}` : ""}`;
}

async function refreshItem(id) {
  const html = await api.get(`/ui/items/${id}`);
  const old = $(`#item-${id}`);
  const pinned = $$("li.item.pinned", list()).pop(); // a new item goes below the pinned ones
  if (old) old.outerHTML = html;
  else if (pinned) pinned.insertAdjacentHTML("afterend", html);
  else list().insertAdjacentHTML("afterbegin", html);
  $(".empty", list())?.remove();
}

function setupList() {
  const items = list();
  if (!items) return;
  const params = new URLSearchParams(location.search);
  listState = { view: items.dataset.view || "all", tag: items.dataset.tag || "", query: params.get("q") || "" };
  history.replaceState({ ...listState }, "", location.href);
  observeMore();
  document.addEventListener("click", (event) => {
    const view = event.target.closest("#views a");
    const tag = event.target.closest("a[data-tag]");
    if (view || tag) {
      event.preventDefault();
      listState = view ? { view: view.dataset.view, tag: "", query: "" } : { view: "all", tag: tag.dataset.tag, query: "" };
      $("#search").value = "";
      const section = view?.dataset.section;
      reloadList({ push: true }).then(() => { if (section) $(`#agenda-${section}`)?.scrollIntoView({ block: "start" }); });
      return;
    }
    const more = event.target.closest("li.more button");
    if (more) { loadMore(more.closest("li.more")); return; }
    const thumb = event.target.closest("a.thumb");
    if (thumb) { event.preventDefault(); openLightbox(thumb.dataset.full, $("img", thumb).alt); return; }
    const action = event.target.closest("[data-action]");
    if (action) {
      const card = action.closest("li.item");
      if (action.dataset.action === "edit") openEditor(card.dataset.id);
      if (action.dataset.action === "delete") deleteWithUndo(card);
      if (action.dataset.action === "pin") togglePin(card, action);
    }
  });
  items.addEventListener("change", (event) => {
    if (event.target.matches("input.tick")) toggleTask(event.target);
    if (event.target.matches(".body input[data-check]")) tickBox(event.target);
  });
  window.addEventListener("popstate", (event) => {
    if (!event.state) return;
    listState = event.state;
    $("#search").value = listState.query || "";
    reloadList();
  });
}

// Optimistic: the card shows the new state at once and goes back if the server refuses.
// Completing a repeating task brings its next occurrence into the list. A completion can be
// undone for a few seconds: the task is open again, and the occurrence it brought is gone.
async function toggleTask(box) {
  const card = box.closest("li.item");
  const status = box.checked ? "done" : "open";
  const previous = box.checked ? "open" : "done";
  card.classList.replace(`status-${previous}`, `status-${status}`);
  try {
    const task = await api.patch(`/api/v1/items/${card.dataset.id}`, { status });
    let message = `Done: “${task.title || "task"}”.`;
    if (status === "done" && task.next_id) {
      const next = await api.get(`/api/v1/items/${task.next_id}`);
      await reloadList();
      message = `Done. Next one is due ${dueWords(next)}.`;
    } else if (listState.view === "agenda") await reloadList();
    refreshTags();
    if (status === "done") toast(message, { action: "Undo", timeout: 6000, onAction: () => undoDone(task) });
  } catch (err) {
    box.checked = !box.checked;
    card.classList.replace(`status-${status}`, `status-${previous}`);
    toast(`Could not update the task: ${err.message}`, { kind: "error" });
  }
}

// A checklist box in a note: the server ticks it only if that box is still the one shown.
async function tickBox(box) {
  const card = box.closest("li.item");
  const [index, fingerprint] = box.dataset.check.split(":");
  try {
    await api.post(`/api/v1/items/${card.dataset.id}/checklist`, { index: Number(index), done: box.checked, fingerprint });
  } catch (err) {
    box.checked = !box.checked;
    toast(err.status === 409 ? "The note changed meanwhile; it is shown as it is now." : `Could not tick: ${err.message}`, { kind: "error" });
    if (err.status === 409) await refreshItem(card.dataset.id);
  }
}

// Pinned items lead the list, so the list is reloaded in its new order.
async function togglePin(card, button) {
  const pinned = button.getAttribute("aria-pressed") !== "true";
  try {
    await api.patch(`/api/v1/items/${card.dataset.id}`, { pinned });
    await reloadList();
    $(`#item-${card.dataset.id} .pin`)?.focus();
    toast(pinned ? "Pinned to the top." : "Unpinned.");
  } catch (err) { toast(`Could not pin: ${err.message}`, { kind: "error" }); }
}

async function undoDone(task) {
  try {
    await api.patch(`/api/v1/items/${task.id}`, { status: "open" });
    if (task.next_id) await api.del(`/api/v1/items/${task.next_id}`);
    if (listState.view === "all" && !listState.query && !listState.tag) await refreshItem(task.id);
    else await reloadList();
    if (task.next_id) $(`#item-${task.next_id}`)?.remove();
    refreshTags();
    $(`#tick-${task.id}`)?.focus();
  } catch (err) { toast(`Could not undo: ${err.message}`, { kind: "error" }); }
}

// Deleting hides the card and waits a few seconds: Undo puts it back, nothing was deleted.
const pendingDeletes = new Map();
function deleteWithUndo(card) {
  const id = card.dataset.id;
  card.hidden = true;
  const commit = async () => {
    pendingDeletes.delete(id);
    try { await api.del(`/api/v1/items/${id}`); card.remove(); refreshTags(); }
    catch (err) { card.hidden = false; toast(`Could not delete: ${err.message}`, { kind: "error" }); }
  };
  const timer = setTimeout(commit, 6000);
  pendingDeletes.set(id, timer);
  const title = $(".item-title", card).textContent.trim();
  toast(`Deleted “${title}”.`, { action: "Undo", timeout: 6000,
    onAction: () => { clearTimeout(timer); pendingDeletes.delete(id); card.hidden = false; $(".edit", card)?.focus(); } });
}
window.addEventListener("pagehide", () => {
  for (const [id, timer] of pendingDeletes) {
    clearTimeout(timer);
    fetch(`/api/v1/items/${id}`, { method: "DELETE", keepalive: true, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf() } });
  }
});

// --- quick capture -------------------------------------------------------------------------
// The server reads dates, times, !priority, "every …" and #tags (POST /api/v1/quick-add); what
// it recognised shows as chips under the box, and removing a chip keeps that text as typed.
const PART_KINDS = { date: "due", time: "at", priority: "!", repeat: "↻" };
function setupCapture() {
  const form = $("#capture");
  if (!form) return;
  const text = $("#capture-text");
  const typeButton = $("#capture-type");
  const partsList = $("#capture-parts");
  let ignore = [];
  let previewSeq = 0;
  const isTask = () => typeButton.getAttribute("aria-pressed") === "true";
  const body = () => ({ text: text.value, task: isTask(), ignore });
  const setTask = (on) => {
    typeButton.setAttribute("aria-pressed", String(on));
    typeButton.textContent = on ? "Task" : "Note";
    typeButton.setAttribute("aria-label", on ? "Type: task (press to make it a note)" : "Type: note (press to make it a task)");
  };
  const showParts = (parsed) => {
    partsList.replaceChildren(...parsed.parts.map((part) => {
      const li = document.createElement("li");
      li.className = `part ${part.kind}`;
      const kind = document.createElement("span");
      kind.className = "kind"; kind.setAttribute("aria-hidden", "true"); kind.textContent = PART_KINDS[part.kind] || "";
      const label = document.createElement("span");
      label.textContent = part.label;
      label.title = `from “${part.text}”`;
      const remove = document.createElement("button");
      remove.type = "button"; remove.textContent = "✕";
      remove.setAttribute("aria-label", `Keep “${part.text}” as text`);
      remove.addEventListener("click", () => { ignore.push(part.text); preview(); text.focus(); });
      li.append(kind, label, remove);
      return li;
    }));
    if (parsed.type === "task" && !isTask() && parsed.parts.length) typeButton.textContent = "Task";
    else if (!isTask()) typeButton.textContent = "Note";
  };
  const preview = async () => {
    const seq = ++previewSeq;
    if (!text.value.trim()) { partsList.replaceChildren(); ignore = []; return; }
    try {
      const parsed = await api.post("/api/v1/quick-add/preview", body());
      if (seq === previewSeq) showParts(parsed);
    } catch (err) { /* the chips wait for the next keystroke */ }
  };
  const previewSoon = debounce(preview, 150);
  typeButton.addEventListener("click", () => { setTask(!isTask()); preview(); text.focus(); });
  const grow = () => { text.style.height = "auto"; text.style.height = `${Math.min(text.scrollHeight, 320)}px`; };
  text.addEventListener("input", () => { grow(); previewSoon(); });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
    if (event.key === "Escape") text.blur();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    try {
      previewSeq += 1; // a preview still on its way is out of date
      const created = await api.post("/api/v1/quick-add", body());
      text.value = "";
      ignore = [];
      partsList.replaceChildren();
      grow();
      setTask(false);
      if (listState.query || listState.tag || !["all", "agenda"].includes(listState.view)) { listState = { view: "all", tag: "", query: "" }; $("#search").value = ""; await reloadList({ push: true }); }
      else if (listState.view === "agenda") await reloadList();
      else await refreshItem(created.id);
      refreshTags();
      toast(created.type === "task" ? (created.due ? `Task saved, due ${dueWords(created)}.` : "Task saved.") : "Note saved.");
    } catch (err) { toast(`Not saved: ${err.message}`, { kind: "error" }); }
  });
  return { focus(asTask) { setTask(asTask); text.focus(); } };
}

// --- search ----------------------------------------------------------------------------------
function setupSearch() {
  const input = $("#search");
  if (!input) return;
  let timer = null;
  const run = () => {
    const query = input.value.trim();
    listState = query ? { ...listState, query } : { view: "all", tag: "", query: "" };
    reloadList().catch((err) => toast(err.message, { kind: "error" }));
  };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 200); });
  $("#search-form").addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(timer); run(); });
  input.addEventListener("keydown", (event) => { if (event.key === "Escape") { input.value = ""; run(); input.blur(); } });
}

// --- editor ----------------------------------------------------------------------------------
let editing = null;
function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }
const updatePreview = debounce(async () => {
  try { $("#edit-preview").innerHTML = (await api.post("/ui/preview", { markdown: $("#edit-body").value })).html; }
  catch (err) { /* keep the last preview */ }
}, 200);

async function openEditor(id) {
  const dialog = $("#editor");
  const item = await api.get(`/api/v1/items/${id}`);
  editing = item;
  $("#editor-title").textContent = item.type === "task" ? "Edit task" : "Edit note";
  $("#edit-title").value = item.title || "";
  $("#edit-body").value = item.body || "";
  $("#edit-tags").value = (item.tags || []).join(" ");
  $("#edit-is-task").checked = item.type === "task";
  $("#edit-status").value = item.status || "open";
  $("#edit-due").value = item.due || "";
  $("#edit-time").value = item.due_time || "";
  $("#edit-priority").value = String(item.priority || 0);
  const repeat = $("#edit-repeat");
  if (item.repeat && ![...repeat.options].some((o) => o.value === item.repeat)) repeat.add(new Option(item.repeat, item.repeat));
  repeat.value = item.repeat || "";
  $("#edit-repeat-from").value = item.repeat_from || "due";
  $("#edit-pinned").checked = Boolean(item.pinned);
  $("#editor-error").textContent = "";
  $("#uploads").replaceChildren();
  syncTaskFields();
  updatePreview();
  dialog.showModal();
  $("#edit-body").focus();
}
function syncTaskFields() {
  const on = $("#edit-is-task").checked;
  for (const el of $$("#edit-status, #edit-due, #edit-time, #edit-priority, #edit-repeat, #edit-repeat-from")) el.disabled = !on;
}
async function saveEditor() {
  const isTask = $("#edit-is-task").checked;
  const patch = {
    title: $("#edit-title").value, body: $("#edit-body").value,
    tags: $("#edit-tags").value.split(/[\s,]+/).map((t) => t.replace(/^#/, "")).filter(Boolean),
    type: isTask ? "task" : "note", pinned: $("#edit-pinned").checked,
  };
  if (isTask) {
    patch.status = $("#edit-status").value;
    patch.due = $("#edit-due").value || null;
    patch.due_time = patch.due ? $("#edit-time").value || null : null;
    patch.priority = Number($("#edit-priority").value);
    patch.repeat = $("#edit-repeat").value || null;
    patch.repeat_from = $("#edit-repeat-from").value;
  }
  try {
    const saved = await api.patch(`/api/v1/items/${editing.id}`, patch);
    $("#editor").close();
    if (saved.pinned !== editing.pinned || saved.next_id !== editing.next_id || listState.view === "agenda") await reloadList();
    else await refreshItem(editing.id);
    refreshTags();
    toast("Saved.");
  } catch (err) { $("#editor-error").textContent = err.message; }
}

// The server processes at most two uploads at once and answers more with 429 and Retry-After:
// the page sends two at a time and waits as told when another tab or client holds the slots.
const UPLOADS_AT_ONCE = 2;
const uploadQueue = [];
let uploadsRunning = 0;

function upload(file) {
  const row = document.createElement("li");
  const name = document.createElement("span");
  name.textContent = file.name || "pasted image";
  const bar = document.createElement("progress");
  bar.max = 100; bar.value = 0;
  bar.setAttribute("aria-label", `Uploading ${name.textContent}`);
  row.append(name, bar);
  $("#uploads").append(row);
  uploadQueue.push({ file, row, name, bar, itemId: editing.id, tries: 0 });
  pumpUploads();
}

function pumpUploads() {
  while (uploadsRunning < UPLOADS_AT_ONCE && uploadQueue.length) {
    uploadsRunning += 1;
    sendUpload(uploadQueue.shift());
  }
}

function sendUpload(job) {
  const { file, row, name, bar } = job;
  const finish = () => { uploadsRunning -= 1; pumpUploads(); };
  const body = new FormData();
  body.append("file", file, file.name || "pasted.png");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/v1/items/${job.itemId}/attachments`);
  xhr.setRequestHeader("X-CSRF-Token", csrf());
  xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100); });
  xhr.addEventListener("load", () => {
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
    if (xhr.status === 429 && job.tries < 10) {
      job.tries += 1;
      bar.value = 0;
      const wait = Number(xhr.getResponseHeader("Retry-After")) || 2;
      setTimeout(() => sendUpload(job), wait * 1000);
      return;
    }
    if (xhr.status === 201 && data) {
      bar.value = 100;
      row.classList.add("done");
      const img = document.createElement("img");
      img.src = data.thumbnail_url; img.alt = name.textContent; img.className = "upload-thumb";
      row.prepend(img);
      const body = $("#edit-body");
      const alt = (file.name || "image").replace(/\.[^.]+$/, "").replace(/[\[\]]/g, "");
      body.value = `${body.value.replace(/\s*$/, "")}${body.value.trim() ? "\n\n" : ""}![${alt}](${data.url})\n`;
      updatePreview();
    } else {
      row.classList.add("failed");
      name.textContent = `${name.textContent}: ${data && data.error ? data.error.message : `upload failed (${xhr.status})`}`;
    }
    finish();
  });
  xhr.addEventListener("error", () => { row.classList.add("failed"); name.textContent += ": network error"; finish(); });
  xhr.send(body);
}

function setupEditor() {
  const dialog = $("#editor");
  if (!dialog) return;
  $("#edit-body").addEventListener("input", updatePreview);
  $("#edit-is-task").addEventListener("change", syncTaskFields);
  $("#editor-form").addEventListener("submit", (event) => { event.preventDefault(); saveEditor(); });
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveEditor(); }
  });
  for (const b of $$("[data-close]", dialog)) b.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { if (editing) $(`#item-${editing.id} .edit`)?.focus(); });
  $("#edit-files").addEventListener("change", (event) => { for (const f of event.target.files) upload(f); event.target.value = ""; });
  const zone = $("#dropzone");
  for (const name of ["dragenter", "dragover"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); for (const f of e.dataTransfer.files) if (f.type.startsWith("image/")) upload(f); });
  dialog.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) { e.preventDefault(); files.forEach(upload); }
  });
}

function openLightbox(src, alt) {
  const box = $("#lightbox");
  $("#lightbox-img").src = src;
  $("#lightbox-img").alt = alt || "";
  box.showModal();
}

// --- keyboard ----------------------------------------------------------------------------------
function setupKeys(capture) {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable], dialog[open]")) return;
    const cards = $$("li.item:not([hidden])", list());
    const current = document.activeElement?.closest("li.item");
    switch (event.key) {
      case "/": event.preventDefault(); $("#search").focus(); $("#search").select(); break;
      case "n": event.preventDefault(); capture.focus(false); break;
      case "t": event.preventDefault(); capture.focus(true); break;
      case "?": event.preventDefault(); $("#shortcuts").showModal(); break;
      case "e": {
        const card = current || cards[0];
        if (card) { event.preventDefault(); openEditor(card.dataset.id); }
        break;
      }
      case "j": case "k": {
        if (!cards.length) break;
        event.preventDefault();
        const i = current ? cards.indexOf(current) : -1;
        const next = cards[Math.max(0, Math.min(cards.length - 1, i + (event.key === "j" ? 1 : -1)))];
        next.focus();
        next.scrollIntoView({ block: "nearest" });
        break;
      }
      default:
    }
  });
  $("#shortcuts-button")?.addEventListener("click", () => $("#shortcuts").showModal());
  $("#lightbox")?.addEventListener("click", (e) => { if (e.target.id === "lightbox") e.target.close(); });
}

// --- settings: the time zone and the calendar feed -----------------------------------------
async function syncTimezone() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const stored = $('meta[name="timezone"]')?.content;
  if (!zone || zone === stored) return;
  try {
    await api.patch("/api/v1/settings", { timezone: zone });
    $('meta[name="timezone"]').content = zone;
    $("#settings-timezone").textContent = zone;
    if (!listState.query) await reloadList(); // "today" and "overdue" may have moved
    refreshTags();
  } catch (err) { /* a zone this server does not know: it keeps the stored one */ }
}
function setupSettings() {
  const dialog = $("#settings");
  if (!dialog) return;
  const state = $("#feed-state");
  const show = (on, url) => {
    state.dataset.on = String(on);
    state.textContent = url ? "Subscribe to this address; it is shown only now." : on ? "The feed is on. Its address was shown when it was made." : "The feed is off.";
    $(".feed-url", dialog).hidden = !url;
    $("#feed-url").value = url || "";
    $("#feed-new").textContent = on ? "New address" : "Turn on";
    $("#feed-off").hidden = !on;
  };
  $("#settings-button").addEventListener("click", () => dialog.showModal());
  $("#feed-new").addEventListener("click", async () => {
    try { show(true, (await api.post("/api/v1/calendar-feed")).url); $("#feed-url").select(); }
    catch (err) { toast(err.message, { kind: "error" }); }
  });
  $("#feed-off").addEventListener("click", async () => {
    try { await api.del("/api/v1/calendar-feed"); show(false); toast("Calendar feed turned off."); }
    catch (err) { toast(err.message, { kind: "error" }); }
  });
  $("#import-markdown").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    const out = $("#import-report");
    out.textContent = `Importing ${file.name}…`;
    try {
      const res = await fetch("/api/v1/import/markdown", { method: "POST", body: file, credentials: "same-origin",
        headers: { "Content-Type": "application/zip", "X-CSRF-Token": csrf(), Accept: "application/json" } });
      const report = await res.json();
      if (!res.ok) throw new Error(report.error ? report.error.message : `import failed (${res.status})`);
      const { imported, skipped } = report.counts;
      out.textContent = `Imported ${imported} ${imported === 1 ? "note" : "notes"}, skipped ${skipped}.`;
      if (report.skipped.length) {
        const why = document.createElement("ul");
        for (const s of report.skipped.slice(0, 20)) { const li = document.createElement("li"); li.textContent = `${s.file}: ${s.reason}`; why.append(li); }
        out.append(why);
      }
      await reloadList();
      refreshTags();
    } catch (err) { out.textContent = `Not imported: ${err.message}`; }
  });
  $("#feed-copy").addEventListener("click", async () => {
    $("#feed-url").select();
    try { await navigator.clipboard.writeText($("#feed-url").value); toast("Address copied."); }
    catch (err) { toast("Selected: press Ctrl+C to copy."); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupTheme();
  setupLogin();
  if (!$("#items")) return;
  setupLogout();
  setupList();
  const capture = setupCapture();
  setupSearch();
  setupEditor();
  setupSettings();
  setupKeys(capture);
  syncTimezone();
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
});
