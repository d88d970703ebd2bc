// Commerce: link a shop account (one-time token), subscribe to shops, share an item (or a bought
// item, with its order id) to one's timeline.
import * as api from "./api.js";
import { h, clear, notice, busy } from "./dom.js";
import { t } from "./i18n.js";
import { myTimeline } from "./feed.js";

function linkSection() {
  const out = notice();
  const box = h("div", { id: "link-state" });
  const token = h("input", { id: "link-token", "aria-label": t("shop.token"), autocomplete: "off" });
  const submit = h("button", { type: "submit" }, t("shop.link"));
  async function load() {
    try {
      const r = await api.lw("GET", "/commerce/link");
      const unlink = h("button", { type: "button", class: "secondary" }, t("shop.unlink"));
      unlink.onclick = () => busy(unlink, out, async () => { await api.lw("DELETE", "/commerce/link"); await load(); });
      clear(box, h("p", {}, t("shop.linked", { account: r.account_id }), " "), unlink);
    } catch (e) {
      if (e.status === 404) clear(box, h("p", { class: "muted" }, t("shop.notLinked")));
      else out.show(e.message, "error");
    }
  }
  load();
  return h(
    "section",
    { class: "card", "aria-labelledby": "h-link" },
    h("h2", { id: "h-link" }, t("shop.account")),
    box,
    h(
      "form",
      { onsubmit: (e) => { e.preventDefault(); busy(submit, out, async () => { await api.lw("POST", "/commerce/link", { token: token.value.trim() }); token.value = ""; await load(); }, t("shop.linkedNow")); } },
      h("label", { for: "link-token" }, t("shop.token")),
      token,
      submit,
    ),
    out,
  );
}

function subscriptionsSection() {
  const out = notice();
  const list = h("ul", { class: "list", id: "subscriptions" });
  const shop = h("input", { id: "shop-id", "aria-label": t("shop.shopId"), placeholder: "teahouse" });
  const submit = h("button", { type: "submit" }, t("shop.subscribe"));
  async function load() {
    try {
      const r = await api.lw("GET", "/commerce/subscriptions");
      clear(list, r.subscriptions.length ? null : h("li", { class: "muted" }, t("shop.noSubscriptions")));
      for (const sub of r.subscriptions) {
        const b = h("button", { type: "button", class: "secondary", "aria-label": t("shop.unsubscribeFrom", { shop: sub.name }) }, t("shop.unsubscribe"));
        b.onclick = () => busy(b, out, async () => { await api.lw("DELETE", `/commerce/subscriptions/${api.enc(sub.shop_id)}`); await load(); });
        list.append(h("li", {}, h("span", { class: "grow" }, h("strong", {}, sub.name), " ", h("span", { class: "muted" }, sub.shop_id)), b));
      }
    } catch (e) {
      out.show(e.message, "error");
    }
  }
  load();
  return h(
    "section",
    { class: "card", "aria-labelledby": "h-subs" },
    h("h2", { id: "h-subs" }, t("shop.subscriptions")),
    list,
    h(
      "form",
      { onsubmit: (e) => { e.preventDefault(); busy(submit, out, async () => { await api.lw("PUT", `/commerce/subscriptions/${api.enc(shop.value.trim())}`); shop.value = ""; await load(); }); } },
      h("label", { for: "shop-id" }, t("shop.shopId")),
      shop,
      submit,
    ),
    out,
  );
}

function shareSection() {
  const out = notice();
  const item = h("input", { id: "share-item", required: true, "aria-label": t("feed.item"), placeholder: "item3 / https://…/item/item3" });
  const order = h("input", { id: "share-order", "aria-label": t("feed.order"), placeholder: t("feed.orderHint") });
  const submit = h("button", { type: "submit" }, t("shop.share"));
  return h(
    "section",
    { class: "card", "aria-labelledby": "h-share" },
    h("h2", { id: "h-share" }, t("shop.shareTitle")),
    h(
      "form",
      {
        onsubmit: (e) => {
          e.preventDefault();
          busy(submit, out, async () => {
            const v = item.value.trim();
            const body = { room_id: await myTimeline(), ...(/^https?:\/\//.test(v) ? { url: v } : { item_id: v }) };
            if (order.value.trim()) body.order_id = order.value.trim();
            await api.lw("POST", "/shares/item", body);
            item.value = "";
            order.value = "";
          }, t("feed.posted"));
        },
      },
      h("label", { for: "share-item" }, t("feed.item")),
      item,
      h("label", { for: "share-order" }, t("feed.order")),
      order,
      submit,
    ),
    out,
  );
}

export function shopPage(main) {
  main.append(linkSection(), subscriptionsSection(), shareSection());
}
