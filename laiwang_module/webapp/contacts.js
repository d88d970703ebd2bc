// Contacts: requests (accept = join, decline = leave), suggestions, asking by Matrix id, ending
// an acquaintance; the address book hashed in the browser; binding one's phone number.
import * as api from "./api.js";
import { h, clear, notice, busy, localpart } from "./dom.js";
import { t } from "./i18n.js";
import { addressBook, lookupHash } from "./phone.js";

function section(titleKey, ...children) {
  const id = `h-${titleKey.replace(/\W/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, t(titleKey)), ...children);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The server records the acquaintance a moment after the join (and a remote one only once the
// other server answered): wait a little for it, so that the list shows it when redrawn.
async function untilAcquainted(userId, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const data = await api.lw("GET", "/contacts");
    if (data.contacts.some((c) => c.user_id === userId)) return;
    await sleep(500);
  }
}

function requestsSection(refresh) {
  const out = notice();
  const incoming = h("ul", { class: "list", id: "incoming" });
  const outgoing = h("ul", { class: "list", id: "outgoing" });
  (async () => {
    try {
      const data = await api.lw("GET", "/contacts/requests");
      clear(incoming, data.incoming.length ? null : h("li", { class: "muted" }, t("contacts.none")));
      for (const r of data.incoming) {
        const name = localpart(r.user_id);
        const accept = h("button", { type: "button", "aria-label": t("contacts.acceptFrom", { user: name }) }, t("contacts.accept"));
        const decline = h("button", { type: "button", class: "secondary", "aria-label": t("contacts.declineFrom", { user: name }) }, t("contacts.decline"));
        accept.onclick = () => busy(accept, out, async () => {
          await api.cs("POST", `/join/${api.enc(r.room_id)}`, {});
          await untilAcquainted(r.user_id);
          refresh();
        });
        decline.onclick = () => busy(decline, out, async () => {
          await api.cs("POST", `/rooms/${api.enc(r.room_id)}/leave`, {});
          refresh();
        });
        incoming.append(h("li", {}, h("span", { class: "grow" }, h("strong", {}, r.user_id), r.message ? h("span", { class: "muted" }, ` “${r.message}”`) : null), accept, decline));
      }
      clear(outgoing, data.outgoing.length ? null : h("li", { class: "muted" }, t("contacts.none")));
      for (const r of data.outgoing) outgoing.append(h("li", {}, h("span", { class: "grow" }, r.user_id), h("span", { class: "muted" }, t("contacts.waiting"))));
    } catch (e) {
      out.show(e.message, "error");
    }
  })();
  return section("contacts.requests", h("h3", {}, t("contacts.incoming")), incoming, h("h3", {}, t("contacts.outgoing")), outgoing, out);
}

async function ask(userId, message, out, button, refresh) {
  await busy(button, out, async () => {
    const body = { user_id: userId };
    if (message) body.message = message;
    await api.lw("POST", "/contacts/requests", body);
    refresh();
  }, t("contacts.asked", { user: userId }));
}

function askSection(refresh) {
  const out = notice();
  const who = h("input", { id: "ask-user", "aria-label": t("contacts.matrixId"), placeholder: "@name:server", required: true });
  const msg = h("input", { id: "ask-message", "aria-label": t("contacts.message"), maxlength: 500 });
  const submit = h("button", { type: "submit" }, t("contacts.ask"));
  return section(
    "contacts.askTitle",
    h(
      "form",
      { onsubmit: (e) => { e.preventDefault(); ask(who.value.trim(), msg.value.trim(), out, submit, refresh); } },
      h("label", { for: "ask-user" }, t("contacts.matrixId")),
      who,
      h("label", { for: "ask-message" }, t("contacts.message")),
      msg,
      submit,
    ),
    out,
  );
}

function suggestionsSection(refresh) {
  const out = notice();
  const list = h("ul", { class: "list", id: "suggestions" });
  (async () => {
    try {
      const data = await api.lw("GET", "/contacts/suggestions");
      clear(list, data.suggestions.length ? null : h("li", { class: "muted" }, t("contacts.noSuggestions")));
      for (const s of data.suggestions) {
        const b = h("button", { type: "button", "aria-label": t("contacts.askUser", { user: localpart(s.user_id) }) }, t("contacts.ask"));
        b.onclick = () => ask(s.user_id, "", out, b, refresh);
        list.append(
          h("li", {}, h("span", { class: "grow" }, h("strong", {}, s.user_id), h("br"), h("span", { class: "muted" }, t(`contacts.reason.${s.reason}`), " · ", t("contacts.mutual", { n: s.mutual_count }))), b),
        );
      }
    } catch (e) {
      out.show(e.message, "error");
    }
  })();
  return section("contacts.suggestions", list, out);
}

function acquaintancesSection(refresh) {
  const out = notice();
  const list = h("ul", { class: "list", id: "acquaintances" });
  (async () => {
    try {
      const data = await api.lw("GET", "/contacts");
      clear(list, data.contacts.length ? null : h("li", { class: "muted" }, t("contacts.noContacts")));
      for (const c of data.contacts) {
        const name = localpart(c.user_id);
        const end = h("button", { type: "button", class: "danger", "aria-label": t("contacts.endWith", { user: name }) }, t("contacts.end"));
        end.onclick = () => {
          if (!confirm(t("contacts.endConfirm", { user: c.user_id }))) return;
          busy(end, out, async () => {
            await api.lw("DELETE", `/contacts/${api.enc(c.user_id)}`);
            refresh();
          });
        };
        list.append(h("li", {}, h("span", { class: "grow" }, h("strong", {}, c.user_id), h("br"), h("span", { class: "muted" }, t(`contacts.source.${c.source}`))), end));
      }
    } catch (e) {
      out.show(e.message, "error");
    }
  })();
  return section("contacts.acquaintances", list, out);
}

// The file never leaves the browser: numbers are read, normalised and hashed here, and only
// the hashes are sent, in requests of at most 1000.
function addressBookSection(refresh) {
  const out = notice();
  const file = h("input", { id: "book-file", type: "file", accept: ".vcf,.csv,text/vcard,text/csv", "aria-label": t("book.file") });
  const cc = h("input", { id: "book-cc", inputmode: "numeric", value: navigator.language && navigator.language.startsWith("zh") ? "86" : "", "aria-label": t("book.cc"), placeholder: "86" });
  const progress = h("progress", { id: "book-progress", max: 1, value: 0, hidden: true, "aria-label": t("book.progress") });
  const found = h("ul", { class: "list", id: "book-found" });
  const submit = h("button", { type: "submit" }, t("book.upload"));
  const form = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        busy(submit, out, async () => {
          const f = file.files && file.files[0];
          if (!f) throw new Error(t("book.chooseFile"));
          const numbers = addressBook(f.name, await f.text(), cc.value);
          if (!numbers.length) throw new Error(t("book.noNumbers"));
          let details = await api.lw("GET", "/discovery/hash_details");
          progress.hidden = false;
          progress.max = numbers.length;
          progress.value = 0;
          const mappings = {};
          for (let i = 0; i < numbers.length; i += 1000) {
            const chunk = numbers.slice(i, i + 1000);
            for (let attempt = 0; ; attempt++) {
              const hashes = await Promise.all(chunk.map((n) => lookupHash(n, details.lookup_pepper)));
              try {
                const res = await api.lw("POST", "/discovery/lookup", { algorithm: "sha256", pepper: details.lookup_pepper, addresses: hashes });
                Object.assign(mappings, res.mappings);
                break;
              } catch (err) {
                // The pepper rotated meanwhile: hash again with the new one, once.
                if (err.errcode === "M_INVALID_PEPPER" && attempt === 0) details = { lookup_pepper: err.body.lookup_pepper };
                else throw err;
              }
            }
            progress.value = Math.min(numbers.length, i + 1000);
          }
          const users = [...new Set(Object.values(mappings))];
          clear(found);
          for (const u of users) {
            const b = h("button", { type: "button", "aria-label": t("contacts.askUser", { user: localpart(u) }) }, t("contacts.ask"));
            b.onclick = () => ask(u, "", out, b, refresh);
            found.append(h("li", {}, h("span", { class: "grow" }, u), b));
          }
          out.show(t("book.done", { n: numbers.length, found: users.length }), "ok");
        });
      },
    },
    h("p", { class: "muted" }, t("book.privacy")),
    h("label", { for: "book-file" }, t("book.file")),
    file,
    h("label", { for: "book-cc" }, t("book.cc")),
    cc,
    submit,
    progress,
  );
  return section("book.title", form, out, found);
}

function randomSecret() {
  const bytes = new Uint8Array(24);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// requestToken (the module's) -> submit the SMS code (submit_url) -> /account/3pid/add with
// user-interactive auth (the password).
function phoneSection() {
  const out = notice();
  const country = h("input", { id: "phone-country", value: navigator.language && navigator.language.startsWith("zh") ? "CN" : "", maxlength: 2, "aria-label": t("phone.country"), placeholder: "CN" });
  const number = h("input", { id: "phone-number", type: "tel", autocomplete: "tel", "aria-label": t("phone.number"), required: true });
  const code = h("input", { id: "phone-code", inputmode: "numeric", autocomplete: "one-time-code", "aria-label": t("phone.code") });
  const password = h("input", { id: "phone-password", type: "password", autocomplete: "current-password", "aria-label": t("phone.password") });
  const send = h("button", { type: "submit" }, t("phone.send"));
  const confirmButton = h("button", { type: "submit" }, t("phone.confirm"));
  const state = { secret: randomSecret(), sid: null, submitPath: null, attempt: 0 };
  const step2 = h(
    "form",
    {
      hidden: true,
      onsubmit: (e) => {
        e.preventDefault();
        busy(confirmButton, out, async () => {
          const r = await api.call("POST", state.submitPath, { client_secret: state.secret, sid: state.sid, token: code.value.trim() }, { auth: false });
          if (!r.success) throw new Error(r.error || t("phone.wrongCode"));
          const body = { client_secret: state.secret, sid: state.sid };
          try {
            await api.cs("POST", "/account/3pid/add", body);
          } catch (err) {
            if (err.status !== 401 || !err.body.session) throw err;
            await api.cs("POST", "/account/3pid/add", {
              ...body,
              auth: {
                type: "m.login.password",
                identifier: { type: "m.id.user", user: api.loadSession().user_id },
                password: password.value,
                session: err.body.session,
              },
            });
          }
          step2.hidden = true;
        }, t("phone.bound"));
      },
    },
    h("label", { for: "phone-code" }, t("phone.code")),
    code,
    h("label", { for: "phone-password" }, t("phone.password")),
    password,
    confirmButton,
  );
  const step1 = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        busy(send, out, async () => {
          state.attempt += 1;
          const r = await api.lw("POST", "/msisdn/requestToken", {
            client_secret: state.secret,
            country: country.value.trim().toUpperCase(),
            phone_number: number.value.trim(),
            send_attempt: state.attempt,
          });
          state.sid = r.sid;
          // The submit URL is on this homeserver; keep only its path (same origin, CSP).
          state.submitPath = r.submit_url ? new URL(r.submit_url, location.href).pathname : "/_matrix/client/unstable/add_threepid/msisdn/submit_token";
          step2.hidden = false;
          code.focus();
        }, t("phone.sent"));
      },
    },
    h("label", { for: "phone-country" }, t("phone.country")),
    country,
    h("label", { for: "phone-number" }, t("phone.number")),
    number,
    send,
  );
  return section("phone.title", step1, step2, out);
}

export function contactsPage(main) {
  const box = h("div", { class: "sections" });
  const refresh = () => clear(box, requestsSection(refresh), acquaintancesSection(refresh), suggestionsSection(refresh), askSection(refresh), addressBookSection(refresh), phoneSection());
  refresh();
  main.append(box);
}
