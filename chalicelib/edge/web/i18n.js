// The web client's languages: Korean and English, through i18next (npm, MIT; fetched at build
// time like Swagger UI, never in git). Chosen from the browser's languages, switchable in Profile,
// remembered in localStorage. Messages live in i18n-<language>.json; plurals, dates and numbers
// go through Intl. The page's static text names its keys in data-i18n attributes.
export const LANGUAGES = { ko: "한국어", en: "English" };
const KEY = "memstudio.language";
const i18next = globalThis.i18next;

/** The saved choice, else the first of the browser's languages we speak, else English. */
function preferred() {
  const saved = localStorage.getItem(KEY);
  if (saved in LANGUAGES) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in LANGUAGES) return base;
  }
  return "en";
}

const catalog = async (lang) => (await fetch(`web/i18n-${lang}.json`)).json();

/** Only the language in use is fetched at start (the page's first paint waits for it); another is
 * fetched when the user switches to it. */
export async function startLanguages() {
  const lng = preferred();
  const resources = { [lng]: { translation: await catalog(lng) } };
  await i18next.init({ lng, fallbackLng: false, resources, interpolation: { escapeValue: false }, returnNull: false });
  applyStatic();
}

export const t = (key, options) => i18next.t(key, options);
export const language = () => i18next.language;

export async function setLanguage(lang) {
  localStorage.setItem(KEY, lang);
  if (!i18next.hasResourceBundle(lang, "translation")) i18next.addResourceBundle(lang, "translation", await catalog(lang));
  await i18next.changeLanguage(lang);
  applyStatic();
}

/** data-i18n="key" sets the text; data-i18n-label / -placeholder / -alt set those attributes. */
export function applyStatic(root = document) {
  document.documentElement.lang = language();
  document.title = t("app.title");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [data, attribute] of [["i18nLabel", "aria-label"], ["i18nPlaceholder", "placeholder"], ["i18nAlt", "alt"]]) {
    for (const el of root.querySelectorAll(`[data-${data.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`)) {
      el.setAttribute(attribute, t(el.dataset[data]));
    }
  }
}

/** "December 2026" / "2026년 12월", for a month "YYYY-MM". */
export function monthTitle(month) {
  const format = new Intl.DateTimeFormat(language(), { month: "long", year: "numeric", timeZone: "UTC" });
  return format.format(new Date(Date.UTC(Number(month.slice(0, 4)), Number(month.slice(5, 7)) - 1, 1)));
}

export const formatDate = (value) => new Intl.DateTimeFormat(language(), { dateStyle: "long" }).format(new Date(value));
export const formatNumber = (value, digits = 0) =>
  new Intl.NumberFormat(language(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
export const listOf = (items) => new Intl.ListFormat(language(), { type: "conjunction" }).format(items);
// Bytes and speeds in the user's units ("3.2 MB", "초당 850 kB"): decimal, as phones show sizes.
const UNITS = [[1e9, "gigabyte"], [1e6, "megabyte"], [1e3, "kilobyte"], [1, "byte"]];
function scaled(bytes) {
  return UNITS.find(([size]) => bytes >= size) || UNITS[UNITS.length - 1];
}
export function formatBytes(bytes) {
  const [size, unit] = scaled(bytes);
  return new Intl.NumberFormat(language(), { style: "unit", unit, maximumFractionDigits: size > 1e3 ? 1 : 0 }).format(bytes / size);
}
export function formatSpeed(bytesPerSecond) {
  const [size, unit] = scaled(bytesPerSecond);
  return new Intl.NumberFormat(language(), { style: "unit", unit: `${unit}-per-second`, maximumFractionDigits: size > 1e3 ? 1 : 0 })
    .format(bytesPerSecond / size);
}
