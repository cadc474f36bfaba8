// Memory Studio web client: Cognito sign-in, presigned uploads, album, find by face.
// Talks only to Cognito (config.cognitoEndpoint) and this API (relative paths, so it works
// under an API Gateway stage prefix too).  The ID token lives in memory only; the refresh
// token in localStorage; neither ever goes into a URL.
import { LANGUAGES, formatBytes, formatDate, formatNumber, formatSpeed, language, listOf, monthTitle, setLanguage, startLanguages, t } from "./i18n.js";
import { UploadError, UploadQueue } from "./uploads.js";
import { forgetAlbum, keepAlbum, keptAlbum } from "./offline.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "memstudio.session";
let config = null;
let session = null;

// Status line -------------------------------------------------------------------------
function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

/** A message next to what the user just did, at the bottom of the screen, with Undo when it can
 * be undone; it goes after a few seconds. */
let toastTimer = null;
function toast(message, undo = null, seconds = 10) {
  $("toast-text").textContent = message;
  $("toast-undo").hidden = !undo;
  $("toast-undo").onclick = async () => {
    $("toast").hidden = true;
    try { await undo(); } catch (error) { say(error.message, true); }
  };
  $("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $("toast").hidden = true; }, seconds * 1000);
}

/** Photos back from the trash, and the album drawn again with them. */
async function restorePhotos(photoIds) {
  await api("POST", "trash/restore", { photo_ids: photoIds });
  album.reset(); if (currentView === "album") album.start();
  toast(t("album.restored", { count: photoIds.length }));
}

// Cognito -----------------------------------------------------------------------------
async function cognito(action, body) {
  const response = await fetch(config.cognitoEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": `AWSCognitoIdentityProviderService.${action}` },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    // Cognito's own words are English (and not always right): each known error in plain words.
    const code = String(data.__type || "").split("#").pop();
    throw new Error(t(`cognito.${code}`, { defaultValue: t("errors.sign_in_service", { status: response.status }) }));
  }
  return data;
}

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
}

function keepSession(result, email) {
  const idToken = result.IdToken;
  const c = claims(idToken);
  session = { idToken, accessToken: result.AccessToken, refreshToken: result.RefreshToken || session?.refreshToken,
              expiresAt: c.exp * 1000, email: c.email || email };
  localStorage.setItem(SESSION_KEY, JSON.stringify({ refreshToken: session.refreshToken, email: session.email, sub: c.sub }));
}

async function refreshSession() {
  const result = await cognito("InitiateAuth", {
    AuthFlow: "REFRESH_TOKEN_AUTH", ClientId: config.clientId, AuthParameters: { REFRESH_TOKEN: session.refreshToken },
  });
  keepSession(result.AuthenticationResult, session.email);
}

async function currentToken() {
  if (!session) throw new Error(t("errors.sign_in"));
  if (Date.now() > session.expiresAt - 60_000) await refreshSession();
  return session.idToken;
}

/** Sign-out revokes this browser's refresh token at Cognito (RevokeToken). A pool without
 * that operation (moto's, in the local stack) gets a global sign-out with the access token. */
async function revokeSession() {
  if (!session?.refreshToken) return;
  try {
    await cognito("RevokeToken", { ClientId: config.clientId, Token: session.refreshToken });
  } catch (error) {
    if (session.accessToken) await cognito("GlobalSignOut", { AccessToken: session.accessToken }).catch(() => {});
  }
}

async function signOut(message = t("auth.signed_out"), revoke = true) {
  if (revoke) await uploads.cancelAll().catch(() => {});  // no file of theirs is left on this browser
  await uploads.leave();
  const owner = session?.idToken ? claims(session.idToken).sub : JSON.parse(localStorage.getItem(SESSION_KEY) || "{}").sub;
  if (owner) await forgetAlbum(owner).catch(() => {});
  $("uploads").replaceChildren(); drawUploadSummary();
  if (revoke) await revokeSession().catch(() => {});
  session = null;
  localStorage.removeItem(SESSION_KEY);
  album.reset();
  show("auth");
  say(message);
}

// API ---------------------------------------------------------------------------------
/** The API's error in the user's words: in English its own message, which is the most specific;
 * in another language its code's message, else a general one. */
class ApiError extends Error {
  constructor(message, status, code) {
    const general = t("errors.request_failed", { status });
    super(language() === "en" && message ? message : t(`api.${code}`, { defaultValue: general }));
    this.status = status; this.code = code;
  }
}

async function api(method, path, body, retried = false) {
  const headers = { Authorization: `Bearer ${await currentToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && data.error === "token_revoked") {
    // Signed out everywhere (on another device too), disabled, or the password was reset.
    await signOut(t("auth.revoked"), false);
    throw new ApiError(data.message, 401, data.error);
  }
  if (response.status === 401 && !retried) {
    await refreshSession();
    return api(method, path, body, true);
  }
  if (!response.ok) throw new ApiError(data.message, response.status, data.error);
  return data;
}

function contentType(file) {
  const ext = file.name.split(".").pop().toLowerCase();
  return config.contentTypes.includes(file.type) ? file.type : config.extensions[ext] || file.type || "application/octet-stream";
}

// Views -------------------------------------------------------------------------------
const VIEWS = ["auth", "album", "trash", "upload", "find", "people", "profile"];

let currentView = null;

function show(name) {
  if (name !== "auth" && !session) name = "auth";
  if (session && uploads.owner !== claims(session.idToken).sub) {
    uploads.resume(claims(session.idToken).sub).then(takeShared).catch((error) => say(error.message, true));
  }
  if (name !== currentView) say("");  // a message belongs to the page that raised it
  const opening = currentView === null;  // the page just loaded: the first Tab reaches the skip link
  currentView = name;
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  $("nav").hidden = !session;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (name === "album") album.start();
  if (name === "people") people.list();
  if (name === "trash") trash.list();
  if (name === "profile") { $("profile-email").textContent = session.email || ""; showUsage(); }
  if (!opening) $("main").focus({ preventScroll: true });
}

function route() {
  const name = location.hash.slice(1) || "album";
  show(VIEWS.includes(name) ? name : "album");
}

// Sign in / up / confirm --------------------------------------------------------------
const AUTH_FORMS = ["signin", "signup", "confirm", "forgot", "reset"];

function selectTab(name) {
  for (const form of AUTH_FORMS) {
    $(`form-${form}`).hidden = form !== name;
    $(`tab-${form}`)?.setAttribute("aria-selected", String(form === name));
  }
}

// The user pool's own password rules (web/config.json reads them from the pool), said in words.
function passwordRules(policy) {
  if (!policy) return "";
  const needs = [["RequireUppercase", "auth.need_upper"], ["RequireLowercase", "auth.need_lower"],
    ["RequireNumbers", "auth.need_number"], ["RequireSymbols", "auth.need_symbol"]].filter(([key]) => policy[key]).map(([, key]) => t(key));
  const min = policy.MinimumLength || 8;
  return needs.length ? t("auth.rules_with", { min, needs: listOf(needs) }) : t("auth.rules", { min });
}

function wireAuth() {
  for (const tab of ["signin", "signup", "confirm"]) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  if (config.local) { $("confirm-hint").dataset.i18n = "auth.local_code"; $("confirm-hint").textContent = t("auth.local_code"); }
  $("resend-code").hidden = config.local;  // moto sends no email and has no ResendConfirmationCode
  for (const id of ["signup-rules", "reset-rules"]) $(id).textContent = passwordRules(config.passwordPolicy);
  for (const form of ["form-signup", "form-reset"]) $(form).elements.password.minLength = config.passwordPolicy?.MinimumLength || 8;
  $("forgot-link").addEventListener("click", () => {
    $("form-forgot").elements.email.value = $("form-signin").elements.email.value;
    selectTab("forgot");
  });
  $("resend-code").addEventListener("click", async () => {
    const email = $("form-confirm").elements.email.value;
    if (!email) { say(t("auth.email_first"), true); return; }
    try {
      await cognito("ResendConfirmationCode", { ClientId: config.clientId, Username: email });
      say(t("auth.code_resent"));
    } catch (error) { say(error.message, true); }
  });
  const guarded = (handler) => async (event) => {
    event.preventDefault();
    const button = event.target.querySelector("button");
    button.disabled = true;
    try { await handler(new FormData(event.target)); } catch (error) { say(error.message, true); } finally { button.disabled = false; }
  };
  $("form-signin").addEventListener("submit", guarded(async (form) => {
    const email = form.get("email");
    const result = await cognito("InitiateAuth", {
      AuthFlow: "USER_PASSWORD_AUTH", ClientId: config.clientId, AuthParameters: { USERNAME: email, PASSWORD: form.get("password") },
    });
    keepSession(result.AuthenticationResult, email);
    location.hash = "#album";
    route();
    say(t("auth.signed_in", { email: session.email }));
  }));
  $("form-signup").addEventListener("submit", guarded(async (form) => {
    const email = form.get("email");
    await cognito("SignUp", { ClientId: config.clientId, Username: email, Password: form.get("password"), UserAttributes: [{ Name: "email", Value: email }] });
    $("form-confirm").elements.email.value = email;
    selectTab("confirm");
    say(t("auth.created"));
  }));
  $("form-confirm").addEventListener("submit", guarded(async (form) => {
    const email = form.get("email");
    await cognito("ConfirmSignUp", { ClientId: config.clientId, Username: email, ConfirmationCode: form.get("code") });
    $("form-signin").elements.email.value = email;
    selectTab("signin");
    say(t("auth.confirmed"));
  }));
  $("form-forgot").addEventListener("submit", guarded(async (form) => {
    const email = form.get("email");
    await cognito("ForgotPassword", { ClientId: config.clientId, Username: email });
    $("form-reset").elements.email.value = email;
    selectTab("reset");
    say(t(config.local ? "auth.local_reset" : "auth.code_sent"));
  }));
  $("form-reset").addEventListener("submit", guarded(async (form) => {
    const email = form.get("email");
    await cognito("ConfirmForgotPassword", {
      ClientId: config.clientId, Username: email, ConfirmationCode: form.get("code"), Password: form.get("password"),
    });
    $("form-signin").elements.email.value = email;
    selectTab("signin");
    say(t("auth.password_changed"));
  }));
  $("sign-out").addEventListener("click", () => signOut());
}

// Album -------------------------------------------------------------------------------
// The album is a timeline: months newest first, each with its count (GET /photos/months), photos
// in the order the API pages them (timeline_at, then photo_id, newest first).
const nowStamp = () => new Date().toISOString().slice(0, 19);  // an upload's place until the indexer reads its date
const monthOf = (photo) => (photo.timeline_at || nowStamp()).slice(0, 7);
const newer = (a, b) => ((a.timeline_at || "") !== (b.timeline_at || "") ? (a.timeline_at || "") > (b.timeline_at || "") : a.photo_id > b.photo_id);

const KEPT_PHOTOS = 60;  // the album's newest photos kept on the device for offline use

const album = {
  cursor: null, loading: false, finished: false, started: false, tiles: new Map(), months: new Map(),
  selecting: false, selected: new Set(), lastClicked: null,
  // Pending tiles are polled one round at a time (never overlapping), every 2 s while something
  // changes, backing off to 30 s while nothing does, and not at all once nothing is pending or
  // nothing changed for 15 minutes (a reload or a new upload starts it again).
  watcher: null, watchDelay: 2000, unchangedSince: 0,
  // Presigned URLs expire (5 minutes): a tile whose image fails to load asks for fresh ones.
  stale: new Set(), refreshed: new Map(), refreshTimer: null,

  reset() {
    this.cursor = null; this.finished = false; this.started = false; this.tiles.clear(); this.months.clear();
    $("grid").replaceChildren();
    clearTimeout(this.watcher); this.watcher = null;
    this.setSelecting(false);
  },

  start() {
    if (this.started) return;
    this.started = true;
    this.loadMonths();
    // The photos first; the progress line only while photos wait for the indexer (watchPending asks again).
    this.loadMore().then(() => { if ([...this.tiles.values()].some((tile) => tile.photo.status === "pending")) this.progress(); });
  },

  /** "12 of 32 photos ready for Find" while photos wait for the indexer. */
  async progress() {
    let summary;
    try { summary = await api("GET", "me"); } catch { return; }
    const { pending, indexed, failed } = summary.photos;
    $("album-progress").hidden = pending === 0;
    $("album-progress-bar").max = Math.max(pending + indexed + failed, 1);
    $("album-progress-bar").value = indexed + failed;
    $("album-progress-text").textContent = t("album.progress", { ready: formatNumber(indexed), count: pending + indexed + failed });
  },

  watchSoon() {
    this.watchDelay = 2000; this.unchangedSince = Date.now();
    if (this.watcher === null) this.watcher = setTimeout(() => this.watchPending(), this.watchDelay);
  },

  monthsSoon() {
    clearTimeout(this.monthsTimer);
    this.monthsTimer = setTimeout(() => this.loadMonths(), 300);
  },

  async loadMonths() {
    try {
      this.months = new Map((await api("GET", "photos/months")).months.map((m) => [m.month, m.count]));
      for (const section of $("grid").children) this.title(section);
    } catch { /* the headers keep counting what is shown */ }
  },

  async loadMore() {
    if (this.loading || this.finished) return;
    this.loading = true;
    try {
      const query = this.cursor ? `&cursor=${encodeURIComponent(this.cursor)}` : "";
      const page = await api("GET", `photos?limit=30${query}`);
      for (const photo of page.photos) this.render(photo);
      this.keep();
      this.cursor = page.next_cursor;
      this.finished = !page.next_cursor;
      $("album-empty").hidden = this.tiles.size > 0;
    } catch (error) {
      say(t("album.load_failed", { message: error.message }), true);
    } finally {
      this.loading = false;
    }
  },

  /** The newest photos shown, kept on the device for when the phone is offline (web/offline.js). */
  keep() {
    clearTimeout(this.keepTimer);
    this.keepTimer = setTimeout(() => {
      if (!session?.idToken) return;
      const photos = [...this.tiles.values()].map((tile) => tile.photo).sort((a, b) => (newer(a, b) ? -1 : 1)).slice(0, KEPT_PHOTOS);
      keepAlbum(claims(session.idToken).sub, photos).catch(() => {});
    }, 1000);
  },

  /** The list of a month's section, made (in month order) when it is the month's first photo. */
  section(month) {
    const found = [...$("grid").children].find((s) => s.dataset.month === month);
    if (found) return found.querySelector("ul");
    const section = document.createElement("section");
    section.className = "month"; section.dataset.month = month;
    const heading = document.createElement("h3");
    const all = document.createElement("input");
    all.type = "checkbox"; all.className = "select-month"; all.hidden = !this.selecting;
    all.setAttribute("aria-label", t("album.select_month", { month: monthTitle(month) }));
    all.addEventListener("change", () => this.selectMonth(section, all.checked));
    const title = document.createElement("span"), count = document.createElement("span");
    title.className = "title"; count.className = "count";
    heading.append(all, title, count);
    const list = document.createElement("ul");
    list.className = "grid"; list.setAttribute("aria-label", monthTitle(month));
    section.append(heading, list);
    $("grid").insertBefore(section, [...$("grid").children].find((s) => s.dataset.month < month) || null);
    return list;
  },

  title(section) {
    const shown = section.querySelectorAll("li").length;
    const count = this.months.get(section.dataset.month) ?? shown;
    section.querySelector(".title").textContent = monthTitle(section.dataset.month);
    section.querySelector(".count").textContent = t("album.month_count", { count });
  },

  /** Puts a tile in its month, in timeline order; a month left empty goes. */
  place(item, photo) {
    const from = item.closest("section");
    const list = this.section(monthOf(photo));
    const before = [...list.children].find((li) => li !== item && newer(photo, this.tiles.get(li.dataset.photoId)?.photo || {}));
    if (item.parentNode !== list || item.nextSibling !== before) list.insertBefore(item, before || null);
    for (const section of new Set([from, item.closest("section")])) {
      if (!section) continue;
      if (!section.querySelector("li")) section.remove(); else this.title(section);
    }
  },

  render(photo) {
    if (photo.status === "duplicate" || photo.trashed_at) { this.remove(photo.photo_id); return; }
    photo = { ...photo, timeline_at: photo.timeline_at || this.tiles.get(photo.photo_id)?.photo.timeline_at || nowStamp() };
    let item = this.tiles.get(photo.photo_id)?.item;
    if (!item) {
      item = document.createElement("li");
      item.dataset.photoId = photo.photo_id;
      if (!this.loading) this.monthsSoon();  // a new photo (an upload), not a page of the album: the headers count it
    }
    this.tiles.set(photo.photo_id, { item, photo });
    // Its shape, for the justified rows of a wide screen (a photo not yet read is square).
    item.style.setProperty("--ratio", photo.width && photo.height ? (photo.width / photo.height).toFixed(3) : "1");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.status = photo.status;
    button.setAttribute("aria-label", `${photo.filename || t("album.photo")}: ${t(`status.${photo.status}`)}`);
    if (this.selecting) button.setAttribute("aria-pressed", String(this.selected.has(photo.photo_id)));
    if (photo.thumbnail_url) {
      const img = document.createElement("img");
      img.src = photo.thumbnail_url; img.alt = ""; img.loading = "lazy";
      img.addEventListener("error", () => this.refreshSoon(photo.photo_id), { once: true });
      button.append(img);
    } else {
      const text = document.createElement("span");
      text.className = "placeholder"; text.textContent = photo.filename || t("album.photo");
      button.append(text);
    }
    if (photo.status !== "indexed") {
      const badge = document.createElement("span");
      badge.className = `badge ${photo.status}`;
      badge.textContent = photo.status === "failed"
        ? t("status.failed_with", { error: photo.error || t("status.unknown_error") }) : t(`status.${photo.status}`);
      button.append(badge);
    }
    button.addEventListener("click", (event) => this.click(photo.photo_id, event));
    item.replaceChildren(button);
    this.place(item, photo);
    $("album-empty").hidden = true;
    if (photo.status === "pending" && this.watcher === null) this.watchSoon();
  },

  remove(photoId) {
    const item = this.tiles.get(photoId)?.item;
    const section = item?.closest("section");
    item?.remove();
    this.tiles.delete(photoId);
    this.selected.delete(photoId);
    if (section && !section.querySelector("li")) section.remove(); else if (section) this.title(section);
    $("album-empty").hidden = this.tiles.size > 0;
  },

  /** Fresh copies of some photos in one call (POST /photos/status): new URLs, new states. */
  async update(photoIds) {
    let changed = false;
    for (let i = 0; i < photoIds.length; i += 100) {
      const answer = await api("POST", "photos/status", { photo_ids: photoIds.slice(i, i + 100) });
      for (const id of answer.not_found) { this.remove(id); changed = true; }
      for (const fresh of answer.photos) {
        const before = this.tiles.get(fresh.photo_id)?.photo;
        changed ||= !before || fresh.status !== before.status || Boolean(fresh.trashed_at) || fresh.status === "duplicate";
        this.render(fresh);
      }
    }
    if (changed) { this.loadMonths(); this.keep(); }
    return changed;
  },

  refreshSoon(photoId) {
    if (Date.now() - (this.refreshed.get(photoId) || 0) < 60_000) return;  // a truly broken image: once a minute
    this.refreshed.set(photoId, Date.now());
    this.stale.add(photoId);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      const ids = [...this.stale]; this.stale.clear();
      if (session) this.update(ids).catch(() => {});
    }, 250);
  },

  async watchPending() {
    let changed = false;
    const pending = [...this.tiles.values()].filter((t) => t.photo.status === "pending").map((t) => t.photo.photo_id);
    if (session && pending.length) {
      try { changed = await this.update(pending); } catch { /* tried again at the next round */ }
    }
    const stillPending = [...this.tiles.values()].some((t) => t.photo.status === "pending");
    if (changed || !stillPending) this.progress();
    if (changed) { this.watchDelay = 2000; this.unchangedSince = Date.now(); }
    else this.watchDelay = Math.min(30_000, this.watchDelay * 1.5);
    const givenUp = Date.now() - this.unchangedSince > 15 * 60_000;
    this.watcher = session && stillPending && !givenUp ? setTimeout(() => this.watchPending(), this.watchDelay) : null;
  },

  // Selecting many photos: click toggles, shift-click selects the run from the last click, a
  // month's box selects the month.
  setSelecting(on) {
    this.selecting = on; this.selected.clear(); this.lastClicked = null;
    $("select-mode").setAttribute("aria-pressed", String(on));
    $("select-mode").dataset.i18n = on ? "album.done" : "album.select";
    $("select-mode").textContent = t($("select-mode").dataset.i18n);
    $("selection").hidden = !on;
    for (const { item } of this.tiles.values()) {
      if (on) item.firstChild?.setAttribute("aria-pressed", "false"); else item.firstChild?.removeAttribute("aria-pressed");
    }
    for (const box of document.querySelectorAll(".select-month")) { box.hidden = !on; box.checked = false; }
    this.countSelected();
  },

  choose(photoId, on) {
    const tile = this.tiles.get(photoId);
    if (!tile) return;
    if (on) this.selected.add(photoId); else this.selected.delete(photoId);
    tile.item.firstChild?.setAttribute("aria-pressed", String(on));
  },

  click(photoId, event) {
    if (!this.selecting) { openPhoto(photoId); return; }
    const order = [...$("grid").querySelectorAll("li")].map((li) => li.dataset.photoId);
    if (event.shiftKey && this.lastClicked && order.includes(this.lastClicked)) {
      const [a, b] = [order.indexOf(this.lastClicked), order.indexOf(photoId)].sort((x, y) => x - y);
      for (const id of order.slice(a, b + 1)) this.choose(id, true);
    } else this.choose(photoId, !this.selected.has(photoId));
    this.lastClicked = photoId;
    this.countSelected();
  },

  selectMonth(section, on) {
    for (const li of section.querySelectorAll("li")) this.choose(li.dataset.photoId, on);
    this.countSelected();
  },

  countSelected() {
    $("selected-count").textContent = t("album.selected", { count: this.selected.size });
    $("selected-trash").disabled = $("selected-download").disabled = this.selected.size === 0;
  },

  async trashSelected() {
    const ids = [...this.selected];
    const moved = [];
    try {
      for (let i = 0; i < ids.length; i += 100) {
        const answer = await api("POST", "photos/trash", { photo_ids: ids.slice(i, i + 100) });
        for (const id of [...answer.trashed, ...answer.not_found]) this.remove(id);
        moved.push(...answer.trashed);
      }
      toast(t("album.trashed", { count: moved.length, days: config.trashDays }), () => restorePhotos(moved));
    } catch (error) { say(error.message, true); }
    this.setSelecting(false);
    this.loadMonths();
  },

  /** Each original as a download (S3 answers the presigned URL as an attachment). */
  async downloadSelected() {
    const ids = [...this.selected];
    try {
      for (let i = 0; i < ids.length; i += 100) {
        const answer = await api("POST", "photos/status", { photo_ids: ids.slice(i, i + 100) });
        for (const photo of answer.photos.filter((p) => p.download_url)) {
          const link = document.createElement("a");
          link.href = photo.download_url; link.download = photo.filename || "";
          document.body.append(link); link.click(); link.remove();
          await new Promise((resolve) => setTimeout(resolve, 300));  // browsers drop bursts of downloads
        }
      }
      say(t("album.downloading", { count: ids.length }));
    } catch (error) { say(error.message, true); }
  },
};

function wireAlbum() {
  $("select-mode").addEventListener("click", () => album.setSelecting(!album.selecting));
  $("selected-trash").addEventListener("click", () => album.trashSelected());
  $("selected-download").addEventListener("click", () => album.downloadSelected());
  $("trash-empty").addEventListener("click", () => trash.empty());
}

// Trash -------------------------------------------------------------------------------
const trash = {
  async list() {
    $("trash-hint").textContent = t("trash.hint", { days: config.trashDays });
    try {
      const photos = [];
      let cursor = null;
      do {
        const page = await api("GET", `trash?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        photos.push(...page.photos);
        cursor = page.next_cursor;
      } while (cursor);
      $("trash-grid").replaceChildren(...photos.map((photo) => this.tile(photo)));
      this.counted();
    } catch (error) { say(t("trash.load_failed", { message: error.message }), true); }
  },

  counted() {
    const left = $("trash-grid").children.length;
    $("trash-none").hidden = left > 0;
    $("trash-empty").disabled = left === 0;
  },

  tile(photo) {
    const item = document.createElement("li");
    item.className = "trash-item"; item.dataset.photoId = photo.photo_id;
    const img = document.createElement("img");
    img.alt = photo.filename || t("album.photo"); img.loading = "lazy";
    if (photo.thumbnail_url) img.src = photo.thumbnail_url;
    const when = document.createElement("p");
    when.className = "hint";
    when.textContent = t("trash.purge_on", { date: formatDate(photo.purge_at) });
    const restore = document.createElement("button");
    restore.type = "button"; restore.className = "secondary"; restore.textContent = t("trash.restore");
    restore.addEventListener("click", async () => {
      try {
        await api("POST", "trash/restore", { photo_ids: [photo.photo_id] });
        item.remove(); this.counted(); album.reset();
        say(t("trash.restored", { name: photo.filename || t("trash.the_photo") }));
      } catch (error) { say(error.message, true); }
    });
    const purge = document.createElement("button");
    purge.type = "button"; purge.className = "danger"; purge.textContent = t("trash.delete_forever");
    purge.addEventListener("click", async () => {
      if (!confirm(t("trash.confirm_delete", { name: photo.filename || t("trash.this_photo") }))) return;
      try { await api("DELETE", `trash/${photo.photo_id}`); item.remove(); this.counted(); say(t("trash.deleted")); } catch (error) { say(error.message, true); }
    });
    item.append(img, when, restore, purge);
    return item;
  },

  async empty() {
    if (!confirm(t("trash.confirm_empty"))) return;
    try {
      let purged = 0, answer;
      do { answer = await api("DELETE", "trash"); purged += answer.purged; } while (answer.remaining);
      say(t("trash.emptied", { count: purged }));
      this.list();
    } catch (error) { say(error.message, true); }
  },
};

// Upload ------------------------------------------------------------------------------
const SPEED_WINDOW = 3000;  // the speed shown is that of the last few seconds

/** One row of the list: a file the page refused, or an item of the upload queue. */
function uploadRow(id, name) {
  let item = document.querySelector(`#uploads li[data-id="${id}"]`);
  if (item) return item;
  item = document.createElement("li");
  item.dataset.id = id;
  const label = document.createElement("span");
  label.className = "name"; label.textContent = name;
  const bar = document.createElement("progress");
  bar.max = 100; bar.value = 0;
  bar.setAttribute("aria-label", t("upload.of", { name }));
  const state = document.createElement("span");
  state.className = "state";
  const actions = document.createElement("span");
  actions.className = "actions";
  item.append(label, bar, state, actions);
  $("uploads").append(item);
  return item;
}

function refusedFile(file, message) {
  const item = uploadRow(crypto.randomUUID(), file.name);
  item.dataset.state = "failed";
  item.querySelector(".state").textContent = t("upload.failed");
  const error = document.createElement("span");
  error.className = "error"; error.textContent = `${file.name}: ${message}`;
  item.append(error);
}

function uploadButton(text, label, onClick) {
  const button = document.createElement("button");
  button.type = "button"; button.className = "secondary"; button.textContent = text;
  button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

const uploadSpeeds = new Map();  // item id → [[time, bytes]…] over SPEED_WINDOW
function speedOf(upload) {
  const samples = uploadSpeeds.get(upload.id) || [];
  const now = performance.now();
  samples.push([now, upload.loaded]);
  while (samples.length > 2 && now - samples[0][0] > SPEED_WINDOW) samples.shift();
  uploadSpeeds.set(upload.id, samples);
  const [[t0, b0]] = samples;
  return now > t0 ? ((upload.loaded - b0) * 1000) / (now - t0) : 0;
}

function drawUpload(upload) {
  const item = uploadRow(upload.id, upload.name);
  if (upload.state === "cancelled") { item.remove(); drawUploadSummary(); return; }
  item.dataset.state = upload.state;
  const bar = item.querySelector("progress");
  const state = item.querySelector(".state");
  const actions = item.querySelector(".actions");
  bar.value = Math.round((100 * upload.loaded) / Math.max(upload.size, 1));
  state.className = `state ${upload.state === "done" || upload.state === "duplicate" ? "done" : ""}`;
  state.textContent = {
    waiting: t("upload.waiting"),
    sending: upload.loaded ? t("upload.progress", { percent: bar.value, speed: formatSpeed(speedOf(upload)) }) : t("upload.starting"),
    retrying: navigator.onLine ? t("upload.retrying") : t("upload.offline"),
    done: t("upload.uploaded"),
    duplicate: t("upload.already"),
    failed: `${t("upload.failed")}: ${upload.error}`,
  }[upload.state];
  actions.replaceChildren();
  if (upload.state === "failed") actions.append(uploadButton(t("upload.retry"), t("upload.retry_of", { name: upload.name }), () => uploads.retry(upload.id)));
  if (!["done", "duplicate"].includes(upload.state)) actions.append(uploadButton("✕", t("upload.cancel_of", { name: upload.name }), () => uploads.cancel(upload.id)));
  if (upload.state === "done" && !item.dataset.shown) {
    item.dataset.shown = "true";
    album.render({ photo_id: upload.form.photo_id, filename: upload.name, status: "pending" });
  }
  drawUploadSummary();
}

function drawUploadSummary() {
  const { total, done, failed, left, bytesLeft, bytes } = uploads.summary();
  $("upload-summary").hidden = total === 0;
  $("upload-all").max = Math.max(bytes, 1);
  $("upload-all").value = bytes - bytesLeft;
  $("upload-count").textContent = [
    t("upload.count", { done, count: total }),
    left ? t("upload.left", { size: formatBytes(bytesLeft) }) : "",
    failed ? t("upload.failed_count", { count: failed }) : "",
  ].filter(Boolean).join(" · ");
  $("upload-cancel-all").hidden = left + failed === 0;
  if (total && !left && !uploadsFinished) {
    uploadsFinished = true;
    const refused = document.querySelectorAll("#uploads li[data-state=failed]").length;  // the page's refusals too
    say(refused ? t("upload.some_failed", { count: refused }) : t("upload.finished"), refused > 0);
  }
  if (left) uploadsFinished = false;
}
let uploadsFinished = true;

/** A presigned POST straight to S3; onProgress(loaded). The error says whether to try again. */
function postToS3(upload, file, onProgress = () => {}, signal = null) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", upload.url);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      // 403: the form expired while the file waited (or its policy was refused): a new form.
      else reject(new UploadError(t("upload.refused", { status: xhr.status }), { retry: xhr.status >= 500 || xhr.status === 403, newForm: xhr.status === 403 }));
    };
    xhr.onerror = () => reject(new UploadError(t("upload.network"), { retry: true }));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

/** Forms for queued files; a busy or unreachable API is tried again, a refusal is not. */
async function uploadForms(items) {
  try {
    const files = items.map(({ name, contentType, size, sha256 }) => ({ filename: name, content_type: contentType, size, ...sha256 }));
    return (await api("POST", "photos/uploads", { files })).uploads;
  } catch (error) {
    if (error instanceof ApiError) throw new UploadError(error.message, { retry: error.status >= 500 || (error.status === 429 && error.code !== "quota_exceeded") });
    throw error;
  }
}

const uploads = new UploadQueue({
  requestForms: uploadForms,
  post: postToS3,
  forget: async (photoId) => { await api("DELETE", `photos/uploads/${photoId}`); album.remove(photoId); },
  onChange: drawUpload,
  batch: 10,
});

// The file's SHA-256, so the API can say it is already in the album (crypto.subtle exists on
// https and localhost only; elsewhere the indexer still finds duplicates by their bytes).
async function sha256(file) {
  if (!globalThis.crypto?.subtle) return {};
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return { sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("") };
}

/** Photos shared to the app from the phone's gallery (web/sw.js keeps them): into the queue of
 * whoever is signed in, then forgotten. */
async function takeShared() {
  const store = idbKeyval.createStore("memstudio-shared", "files");
  const shared = await idbKeyval.entries(store);
  if (!shared.length) return;
  await idbKeyval.delMany(shared.map(([key]) => key), store);
  location.hash = "#upload";
  await uploadFiles(shared.map(([, file]) => file));
}

async function uploadFiles(files) {
  const accepted = [];
  for (const file of files) {
    if (!config.contentTypes.includes(contentType(file))) refusedFile(file, t("upload.not_a_photo"));
    else if (file.size > config.maxUploadBytes) refusedFile(file, t("upload.too_large", { mb: Math.round(config.maxUploadBytes / 1e6) }));
    else if (file.size === 0) refusedFile(file, t("upload.empty_file"));
    else accepted.push({ file, contentType: contentType(file), sha256: await sha256(file) });
  }
  await uploads.add(accepted);
  if (!accepted.length) say(t("upload.some_failed", { count: files.length }), true);
}

/** A drop target (a label around its file input): click, Enter or Space choose files, a drop sends them. */
function wireDrop(drop, input, then = () => {}) {
  const send = (files) => { uploadFiles(files); then(); };
  input.addEventListener("change", (e) => { send([...e.target.files]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send([...e.dataTransfer.files]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
}

function wireUpload() {
  $("upload-cancel-all").addEventListener("click", () => uploads.cancelAll());
  wireDrop($("drop"), $("file-input"));
  wireDrop($("album-drop"), $("album-file-input"), () => { location.hash = "#upload"; });  // the first photos' progress
}

// Photo view --------------------------------------------------------------------------
function drawBoxes(svg, width, height, boxes, chosen = -1) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren(...boxes.map((box, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const [x, y, w, h] = box;
    Object.entries({ x, y, width: w, height: h }).forEach(([k, v]) => rect.setAttribute(k, v));
    if (i === chosen) rect.classList.add("chosen");
    return rect;
  }));
}

let photoOpening = 0;

async function openPhoto(photoId) {
  const dialog = $("photo-dialog");
  const opening = ++photoOpening, wasOpen = dialog.open;
  let photo;
  try { photo = await api("GET", `photos/${photoId}`); } catch (error) { say(error.message, true); return; }
  if (opening !== photoOpening || (wasOpen && !dialog.open)) return;  // a later opening, or closed meanwhile
  if (!dialog.open) say("");  // the page's message stays with the page
  $("photo-title").textContent = photo.filename || t("photo.title");
  if (viewer.photoId !== photoId || !dialog.open) { viewer.reset(); viewer.photoId = photoId; }  // a correction keeps the zoom
  const img = $("photo-image");
  img.alt = t("photo.alt", { name: photo.filename || t("photo.title"), count: photo.faces.length });
  const boxes = photo.faces.map((f) => f.box);
  img.onload = () => drawBoxes($("photo-boxes"), photo.width || img.naturalWidth, photo.height || img.naturalHeight, boxes);
  img.src = photo.preview_url || photo.url;  // a HEIC original is shown through its JPEG preview
  steps.arm(photo.photo_id);
  similar(photo);
  $("photo-info").textContent = photo.status === "failed" ? t("photo.indexing_failed", { error: photo.error })
    : t("photo.info", { status: t(`status.${photo.status}`), count: photo.faces.length })
      + (photo.taken_at ? t("photo.taken", { date: formatDate(photo.taken_at.slice(0, 10)) }) : "");
  const known = await people.all();
  if (opening !== photoOpening || (wasOpen && !dialog.open)) return;
  $("photo-faces").replaceChildren(...photo.faces.map((face, i) => {
    const row = document.createElement("div");
    row.className = "face-row";
    row.dataset.faceId = face.face_id;
    const highlight = () => drawBoxes($("photo-boxes"), photo.width || img.naturalWidth, photo.height || img.naturalHeight, boxes, i);
    const who = document.createElement("span");
    const current = known.find((p) => p.person_id === face.person_id);
    who.textContent = t("photo.face_who", { n: i + 1, who: current ? current.name || t("people.unnamed") : t("photo.nobody_yet") });
    const button = document.createElement("button");
    button.type = "button"; button.className = "secondary";
    button.textContent = t("photo.more_of", { n: i + 1 });
    button.addEventListener("focus", highlight);
    button.addEventListener("click", () => { dialog.close(); findByAlbumFace(photo, face); });
    // The user's word on this face: another person, a new one, or "not this person".
    const named = current?.name || t("photo.this_person");
    const move = document.createElement("button");
    move.type = "button"; move.className = "secondary"; move.textContent = t("photo.who_label", { n: i + 1 });
    move.addEventListener("focus", highlight);
    move.addEventListener("click", async () => {
      const extras = [["new", t("photo.someone_new")], ...(face.person_id ? [["none", t("photo.not", { name: named })]] : [])];
      const choice = await picker.choose(t("photo.who_label", { n: i + 1 }), known.filter((p) => p.person_id !== face.person_id), extras);
      if (!choice) return;
      try {
        if (choice === "none") {  // "Not <name>": the same answer as a "no" to "Is this <name>?"
          await api("POST", `people/${face.person_id}/suggestions`, { answers: [{ face_id: face.face_id, accept: false }] });
        } else {
          await api("PUT", `faces/${face.face_id}/person`, choice === "new" ? { new_person: true } : { person_id: choice });
        }
        toast(t("photo.saved")); openPhoto(photo.photo_id);
      } catch (error) { say(error.message, true); }
    });
    // A face the grouping placed: "Is this <name>?" answered here too (a yes confirms it).
    const confirm = document.createElement("button");
    confirm.type = "button"; confirm.className = "secondary";
    confirm.hidden = !(face.person_id && face.assigned_by === "auto");
    confirm.textContent = t("photo.yes", { name: named });
    confirm.addEventListener("focus", highlight);
    confirm.addEventListener("click", async () => {
      try {
        await api("POST", `people/${face.person_id}/suggestions`, { answers: [{ face_id: face.face_id, accept: true }] });
        say(t("photo.confirmed")); openPhoto(photo.photo_id);
      } catch (error) { say(error.message, true); }
    });
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "secondary"; remove.textContent = t("photo.not_a_face");
    remove.addEventListener("focus", highlight);
    remove.addEventListener("click", async () => {
      try { await api("DELETE", `faces/${face.face_id}`); say(t("photo.face_removed")); openPhoto(photo.photo_id); } catch (error) { say(error.message, true); }
    });
    row.append(who, button, confirm, move, remove);
    return row;
  }));
  drawing.arm(photo, img);
  $("photo-download").hidden = !photo.download_url;
  $("photo-download").href = photo.download_url || "#";
  $("photo-delete").hidden = Boolean(photo.trashed_at);
  $("photo-delete").onclick = async () => {
    try {
      await api("DELETE", `photos/${photo.photo_id}`);
      album.remove(photo.photo_id);
      album.loadMonths();
      dialog.close();
      toast(t("photo.trashed", { days: config.trashDays }), () => restorePhotos([photo.photo_id]));
    } catch (error) { say(error.message, true); }
  };
  if (!dialog.open) dialog.showModal();
}

// Previous / next: the photos of the page the dialog was opened from, in its order.
const steps = {
  ids: [], at: -1,
  arm(photoId) {
    this.ids = [...document.querySelectorAll(`#view-${currentView} li[data-photo-id]`)].map((li) => li.dataset.photoId)
      .filter((id, i, all) => all.indexOf(id) === i);
    this.at = this.ids.indexOf(photoId);
    $("photo-prev").disabled = this.at <= 0;
    $("photo-next").disabled = this.at < 0 || this.at >= this.ids.length - 1;
  },
  go(delta) {
    const next = this.ids[this.at + delta];
    if (next) openPhoto(next);
  },
  wire() {
    $("photo-prev").addEventListener("click", () => this.go(-1));
    $("photo-next").addEventListener("click", () => this.go(1));
    $("photo-dialog").addEventListener("keydown", (e) => {
      if (e.target.matches("input, select, textarea")) return;
      if (e.key === "ArrowLeft") this.go(-1);
      if (e.key === "ArrowRight") this.go(1);
    });
  },
};

// Near-duplicates: the same picture re-encoded or resized elsewhere in the album.
function similar(photo) {
  const others = photo.near_duplicates || [];
  const line = $("photo-similar");
  line.hidden = others.length === 0;
  line.replaceChildren();
  if (!others.length) return;
  line.append(t("photo.similar", { count: others.length }));
  others.forEach((id, i) => {
    const link = document.createElement("button");
    link.type = "button"; link.className = "link"; link.textContent = t("photo.copy_n", { n: i + 1 });
    link.addEventListener("click", () => openPhoto(id));
    line.append(link, i < others.length - 1 ? ", " : "");
  });
}

// Drawing a face the detector missed: press "Draw a face", then drag over the photo.
/** The photo view's gestures: a swipe goes to the previous or next photo; a pinch, a double tap or
 * ctrl + wheel zooms (up to 4×) and a drag moves the zoomed photo. Drawing a face box takes the
 * pointer instead. */
const viewer = {
  pointers: new Map(), scale: 1, x: 0, y: 0, start: null, pinch: null,

  reset() { this.scale = 1; this.x = 0; this.y = 0; this.pointers.clear(); this.start = this.pinch = null; this.apply(); },

  apply() {
    $("photo-figure").style.transform = this.scale === 1 ? "" : `translate(${this.x}px, ${this.y}px) scale(${this.scale})`;
    $("photo-stage").classList.toggle("zoomed", this.scale > 1);
  },

  zoom(scale) {
    this.scale = Math.min(4, Math.max(1, scale));
    if (this.scale === 1) { this.x = 0; this.y = 0; }
    this.apply();
  },

  spread() {
    const [[x1, y1], [x2, y2]] = [...this.pointers.values()];
    return Math.hypot(x2 - x1, y2 - y1) || 1;
  },

  wire() {
    const stage = $("photo-stage");
    stage.addEventListener("pointerdown", (e) => {
      if (drawing.active) return;
      try { stage.setPointerCapture(e.pointerId); } catch { /* a pointer the browser no longer tracks */ }
      this.pointers.set(e.pointerId, [e.clientX, e.clientY]);
      if (this.pointers.size === 1) this.start = { x: e.clientX, y: e.clientY, ox: this.x, oy: this.y };
      if (this.pointers.size === 2) { this.pinch = { spread: this.spread(), scale: this.scale }; this.start = null; }
    });
    stage.addEventListener("pointermove", (e) => {
      if (!this.pointers.has(e.pointerId)) return;
      this.pointers.set(e.pointerId, [e.clientX, e.clientY]);
      if (this.pinch && this.pointers.size === 2) this.zoom((this.pinch.scale * this.spread()) / this.pinch.spread);
      else if (this.start && this.scale > 1) {
        this.x = this.start.ox + e.clientX - this.start.x; this.y = this.start.oy + e.clientY - this.start.y;
        this.apply();
      }
    });
    const up = (e) => {
      if (!this.pointers.delete(e.pointerId)) return;
      if (this.pointers.size < 2) this.pinch = null;
      if (this.pointers.size === 0 && this.start && this.scale === 1) {
        const dx = e.clientX - this.start.x, dy = e.clientY - this.start.y;
        if (Math.abs(dx) > 60 && Math.abs(dx) > 2 * Math.abs(dy)) steps.go(dx < 0 ? 1 : -1);
      }
      if (this.pointers.size === 0) this.start = null;
    };
    stage.addEventListener("pointerup", up);
    stage.addEventListener("pointercancel", up);
    stage.addEventListener("dblclick", () => this.zoom(this.scale > 1 ? 1 : 2.5));
    stage.addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      this.zoom(this.scale * (e.deltaY < 0 ? 1.25 : 0.8));
    }, { passive: false });
  },
};

const drawing = {
  photo: null, img: null, start: null, active: false,

  arm(photo, img) {
    this.photo = photo; this.img = img; this.active = false; this.start = null;
    $("photo-draw").hidden = photo.status !== "indexed";
    $("photo-draw").setAttribute("aria-pressed", "false");
  },

  toggle() {
    this.active = !this.active;
    $("photo-draw").setAttribute("aria-pressed", String(this.active));
    say(this.active ? t("photo.drag") : "");
  },

  point(event) {  // the pointer in the photo's own pixels
    const rect = $("photo-boxes").getBoundingClientRect();
    const width = this.photo.width || this.img.naturalWidth, height = this.photo.height || this.img.naturalHeight;
    return [((event.clientX - rect.left) * width) / rect.width, ((event.clientY - rect.top) * height) / rect.height];
  },

  box(end) {
    const [x0, y0] = this.start, [x1, y1] = end;
    return [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)].map((v) => Math.round(v));
  },

  wire() {
    const svg = $("photo-boxes");
    $("photo-draw").addEventListener("click", () => this.toggle());
    svg.addEventListener("pointerdown", (e) => { if (this.active) { this.start = this.point(e); e.preventDefault(); } });
    svg.addEventListener("pointermove", (e) => {
      if (!this.active || !this.start) return;
      const boxes = this.photo.faces.map((f) => f.box).concat([this.box(this.point(e))]);
      drawBoxes(svg, this.photo.width || this.img.naturalWidth, this.photo.height || this.img.naturalHeight, boxes, boxes.length - 1);
    });
    svg.addEventListener("pointerup", async (e) => {
      if (!this.active || !this.start) return;
      const box = this.box(this.point(e));
      this.start = null; this.active = false;
      try {
        const face = await api("POST", `photos/${this.photo.photo_id}/faces`, { box });
        say(t(face.aligned ? "photo.face_added" : "photo.face_added_unaligned"));
      } catch (error) { say(error.message, true); }
      openPhoto(this.photo.photo_id);
    });
  },
};

// Find --------------------------------------------------------------------------------

function resultTile(hit, rank) {
  const item = document.createElement("li");
  item.dataset.photoId = hit.photo_id;
  const button = document.createElement("button");
  button.type = "button";
  const word = t(`find.match.${hit.match}`, { defaultValue: hit.match });
  button.setAttribute("aria-label", t("find.match_label", { rank: rank + 1, word }));
  const img = document.createElement("img");
  img.src = hit.thumbnail_url || hit.url; img.alt = "";
  const badge = document.createElement("span");
  badge.className = `similarity ${hit.match}`; badge.textContent = word;
  badge.title = t("find.scores", { score: formatNumber(hit.score, 2), similarity: formatNumber(hit.similarity, 2) });
  button.title = badge.title;
  button.append(img, badge);
  button.addEventListener("click", () => openPhoto(hit.photo_id));
  item.append(button);
  return item;
}

const finder = {
  body: null, what: "", shown: 0, asked: 0,

  /** A new question (a key chosen): from now on only its answer may be drawn. */
  ask() { return ++this.asked; },

  async run(body, what, asked = this.ask()) {
    if (asked !== this.asked) return null;
    this.body = body; this.what = what; this.shown = 0;
    $("results").replaceChildren(); $("possible").replaceChildren();
    $("possible-box").hidden = true; $("results-more").hidden = true;
    $("find-summary").textContent = t("find.searching");
    try {
      const result = await api("POST", "search", body);
      if (asked !== this.asked) return null;  // another key was chosen meanwhile: this answer is not its
      this.render(result, false);
      return result;
    } catch (error) {
      if (asked !== this.asked) return null;
      // The page itself explains a key without a face; any other failure goes to the status line.
      const noFace = error.code === "no_face";
      $("find-summary").textContent = noFace ? t("find.no_face") : "";
      say(noFace ? "" : error.message, !noFace);
      return null;
    }
  },

  async more() {
    const asked = this.asked;
    $("results-more").disabled = true;
    try {
      const page = await api("POST", "search", { ...this.body, cursor: this.cursor });
      if (asked === this.asked) this.render(page, true);
    } catch (error) { say(error.message, true); }
    finally { $("results-more").disabled = false; }
  },

  render(result, appending) {
    this.cursor = result.next_cursor;
    $("results").append(...result.results.map((hit, i) => resultTile(hit, this.shown + i)));
    this.shown += result.results.length;
    $("results-more").hidden = !result.next_cursor;
    if (appending) return;
    const possible = result.possible || [];
    $("possible").replaceChildren(...possible.map(resultTile));
    $("possible-box").hidden = possible.length === 0;
    $("possible-box").open = this.shown === 0;
    const own = (result.key_photo_id ? t("find.own") : "")
      + (result.person ? t("find.person", { name: result.person.name || t("find.a_person") }) : "");
    if (this.shown) {
      const more = result.next_cursor ? "+" : "";
      $("find-summary").textContent = t("find.found", { count: this.shown, more, what: this.what }) + own;
    } else {
      $("find-summary").textContent = t("find.nobody", { what: this.what }) + own + (possible.length ? t("find.possible_below") : "");
    }
  },
};

// The key photo with its faces boxed (the searched one highlighted); a choice when it has several.
function showKey(src, faces, chosen, onChoose, size = null) {
  $("key-faces").hidden = false;
  const several = faces.length > 1 && onChoose;
  $("key-faces-label").textContent = t(several ? "find.choose_face" : "find.the_key");
  const img = $("key-image");
  // Boxes are in the photo's pixels; a preview may be smaller than the photo.
  const draw = () => drawBoxes($("key-boxes"), size?.[0] || img.naturalWidth, size?.[1] || img.naturalHeight, faces.map((f) => f.box), chosen);
  img.onload = draw;
  if (img.src !== src) img.src = src; else if (img.complete) draw();
  $("key-face-buttons").replaceChildren(...(several ? faces.map((face, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = i === chosen ? "" : "secondary";
    button.textContent = t("find.face_n", { n: i + 1 });
    button.setAttribute("aria-pressed", String(i === chosen));
    button.addEventListener("click", () => onChoose(i));
    return button;
  }) : []));
}

async function findByKeyPhoto(file) {
  location.hash = "#find";
  const asked = finder.ask();  // a key chosen before this one's answer came replaces it
  const src = URL.createObjectURL(file);
  showKey(src, [], -1, null);  // the key being searched for, shown at once
  $("results").replaceChildren(); $("possible-box").hidden = true; $("results-more").hidden = true;
  $("find-summary").textContent = t("find.searching");
  try {
    say(t("find.uploading_key"));
    const upload = await api("POST", "search/uploads", {
      filename: file.name, content_type: contentType(file), size: file.size, ...(await sha256(file)),
    });
    await postToS3(upload, file);
    if (asked !== finder.asked) return;
    say("");
    const choose = async (face, question = finder.ask()) => {
      const result = await finder.run({ key_id: upload.key_id, face }, face ? t("find.what_face_of_key", { n: face + 1 }) : t("find.what_this_face"), question);
      if (result) showKey(src, result.key_faces, result.used_face, (i) => choose(i));
    };
    await choose(0, asked);
  } catch (error) {
    if (asked === finder.asked) say(error.message, true);
  }
}

async function findByAlbumFace(photo, face) {
  location.hash = "#find";
  const index = photo.faces.indexOf(face);
  showKey(photo.preview_url || photo.url, photo.faces, index, null, photo.width && [photo.width, photo.height]);
  await finder.run({ photo_id: photo.photo_id, face_id: face.face_id }, t("find.what_face_of", { n: index + 1, name: photo.filename || t("find.that_photo") }));
}

function wireFind() {
  $("key-input").addEventListener("change", (e) => { const file = e.target.files[0]; if (file) findByKeyPhoto(file); e.target.value = ""; });
  $("results-more").addEventListener("click", () => finder.more());
}

// People ------------------------------------------------------------------------------
// A face cropped out of its photo's thumbnail: the thumbnail, scaled so the face box fills the tile.
function faceTile(url, box, width, height) {
  const tile = document.createElement("span");
  tile.className = "face";
  if (!url || !box || !width || !height) return tile;
  const [x, y, w, h] = box;
  const side = Math.max(w, h) * 1.3;
  const left = x + w / 2 - side / 2, top = y + h / 2 - side / 2;
  tile.style.backgroundImage = `url("${url}")`;
  tile.style.backgroundSize = `${(100 * width) / side}% ${(100 * height) / side}%`;
  tile.style.backgroundPosition = `${(100 * left) / (width - side || 1)}% ${(100 * top) / (height - side || 1)}%`;
  return tile;
}

/** A person as the user tells them apart: the face, the name (or "Unnamed"), the photo count. */
function personFace(person, element = "figure") {
  const figure = document.createElement(element);
  figure.className = "person-face";
  const c = person.cover;
  figure.append(faceTile(c?.thumbnail_url, c?.box, c?.photo_width, c?.photo_height));
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = t("people.label", { name: person.name || t("people.unnamed"), count: person.photo_count });
  figure.append(label);
  return figure;
}

function personButton(person, onClick) {
  const button = personFace(person, "button");
  button.type = "button";
  button.addEventListener("click", onClick);
  return button;
}

/** "Who is this?": the album's people by face, a name filter, and a few other answers. Resolves
 * with the chosen person id, an extra's value, or null (cancelled). */
const picker = {
  choose(title, candidates, extras = []) {
    const dialog = $("picker");
    $("picker-title").textContent = title;
    $("picker-filter").value = "";
    return new Promise((resolve) => {
      let answer = null;
      const pick = (value) => { answer = value; dialog.close(); };
      const draw = () => {
        const words = $("picker-filter").value.trim().toLocaleLowerCase();
        $("picker-people").replaceChildren(...candidates
          .filter((p) => !words || (p.name || "").toLocaleLowerCase().includes(words))
          .map((p) => {
            const item = document.createElement("li");
            item.dataset.personId = p.person_id;
            item.append(personButton(p, () => pick(p.person_id)));
            return item;
          }));
      };
      $("picker-filter").oninput = draw;
      $("picker-extras").replaceChildren(...extras.map(([value, text]) => {
        const button = document.createElement("button");
        button.type = "button"; button.className = "secondary"; button.textContent = text; button.dataset.value = value;
        button.addEventListener("click", () => pick(value));
        return button;
      }));
      dialog.addEventListener("close", () => resolve(answer), { once: true });
      draw();
      dialog.showModal();
    });
  },
};

/** Both people side by side before a merge; resolves true when the user says they are one. */
function confirmMerge(one, other) {
  const dialog = $("merge-dialog");
  $("merge-faces").replaceChildren(personFace(one), personFace(other));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "merge"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

const people = {
  current: null,

  async all() {
    try { return (await api("GET", "people?limit=100&hidden=true")).people; } catch { return []; }
  },

  async list() {
    $("person").hidden = true; $("people").hidden = false; $("people-filter").hidden = false;
    try {
      const page = await api("GET", "people?limit=100");
      $("people").replaceChildren(...page.people.map((person) => {
        const item = document.createElement("li");
        item.dataset.personId = person.person_id;
        item.append(personButton(person, () => this.open(person.person_id)));
        return item;
      }));
      $("people-empty").hidden = page.people.length > 0;
      $("people-filter").hidden = page.people.length === 0;
      this.filter();
    } catch (error) { say(t("people.load_failed", { message: error.message }), true); }
    this.ask();
  },

  /** Search by name: the people whose name holds what was typed. */
  filter() {
    const words = $("people-filter").value.trim().toLocaleLowerCase();
    let shown = 0;
    for (const item of $("people").children) {
      item.hidden = Boolean(words) && !item.textContent.toLocaleLowerCase().includes(words);
      shown += item.hidden ? 0 : 1;
    }
    $("people-none").hidden = !words || shown > 0;
  },

  /** The album's next question, one at a time, above the people. */
  async ask() {
    const found = await api("GET", "people/questions?limit=5").catch(() => ({ questions: [] }));
    const question = found.questions[0];
    $("album-questions").hidden = !question || !$("person").hidden;  // a person opened meanwhile
    if (!question) { $("album-question").replaceChildren(); return; }
    $("album-questions-title").textContent = t("people.question_of", { name: question.person.name || t("people.the_same_group") });
    const next = (change) => (change ? this.list() : this.ask());  // a moved photo redraws the people too
    $("album-question").replaceChildren(this.suggestion(question, question.person.person_id, next));
  },

  async open(personId) {
    const token = (this.opening = (this.opening || 0) + 1);  // only the latest opening draws the page
    try {
      const [person, photos, suggestions] = await Promise.all([
        api("GET", `people/${personId}`),
        api("GET", `people/${personId}/photos?limit=100`),
        api("GET", `people/${personId}/suggestions?limit=12`).catch(() => ({ suggestions: [] })),
      ]);
      if (token !== this.opening) return;
      this.current = person;
      $("people").hidden = true; $("person").hidden = false;
      $("album-questions").hidden = true; $("people-filter").hidden = true; $("people-none").hidden = true;
      $("person-name").elements.name.value = person.name || "";
      $("person-hide").textContent = t(person.hidden ? "person.show" : "person.hide");
      $("person-summary").textContent = t("person.summary", { faces: person.face_count, photos: person.photo_count });
      $("person-photos").replaceChildren(...photos.photos.map((photo) => {
        const item = document.createElement("li");
        item.dataset.photoId = photo.photo_id;
        const button = document.createElement("button");
        button.type = "button";
        button.setAttribute("aria-label", photo.filename || "photo");
        button.append(faceTile(photo.thumbnail_url, photo.box, photo.width, photo.height));
        button.addEventListener("click", () => openPhoto(photo.photo_id));
        item.append(button);
        return item;
      }));
      $("person-name-prompt").hidden = Boolean(person.name);
      $("suggestions-title").hidden = suggestions.suggestions.length === 0;
      $("suggestions-title").textContent = t("people.question_of", { name: person.name || t("people.the_same") });
      const reopen = (change) => { if (change) this.open(person.person_id); };
      $("suggestions").replaceChildren(...suggestions.suggestions.map((s) => this.suggestion(s, person.person_id, reopen)));
    } catch (error) { say(error.message, true); }
  },

  /** "Is this …?" about one face: Yes / No / Skip; ``changed(photos gained or lost)`` after each answer. */
  suggestion(face, personId, changed) {
    const item = document.createElement("li");
    item.dataset.faceId = face.face_id;
    item.append(faceTile(face.thumbnail_url, face.box, face.photo_width, face.photo_height));
    if (face.kind === "half" && face.with_faces > 0) {  // a no takes the faces like it out too
      const more = document.createElement("p");
      more.className = "half"; more.textContent = t("people.half", { count: face.with_faces });
      item.append(more);
    }
    const answers = document.createElement("div");
    answers.className = "answer";
    for (const [letter, key, word] of [["y", "people.yes", { accept: true }], ["n", "people.no", { accept: false }], ["s", "people.skip", { skip: true }]]) {
      const button = document.createElement("button");
      button.type = "button"; button.className = word.accept ? "" : "secondary"; button.textContent = t(key);
      button.dataset.answer = letter;
      button.addEventListener("click", () => this.answer(item, face, word, personId, changed));
      answers.append(button);
    }
    item.append(answers);
    return item;
  },

  /** One answer, then what it did, said in the person's photo count. */
  async answer(item, face, word, personId, changed) {
    try {
      const done = await api("POST", `people/${personId}/suggestions`, { answers: [{ face_id: face.face_id, ...word }] });
      item.remove();
      const person = done.person, change = person.photo_count - done.photos_before;
      const name = person.name || t("people.this_person"), total = person.photo_count;
      if (change > 0) say(t("people.found_more", { change, name, total }));
      else if (change < 0) say(t("people.taken_out", { name, total }));
      else if (!word.skip) say(t("people.noted", { name, total }));
      changed(change);
    } catch (error) { say(error.message, true); }
  },

  /** y / n / s answer the question that has the focus, else the first one. */
  key(event) {
    if ($("view-people").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest?.("input, select, textarea")) return;
    const letter = event.key.toLowerCase();
    if (!["y", "n", "s"].includes(letter)) return;
    const list = $("person").hidden ? $("album-question") : $("suggestions");
    const item = event.target.closest?.("#suggestions li, #album-question li") || list.querySelector("li");
    const button = item?.querySelector(`button[data-answer="${letter}"]`);
    if (button) { event.preventDefault(); button.click(); }
  },

  async update(fields, message) {
    try {
      this.current = await api("PATCH", `people/${this.current.person_id}`, fields);
      say(message(this.current));
      this.open(this.current.person_id);
    } catch (error) { say(error.message, true); }
  },
};

function wirePeople() {
  document.addEventListener("keydown", (e) => people.key(e));
  $("person-name").addEventListener("submit", (e) => {
    e.preventDefault();
    people.update({ name: e.target.elements.name.value.trim() || null }, (p) => t("person.saved", { name: p.name || t("people.unnamed") }));
  });
  $("person-hide").addEventListener("click", () =>
    people.update({ hidden: !people.current.hidden }, (p) => t(p.hidden ? "person.hidden" : "person.shown")));
  // "Same person as…": the other person chosen by face, both shown before the merge, Undo after it.
  $("person-merge").addEventListener("click", async () => {
    const source = people.current;
    const others = (await people.all()).filter((p) => p.person_id !== source.person_id);
    if (!others.length) { toast(t("person.no_one_else")); return; }
    const target = await picker.choose(t("person.merge_title", { name: source.name || t("people.this_person") }), others);
    const other = others.find((p) => p.person_id === target);
    if (!other || !(await confirmMerge(source, other))) return;
    try {
      const merged = await api("POST", "people/merge", { target, sources: [source.person_id] });
      toast(t("person.merged", { name: merged.person.name || t("people.unnamed") }), async () => {
        await api("DELETE", `people/merge/${merged.undo.merge_id}`);
        toast(t("person.unmerged"));
        people.open(source.person_id);
      });
      people.open(merged.person.person_id);
    } catch (error) { say(error.message, true); }
  });
  $("people-filter").addEventListener("input", () => people.filter());
  $("person-delete").addEventListener("click", async () => {
    if (!confirm(t("person.confirm_ungroup"))) return;
    try { await api("DELETE", `people/${people.current.person_id}`); say(t("person.ungrouped")); people.list(); } catch (error) { say(error.message, true); }
  });
}

// Profile -----------------------------------------------------------------------------
/** Profile: the album's photos and the storage they use, against the account's limits. */
async function showUsage() {
  try {
    const { photos, usage, limits } = await api("GET", "me");
    const count = photos.pending + photos.indexed + photos.failed;
    $("profile-usage").textContent = t("profile.usage", { count, photos: formatNumber(count), used: formatBytes(usage.bytes), limit: formatBytes(limits.bytes) });
    $("profile-meter").value = usage.bytes / Math.max(limits.bytes, 1);
  } catch (error) { $("profile-usage").textContent = error.message; }
}

async function downloadAll() {
  const button = $("download-all"), status = $("download-all-status");
  button.disabled = true;
  try {
    const page = (cursor) => api("GET", `photos?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const { downloadEverything } = await import("./export.js");  // loaded when asked for, not with the page
    const { done, skipped } = await downloadEverything(page, (count) => { status.textContent = t("profile.download_progress", { count }); });
    status.textContent = t("profile.download_done", { count: done }) + (skipped ? ` ${t("profile.download_skipped", { count: skipped })}` : "");
  } catch (error) {
    status.textContent = error.name === "AbortError" ? "" : error.message;  // AbortError: the save was cancelled
  }
  button.disabled = false;
}

function wireProfile() {
  $("download-all").addEventListener("click", downloadAll);
  $("sign-out-everywhere").addEventListener("click", async () => {
    if (!confirm(t("profile.confirm_everywhere"))) return;
    try { await api("POST", "me/sign-out"); signOut(t("auth.signed_out_everywhere"), false); } catch (error) { say(error.message, true); }
  });
  $("delete-account").addEventListener("click", async () => {
    if (!confirm(t("profile.confirm_delete"))) return;
    try { await api("DELETE", "me"); signOut(t("profile.deleted"), false); } catch (error) { say(error.message, true); }
  });
  const choice = $("language");
  choice.replaceChildren(...Object.entries(LANGUAGES).map(([lang, name]) => new Option(name, lang)));
  choice.value = language();
  // The page draws much of itself from what it loaded: drawn afresh in the new language (the
  // session survives the reload: its refresh token is kept).
  choice.addEventListener("change", async () => { await setLanguage(choice.value); location.reload(); });
}

// Start -------------------------------------------------------------------------------
/** The app shell works offline (web/sw.js); the page says when the phone is offline: the browser
 * says so, or a request could not reach the network (a TypeError from fetch). */
let reachProbe = null;
function offline(on) {
  if (!on && document.body.dataset.keptAlbum) { location.reload(); return; }  // online again: start signed in
  $("offline").hidden = !on;
  clearTimeout(reachProbe);
  if (on) reachProbe = setTimeout(checkReach, 5000);  // asked again until the app answers
}
// A static file, past the service worker (its query string is not the kept copy's address).
const checkReach = () => fetch("web/icon.svg?reach", { cache: "no-store" }).then(() => offline(false), () => offline(true));

function wireOffline() {
  window.addEventListener("online", () => offline(false));
  window.addEventListener("offline", () => offline(true));
  offline(!navigator.onLine);
  checkReach();
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("web/sw.js", { scope: "./" }).catch(() => {});
}

/** Offline, with a session kept: the album's recent photos from this device, read-only, until the
 * connection is back (then the page starts again, signed in). */
async function showKeptAlbum(saved) {
  offline(true);
  const kept = saved.sub && (await keptAlbum(saved.sub).catch(() => null));
  if (!kept?.photos?.length) return false;
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== "album";
  currentView = "album";
  $("album-empty").hidden = true;
  $("offline").textContent = t("app.offline_album", { count: kept.photos.length });
  $("select-mode").hidden = true; $("trash-link").hidden = true;  // they need the connection
  for (const photo of kept.photos) album.render(photo);
  document.body.dataset.keptAlbum = "true";
  document.body.dataset.ready = "true";
  return true;
}

async function main() {
  const settings = fetch("web/config.json").then((response) => response.json());  // fetched while the words load
  await startLanguages();
  wireOffline();
  config = await settings;
  wireAuth(); wireAlbum(); wireUpload(); wireFind(); wirePeople(); wireProfile(); drawing.wire(); steps.wire(); viewer.wire();
  window.addEventListener("hashchange", route);
  // The tab of the view already shown shows it afresh (People: back to the list, reloaded).
  for (const link of document.querySelectorAll("nav a")) {
    link.addEventListener("click", () => { if (link.hash === location.hash) route(); });
  }
  const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  if (saved?.refreshToken) {
    session = { ...saved, expiresAt: 0 };
    try { await refreshSession(); } catch (error) {
      session = null;
      if (!(error instanceof TypeError)) localStorage.removeItem(SESSION_KEY);
      else if (await showKeptAlbum(saved)) return;  // no network: the session is kept for later
      else offline(true);
    }
  }
  route();
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && session) album.loadMore(); })
    .observe($("grid-more"));
  document.body.dataset.ready = "true";
}

main().catch((error) => say(globalThis.i18next?.isInitialized ? t("app.failed_to_start", { message: error.message }) : `The app failed to start: ${error.message}`, true));
