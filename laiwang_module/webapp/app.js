// The web companion: the shell (sign-in, navigation, language) and the pages.
import * as api from "./api.js";
import { h, clear, notice, busy } from "./dom.js";
import { t, setLanguage, language, LANGUAGES } from "./i18n.js";
import { feedPage } from "./feed.js";
import { contactsPage } from "./contacts.js";
import { clustersPage } from "./clusters.js";
import { aaPage } from "./aa.js";
import { shopPage } from "./shop.js";
import { settingsPage } from "./settings.js";

const PAGES = [
  ["feed", "nav.feed", feedPage],
  ["contacts", "nav.contacts", contactsPage],
  ["clusters", "nav.clusters", clustersPage],
  ["aa", "nav.aa", aaPage],
  ["shop", "nav.shop", shopPage],
  ["settings", "nav.settings", settingsPage],
];

const root = document.getElementById("app");

function currentPage() {
  const name = (location.hash.replace(/^#\/?/, "") || "feed").split("?")[0];
  return PAGES.find(([n]) => n === name) || PAGES[0];
}

export function languageSwitch() {
  const select = h(
    "select",
    { id: "language", "aria-label": t("settings.language"), onchange: (e) => { setLanguage(e.target.value); render(); } },
    LANGUAGES.map(([code, name]) => h("option", { value: code, selected: code === language() ? "selected" : null }, name)),
  );
  return select;
}

async function signOut(button, out) {
  await busy(button, out, async () => {
    await api.logout();
    location.hash = "";
    render();
  });
}

function loginView() {
  const out = notice();
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true, "aria-label": "Username" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, "aria-label": "Password" });
  const submit = h("button", { type: "submit", id: "sign-in", "aria-label": "Sign in" }, t("login.submit"));
  const form = h(
    "form",
    {
      class: "card login",
      onsubmit: (e) => {
        e.preventDefault();
        busy(submit, out, async () => {
          await api.login(username.value.trim(), password.value);
          render();
        });
      },
    },
    h("h1", {}, t("app.name")),
    h("p", { class: "muted" }, t("login.intro")),
    h("label", { for: "username" }, t("login.username")),
    username,
    h("label", { for: "password" }, t("login.password")),
    password,
    submit,
    out,
  );
  const sso = h("div", { class: "sso" });
  // SSO when the homeserver offers it: the redirect comes back with ?loginToken=.
  api
    .cs("GET", "/login", undefined, { auth: false })
    .then((flows) => {
      if ((flows.flows || []).some((f) => f.type === "m.login.sso")) {
        const back = location.origin + location.pathname;
        sso.append(h("a", { class: "button secondary", href: `${api.CLIENT}/login/sso/redirect?redirectUrl=${api.enc(back)}` }, t("login.sso")));
      }
    })
    .catch(() => {});
  return h("main", { id: "main", class: "login-page" }, h("div", { class: "login-lang" }, languageSwitch()), form, sso);
}

function shell() {
  const session = api.loadSession();
  const [name, titleKey, page] = currentPage();
  const out = notice();
  const signOutButton = h("button", { type: "button", class: "secondary", id: "sign-out", onclick: () => signOut(signOutButton, out) }, t("nav.signOut"));
  const nav = h(
    "nav",
    { "aria-label": t("nav.label"), class: "tabs" },
    h(
      "ul",
      {},
      PAGES.map(([n, key]) =>
        h("li", {}, h("a", { href: `#/${n}`, "aria-current": n === name ? "page" : null }, t(key))),
      ),
    ),
  );
  const main = h("main", { id: "main", tabindex: "-1" }, h("h1", {}, t(titleKey)), out);
  const header = h(
    "header",
    { class: "top" },
    h("a", { class: "skip", href: "#main", onclick: (e) => { e.preventDefault(); main.focus(); } }, t("app.skip")),
    h("span", { class: "brand" }, t("app.name")),
    h("span", { class: "who", title: session.user_id }, session.user_id),
    signOutButton,
  );
  clear(root, header, nav, main);
  try {
    const content = page(main);
    if (content) main.append(content);
  } catch (e) {
    out.show(e.message || String(e), "error");
  }
}

export function render() {
  document.documentElement.lang = language();
  document.title = t("app.name");
  try {
    if (api.loadSession()) shell();
    else clear(root, loginView());
  } catch (e) {
    clear(root, h("main", { id: "main" }, h("h1", {}, t("app.name")), h("p", { role: "alert", class: "notice error" }, e.message || String(e))));
  }
}

async function start() {
  const params = new URLSearchParams(location.search);
  const loginToken = params.get("loginToken");
  if (loginToken) {
    history.replaceState(null, "", location.pathname + location.hash);
    try {
      await api.loginWithToken(loginToken);
    } catch (e) {
      render();
      root.querySelector(".notice")?.show?.(e.message, "error");
      return;
    }
  }
  render();
}

window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main")?.focus();
});
window.addEventListener("laiwang:signed-out", () => render());
// Never a blank screen: anything unexpected is shown in words.
window.addEventListener("unhandledrejection", (e) => showFatal(e.reason));
window.addEventListener("error", (e) => showFatal(e.error || e.message));

function showFatal(err) {
  const text = (err && err.message) || String(err);
  let bar = document.getElementById("fatal");
  if (!bar) {
    bar = h("p", { id: "fatal", role: "alert", class: "notice error" });
    document.body.prepend(bar);
  }
  bar.textContent = text;
}

start();
