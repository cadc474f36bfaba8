// The album on a phone without a connection: the album's newest photos are kept on the device for
// the signed-in user (their records in IndexedDB, their thumbnails in the Cache API), shown
// read-only when the app opens offline, and forgotten at sign-out. The page keeps and reads them
// itself: a service worker in the way of every thumbnail slowed the album's first paint.
const store = globalThis.idbKeyval.createStore("memstudio-offline", "album");
const THUMBNAILS = "memstudio-thumbnails";

const KEEP_THUMBNAILS = 300;
const address = (url) => url.split("?")[0];  // a presigned URL's signature changes; the object does not

/** The newest photos' records, and their thumbnails not kept yet (fetched again, off the page's
 * path: the <img> copies cannot be read); the oldest thumbnails go past KEEP_THUMBNAILS. */
export async function keepAlbum(owner, photos) {
  await globalThis.idbKeyval.set(owner, { photos, savedAt: Date.now() }, store);
  if (!globalThis.caches) return;
  const cache = await caches.open(THUMBNAILS);
  for (const photo of photos) {
    if (!photo.thumbnail_url || (await cache.match(address(photo.thumbnail_url)))) continue;
    const response = await fetch(photo.thumbnail_url, { mode: "cors" }).catch(() => null);
    if (response?.ok) await cache.put(address(photo.thumbnail_url), response);
  }
  const kept = await cache.keys();
  for (const old of kept.slice(0, Math.max(0, kept.length - KEEP_THUMBNAILS))) await cache.delete(old);
}

/** The kept photos, each thumbnail pointing at its kept copy (or at nothing). */
export async function keptAlbum(owner) {
  const kept = await globalThis.idbKeyval.get(owner, store);
  if (!kept || !globalThis.caches) return kept;
  const cache = await caches.open(THUMBNAILS);
  for (const photo of kept.photos) {
    const copy = photo.thumbnail_url && (await cache.match(address(photo.thumbnail_url)));
    photo.thumbnail_url = copy ? URL.createObjectURL(await copy.blob()) : null;
  }
  return kept;
}

export async function forgetAlbum(owner) {
  await globalThis.idbKeyval.del(owner, store);
  if (!globalThis.caches) return;
  const cache = await caches.open(THUMBNAILS);
  for (const request of await cache.keys()) {
    if (new URL(request.url).pathname.includes(`/thumbs/${owner}/`)) await cache.delete(request);
  }
}
