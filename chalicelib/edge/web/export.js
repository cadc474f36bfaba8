// "Download everything": every original of the album in one ZIP (client-zip, npm, MIT; fetched at
// build time like i18next), built in the browser from the photos' presigned URLs a page of the
// album at a time, in folders by month. Where the browser can write a file as it arrives
// (showSaveFilePicker), nothing is held in memory; elsewhere the archive is assembled in memory.
import { downloadZip } from "./client-zip.js";

/** "2026-12/IMG_0001.jpg", with " (2)" before the extension for a name already taken. */
function entryName(taken, photo) {
  const folder = (photo.timeline_at || photo.uploaded_at || "").slice(0, 7) || "undated";
  const name = (photo.filename || `${photo.photo_id}.jpg`).replace(/[\\/]/g, "_");
  let entry = `${folder}/${name}`;
  for (let n = 2; taken.has(entry); n += 1) entry = `${folder}/${name.replace(/(\.[^.]*)?$/, ` (${n})$1`)}`;
  taken.add(entry);
  return entry;
}

/** listPage(cursor) → a page of GET /photos; onProgress(done) after each photo. Resolves with the
 * photos written and those whose original could not be fetched. */
export async function downloadEverything(listPage, onProgress) {
  const taken = new Set();
  const counts = { done: 0, skipped: 0 };
  async function* originals() {
    let cursor = null;
    do {
      const page = await listPage(cursor);
      for (const photo of page.photos) {
        if (!photo.url || photo.status === "pending") continue;  // nothing arrived yet
        const response = await fetch(photo.url).catch(() => null);
        if (!response?.ok) { counts.skipped += 1; continue; }
        yield { name: entryName(taken, photo), lastModified: photo.taken_at || photo.uploaded_at, input: response };
        onProgress((counts.done += 1));
      }
      cursor = page.next_cursor;
    } while (cursor);
  }
  const zip = downloadZip(originals());
  if (window.showSaveFilePicker) {
    const file = await window.showSaveFilePicker({ suggestedName: "memory-studio.zip" });
    await zip.body.pipeTo(await file.createWritable());
  } else {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await zip.blob());
    link.download = "memory-studio.zip";
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  }
  return counts;
}
