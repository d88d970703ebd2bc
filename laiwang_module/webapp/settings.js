// Settings: being found by phone number, who may ask; the language; signing out.
import * as api from "./api.js";
import { h, notice, busy } from "./dom.js";
import { t } from "./i18n.js";
import { languageSwitch } from "./app.js";

export function settingsPage(main) {
  const out = notice();
  const discoverable = h("input", { type: "checkbox", id: "discoverable" });
  const accept = h(
    "select",
    { id: "accept-from", "aria-label": t("settings.acceptFrom") },
    ["address_book", "anyone", "nobody"].map((v) => h("option", { value: v }, t(`settings.accept.${v}`))),
  );
  const save = h("button", { type: "submit" }, t("settings.save"));
  const form = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        busy(save, out, () => api.lw("PUT", "/settings", { discoverable: discoverable.checked, accept_requests_from: accept.value }), t("settings.saved"));
      },
    },
    h("div", { class: "check" }, discoverable, h("label", { for: "discoverable" }, t("settings.discoverable"))),
    h("p", { class: "muted" }, t("settings.discoverableHelp")),
    h("label", { for: "accept-from" }, t("settings.acceptFrom")),
    accept,
    save,
    out,
  );
  api
    .lw("GET", "/settings")
    .then((s) => {
      discoverable.checked = s.discoverable;
      accept.value = s.accept_requests_from;
    })
    .catch((e) => out.show(e.message, "error"));
  const langOut = notice();
  const signOut = h("button", { type: "button", class: "danger", id: "settings-sign-out" }, t("nav.signOut"));
  signOut.onclick = () => busy(signOut, langOut, async () => { await api.logout(); location.hash = ""; window.dispatchEvent(new Event("laiwang:signed-out")); });
  main.append(
    h("section", { class: "card", "aria-labelledby": "h-privacy" }, h("h2", { id: "h-privacy" }, t("settings.privacy")), form),
    h("section", { class: "card", "aria-labelledby": "h-lang" }, h("h2", { id: "h-lang" }, t("settings.language")), h("label", { for: "language" }, t("settings.language")), languageSwitch()),
    h("section", { class: "card", "aria-labelledby": "h-session" }, h("h2", { id: "h-session" }, t("settings.session")), h("p", { class: "muted" }, api.loadSession().user_id), signOut, langOut),
  );
}
