// i18n.js: a page's strings in one table, English and Chinese, and a language switch.
//
//   import { I18n } from "/common/i18n.js";
//   const i18n = new I18n({ en: { ready: "Ready", wait: "Waited {s} s" }, zh: { ... } }, "desk");
//   i18n.t("wait", { s: 12 })          // the string in the current language ({name} filled in)
//   i18n.apply(document)               // fills [data-i18n], [data-i18n-placeholder],
//                                      // [data-i18n-title], [data-i18n-aria-label]
//   i18n.set("zh")                     // switch, remembered per page (localStorage), re-applies
//                                      // and calls every i18n.onChange(fn) listener
//
// The first language is the browser's (zh* -> "zh", else "en") unless one was chosen before;
// `?lang=zh` in the URL wins. A key missing in a language falls back to English, then to the
// key itself. Stable: other pages import this module.

export class I18n {
  constructor(table, page) {
    this.table = table;
    this.key = "hotline-lang-" + page;
    this.listeners = [];
    const url = new URLSearchParams(location.search).get("lang");
    let saved = null;
    try { saved = localStorage.getItem(this.key); } catch { saved = null; }
    const browser = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
    this.lang = [url, saved, browser].find((l) => l && table[l]) || "en";
  }

  t(key, vars) {
    let s = (this.table[this.lang] || {})[key];
    if (s === undefined) s = (this.table.en || {})[key];
    if (s === undefined) return key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }

  apply(root = document) {
    document.documentElement.lang = this.lang === "zh" ? "zh-CN" : "en";
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = this.t(el.dataset.i18n);
    for (const [attr, data] of [["placeholder", "i18nPlaceholder"], ["title", "i18nTitle"], ["aria-label", "i18nAriaLabel"]]) {
      for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, this.t(el.dataset[data]));
    }
  }

  set(lang) {
    if (!this.table[lang]) return;
    this.lang = lang;
    try { localStorage.setItem(this.key, lang); } catch { /* private mode */ }
    this.apply();
    for (const fn of this.listeners) fn(lang);
  }

  onChange(fn) { this.listeners.push(fn); }
}
