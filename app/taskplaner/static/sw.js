"use strict";
// Service worker: the app shell always loads, and the pages and items viewed last stay readable
// offline. Only GET requests are cached; writes always go to the network.
const VERSION = "tp-v1";
const SHELL = ["/static/app.css", "/static/app.js", "/static/theme.js", "/static/icons/icon.svg",
  "/static/icons/icon-192.png", "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function readable(url) {
  // pages and fragments a person reads; not the API, uploads or metrics
  return url.pathname === "/" || url.pathname.startsWith("/ui/") || url.pathname.startsWith("/api/v1/blobs/");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest") {
    event.respondWith(caches.open(VERSION).then(async (cache) => {
      const fresh = fetch(request).then((res) => { if (res.ok) cache.put(request, res.clone()); return res; });
      return (await cache.match(request)) || fresh;
    }));
    return;
  }
  if (!readable(url)) return;
  event.respondWith(fetch(request).then((res) => {
    if (res.ok) {
      const copy = res.clone();
      caches.open(VERSION).then((cache) => cache.put(request, copy));
    }
    return res;
  }).catch(async () => (await caches.match(request)) || (request.mode === "navigate" && await caches.match("/"))
    || new Response("Offline, and this page was not viewed before.", { status: 503, headers: { "Content-Type": "text/plain" } })));
});

self.addEventListener("message", (event) => {
  if (event.data === "logout") event.waitUntil(caches.delete(VERSION));
});
