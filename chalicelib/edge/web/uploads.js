// The upload queue: photos on their way to S3, kept in the browser's IndexedDB (idb-keyval) with
// their bytes, so a reload, a closed tab or a lost connection resumes them where they were. Each
// file gets its presigned form from the API (in batches), then goes straight to S3; a failure the
// network caused is tried again with growing waits, one the API or S3 refused is shown as failed.
// A user's queue is theirs alone: it is read by owner and forgotten at sign-out.
const { createStore, set, del, entries } = globalThis.idbKeyval;
const store = createStore("memstudio-uploads", "queue");

const AT_ONCE = 4;               // files sent to S3 at the same time
const MAX_ATTEMPTS = 8;          // then the file is shown as failed, with "Try again"
const FIRST_WAIT = 1000, LONGEST_WAIT = 60_000;
const FORM_MARGIN = 60_000;      // a form this close to expiring is not used: a new one is asked for

/** An error that says whether trying again may help (the network, a busy server) or not (a refusal). */
export class UploadError extends Error {
  constructor(message, { retry = false, newForm = false } = {}) {
    super(message);
    this.retry = retry; this.newForm = newForm;
  }
}

const LEFT = new Set(["waiting", "retrying", "sending"]);  // states of a file not yet in the album

export class UploadQueue {
  /**
   * requestForms(items) → the API's uploads, one per item, in order; post(form, file, onProgress,
   * signal) → resolves when S3 has the file; forget(photoId) → drops a pending photo at the API;
   * onChange(item) → the page draws the item again.
   */
  constructor({ requestForms, post, forget, onChange, batch }) {
    Object.assign(this, { requestForms, post, forget, onChange, batch });
    this.items = new Map();
    this.sending = new Map();    // item id → AbortController
    this.owner = null;
    this.pumping = null;
    this.timer = null;
    window.addEventListener("online", () => this.pump());
  }

  /** The owner's queue as a reload left it: files that were being sent are sent again. */
  async resume(owner) {
    this.owner = owner;
    for (const [, item] of await entries(store)) {
      if (item.owner !== owner || this.items.has(item.id)) continue;
      if (item.state === "sending") item.state = "waiting";
      item.retryAt = 0;
      this.items.set(item.id, item);
      this.onChange(item);
    }
    this.pump();
  }

  /** Files already checked by the page: { file, contentType, sha256 } each. */
  async add(files) {
    for (const { file, contentType, sha256 } of files) {
      const item = { id: crypto.randomUUID(), owner: this.owner, file, name: file.name, size: file.size, contentType, sha256,
                     state: "waiting", attempts: 0, retryAt: 0, loaded: 0, form: null, formExpires: 0, error: null, added: Date.now() };
      this.items.set(item.id, item);
      await this.keep(item);
      this.onChange(item);
    }
    this.pump();
  }

  async cancel(id) {
    const item = this.items.get(id);
    if (!item || !LEFT.has(item.state) && item.state !== "failed") return;
    this.sending.get(id)?.abort();
    item.state = "cancelled";
    this.items.delete(id);
    await del(id, store);
    this.onChange(item);
    if (item.form?.photo_id) await this.forget(item.form.photo_id).catch(() => {});  // else it expires at the API
  }

  cancelAll() {
    return Promise.all([...this.items.values()].filter((i) => LEFT.has(i.state) || i.state === "failed").map((i) => this.cancel(i.id)));
  }

  retry(id) {
    const item = this.items.get(id);
    if (item?.state !== "failed") return;
    Object.assign(item, { state: "waiting", attempts: 0, retryAt: 0, error: null });
    this.keep(item).then(() => this.onChange(item));
    this.pump();
  }

  /** Sign-out: this browser no longer holds the owner's files (their pending photos expire at the API). */
  async leave() {
    for (const controller of this.sending.values()) controller.abort();
    for (const [id, item] of await entries(store)) if (item.owner === this.owner) await del(id, store);
    this.items.clear();
    this.owner = null;
  }

  /** What the page shows above the list: files done of all, failed, and bytes still to send. */
  summary() {
    const all = [...this.items.values()];
    const left = all.filter((i) => LEFT.has(i.state));
    return {
      total: all.length,
      done: all.filter((i) => i.state === "done" || i.state === "duplicate").length,
      failed: all.filter((i) => i.state === "failed").length,
      left: left.length,
      bytesLeft: left.reduce((sum, i) => sum + i.size - i.loaded, 0),
      bytes: all.reduce((sum, i) => sum + i.size, 0),
    };
  }

  keep(item) {
    const { id, owner, file, name, size, contentType, sha256, state, attempts, form, formExpires, error, added } = item;
    return set(id, { id, owner, file, name, size, contentType, sha256, state, attempts, form, formExpires, error, added, loaded: 0 }, store);
  }

  // One pass at a time: forms for the files due that have none, then files to S3 up to AT_ONCE.
  pump() {
    if (this.pumping) { this.again = true; return this.pumping; }
    this.pumping = (async () => {
      do { this.again = false; await this.fill(); } while (this.again);
    })().finally(() => { this.pumping = null; });
    return this.pumping;
  }

  async fill() {
    if (!navigator.onLine || !this.owner) return;
    const now = Date.now();
    const due = [...this.items.values()].filter((i) => (i.state === "waiting" || i.state === "retrying") && i.retryAt <= now)
      .sort((a, b) => a.added - b.added);
    const formless = due.filter((i) => i.formExpires - FORM_MARGIN < now).slice(0, this.batch);
    if (formless.length) await this.giveForms(formless);
    for (const item of due) {
      if (this.sending.size >= AT_ONCE) break;
      const ready = (item.state === "waiting" || item.state === "retrying") && item.formExpires - FORM_MARGIN >= now;
      if (ready && !this.sending.has(item.id)) this.send(item);
    }
    this.wake();
  }

  async giveForms(items) {
    let forms;
    try {
      forms = await this.requestForms(items);
    } catch (error) {
      for (const item of items) await this.failed(item, error);
      return;
    }
    for (const [k, item] of items.entries()) {
      item.form = forms[k];
      item.formExpires = Date.now() + forms[k].expires_in * 1000;
      if (forms[k].duplicate_of) { item.state = "duplicate"; await del(item.id, store); } else await this.keep(item);
      this.onChange(item);
    }
  }

  send(item) {
    const controller = new AbortController();
    this.sending.set(item.id, controller);
    item.state = "sending"; item.loaded = 0;
    this.keep(item);
    this.onChange(item);
    this.post(item.form, item.file, (loaded) => { item.loaded = loaded; this.onChange(item); }, controller.signal)
      .then(async () => {
        item.state = "done"; item.loaded = item.size;
        await del(item.id, store);
        this.onChange(item);
      }, (error) => (controller.signal.aborted ? null : this.failed(item, error)))
      .finally(() => { this.sending.delete(item.id); this.pump(); });
  }

  async failed(item, error) {
    if (item.state === "cancelled") return;
    const offline = !navigator.onLine;  // waiting for the network is not an attempt
    if (!offline) item.attempts += 1;
    if (error.newForm) { item.form = null; item.formExpires = 0; }
    item.loaded = 0;
    item.error = error.message;
    if ((error.retry || error instanceof TypeError) && item.attempts < MAX_ATTEMPTS) {
      const wait = Math.min(LONGEST_WAIT, FIRST_WAIT * 2 ** Math.max(0, item.attempts - 1));
      item.state = "retrying";
      item.retryAt = Date.now() + wait * (0.5 + Math.random() / 2);
    } else {
      item.state = "failed";
    }
    await this.keep(item);
    this.onChange(item);
  }

  // The next retry that falls due runs the pump again.
  wake() {
    clearTimeout(this.timer);
    const next = Math.min(...[...this.items.values()].filter((i) => i.state === "retrying").map((i) => i.retryAt));
    if (Number.isFinite(next)) this.timer = setTimeout(() => this.pump(), Math.max(0, next - Date.now()) + 10);
  }
}
