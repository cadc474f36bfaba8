// The app shell, kept for when the phone is offline: the page, its script, styles, languages and
// icon. Network first (a new version arrives as soon as the phone is online), the kept copy when
// the network fails. API calls and photos are never kept: they belong to one signed-in user.
const SHELL = "memstudio-shell-v5";
const FILES = ["./", "web/app.js", "web/i18n.js", "web/i18next.min.js", "web/idb-keyval.js", "web/uploads.js", "web/export.js", "web/offline.js", "web/client-zip.js", "web/style.css", "web/icon.svg",
  "web/i18n-en.json", "web/i18n-ko.json", "web/manifest.webmanifest", "web/config.json"];
const base = new URL("../", self.location).href;  // the page's folder (an API Gateway stage's too)
const shellUrls = new Set(FILES.map((file) => new URL(file, base).href));

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll([...shellUrls])).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((name) => name !== SHELL).map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

// Photos shared from the phone's gallery (the manifest's share_target) arrive here as a form
// POST: they wait in IndexedDB until the page, signed in, puts them in the upload queue.
importScripts("idb-keyval.js");
const SHARED = idbKeyval.createStore("memstudio-shared", "files");
const SHARE = new URL("share", base).href;

async function receiveShare(request) {
  const form = await request.formData();
  for (const file of form.getAll("photos")) {
    if (file instanceof File && file.size) await idbKeyval.set(crypto.randomUUID(), file, SHARED);
  }
  return Response.redirect(new URL("./#upload", base).href, 303);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  url.hash = "";
  if (request.method === "POST" && url.href === SHARE) {
    event.respondWith(receiveShare(request));
    return;
  }
  if (request.method !== "GET" || !shellUrls.has(url.href)) return;
  event.respondWith(fetch(request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(SHELL).then((cache) => cache.put(url.href, copy));
    }
    return response;
  }).catch(() => caches.match(url.href).then((kept) => kept || Response.error())));
});
